import Graph

/// What the trainable part of a student computes, op by op, with weights by reference into the
/// ParameterStore (so the optimizer's updates are seen by the next step). Shapes include the batch.
enum TrainOp {
    /// A value computed by the frozen prefix (inference plan), by slot.
    case external(slot: Int)
    case conv(ConvParams, kernel: Int, bias: Int?)
    /// Conv2D with 1 < groups < input channels (GroupedConvBackward.swift).
    case groupedConv(ConvParams, groups: Int, kernel: Int, bias: Int?)
    case depthwise(ConvParams, multiplier: Int, kernel: Int, bias: Int?)
    case dense(inFeatures: Int, outFeatures: Int, kernel: Int, bias: Int?)
    /// BatchNormalization in training mode (batch statistics; moving statistics updated).
    /// gamma/beta nil when scale/center are off; `besselForMoving`: the variance fed to the moving
    /// average is the unbiased one (TF's fused kernel, used for 4-D inputs).
    case batchNorm(gamma: Int?, beta: Int?, movingMean: Int, movingVariance: Int, epsilon: Float, momentum: Float,
                   besselForMoving: Bool)
    /// y = x * scale + shift per channel: frozen BatchNormalization, Rescaling, Normalization.
    case affine(scale: [Float], shift: [Float])
    case activation(ActivationSpec)
    /// Softmax or log-softmax (`log`) along `axis`.
    case softmax(axis: Int, log: Bool)
    case dropout(rate: Float, noiseShape: [Int]?)
    /// Pooling, padding, cropping, slicing, resizing, upsampling, transposing, concatenating.
    case move(DataMove)
    case merge(MergeKind)
    /// LayerNormalization over `dims` (0-based, batch counted); gamma/beta nil when absent.
    case layerNorm(dims: [Int], gamma: Int?, beta: Int?, epsilon: Float)
    /// y = x * gamma over the last axis (ConvNeXt's LayerScale).
    case layerScale(gamma: Int)
    case view
}

struct TrainNode {
    var op: TrainOp
    var inputs: [Int]
    var shape: [Int]

    /// The operation's kind, for profiles.
    var kindName: String {
        switch op {
        case .conv(let p, _, _): return p.isPointwise ? "conv1x1" : "conv"
        case .batchNorm: return "batchNorm"
        case .activation(let a): return "activation " + a.kind.rawValue
        case .move(let m): return m.kindName
        default: return String(describing: op).prefix { $0 != "(" }.description
        }
    }
    var layer: String
    var count: Int { shape.reduce(1, *) }
}

/// The split of a student for training: the frozen prefix (no trainable weight at or above it),
/// run with the fused inference plan, and the trainable rest as TrainNodes.
struct TrainingSplit {
    /// Graph nodes computed by the prefix whose values the trainable part reads, by slot.
    var boundary: [Int]
    var nodes: [TrainNode]
    /// Index of the node giving the model's output, and of the logits (the input of a trailing
    /// softmax; the output itself when there is none).
    var output: Int
    var logits: Int
    /// Graph node -> train node (prefix values the trainable part reads included, as `.external`).
    var trainNode: [Int: Int] = [:]
}

enum TrainingLowering {
    /// Graph nodes that need gradients: those with a trainable weight and everything after them.
    static func trainableRegion(_ graph: ModelGraph, _ params: ParameterStore) -> Set<Int> {
        var region = Set<Int>()
        for node in graph.nodes {
            let ownTrainable = node.weights.contains { w in params.find(node, w.name).map { params.entry($0).trainable } ?? false }
            if ownTrainable || node.inputs.contains(where: region.contains) { region.insert(node.id) }
        }
        return region
    }

    static func split(_ graph: ModelGraph, _ params: ParameterStore, batch: Int, inputShapes: [[Int]]) throws -> TrainingSplit {
        guard graph.outputs.count == 1 else { throw RuntimeError("training needs a model with one output; '\(graph.name)' has \(graph.outputs.count)") }
        let region = trainableRegion(graph, params)
        guard !region.isEmpty else { throw RuntimeError("model '\(graph.name)' has no trainable weights") }
        try refuseUnappliedTrainingBehaviour(graph, params)
        var value: [Int: Int] = [:]          // graph node -> train node
        var target = TrainTarget(params: params)
        var boundary: [Int] = []
        let concreteShapes = try graph.concreteShapes(inputShapes: inputShapes).mapValues { [batch] + $0 }
        for node in graph.nodes where region.contains(node.id) {
            var ins: [Int] = []
            for p in node.inputs {
                if let v = value[p] { ins.append(v); continue }
                boundary.append(p)
                target.nodes.append(TrainNode(op: .external(slot: boundary.count - 1), inputs: [],
                                              shape: concreteShapes[p]!, layer: graph.nodes[p].layerKey))
                value[p] = target.nodes.count - 1
                ins.append(target.nodes.count - 1)
            }
            value[node.id] = try LayerLowering.lower(node, inputs: ins, into: &target)
        }
        let nodes = target.nodes
        guard let out = value[graph.outputs[0]] else {
            throw RuntimeError("model '\(graph.name)': its output does not depend on any trainable weight")
        }
        var logits = out
        if case .softmax(_, false) = nodes[out].op { logits = nodes[out].inputs[0] }
        return TrainingSplit(boundary: boundary, nodes: nodes, output: out, logits: logits, trainNode: value)
    }

    /// `split` with each ZeroPadding2D whose only reader is a depthwise or ordinary convolution
    /// folded into that convolution's geometry (EfficientNet pads explicitly before its stride-2
    /// depthwise convolutions): the kernels skip the taps over the padding, so the padded copy
    /// (1.2 MB at block6a of EfficientNetB0, batch 8) is never written forward nor cropped back.
    /// The padding node keeps its place (node indices seed the dropout masks) with no reader, and
    /// is returned among the nodes to skip. Nodes in `keeping` (read after the forward pass) stay.
    static func foldingPadding(_ split: TrainingSplit, keeping: Set<Int>) -> (split: TrainingSplit, folded: Set<Int>) {
        var nodes = split.nodes
        var consumers = [Int](repeating: 0, count: nodes.count)
        for node in nodes { for input in node.inputs { consumers[input] += 1 } }
        var folded = Set<Int>()
        for i in nodes.indices {
            guard let pad = nodes[i].inputs.first, nodes[i].inputs.count == 1,
                  case .move(.pad(let top, _, let left, _)) = nodes[pad].op, nodes[pad].inputs.count == 1,
                  consumers[pad] == 1, !keeping.contains(pad), pad != split.output, pad != split.logits else { continue }
            switch nodes[i].op {
            case .depthwise(var p, let m, let k, let b):
                p.padTop += top; p.padLeft += left
                nodes[i].op = .depthwise(p, multiplier: m, kernel: k, bias: b)
            case .conv(var p, let k, let b):
                p.padTop += top; p.padLeft += left
                nodes[i].op = .conv(p, kernel: k, bias: b)
            default:
                continue
            }
            nodes[i].inputs = nodes[pad].inputs
            folded.insert(pad)
        }
        var out = split
        out.nodes = nodes
        return (out, folded)
    }

    /// What a layer's config does only in training and this trainer does not: a noise layer's
    /// noise (Keras draws it in frozen parts too), a regularizer's or constraint's effect on the
    /// layer's own training weights. Refused before the first step rather than trained differently.
    static func refuseUnappliedTrainingBehaviour(_ graph: ModelGraph, _ params: ParameterStore) throws {
        for node in graph.nodes where !node.trainingOnlyKeys.isEmpty && !node.inferenceOnly {
            if node.trainingOnlyKeys.contains(GraphNode.trainingNoise) {
                throw RuntimeError("layer '\(node.layerKey)' (\(node.className)): its random noise in training is "
                                   + "not drawn by this trainer; remove the layer from the student or call it with training=False")
            }
            let trains = node.weights.contains { w in params.find(node, w.name).map { params.entry($0).trainable } ?? false }
            if trains, let key = node.trainingOnlyKeys.first {
                throw RuntimeError("layer '\(node.layerKey)' (\(node.className)): '\(key)' acts in training and this trainer does not "
                                   + "apply it; freeze the layer or remove the \(key) from the student")
            }
        }
    }
}

/// Training: each primitive as a train operation whose weights are references into the
/// ParameterStore. A BatchNormalization whose gamma/beta train runs in training mode; a frozen
/// one is folded from its current values, as Keras runs it in inference mode.
struct TrainTarget: LoweringTarget {
    let params: ParameterStore
    var nodes: [TrainNode] = []

    init(params: ParameterStore) { self.params = params }

    func weight(_ name: String, of node: GraphNode) throws -> Int {
        guard let i = params.find(node, name) else { throw RuntimeError("layer '\(node.layerKey)' has no weight '\(name)'") }
        return i
    }

    func values(of weight: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: params.entry(weight).values, count: params.entry(weight).count))
    }

    func shape(of value: Int) -> [Int] { nodes[value].shape }

    var trainingMode: Bool { true }

    mutating func emit(_ step: Primitive<Int>, _ ins: [Int], _ shape: [Int], for node: GraphNode) throws -> Int {
        func add(_ op: TrainOp, _ inputs: [Int]? = nil) -> Int {
            nodes.append(TrainNode(op: op, inputs: inputs ?? ins, shape: shape, layer: node.layerKey))
            return nodes.count - 1
        }
        /// A kernel's element-wise activation as a step of its own (its backward needs the
        /// kernel's output).
        func activated(_ producer: Int, _ act: ActivationSpec) -> Int {
            act.isIdentity ? producer : add(.activation(act), [producer])
        }
        switch step {
        case .conv(let p, let kernel, let bias, let groups, let act):
            return activated(add(groups > 1 ? .groupedConv(p, groups: groups, kernel: kernel, bias: bias)
                                            : .conv(p, kernel: kernel, bias: bias)), act)
        case .depthwise(let p, let multiplier, let kernel, let bias, let act):
            return activated(add(.depthwise(p, multiplier: multiplier, kernel: kernel, bias: bias)), act)
        case .dense(let inFeatures, let outFeatures, let kernel, let bias, let act):
            return activated(add(.dense(inFeatures: inFeatures, outFeatures: outFeatures, kernel: kernel, bias: bias)), act)
        case .batchNorm(let gamma, let beta, let mean, let variance, let epsilon, let momentum, let bessel):
            // Training mode when its gamma/beta train (a layer frozen by --freeze, --unfreeze-from or
            // --trainable-head is not, whatever its config says); without either, its config's flag.
            let own = [gamma, beta].compactMap { $0 }.map { params.entry($0).trainable }
            // A call with training=False keeps it in inference mode; Keras still trains its gamma and
            // beta then, through the moving statistics, which the folded form below cannot: refused.
            if node.inferenceOnly && own.contains(true) {
                throw layerError(node, "a batch normalization called with training=False whose gamma/beta "
                                 + "train is not supported; freeze the layer")
            }
            if (own.isEmpty ? node.trainable : own.contains(true)) && !node.inferenceOnly {
                return add(.batchNorm(gamma: gamma, beta: beta, movingMean: mean, movingVariance: variance,
                                      epsilon: epsilon, momentum: momentum, besselForMoving: bessel))
            }
            let (scale, shift) = foldBatchNorm(gamma: gamma.map(values), beta: beta.map(values),
                                               movingMean: values(of: mean), movingVariance: values(of: variance),
                                               epsilon: epsilon)
            return add(.affine(scale: scale, shift: shift))
        case .affine(let scale, let shift):
            return add(.affine(scale: scale, shift: shift))
        case .layerNorm(let dims, let gamma, let beta, let epsilon, let rms):
            guard !rms else {
                throw layerError(node, "a LayerNormalization with rms_scaling cannot be trained yet; freeze it, "
                                 + "or train only layers after it")
            }
            return add(.layerNorm(dims: dims, gamma: gamma, beta: beta, epsilon: epsilon))
        case .layerScale(let gamma):
            return add(.layerScale(gamma: gamma))
        case .activation(let a):
            return add(.activation(a))
        case .softmax(let axis, let log):
            return add(.softmax(axis: axis, log: log))
        case .dropout(let rate, let noiseShape):
            // A rate from the model's config (tf.nn.dropout refuses the same ones when training).
            guard rate >= 0 && rate < 1 else {
                throw layerError(node, "dropout rate \(rate) is outside [0, 1), which training cannot apply")
            }
            return add(.dropout(rate: rate, noiseShape: noiseShape))
        case .augment:
            throw layerError(node, "an augmentation layer after a trainable layer is not supported in training (it has "
                             + "no backward here); freeze the layers before it, or move it to the model's input")
        case .move(let m):
            return add(.move(m))
        case .merge(let kind):
            return add(.merge(kind))
        case .view:
            return add(.view)
        }
    }
}
