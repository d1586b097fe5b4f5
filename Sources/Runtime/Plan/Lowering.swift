import Graph

/// Lowers the graph nodes a set of outputs needs into plan nodes, for one batch size and one set
/// of input shapes. Each Keras layer becomes one or two plan nodes; weights become plain arrays.
struct Lowering {
    let graph: ModelGraph
    let weights: WeightStore
    var nodes: [PlanNode] = []
    /// graph node id -> plan node index
    var valueOf: [Int: Int] = [:]
    /// Keep Dropout layers as training-mode dropout (a training plan's frozen prefix) instead of
    /// removing them (inference).
    var keepDropout = false

    init(graph: ModelGraph, weights: WeightStore) {
        self.graph = graph
        self.weights = weights
    }

    mutating func lower(outputs: [Int], inputShapes: [[Int]]) throws -> (nodes: [PlanNode], outputs: [Int]) {
        let needed = ancestors(of: outputs)
        for (i, id) in graph.inputs.enumerated() {
            valueOf[id] = append(.input(index: i), [], inputShapes[i], graph.nodes[id].name)
        }
        for node in graph.nodes where needed.contains(node.id) && valueOf[node.id] == nil {
            valueOf[node.id] = try lowerNode(node)
        }
        return (nodes, outputs.map { valueOf[$0]! })
    }

    func ancestors(of outputs: [Int]) -> Set<Int> {
        var seen = Set<Int>()
        var stack = outputs
        while let id = stack.popLast() {
            guard seen.insert(id).inserted else { continue }
            stack += graph.nodes[id].inputs
        }
        return seen
    }

    mutating func append(_ op: PlanOp, _ inputs: [Int], _ shape: [Int], _ layer: String) -> Int {
        nodes.append(PlanNode(op: op, inputs: inputs, shape: shape, layer: layer))
        return nodes.count - 1
    }

    func weight(_ name: String, _ node: GraphNode) throws -> [Float] {
        guard let w = weights.weight(name, of: node) else {
            throw RuntimeError("layer '\(node.layerKey)' has no weight '\(name)' bound")
        }
        return w.floats
    }

    func optionalWeight(_ name: String, _ node: GraphNode) -> [Float]? {
        weights.weight(name, of: node)?.floats
    }

    mutating func lowerNode(_ node: GraphNode) throws -> Int {
        let ins = node.inputs.map { valueOf[$0]! }
        let inShape = ins.first.map { nodes[$0].shape } ?? []
        let name = node.layerKey
        func fail(_ what: String) -> RuntimeError { RuntimeError("layer '\(name)' (\(node.className)): \(what)") }
        switch node.op {
        case .input:
            throw fail("an input that is not a model input")
        case .conv2d(let s):
            let p = convParams(inShape, s.kernel, s.strides, s.dilation, s.padding, s.filters)
            let shape = convShape(inShape, s.kernel, s.strides, s.dilation, s.padding, s.filters)
            let bias = s.useBias ? try weight("bias", node) : nil
            let kernel = try weight("kernel", node)
            if s.groups > 1 && s.groups == inShape[3] {
                // One group per input channel (ConvNeXt's 7x7): a depthwise convolution, whose
                // HWCM kernel has the grouped HWIO kernel's layout (I = 1, O = C * multiplier).
                let dw = append(.depthwise(p, multiplier: s.filters / s.groups, kernel: kernel, shift: bias,
                                           act: s.activation.withoutSoftmax), ins, shape, name)
                return try splitSoftmax(s.activation, dw, shape, name)
            }
            let dense = s.groups == 1 ? kernel
                : blockDiagonalKernel(kernel, taps: s.kernel[0] * s.kernel[1], inChannels: inShape[3], filters: s.filters,
                                      groups: s.groups)
            let conv = append(.conv(p, kernel: dense, shift: bias, act: s.activation.withoutSoftmax),
                              ins, shape, name)
            return try splitSoftmax(s.activation, conv, shape, name)
        case .depthwiseConv2d(let s):
            let shape = convShape(inShape, s.kernel, s.strides, s.dilation, s.padding, inShape[3] * s.depthMultiplier)
            let p = convParams(inShape, s.kernel, s.strides, s.dilation, s.padding, shape[3])
            let bias = s.useBias ? try weight("bias", node) : nil
            let dw = append(.depthwise(p, multiplier: s.depthMultiplier, kernel: try weight("depthwise_kernel", node),
                                       shift: bias, act: s.activation.withoutSoftmax), ins, shape, name)
            return try splitSoftmax(s.activation, dw, shape, name)
        case .separableConv2d(let s):
            let d = s.depthwise
            let midShape = convShape(inShape, d.kernel, d.strides, d.dilation, d.padding, inShape[3] * d.depthMultiplier)
            let p = convParams(inShape, d.kernel, d.strides, d.dilation, d.padding, midShape[3])
            let dw = append(.depthwise(p, multiplier: d.depthMultiplier, kernel: try weight("depthwise_kernel", node),
                                       shift: nil, act: .linear), ins, midShape, name)
            let pw = ConvParams(kernelH: 1, kernelW: 1, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1,
                                padTop: 0, padLeft: 0, outChannels: s.filters)
            let shape = Array(midShape.dropLast()) + [s.filters]
            let bias = s.useBias ? try weight("bias", node) : nil
            let conv = append(.conv(pw, kernel: try weight("pointwise_kernel", node), shift: bias,
                                    act: s.activation.withoutSoftmax), [dw], shape, name)
            return try splitSoftmax(s.activation, conv, shape, name)
        case .dense(let s):
            let shape = Array(inShape.dropLast()) + [s.units]
            let bias = s.useBias ? try weight("bias", node) : nil
            let d = append(.dense(inFeatures: inShape.last!, outFeatures: s.units, kernel: try weight("kernel", node),
                                  shift: bias, act: s.activation.withoutSoftmax), ins, shape, name)
            return try splitSoftmax(s.activation, d, shape, name)
        case .batchNorm(let s):
            let (scale, shift) = foldBatchNorm(gamma: s.scale ? try weight("gamma", node) : nil,
                                               beta: s.center ? try weight("beta", node) : nil,
                                               movingMean: try weight("moving_mean", node),
                                               movingVariance: try weight("moving_variance", node), epsilon: s.epsilon)
            return append(.affine(scale: scale, shift: shift, act: .linear), ins, inShape, name)
        case .normalization, .rescaling:
            let (scale, shift) = try constantAffine(node.op, channels: inShape.last!, weight: { try weight($0, node) }, fail: fail)
            return append(.affine(scale: scale, shift: shift, act: .linear), ins, inShape, name)
        case .layerNorm(let s):
            let dims = try layerNormDims(s, inShape, fail: fail)
            let n = dims.map { inShape[$0] }.reduce(1, *)
            let gamma = try optionalWeight("gamma", node).map { try sized($0, n, "gamma", fail) } ?? ones(n)
            let beta = try optionalWeight("beta", node).map { try sized($0, n, "beta", fail) } ?? zeros(n)
            return append(.layerNorm(dims: dims, gamma: gamma, beta: beta, epsilon: s.epsilon, rms: s.rmsScaling),
                          ins, inShape, name)
        case .layerScale:
            // A per-channel affine, so that it folds into the Dense before it.
            let gamma = try weight("gamma", node)
            return append(.affine(scale: gamma, shift: zeros(gamma.count), act: .linear), ins, inShape, name)
        case .scaledAdd(let scale):
            // inputs[1] * scale as an affine (folded into the convolution producing it), then the
            // sum (folded into that convolution's epilogue as a residual where it can be).
            let shapes = ins.map { nodes[$0].shape }
            let c = shapes[1].last!
            let scaled = append(.affine(scale: Array(repeating: scale, count: c), shift: zeros(c), act: .linear),
                                [ins[1]], shapes[1], name)
            return append(.merge(.add), [ins[0], scaled], broadcast(shapes), name)
        case .stochasticDepth(let rate) where keepDropout && rate > 0 && !node.inferenceOnly:
            return append(.dropout(rate: rate, noiseShape: stochasticDepthNoise(rank: inShape.count), key: UInt64(node.id)),
                          ins, inShape, name)
        case .stochasticDepth:
            return append(.view, ins, inShape, name)
        case .resize(let s):
            let w = s.cropToAspectRatio
                ? aspectCropWindow(height: inShape[1], width: inShape[2], targetHeight: s.height, targetWidth: s.width)
                : (0, 0, inShape[1], inShape[2])
            return resize(w, s.height, s.width, s.interpolation, ins, inShape, name)
        case .centerCrop(let h, let w):
            if inShape[1] >= h && inShape[2] >= w {
                return append(.crop(top: (inShape[1] - h) / 2, left: (inShape[2] - w) / 2), ins,
                              [inShape[0], h, w, inShape[3]], name)
            }
            let window = aspectCropWindow(height: inShape[1], width: inShape[2], targetHeight: h, targetWidth: w)
            return resize(window, h, w, .bilinear, ins, inShape, name)
        case .activation(let a):
            return append(.activation(a), ins, inShape, name)
        case .softmax(let axis, let log):
            return append(.softmax(axis: axis < 0 ? inShape.count + axis : axis, log: log), ins, inShape, name)
        case .dropout(let rate, let noiseShape, _) where keepDropout && rate > 0 && !node.inferenceOnly:
            return append(.dropout(rate: rate, noiseShape: noiseShape, key: UInt64(node.id)), ins, inShape, name)
        case .dropout, .identity:
            return append(.view, ins, inShape, name)
        case .pool2d(let s):
            let shape = convShape(inShape, s.poolSize, s.strides, [1, 1], s.padding, inShape[3])
            let p = convParams(inShape, s.poolSize, s.strides, [1, 1], s.padding, inShape[3])
            return append(.pool(kind: s.kind, poolH: s.poolSize[0], poolW: s.poolSize[1], strideH: s.strides[0],
                                strideW: s.strides[1], padTop: p.padTop, padLeft: p.padLeft), ins, shape, name)
        case .globalPool(let kind, let keep):
            let shape = keep ? [inShape[0], 1, 1, inShape[3]] : [inShape[0], inShape[3]]
            return append(.globalPool(kind), ins, shape, name)
        case .globalSum(let keep):
            let pool = append(.globalPool(.average), ins, keep ? [inShape[0], 1, 1, inShape[3]] : [inShape[0], inShape[3]], name)
            return append(.affine(scale: Array(repeating: Float(inShape[1] * inShape[2]), count: inShape[3]),
                                  shift: zeros(inShape[3]), act: .linear), [pool], nodes[pool].shape, name)
        case .slice(let axes):
            let (window, shape) = try sliceWindow(axes, inShape, fail: fail)
            return append(.slice(window), ins, shape, name)
        case .zeroPad2d(let t, let b, let l, let r):
            return append(.pad(top: t, bottom: b, left: l, right: r), ins,
                          [inShape[0], inShape[1] + t + b, inShape[2] + l + r, inShape[3]], name)
        case .cropping2d(let t, let b, let l, let r):
            return append(.crop(top: t, left: l), ins, [inShape[0], inShape[1] - t - b, inShape[2] - l - r, inShape[3]], name)
        case .upsampling2d(let size, let interp):
            return append(.upsample(sizeH: size[0], sizeW: size[1], interpolation: interp), ins,
                          [inShape[0], inShape[1] * size[0], inShape[2] * size[1], inShape[3]], name)
        case .reshape, .flatten:
            return append(.view, ins, [inShape[0]] + concrete(node.outputShape, total: inShape.dropFirst().reduce(1, *)), name)
        case .permute(let dims):
            let perm = [0] + dims
            return append(.transpose(perm: perm), ins, perm.map { inShape[$0] }, name)
        case .merge(let kind):
            let shapes = ins.map { nodes[$0].shape }
            if kind == .multiply, shapes.count == 2, isChannelScale(shapes[0], shapes[1]) {
                return append(.channelScale, ins, shapes[0], name)
            }
            if kind == .multiply, shapes.count == 2, isChannelScale(shapes[1], shapes[0]) {
                return append(.channelScale, [ins[1], ins[0]], shapes[1], name)
            }
            return append(.merge(kind), ins, broadcast(shapes), name)
        case .concatenate(let axis):
            let rank = inShape.count
            let a = axis < 0 ? rank + axis : axis
            var shape = inShape
            shape[a] = ins.map { nodes[$0].shape[a] }.reduce(0, +)
            return append(.concat(axis: a), ins, shape, name)
        }
    }

    /// A resize of the window to (h, w); a window the size of the input resized to its own size is
    /// the identity (both interpolations then sample each pixel at its centre).
    mutating func resize(_ window: (top: Int, left: Int, height: Int, width: Int), _ h: Int, _ w: Int,
                         _ interpolation: Interpolation, _ ins: [Int], _ inShape: [Int], _ name: String) -> Int {
        let shape = [inShape[0], h, w, inShape[3]]
        if window.height == h && window.width == w {
            if h == inShape[1] && w == inShape[2] { return append(.view, ins, shape, name) }
            return append(.crop(top: window.top, left: window.left), ins, shape, name)
        }
        return append(.resize(top: window.top, left: window.left, height: window.height, width: window.width,
                              interpolation: interpolation), ins, shape, name)
    }

    /// A kernel with a (log-)softmax activation runs linear and is followed by a softmax node.
    mutating func splitSoftmax(_ act: ActivationSpec, _ producer: Int, _ shape: [Int], _ name: String) throws -> Int {
        guard !act.kind.isElementwise else { return producer }
        return append(.softmax(axis: shape.count - 1, log: act.kind == .logSoftmax), [producer], shape, name)
    }

    /// A Reshape's target with the data's actual size (a -1 resolved at the concrete input size).
    func concrete(_ shape: [Int], total: Int) -> [Int] {
        let known = shape.filter { $0 >= 0 }.reduce(1, *)
        return shape.map { $0 < 0 ? total / max(known, 1) : $0 }
    }

    func convShape(_ x: [Int], _ k: [Int], _ s: [Int], _ d: [Int], _ p: Padding, _ c: Int) -> [Int] {
        [x[0], convOutputSize(x[1], kernel: k[0], stride: s[0], dilation: d[0], padding: p),
         convOutputSize(x[2], kernel: k[1], stride: s[1], dilation: d[1], padding: p), c]
    }

}

/// Explicit padding for a window op on NHWC input `x`. TensorFlow's "same" puts the extra
/// padding at the bottom/right, so only top/left are needed (the rest follows from the output size).
func convParams(_ x: [Int], _ kernel: [Int], _ strides: [Int], _ dilation: [Int], _ padding: Padding,
                _ outChannels: Int) -> ConvParams {
    func before(_ size: Int, _ k: Int, _ s: Int, _ d: Int) -> Int {
        guard padding == .same else { return 0 }
        let out = (size + s - 1) / s
        return max(0, (out - 1) * s + (k - 1) * d + 1 - size) / 2
    }
    return ConvParams(kernelH: kernel[0], kernelW: kernel[1], strideH: strides[0], strideW: strides[1],
                      dilationH: dilation[0], dilationW: dilation[1],
                      padTop: before(x[1], kernel[0], strides[0], dilation[0]),
                      padLeft: before(x[2], kernel[1], strides[1], dilation[1]), outChannels: outChannels)
}

/// True when `s` is [N,1,1,C] (or [N,C]) against an [N,H,W,C] `x`: a per-item channel scale.
func isChannelScale(_ x: [Int], _ s: [Int]) -> Bool {
    guard x.count == 4, x[1] * x[2] > 1 else { return false }
    return (s.count == 4 && s[0] == x[0] && s[1] == 1 && s[2] == 1 && s[3] == x[3])
}

func broadcast(_ shapes: [[Int]]) -> [Int] {
    let rank = shapes.map(\.count).max() ?? 0
    var out = Array(repeating: 1, count: rank)
    for s in shapes {
        let padded = Array(repeating: 1, count: rank - s.count) + s
        for d in 0..<rank where padded[d] != 1 { out[d] = padded[d] }
    }
    return out
}

/// Rescaling and Normalization as the per-channel affine they compute, y = scale * x + shift, for
/// the inference and the training lowering alike. `weight` gives a weight's values (an adapted
/// Normalization's mean and variance).
func constantAffine(_ op: LayerOp, channels c: Int, weight: (String) throws -> [Float],
                    fail: (String) -> RuntimeError) throws -> (scale: [Float], shift: [Float]) {
    switch op {
    case .rescaling(let scale, let offset):
        return (try broadcastChannels(scale, c, fail), try broadcastChannels(offset, c, fail))
    case .normalization(let mean, let variance, let invert):
        let m = try broadcastChannels(mean ?? weight("mean"), c, fail)
        let v = try broadcastChannels(variance ?? weight("variance"), c, fail)
        // Keras divides by max(sqrt(variance), epsilon()) with epsilon() = 1e-7.
        let sd = v.map { max(Float(Double($0).squareRoot()), 1e-7) }
        return invert ? (sd, m) : (sd.map { 1 / $0 }, zip(m, sd).map { -$0 / $1 })
    default:
        throw fail("not a constant affine layer")
    }
}

/// A LayerNormalization's axes for an input of `shape` (batch included), 0-based and increasing.
func layerNormDims(_ s: LayerNormSpec, _ shape: [Int], fail: (String) -> RuntimeError) throws -> [Int] {
    let rank = shape.count
    let dims = s.axes.map { $0 < 0 ? rank + $0 : $0 }
    guard dims.allSatisfy({ $0 >= 1 && $0 < rank }), zip(dims, dims.dropFirst()).allSatisfy({ $0 < $1 }) else {
        throw fail("axis \(s.axes) does not fit an input of rank \(rank)")
    }
    return dims
}

/// StochasticDepth's mask shape: one value per sample (Keras's (batch, 1, ..., 1) uniform draw).
func stochasticDepthNoise(rank: Int) -> [Int] { [-1] + Array(repeating: 1, count: rank - 1) }

private func ones(_ n: Int) -> [Float] { Array(repeating: 1, count: n) }
private func zeros(_ n: Int) -> [Float] { Array(repeating: 0, count: n) }
private func sized(_ values: [Float], _ n: Int, _ what: String, _ fail: (String) -> RuntimeError) throws -> [Float] {
    guard values.count == n else { throw fail("\(what) has \(values.count) values for \(n) normalized ones") }
    return values
}

func broadcastChannels(_ values: [Float], _ channels: Int, _ fail: (String) -> RuntimeError) throws -> [Float] {
    if values.count == channels { return values }
    if values.count == 1 { return Array(repeating: values[0], count: channels) }
    throw fail("\(values.count) values for \(channels) channels")
}

extension ActivationSpec {
    /// (Log-)softmax is applied as a separate plan node; the producing kernel then runs linear.
    var withoutSoftmax: ActivationSpec { kind.isElementwise ? self : .linear }
}

/// A grouped convolution's kernel (HWIO with I = inChannels / groups) as the equivalent ordinary
/// kernel: output channel f of group g = f / (filters / groups) sees only input channels
/// g * (inChannels / groups) ..< (g + 1) * (inChannels / groups); the other taps are zero, which
/// adds exact zeros to each sum. It costs `groups` times the multiply-adds of a grouped kernel.
func blockDiagonalKernel(_ kernel: [Float], taps: Int, inChannels: Int, filters: Int, groups: Int) -> [Float] {
    let inPerGroup = inChannels / groups, outPerGroup = filters / groups
    precondition(kernel.count == taps * inPerGroup * filters, "grouped kernel size")
    var dense = [Float](repeating: 0, count: taps * inChannels * filters)
    for t in 0..<taps {
        for f in 0..<filters {
            let g = f / outPerGroup
            for i in 0..<inPerGroup {
                dense[(t * inChannels + g * inPerGroup + i) * filters + f] = kernel[(t * inPerGroup + i) * filters + f]
            }
        }
    }
    return dense
}
