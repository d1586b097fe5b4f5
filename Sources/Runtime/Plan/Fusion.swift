import Graph

/// Graph rewrites that make the plan cheaper without changing its numbers beyond float rounding:
/// ZeroPadding2D folded into the next convolution's padding, batch-norm (and any per-channel
/// affine) folded into the producing convolution or dense kernel, activations fused into the
/// producing kernel's epilogue, consecutive affines merged.
struct Fusion {
    var nodes: [PlanNode]
    var outputs: [Int]
    /// Removed node -> the node that now provides its value.
    private var forward: [Int: Int] = [:]

    init(nodes: [PlanNode], outputs: [Int]) {
        self.nodes = nodes
        self.outputs = outputs
    }

    mutating func run() -> (nodes: [PlanNode], outputs: [Int]) {
        skipIdentityViews()
        for i in nodes.indices { fuseIntoProducer(i) }
        // MobileNetV3's hard-sigmoid relu6(x + 3) * (1/6) and hard-swish x * hard-sigmoid(x), which
        // the models write as separate operations, become one epilogue activation.
        for i in nodes.indices where forward[i] == nil { scaleClippedRelu(i) }
        for i in nodes.indices where forward[i] == nil { fuseHardSwish(i) }
        for i in nodes.indices where forward[i] == nil { foldChannelScale(i) }
        for i in nodes.indices where forward[i] == nil { foldResidualAdd(i) }
        // An activation after a folded Add (ResNet's add-then-relu) now has a fusable producer.
        for i in nodes.indices where forward[i] == nil { fuseIntoProducer(i) }
        if KernelISA.avx512 {
            for i in nodes.indices where forward[i] == nil { fuseExpandDepthwise(i) }
            for i in nodes.indices where forward[i] == nil { fuseConvDepthwise(i) }
            for i in nodes.indices where forward[i] == nil { poolFromRowSums(i) }
        }
        return compact()
    }

    /// A view that keeps its input's shape (inference's Dropout, drop-connect, Identity) reads
    /// its input's buffer and computes nothing; its consumers now read the input itself, so the
    /// rewrites below see through it. EfficientNet's residual Add reads the projection through
    /// block*_drop: the Add ran as a pass of its own (nine per image, each a loop over the map
    /// and a wait for the workers at batch 1) instead of in the projection's epilogue.
    private mutating func skipIdentityViews() {
        for i in nodes.indices {
            guard case .view = nodes[i].op, nodes[i].inputs.count == 1 else { continue }
            let p = resolve(nodes[i].inputs[0])
            if nodes[p].shape == nodes[i].shape { forward[i] = p }
        }
    }

    /// Add(conv(x), r) with the convolution used only there becomes the convolution with r as a
    /// residual in its epilogue, placed where the Add was (so r has been computed by then).
    private mutating func foldResidualAdd(_ i: Int) {
        guard case .merge(.add) = nodes[i].op, nodes[i].inputs.count == 2 else { return }
        let ins = nodes[i].inputs.map(resolve)
        guard nodes[ins[0]].shape == nodes[ins[1]].shape else { return }
        for k in 0..<2 {
            let c = ins[k], other = ins[1 - k]
            guard c != other, !isOutput(c), consumers(of: c) == [i] else { continue }
            switch nodes[c].op {
            case .conv(var p, let kernel, let shift, let act) where act.isIdentity && !p.residual && p.groups == 1:
                p.residual = true
                nodes[i].op = .conv(p, kernel: kernel, shift: shift, act: act)
            case .scaledPointwise(var p, let kernel, let shift, let act) where act.isIdentity && !p.residual:
                p.residual = true
                nodes[i].op = .scaledPointwise(p, kernel: kernel, shift: shift, act: act)
            default:
                continue
            }
            nodes[i].inputs = nodes[c].inputs + [other]
            nodes[i].layer = nodes[c].layer + "+" + nodes[i].layer
            forward[c] = i
            return
        }
    }

    /// depthwise(conv1x1(x)) becomes one `expandDepthwise` step when the expanded map is large
    /// enough to leave the cache (below that, the two kernels alone are as fast) and both
    /// epilogues are ones the AVX-512 kernels apply in registers (the fused step runs only there).
    private mutating func fuseExpandDepthwise(_ i: Int) {
        guard case .depthwise(let dw, 1, let kernel, let shift, let act) = nodes[i].op, dw.dilationH == 1,
              nodes[i].inputs.count == 1 else { return }
        let p = resolve(nodes[i].inputs[0])
        guard case .conv(let e, let ek, let es, let ea) = nodes[p].op, e.isPointwise, !e.residual,
              nodes[p].inputs.count == 1, !isOutput(p), consumers(of: p) == [i],
              nodes[p].shape.dropFirst().reduce(1, *) * MemoryLayout<Float>.size >= Self.expandDepthwiseMinBytes,
              ea.avx512Code != nil, act.avx512Code != nil
        else { return }
        nodes[i].op = .expandDepthwise(ExpandDepthwise(expandChannels: e.outChannels, expandKernel: ek, expandShift: es,
                                                       expandAct: ea, depthwise: dw, kernel: kernel, shift: shift,
                                                       act: act))
        nodes[i].inputs = nodes[p].inputs
        nodes[i].layer = nodes[p].layer + "+" + nodes[i].layer
        forward[p] = i
    }

    /// depthwise(stem(x)), the stem a convolution `conv2dIsDirect` computes (few input channels),
    /// becomes one `convDepthwise` step under the same conditions as `fuseExpandDepthwise`: a
    /// stem map large enough to leave the cache, epilogues the AVX-512 kernels apply in registers.
    private mutating func fuseConvDepthwise(_ i: Int) {
        guard case .depthwise(let dw, 1, let kernel, let shift, let act) = nodes[i].op, dw.dilationH == 1,
              nodes[i].inputs.count == 1 else { return }
        let p = resolve(nodes[i].inputs[0])
        guard case .conv(let c, let ck, let cs, let ca) = nodes[p].op, !c.isPointwise, !c.residual, c.groups == 1,
              c.dilationW == 1, nodes[p].inputs.count == 1, !isOutput(p), consumers(of: p) == [i],
              nodes[p].shape.count == 4, nodes[i].shape.count == 4,
              conv2dIsDirect(c.geometry(input: nodes[resolve(nodes[p].inputs[0])].shape, output: nodes[p].shape)),
              nodes[p].shape.dropFirst().reduce(1, *) * MemoryLayout<Float>.size >= Self.expandDepthwiseMinBytes,
              ca.avx512Code != nil, act.avx512Code != nil
        else { return }
        nodes[i].op = .convDepthwise(ConvDepthwise(conv: c, stemShape: nodes[p].shape, convKernel: ck, convShift: cs, convAct: ca, depthwise: dw,
                                                   kernel: kernel, shift: shift, act: act))
        nodes[i].inputs = nodes[p].inputs
        nodes[i].layer = nodes[p].layer + "+" + nodes[i].layer
        forward[p] = i
    }

    /// A global average pool of a depthwise step's output (squeeze-and-excitation's squeeze) is
    /// taken from channel sums the depthwise kernel makes per output row as it stores them.
    private mutating func poolFromRowSums(_ i: Int) {
        guard case .move(.globalPool(.average)) = nodes[i].op, nodes[i].inputs.count == 1 else { return }
        let d = resolve(nodes[i].inputs[0])
        let act: ActivationSpec
        switch nodes[d].op {
        case .depthwise(_, 1, _, _, let a): act = a
        case .expandDepthwise(let f): act = f.act
        case .convDepthwise(let f): act = f.act
        default: return
        }
        guard nodes[d].shape.count == 4, act.avx512Code != nil else { return }
        nodes[i].op = .meanOfRowSums
    }

    /// min(max(z, 0), m) * c + 0 with c > 0 the same for every channel (the `* (1/6)` after a
    /// ReLU(6)) is min(max(c z, 0), c m): the scale goes into the producer's kernel and bias (or
    /// affine), the clip moves to c m, and the pass is gone.
    private mutating func scaleClippedRelu(_ i: Int) {
        guard case .affine(let scale, let shift, let act) = nodes[i].op, act.isIdentity, nodes[i].inputs.count == 1,
              let c = scale.first, c > 0, scale.allSatisfy({ $0 == c }), shift.allSatisfy({ $0 == 0 }) else { return }
        let p = resolve(nodes[i].inputs[0])
        guard !isOutput(p), consumers(of: p) == [i] else { return }
        func scaled(_ a: ActivationSpec) -> ActivationSpec? {
            guard a.kind == .relu || a.kind == .relu6, a.alpha == 0, a.threshold == 0,
                  let m = a.kind == .relu6 ? (a.maxValue ?? 6) : a.maxValue else { return nil }
            return ActivationSpec(.relu, maxValue: m * c)
        }
        let ones = [Float](repeating: c, count: scale.count), zeros = [Float](repeating: 0, count: scale.count)
        switch nodes[p].op {
        case .conv(let params, let k, let s, let a) where !params.residual:
            guard let act = scaled(a) else { return }
            let (k2, s2) = scaleColumns(k, s, ones, zeros)
            nodes[p].op = .conv(params, kernel: k2, shift: s2, act: act)
        case .depthwise(let params, let m, let k, let s, let a):
            guard let act = scaled(a) else { return }
            let (k2, s2) = scaleColumns(k, s, ones, zeros)
            nodes[p].op = .depthwise(params, multiplier: m, kernel: k2, shift: s2, act: act)
        case .dense(let fi, let fo, let k, let s, let a):
            guard let act = scaled(a) else { return }
            let (k2, s2) = scaleColumns(k, s, ones, zeros)
            nodes[p].op = .dense(inFeatures: fi, outFeatures: fo, kernel: k2, shift: s2, act: act)
        case .affine(let s1, let t1, let a) where s1.count == scale.count:
            guard let act = scaled(a) else { return }
            nodes[p].op = .affine(scale: s1.map { $0 * c }, shift: t1.map { $0 * c }, act: act)
        default:
            return
        }
        nodes[p].layer += "+" + nodes[i].layer
        forward[i] = p
    }

    /// x * min(max(x / 6 + 1/2, 0), 1) (tf-keras's hard-swish: Multiply of x and its hard-sigmoid,
    /// after `scaleClippedRelu` an affine with clip 1), x the output of a kernel with no
    /// activation read only there: the kernel applies hard_silu in its epilogue instead.
    private mutating func fuseHardSwish(_ i: Int) {
        guard case .merge(.multiply) = nodes[i].op, nodes[i].inputs.count == 2 else { return }
        let ins = nodes[i].inputs.map(resolve)
        for k in 0..<2 {
            let x = ins[k], h = ins[1 - k]
            guard case .affine(let scale, let shift, let act) = nodes[h].op, resolve(nodes[h].inputs[0]) == x,
                  nodes[h].shape == nodes[i].shape, nodes[x].shape == nodes[i].shape,
                  scale.allSatisfy({ abs($0 - 1.0 / 6.0) <= 1e-7 }), shift.allSatisfy({ abs($0 - 0.5) <= 1e-7 }),
                  act.kind == .relu, act.alpha == 0, act.threshold == 0, abs((act.maxValue ?? 0) - 1) <= 1e-6,
                  !isOutput(x), !isOutput(h), consumers(of: h) == [i], Set(consumers(of: x)) == [h, i],
                  consumers(of: x).count == 2 else { continue }
            let hardSilu = ActivationSpec(.hardSilu)
            switch nodes[x].op {
            case .conv(let p, let kernel, let s, let a) where a.isIdentity:
                nodes[x].op = .conv(p, kernel: kernel, shift: s, act: hardSilu)
            case .depthwise(let p, let m, let kernel, let s, let a) where a.isIdentity:
                nodes[x].op = .depthwise(p, multiplier: m, kernel: kernel, shift: s, act: hardSilu)
            case .dense(let fi, let fo, let kernel, let s, let a) where a.isIdentity:
                nodes[x].op = .dense(inFeatures: fi, outFeatures: fo, kernel: kernel, shift: s, act: hardSilu)
            case .affine(let sc, let sh, let a) where a.isIdentity:
                nodes[x].op = .affine(scale: sc, shift: sh, act: hardSilu)
            default:
                continue
            }
            nodes[x].layer += "+" + nodes[h].layer + "+" + nodes[i].layer
            forward[h] = x          // read by nothing now
            forward[i] = x
            return
        }
    }

    /// Expanded maps (per image) from this size on are fused with their depthwise convolution.
    static let expandDepthwiseMinBytes = 1 << 20

    /// channelScale(x, s) feeding only a pointwise conv becomes that conv with scaled weights.
    private mutating func foldChannelScale(_ i: Int) {
        guard case .conv(let p, let k, let s, let a) = nodes[i].op, nodes[i].inputs.count == 1, p.isPointwise
        else { return }
        let producer = resolve(nodes[i].inputs[0])
        guard case .channelScale = nodes[producer].op, !isOutput(producer), consumers(of: producer) == [i] else { return }
        nodes[i].op = .scaledPointwise(p, kernel: k, shift: s, act: a)
        nodes[i].inputs = nodes[producer].inputs
        nodes[i].layer = nodes[producer].layer + "+" + nodes[i].layer
        forward[producer] = i
    }

    private func resolve(_ i: Int) -> Int {
        var j = i
        while let k = forward[j] { j = k }
        return j
    }

    /// Consumers of node `i` among live nodes (a node listed twice counts twice).
    private func consumers(of i: Int) -> [Int] {
        var out: [Int] = []
        for (j, n) in nodes.enumerated() where forward[j] == nil {
            for input in n.inputs where resolve(input) == i { out.append(j) }
        }
        return out
    }

    private func isOutput(_ i: Int) -> Bool { outputs.contains { resolve($0) == i } }

    /// Tries to merge node `i` into its single producer; on success `i` is forwarded to it.
    private mutating func fuseIntoProducer(_ i: Int) {
        guard nodes[i].inputs.count == 1 else { return }
        let p = resolve(nodes[i].inputs[0])
        guard !isOutput(p), consumers(of: p) == [i] else { return }
        let producer = nodes[p]
        switch (producer.op, nodes[i].op) {
        case (.move(.pad(let t, _, let l, _)), .conv(var params, let k, let s, let a)):
            params.padTop += t; params.padLeft += l
            nodes[i].op = .conv(params, kernel: k, shift: s, act: a)
            nodes[i].inputs = producer.inputs
            forward[p] = producer.inputs[0]      // the pad node is gone; nothing else used it
            return
        case (.move(.pad(let t, _, let l, _)), .depthwise(var params, let m, let k, let s, let a)):
            params.padTop += t; params.padLeft += l
            nodes[i].op = .depthwise(params, multiplier: m, kernel: k, shift: s, act: a)
            nodes[i].inputs = producer.inputs
            forward[p] = producer.inputs[0]
            return
        case (.conv(let params, let k, let s, let a), .affine(let scale, let shift, let act)) where a.isIdentity && !params.residual:
            let (k2, s2) = scaleColumns(k, s, scale, shift)
            nodes[p].op = .conv(params, kernel: k2, shift: s2, act: act)
        case (.depthwise(let params, let m, let k, let s, let a), .affine(let scale, let shift, let act)) where a.isIdentity:
            let (k2, s2) = scaleColumns(k, s, scale, shift)
            nodes[p].op = .depthwise(params, multiplier: m, kernel: k2, shift: s2, act: act)
        case (.dense(let fi, let fo, let k, let s, let a), .affine(let scale, let shift, let act)) where a.isIdentity:
            let (k2, s2) = scaleColumns(k, s, scale, shift)
            nodes[p].op = .dense(inFeatures: fi, outFeatures: fo, kernel: k2, shift: s2, act: act)
        case (.affine(let s1, let t1, let a), .affine(let s2, let t2, let act)) where a.isIdentity:
            nodes[p].op = .affine(scale: zip(s1, s2).map(*), shift: (0..<s1.count).map { t1[$0] * s2[$0] + t2[$0] }, act: act)
        case (.conv(let params, let k, let s, let a), .activation(let act)) where a.isIdentity:
            nodes[p].op = .conv(params, kernel: k, shift: s, act: act)
        case (.depthwise(let params, let m, let k, let s, let a), .activation(let act)) where a.isIdentity:
            nodes[p].op = .depthwise(params, multiplier: m, kernel: k, shift: s, act: act)
        case (.dense(let fi, let fo, let k, let s, let a), .activation(let act)) where a.isIdentity:
            nodes[p].op = .dense(inFeatures: fi, outFeatures: fo, kernel: k, shift: s, act: act)
        case (.affine(let sc, let sh, let a), .activation(let act)) where a.isIdentity:
            nodes[p].op = .affine(scale: sc, shift: sh, act: act)
        default:
            return
        }
        nodes[p].layer += "+" + nodes[i].layer
        forward[i] = p
    }

    /// Drops forwarded nodes and renumbers inputs and outputs.
    private func compact() -> (nodes: [PlanNode], outputs: [Int]) {
        var newIndex: [Int: Int] = [:]
        var out: [PlanNode] = []
        for (i, n) in nodes.enumerated() where forward[i] == nil {
            var node = n
            node.inputs = n.inputs.map { newIndex[resolve($0)]! }
            newIndex[i] = out.count
            out.append(node)
        }
        return (out, outputs.map { newIndex[resolve($0)]! })
    }
}

/// Folds y = x * scale + shift applied to a kernel's output channels (the last axis of HWIO,
/// HWCM and IO kernels alike) into the kernel and its bias.
func scaleColumns(_ kernel: [Float], _ bias: [Float]?, _ scale: [Float], _ shift: [Float]) -> ([Float], [Float]) {
    let c = scale.count
    precondition(c > 0 && kernel.count % c == 0, "a kernel whose last axis is not the scale's")
    // Row by row (no division per weight: this runs over every folded weight of every plan made).
    let k = [Float](unsafeUninitializedCapacity: kernel.count) { out, done in
        kernel.withUnsafeBufferPointer { src in
            scale.withUnsafeBufferPointer { sc in
                for row in stride(from: 0, to: kernel.count, by: c) {
                    for j in 0..<c { out[row + j] = src[row + j] * sc[j] }
                }
            }
        }
        done = kernel.count
    }
    let b = (0..<c).map { (bias?[$0] ?? 0) * scale[$0] + shift[$0] }
    return (k, b)
}
