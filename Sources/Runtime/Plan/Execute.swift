import Graph

/// Turns each plan node into a closure over raw pointers: the kernel call with its geometry,
/// constants and buffers resolved once at compile time.
extension CompiledPlan {
    static func geometry(_ nodes: [PlanNode], _ i: Int, _ p: ConvParams) -> Conv2DGeometry {
        p.geometry(input: nodes[nodes[i].inputs[0]].shape, output: nodes[i].shape)
    }

    static func workspaceNeeded(_ nodes: [PlanNode], _ i: Int) -> Int {
        switch nodes[i].op {
        case .conv(let p, _, _, _) where p.isPointwise: return 0      // packed at compile time
        case .conv(let p, _, _, _) where p.groups > 1: return groupedConv2dWorkspaceCount(geometry(nodes, i, p), groups: p.groups)
        case .conv(let p, _, _, _): return conv2dWorkspaceCount(geometry(nodes, i, p))
        case .expandDepthwise(let f):
            // A ring of kernelH expanded input rows per worker.
            let input = nodes[nodes[i].inputs[0]].shape
            return expandDepthwiseWorkspaceCount(kernelH: f.depthwise.kernelH, inW: input[2], channels: f.expandChannels)
        case .convDepthwise(let f):
            // A ring of kernelH stem rows per worker.
            let stem = f.stemShape
            return expandDepthwiseWorkspaceCount(kernelH: f.depthwise.kernelH, inW: stem[2], channels: stem[3])
        case .scaledPointwise(let p, _, _, _):
            let input = nodes[nodes[i].inputs[0]].shape
            return max(pointwisePackedCount(k: input[3], n: p.outChannels), input[1] * input[2] * input[3])
        default: return 0
        }
    }

    func makeStep(_ i: Int) -> () -> Void {
        let node = nodes[i]
        let out = pointer(i)
        let ins = node.inputs.map { UnsafePointer(pointer($0)) }
        let inShapes = node.inputs.map { nodes[$0].shape }
        let constant = { (k: Int) in UnsafePointer(self.constants.pointer(i, k)) }
        if runsInBF16(node.op, precision: precision) { return makeBF16Step(i, node: node, ins: ins, out: out, constant: constant) }
        switch node.op {
        case .input, .view:
            return {}
        case .conv(let p, _, let shift, let act) where p.isPointwise:
            let g = CompiledPlan.geometry(nodes, i, p)
            let packed = constant(0), bias = shift == nil ? nil : constant(1)
            let residual = p.residual ? ins.last : nil
            return { pointwiseConv(m: g.outputPixels, n: g.outC, k: g.inC, input: ins[0], lda: g.inC, packed: packed,
                                   output: out, ldc: g.outC,
                                   epilogue: Epilogue(shift: bias, residual: residual, activation: act)) }
        case .conv(let p, _, let shift, let act) where p.groups > 1:
            let g = CompiledPlan.geometry(nodes, i, p)
            let kernel = constant(0), bias = shift == nil ? nil : constant(1)
            let ws = workspace, wsCount = workspaceCount
            return { groupedConv2d(input: ins[0], geometry: g, groups: p.groups, kernel: kernel, bias: bias, activation: act,
                                   output: out, workspace: ws, workspaceCount: wsCount) }
        case .conv(let p, _, let shift, let act):
            let g = CompiledPlan.geometry(nodes, i, p)
            let kernel = constant(0), bias = shift == nil ? nil : constant(1)
            let ws = workspace, wsCount = workspaceCount
            let residual = p.residual ? ins.last : nil
            return { conv2d(input: ins[0], geometry: g, kernel: kernel, output: out,
                            epilogue: Epilogue(shift: bias, residual: residual, activation: act),
                            workspace: ws, workspaceCount: wsCount) }
        case .scaledPointwise(let p, _, let shift, let act):
            // Squeeze-and-excitation's channel scale times the 1x1 convolution that follows it:
            // per image, either the input's channels are scaled (pixels x cin multiplies) or the
            // packed kernel's rows (cin x cout), whichever is less work. Late in EfficientNet
            // (8x8 pixels, 1152 x 320 kernels) scaling the kernel would cost five times the
            // product's own memory traffic, and it runs on one thread.
            let g = CompiledPlan.geometry(nodes, i, p)
            let batch = g.batch, cin = g.inC, cout = g.outC, pixels = g.inH * g.inW
            let packed = constant(0), bias = shift == nil ? nil : constant(1)
            let scaled = workspace
            let residual = p.residual ? ins.last : nil
            let scaleInput = pixels <= cout
            return {
                for b in 0..<batch {
                    let x = ins[0] + b * pixels * cin, s = ins[1] + b * cin
                    if scaleInput {
                        channelScale(x, batch: 1, spatial: pixels, channels: cin, scale: s, output: scaled)
                    } else {
                        scalePackedPointwise(packed, k: cin, n: cout, rowScale: s, into: scaled)
                    }
                    pointwiseConv(m: pixels, n: cout, k: cin, input: scaleInput ? UnsafePointer(scaled) : x, lda: cin,
                                  packed: scaleInput ? packed : UnsafePointer(scaled), output: out + b * pixels * cout,
                                  ldc: cout, epilogue: Epilogue(shift: bias, residual: residual.map { $0 + b * pixels * cout },
                                                                activation: act))
                }
            }
        case .expandDepthwise(let f):
            let x = nodes[node.inputs[0]].shape
            let g = f.depthwise.geometry(input: [x[0], x[1], x[2], f.expandChannels], output: node.shape)
            let packed = constant(0), expandShift = constant(1), kernel = constant(2), shift = constant(3)
            let ws = workspace, wsCount = workspaceCount, sums = rowSums[i]
            return { expandDepthwiseConv(input: ins[0], inChannels: x[3], expandPacked: packed,
                                         expandEpilogue: Epilogue(shift: expandShift, activation: f.expandAct),
                                         geometry: g, kernel: kernel,
                                         epilogue: Epilogue(shift: shift, activation: f.act), output: out,
                                         workspace: ws, workspaceCount: wsCount, channelSums: sums) }
        case .convDepthwise(let f):
            let x = inShapes[0], stem = f.stemShape
            let cg = f.conv.geometry(input: x, output: stem), g = f.depthwise.geometry(input: stem, output: node.shape)
            let convKernel = constant(0), convShift = constant(1), kernel = constant(2), shift = constant(3)
            let ws = workspace, wsCount = workspaceCount, sums = rowSums[i]
            return { convDepthwiseConv(input: ins[0], convGeometry: cg, convKernel: convKernel,
                                       convEpilogue: Epilogue(shift: convShift, activation: f.convAct),
                                       geometry: g, kernel: kernel, epilogue: Epilogue(shift: shift, activation: f.act),
                                       output: out, workspace: ws, workspaceCount: wsCount, channelSums: sums) }
        case .depthwise(let p, let m, _, let shift, let act):
            let g = CompiledPlan.geometry(nodes, i, p)
            let kernel = constant(0), bias = shift == nil ? nil : constant(1)
            let sums = rowSums[i]
            return { depthwiseConv2d(input: ins[0], geometry: g, multiplier: m, kernel: kernel, output: out,
                                     epilogue: Epilogue(shift: bias, activation: act), channelSums: sums) }
        case .meanOfRowSums:
            let s = nodes[node.inputs[0]].shape
            let batch = s[0], rows = s[1], c = s[3], pixels = Float(s[1] * s[2])
            let sums = UnsafePointer(rowSums[node.inputs[0]]!)
            return {
                for n in 0..<batch {
                    let y = out + n * c
                    y.update(from: sums + n * rows * c, count: c)
                    for r in 1..<max(1, rows) {
                        let row = sums + (n * rows + r) * c
                        for j in 0..<c { y[j] += row[j] }
                    }
                    for j in 0..<c { y[j] /= pixels }    // divide, as the mean is defined
                }
            }
        case .dense(let fi, let fo, _, let shift, let act):
            let rows = node.count / fo
            let kernel = constant(0), bias = shift == nil ? nil : constant(1)
            return { dense(input: ins[0], rows: rows, inFeatures: fi, kernel: kernel, outFeatures: fo, output: out,
                           epilogue: Epilogue(shift: bias, activation: act)) }
        case .activation(let act):
            let n = node.count
            return {
                applyActivation(act, from: ins[0], to: out, count: n)
            }
        case .softmax(let axis, let log):
            let s = node.shape
            let outer = s[..<axis].reduce(1, *), len = s[axis], inner = s[(axis + 1)...].reduce(1, *)
            let n = node.count
            return {
                out.update(from: ins[0], count: n)
                if log { logSoftmax(out, outer: outer, axisLength: len, inner: inner) }
                else { softmax(out, outer: outer, axisLength: len, inner: inner) }
            }
        default:
            return makeDataStep(i, node: node, ins: ins, inShapes: inShapes, out: out, constant: constant)
        }
    }
}

extension CompiledPlan {
    /// The steps of `runsInBF16`'s operations in a bfloat16 plan: the kernel constant is packed by
    /// `packPointwiseBF16` (see `constantArrays`); epilogues and the rest as in `makeStep`.
    func makeBF16Step(_ i: Int, node: PlanNode, ins: [UnsafePointer<Float>], out: UnsafeMutablePointer<Float>,
                      constant: (Int) -> UnsafePointer<Float>) -> () -> Void {
        let packed = UnsafeRawPointer(constant(0)).assumingMemoryBound(to: UInt32.self)
        switch node.op {
        case .conv(let p, _, let shift, let act):
            let g = CompiledPlan.geometry(nodes, i, p)
            let bias = shift == nil ? nil : constant(1)
            let residual = p.residual ? ins.last : nil
            return { pointwiseConvBF16(m: g.outputPixels, n: g.outC, k: g.inC, input: ins[0], lda: g.inC, packed: packed,
                                       output: out, ldc: g.outC,
                                       epilogue: Epilogue(shift: bias, residual: residual, activation: act)) }
        case .scaledPointwise(let p, _, let shift, let act):
            // The channel scale is applied as the input is rounded to bf16, per image.
            let g = CompiledPlan.geometry(nodes, i, p)
            let batch = g.batch, cin = g.inC, cout = g.outC, pixels = g.inH * g.inW
            let bias = shift == nil ? nil : constant(1)
            let residual = p.residual ? ins.last : nil
            return {
                for b in 0..<batch {
                    pointwiseConvBF16(m: pixels, n: cout, k: cin, input: ins[0] + b * pixels * cin, lda: cin,
                                      rowScale: ins[1] + b * cin, packed: packed, output: out + b * pixels * cout, ldc: cout,
                                      epilogue: Epilogue(shift: bias, residual: residual.map { $0 + b * pixels * cout },
                                                         activation: act))
                }
            }
        case .expandDepthwise(let f):
            let x = nodes[node.inputs[0]].shape
            let g = f.depthwise.geometry(input: [x[0], x[1], x[2], f.expandChannels], output: node.shape)
            let expandShift = constant(1), kernel = constant(2), shift = constant(3)
            let ws = workspace, wsCount = workspaceCount, sums = rowSums[i]
            // The float32 kernel pointer is not read when the bf16 one is given.
            let unread = constant(0)
            return { expandDepthwiseConv(input: ins[0], inChannels: x[3], expandPacked: unread,
                                         expandPackedBF16: packed,
                                         expandEpilogue: Epilogue(shift: expandShift, activation: f.expandAct),
                                         geometry: g, kernel: kernel,
                                         epilogue: Epilogue(shift: shift, activation: f.act), output: out,
                                         workspace: ws, workspaceCount: wsCount, channelSums: sums) }
        case .dense(let fi, let fo, _, let shift, let act):
            let rows = node.count / fo
            let bias = shift == nil ? nil : constant(1)
            return { pointwiseConvBF16(m: rows, n: fo, k: fi, input: ins[0], lda: fi, packed: packed, output: out, ldc: fo,
                                       epilogue: Epilogue(shift: bias, activation: act)) }
        default:
            preconditionFailure("makeBF16Step: \(node.kindName) has no bfloat16 step")
        }
    }
}
