import Graph

/// Lowers the graph nodes a set of outputs needs into plan nodes, for one batch size and one set
/// of input shapes. Each Keras layer becomes one or two plan nodes; weights become plain arrays.
struct Lowering {
    let graph: ModelGraph
    let weights: WeightStore
    var nodes: [PlanNode] = []
    /// graph node id -> plan node index
    var valueOf: [Int: Int] = [:]
    /// A training plan's frozen prefix: Dropout and the augmentation layers run as in training
    /// (drawn when the plan's noise clock is on) instead of being left out (inference).
    var trainingMode = false

    init(graph: ModelGraph, weights: WeightStore) {
        self.graph = graph
        self.weights = weights
    }

    /// `cut`: graph nodes whose values are given as further inputs (after the model's own, in this
    /// order, with these shapes) instead of being computed; nothing before them is lowered unless
    /// another output needs it.
    mutating func lower(outputs: [Int], inputShapes: [[Int]], cut: [(node: Int, shape: [Int])] = [])
        throws -> (nodes: [PlanNode], outputs: [Int]) {
        for (i, id) in graph.inputs.enumerated() {
            valueOf[id] = append(.input(index: i), [], inputShapes[i], graph.nodes[id].name)
        }
        for (j, c) in cut.enumerated() where valueOf[c.node] == nil {
            valueOf[c.node] = append(.input(index: graph.inputs.count + j), [], c.shape, graph.nodes[c.node].layerKey)
        }
        let needed = graph.ancestors(of: outputs, stoppingAt: { valueOf[$0] != nil })
        for node in graph.nodes where needed.contains(node.id) && valueOf[node.id] == nil {
            valueOf[node.id] = try lowerNode(node)
        }
        return (nodes, outputs.map { valueOf[$0]! })
    }


    mutating func append(_ op: PlanOp, _ inputs: [Int], _ shape: [Int], _ layer: String) -> Int {
        nodes.append(PlanNode(op: op, inputs: inputs, shape: shape, layer: layer))
        return nodes.count - 1
    }

    func weight(_ name: String, of node: GraphNode) throws -> [Float] {
        guard let w = weights.weight(name, of: node) else {
            throw RuntimeError("layer '\(node.layerKey)' has no weight '\(name)' bound")
        }
        return w.floats
    }

    func values(of weight: [Float]) -> [Float] { weight }

    func shape(of value: Int) -> [Int] { nodes[value].shape }

    mutating func lowerNode(_ node: GraphNode) throws -> Int {
        try LayerLowering.lower(node, inputs: node.inputs.map { valueOf[$0]! }, into: &self)
    }
}

/// Inference: each primitive as a plan operation with its weights' values transformed for the
/// kernels (batch norm folded); Dropout left out.
extension Lowering: LoweringTarget {
    mutating func emit(_ step: Primitive<[Float]>, _ ins: [Int], _ shape: [Int], for node: GraphNode) throws -> Int {
        let name = node.layerKey
        func add(_ op: PlanOp, _ inputs: [Int]? = nil) -> Int { append(op, inputs ?? ins, shape, name) }
        switch step {
        case .conv(var p, let kernel, let bias, let groups, let act):
            p.groups = groups
            return add(.conv(p, kernel: kernel, shift: bias, act: act))
        case .depthwise(let p, let multiplier, let kernel, let bias, let act):
            return add(.depthwise(p, multiplier: multiplier, kernel: kernel, shift: bias, act: act))
        case .dense(let inFeatures, let outFeatures, let kernel, let bias, let act):
            return add(.dense(inFeatures: inFeatures, outFeatures: outFeatures, kernel: kernel, shift: bias, act: act))
        case .batchNorm(let gamma, let beta, let mean, let variance, let epsilon, _, _):
            let (scale, shift) = foldBatchNorm(gamma: gamma, beta: beta, movingMean: mean, movingVariance: variance,
                                               epsilon: epsilon)
            return add(.affine(scale: scale, shift: shift, act: .linear))
        case .affine(let scale, let shift):
            return add(.affine(scale: scale, shift: shift, act: .linear))
        case .layerNorm(let dims, let gamma, let beta, let epsilon, let rms):
            let n = dims.map { shape[$0] }.reduce(1, *)
            func sized(_ values: [Float]?, _ what: String, _ fill: Float) throws -> [Float] {
                guard let values else { return Array(repeating: fill, count: n) }
                guard values.count == n else {
                    throw layerError(node, "\(what) has \(values.count) values for \(n) normalized ones")
                }
                return values
            }
            return add(.layerNorm(dims: dims, gamma: try sized(gamma, "gamma", 1), beta: try sized(beta, "beta", 0),
                                  epsilon: epsilon, rms: rms))
        case .layerScale(let gamma):
            // A per-channel affine, so that it folds into the Dense before it.
            return add(.affine(scale: gamma, shift: Array(repeating: 0, count: gamma.count), act: .linear))
        case .activation(let a):
            return add(.activation(a))
        case .softmax(let axis, let log):
            return add(.softmax(axis: axis, log: log))
        case .dropout(let rate, let noiseShape):
            return add(trainingMode ? .dropout(rate: rate, noiseShape: noiseShape, key: UInt64(node.id)) : .view)
        case .augment(let spec):
            return add(.augment(spec, key: UInt64(node.id)))
        case .move(let m):
            return add(.move(m))
        case .merge(let kind):
            // Squeeze-and-excitation's x * s[N,1,1,C]: a per-item channel scale.
            let shapes = ins.map { nodes[$0].shape }
            if kind == .multiply, shapes.count == 2, isChannelScale(shapes[0], shapes[1]) {
                return add(.channelScale)
            }
            if kind == .multiply, shapes.count == 2, isChannelScale(shapes[1], shapes[0]) {
                return add(.channelScale, [ins[1], ins[0]])
            }
            return add(.merge(kind))
        case .view:
            return add(.view)
        }
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


func broadcastChannels(_ values: [Float], _ channels: Int, _ fail: (String) -> RuntimeError) throws -> [Float] {
    if values.count == channels { return values }
    if values.count == 1 { return Array(repeating: values[0], count: channels) }
    throw fail("\(values.count) values for \(channels) channels")
}

extension ModelGraph {
    /// The nodes `outputs` need, themselves included; a node for which `stop` holds is included
    /// but what it reads is not (a value given rather than computed).
    func ancestors(of outputs: [Int], stoppingAt stop: (Int) -> Bool = { _ in false }) -> Set<Int> {
        var seen = Set<Int>()
        var stack = outputs
        while let id = stack.popLast() {
            guard seen.insert(id).inserted, !stop(id) else { continue }
            stack += nodes[id].inputs
        }
        return seen
    }
}
