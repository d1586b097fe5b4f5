/// Output shapes and weight shapes of each op. Shapes exclude the batch dimension; -1 is unknown.

struct LayerSignature {
    var output: [Int]
    var weights: [WeightSpec]
}

/// TensorFlow's output size for one spatial dimension.
public func convOutputSize(_ input: Int, kernel: Int, stride: Int, dilation: Int, padding: Padding) -> Int {
    guard input >= 0 else { return -1 }
    switch padding {
    case .same: return (input + stride - 1) / stride
    case .valid:
        let effective = (kernel - 1) * dilation + 1
        return input >= effective ? (input - effective) / stride + 1 : 0
    }
}

func signature(of op: LayerOp, inputs: [[Int]], fail: (String) -> GraphError) throws -> LayerSignature {
    func single() throws -> [Int] {
        guard inputs.count == 1 else { throw fail("expects one input, got \(inputs.count)") }
        return inputs[0]
    }
    func image() throws -> [Int] {
        let s = try single()
        guard s.count == 3 else { throw fail("expects an image input (H, W, C), got shape \(fmt(s))") }
        guard s[2] > 0 else { throw fail("needs a known channel count, got shape \(fmt(s))") }
        return s
    }
    switch op {
    case .input:
        throw fail("an InputLayer has no inputs")
    case .conv2d(let s):
        let x = try image()
        guard x[2] % s.groups == 0, s.filters % s.groups == 0 else {
            throw fail("groups \(s.groups) does not divide \(x[2]) input channels and \(s.filters) filters")
        }
        let out = [convOutputSize(x[0], kernel: s.kernel[0], stride: s.strides[0], dilation: s.dilation[0], padding: s.padding),
                   convOutputSize(x[1], kernel: s.kernel[1], stride: s.strides[1], dilation: s.dilation[1], padding: s.padding),
                   s.filters]
        var w = [WeightSpec(name: "kernel", shape: [s.kernel[0], s.kernel[1], x[2] / s.groups, s.filters], trainableKind: true)]
        if s.useBias { w.append(WeightSpec(name: "bias", shape: [s.filters], trainableKind: true)) }
        return LayerSignature(output: out, weights: w)
    case .depthwiseConv2d(let s):
        let x = try image()
        var w = [WeightSpec(name: "depthwise_kernel", shape: [s.kernel[0], s.kernel[1], x[2], s.depthMultiplier],
                            trainableKind: true, aliases: ["kernel"])]
        if s.useBias { w.append(WeightSpec(name: "bias", shape: [x[2] * s.depthMultiplier], trainableKind: true)) }
        return LayerSignature(output: depthwiseOutput(s, x), weights: w)
    case .separableConv2d(let s):
        let x = try image()
        let mid = depthwiseOutput(s.depthwise, x)
        var w = [WeightSpec(name: "depthwise_kernel", shape: [s.depthwise.kernel[0], s.depthwise.kernel[1], x[2], s.depthwise.depthMultiplier], trainableKind: true),
                 WeightSpec(name: "pointwise_kernel", shape: [1, 1, mid[2], s.filters], trainableKind: true)]
        if s.useBias { w.append(WeightSpec(name: "bias", shape: [s.filters], trainableKind: true)) }
        return LayerSignature(output: [mid[0], mid[1], s.filters], weights: w)
    case .dense(let s):
        let x = try single()
        guard let last = x.last, last > 0 else { throw fail("needs a known last dimension, got shape \(fmt(x))") }
        var w = [WeightSpec(name: "kernel", shape: [last, s.units], trainableKind: true)]
        if s.useBias { w.append(WeightSpec(name: "bias", shape: [s.units], trainableKind: true)) }
        return LayerSignature(output: Array(x.dropLast()) + [s.units], weights: w)
    case .batchNorm(let s):
        let x = try single()
        guard let c = x.last, c > 0 else { throw fail("needs a known channel count, got shape \(fmt(x))") }
        var w: [WeightSpec] = []
        if s.scale { w.append(WeightSpec(name: "gamma", shape: [c], trainableKind: true)) }
        if s.center { w.append(WeightSpec(name: "beta", shape: [c], trainableKind: true)) }
        w.append(WeightSpec(name: "moving_mean", shape: [c], trainableKind: false))
        w.append(WeightSpec(name: "moving_variance", shape: [c], trainableKind: false))
        return LayerSignature(output: x, weights: w)
    case .normalization(let mean, _, _):
        let x = try single()
        guard let c = x.last, c > 0 else { throw fail("needs a known channel count, got shape \(fmt(x))") }
        if mean != nil { return LayerSignature(output: x, weights: []) }
        return LayerSignature(output: x, weights: [
            WeightSpec(name: "mean", shape: [c], trainableKind: false),
            WeightSpec(name: "variance", shape: [c], trainableKind: false),
            WeightSpec(name: "count", shape: [], trainableKind: false),
        ])
    case .layerNorm(let s):
        let x = try single()
        let dims = try layerNormAxes(s.axes, rank: x.count + 1, fail: fail)
        let shape = dims.map { x[$0 - 1] }
        guard shape.allSatisfy({ $0 > 0 }) else { throw fail("needs known sizes on axis \(s.axes), got shape \(fmt(x))") }
        var w: [WeightSpec] = []
        if s.scale || s.rmsScaling { w.append(WeightSpec(name: "gamma", shape: shape, trainableKind: true)) }
        if s.center && !s.rmsScaling { w.append(WeightSpec(name: "beta", shape: shape, trainableKind: true)) }
        return LayerSignature(output: x, weights: w)
    case .layerScale(let dim):
        let x = try single()
        guard x.last == dim else { throw fail("projection_dim \(dim) does not match the input's last axis in \(fmt(x))") }
        // Keras 3's LayerScale creates gamma without a name: `variable` in its legacy .h5 files.
        return LayerSignature(output: x, weights: [WeightSpec(name: "gamma", shape: [dim], trainableKind: true,
                                                              aliases: ["variable"])])
    case .scaledAdd:
        guard inputs.count == 2 else { throw fail("expects two inputs, got \(inputs.count)") }
        return LayerSignature(output: try broadcastShapes(inputs, fail: fail), weights: [])
    case .resize(let s):
        let x = try image()
        return LayerSignature(output: [s.height, s.width, x[2]], weights: [])
    case .centerCrop(let h, let w):
        let x = try image()
        return LayerSignature(output: [h, w, x[2]], weights: [])
    case .augment(let s):
        let x = try image()
        // tf-keras's RandomCrop gives (height, width) in both modes; Keras 3's passes images
        // through at inference.
        if case .crop(let h, let w, let major) = s.kind, major < 3 { return LayerSignature(output: [h, w, x[2]], weights: []) }
        return LayerSignature(output: x, weights: [])
    case .activation, .dropout, .identity, .rescaling, .stochasticDepth:
        return LayerSignature(output: try single(), weights: [])
    case .softmax(let axis, _):
        let x = try single()
        _ = try resolveAxis(axis, rank: x.count + 1, fail: fail)
        return LayerSignature(output: x, weights: [])
    case .pool2d(let s):
        let x = try image()
        return LayerSignature(output: [
            convOutputSize(x[0], kernel: s.poolSize[0], stride: s.strides[0], dilation: 1, padding: s.padding),
            convOutputSize(x[1], kernel: s.poolSize[1], stride: s.strides[1], dilation: 1, padding: s.padding),
            x[2]], weights: [])
    case .globalPool(_, let keep), .globalSum(let keep):
        let x = try image()
        return LayerSignature(output: keep ? [1, 1, x[2]] : [x[2]], weights: [])
    case .slice(let axes):
        let x = try single()
        guard axes.count <= x.count else { throw fail("a subscript of \(axes.count + 1) axes on a rank-\(x.count + 1) tensor") }
        var out: [Int] = []
        for (d, size) in x.enumerated() {
            let a = d < axes.count ? axes[d] : .all
            guard size >= 0 else { out += a.isIndex ? [] : [-1]; continue }
            guard let r = a.resolve(size) else { throw fail("index \(a.start ?? 0) is outside axis \(d + 1) of size \(size)") }
            guard r.count > 0 else { throw fail("the subscript leaves axis \(d + 1) (size \(size)) empty") }
            if !a.isIndex { out.append(r.count) }
        }
        return LayerSignature(output: out, weights: [])
    case .zeroPad2d(let t, let b, let l, let r):
        let x = try image()
        return LayerSignature(output: [add(x[0], t + b), add(x[1], l + r), x[2]], weights: [])
    case .cropping2d(let t, let b, let l, let r):
        let x = try image()
        let out = [add(x[0], -(t + b)), add(x[1], -(l + r)), x[2]]
        if out[0] == 0 || out[1] == 0 || out[0] < -1 || out[1] < -1 { throw fail("crops away the whole input \(fmt(x))") }
        return LayerSignature(output: out, weights: [])
    case .upsampling2d(let size, _):
        let x = try image()
        return LayerSignature(output: [mul(x[0], size[0]), mul(x[1], size[1]), x[2]], weights: [])
    case .reshape(let target):
        let x = try single()
        return LayerSignature(output: try reshapeTarget(target, input: x, fail: fail), weights: [])
    case .flatten:
        let x = try single()
        if x.contains(-1) { return LayerSignature(output: [-1], weights: []) }
        guard let n = checkedProduct(x) else { throw fail("flattens \(fmt(x)), too many values") }
        return LayerSignature(output: [n], weights: [])
    case .permute(let dims):
        let x = try single()
        guard !x.isEmpty, dims.sorted() == Array(1...x.count) else { throw fail("dims \(dims) is not a permutation of the input's \(x.count) axes \(fmt(x))") }
        return LayerSignature(output: dims.map { x[$0 - 1] }, weights: [])
    case .merge:
        guard inputs.count >= 2 || inputs.count == 1 else { throw fail("expects at least one input") }
        return LayerSignature(output: try broadcastShapes(inputs, fail: fail), weights: [])
    case .concatenate(let axis):
        guard let first = inputs.first else { throw fail("expects inputs") }
        let a = try resolveAxis(axis, rank: first.count + 1, fail: fail) - 1
        var out = first
        for s in inputs.dropFirst() {
            guard s.count == first.count else { throw fail("inputs of different ranks \(inputs.map(fmt))") }
            for d in 0..<s.count where d != a && s[d] != first[d] && s[d] != -1 && first[d] != -1 {
                throw fail("inputs \(inputs.map(fmt)) do not match outside axis \(axis)")
            }
            out[a] = (out[a] < 0 || s[a] < 0) ? -1 : out[a] + s[a]
        }
        return LayerSignature(output: out, weights: [])
    }
}

func depthwiseOutput(_ s: DepthwiseSpec, _ x: [Int]) -> [Int] {
    [convOutputSize(x[0], kernel: s.kernel[0], stride: s.strides[0], dilation: s.dilation[0], padding: s.padding),
     convOutputSize(x[1], kernel: s.kernel[1], stride: s.strides[1], dilation: s.dilation[1], padding: s.padding),
     x[2] * s.depthMultiplier]
}

/// The most values one layer output (batch excluded) or one weight may have: 2^40, thousands of
/// times any real model's, and far enough below Int.max that sums of such counts cannot overflow.
let shapeElementLimit = 1 << 40

/// The product of `dims`, or nil when it overflows or passes `shapeElementLimit`.
func checkedProduct(_ dims: [Int]) -> Int? {
    var total = 1
    for d in dims {
        let (p, overflow) = total.multipliedReportingOverflow(by: d)
        guard !overflow, abs(p) <= shapeElementLimit else { return nil }
        total = p
    }
    return total
}

/// A layer whose config makes an absurd output or weight (a fuzzed `units: 2147483648` after a
/// Flatten of a huge input) is refused here, before any count or allocation overflows.
func checkPlausible(_ sig: LayerSignature, fail: (String) -> GraphError) throws {
    let known = sig.output.filter { $0 >= 0 }
    guard sig.output.allSatisfy({ $0 >= -1 }), checkedProduct(known) != nil else {
        throw fail("output shape \(fmt(sig.output)) is not plausible (negative, or more than 2^40 values)")
    }
    for w in sig.weights where w.shape.contains(where: { $0 < 0 }) || checkedProduct(w.shape) == nil {
        throw fail("weight '\(w.name)' of shape \(fmtShape(w.shape)) is not plausible (negative, or more than 2^40 values)")
    }
}

private func add(_ a: Int, _ b: Int) -> Int { a < 0 ? -1 : a + b }
private func mul(_ a: Int, _ b: Int) -> Int { a < 0 ? -1 : a * b }

func fmt(_ shape: [Int]) -> String {
    "(" + (["None"] + shape.map { $0 < 0 ? "None" : String($0) }).joined(separator: ", ") + ")"
}

/// An axis as Keras writes it (negative from the end; positive counting the batch axis) → 0-based
/// index counting the batch axis.
func resolveAxis(_ axis: Int, rank: Int, fail: (String) -> GraphError) throws -> Int {
    let a = axis < 0 ? rank + axis : axis
    guard a >= 1 && a < rank else { throw fail("axis \(axis) is out of range for rank \(rank) or is the batch axis") }
    return a
}

/// LayerNormalization's axes as 0-based indices counting the batch axis. They must be in the order
/// of the input's dimensions: Keras reshapes gamma and beta (shaped by the axes as written) onto
/// the input in that order, which for another order would mix their values up.
func layerNormAxes(_ axes: [Int], rank: Int, fail: (String) -> GraphError) throws -> [Int] {
    let dims = try axes.map { try resolveAxis($0, rank: rank, fail: fail) }
    guard zip(dims, dims.dropFirst()).allSatisfy({ $0 < $1 }) else {
        throw fail("axis \(axes) is not in the order of the input's dimensions (or repeats one)")
    }
    return dims
}

func reshapeTarget(_ target: [Int], input: [Int], fail: (String) -> GraphError) throws -> [Int] {
    let unknown = target.filter { $0 == -1 }.count
    guard unknown <= 1 else { throw fail("target_shape \(target) has more than one -1") }
    guard target.allSatisfy({ $0 >= -1 }) else { throw fail("target_shape \(target) has a negative size") }
    if input.contains(-1) { return target }
    guard let total = checkedProduct(input), let known = checkedProduct(target.filter { $0 != -1 }) else {
        throw fail("cannot reshape \(fmt(input)) to \(target): too many values")
    }
    if unknown == 1 {
        guard known > 0, total % known == 0 else { throw fail("cannot reshape \(fmt(input)) to \(target)") }
        return target.map { $0 == -1 ? total / known : $0 }
    }
    guard known == total else { throw fail("cannot reshape \(fmt(input)) (\(total) values) to \(target)") }
    return target
}

/// numpy broadcasting of shapes (batch excluded; Keras merge layers broadcast the same way).
func broadcastShapes(_ shapes: [[Int]], fail: (String) -> GraphError) throws -> [Int] {
    let rank = shapes.map(\.count).max() ?? 0
    var out = Array(repeating: 1, count: rank)
    for s in shapes {
        let padded = Array(repeating: 1, count: rank - s.count) + s
        for d in 0..<rank {
            let (a, b) = (out[d], padded[d])
            if a == b || b == 1 { continue }
            if a == 1 { out[d] = b; continue }
            if a == -1 || b == -1 { out[d] = max(a, b) == -1 ? -1 : max(a, b); continue }
            throw fail("inputs of shapes \(shapes.map(fmt)) cannot be broadcast together")
        }
    }
    return out
}

extension LayerOp {
    /// The op's output shape (batch excluded) for these input shapes: the rule the graph's own
    /// shapes come from, which the lowerings to kernels use too.
    public func outputShape(inputs: [[Int]]) throws -> [Int] {
        try signature(of: self, inputs: inputs, fail: { GraphError($0) }).output
    }
}
