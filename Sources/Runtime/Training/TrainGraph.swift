import Graph

/// What the trainable part of a student computes, op by op, with weights by reference into the
/// ParameterStore (so the optimizer's updates are seen by the next step). Shapes include the batch.
enum TrainOp {
    /// A value computed by the frozen prefix (inference plan), by slot.
    case external(slot: Int)
    case conv(ConvParams, kernel: Int, bias: Int?)
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
    case pool(kind: PoolKind, poolH: Int, poolW: Int, strideH: Int, strideW: Int, padTop: Int, padLeft: Int)
    case globalPool(PoolKind)
    case pad(top: Int, bottom: Int, left: Int, right: Int)
    case crop(top: Int, left: Int)
    case upsample(sizeH: Int, sizeW: Int, interpolation: Interpolation)
    case transpose(perm: [Int])
    case concat(axis: Int)
    case merge(MergeKind)
    /// LayerNormalization over `dims` (0-based, batch counted); gamma/beta nil when absent.
    case layerNorm(dims: [Int], gamma: Int?, beta: Int?, epsilon: Float)
    /// y = x * gamma over the last axis (ConvNeXt's LayerScale).
    case layerScale(gamma: Int)
    case slice(SliceWindow)
    /// tf.image.resize of each image's window (top, left, height, width) to the node's size.
    case resize(top: Int, left: Int, height: Int, width: Int, interpolation: Interpolation)
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
        var nodes: [TrainNode] = []
        var boundary: [Int] = []
        func append(_ op: TrainOp, _ inputs: [Int], _ shape: [Int], _ layer: String) -> Int {
            nodes.append(TrainNode(op: op, inputs: inputs, shape: shape, layer: layer))
            return nodes.count - 1
        }
        let concreteShapes = try graph.concreteShapes(inputShapes: inputShapes).mapValues { [batch] + $0 }
        for node in graph.nodes where region.contains(node.id) {
            var ins: [Int] = []
            for p in node.inputs {
                if let v = value[p] { ins.append(v); continue }
                boundary.append(p)
                let v = append(.external(slot: boundary.count - 1), [], concreteShapes[p]!, graph.nodes[p].layerKey)
                value[p] = v
                ins.append(v)
            }
            value[node.id] = try lowerNode(node, ins, &nodes, params, concreteShapes[node.id]!)
        }
        guard let out = value[graph.outputs[0]] else {
            throw RuntimeError("model '\(graph.name)': its output does not depend on any trainable weight")
        }
        var logits = out
        if case .softmax(_, false) = nodes[out].op { logits = nodes[out].inputs[0] }
        return TrainingSplit(boundary: boundary, nodes: nodes, output: out, logits: logits, trainNode: value)
    }

    /// What a layer's config does only in training and this trainer does not: a noise layer's
    /// noise (Keras draws it in frozen parts too), a regularizer's or constraint's effect on the
    /// layer's own training weights. Refused before the first step rather than trained differently.
    static func refuseUnappliedTrainingBehaviour(_ graph: ModelGraph, _ params: ParameterStore) throws {
        for node in graph.nodes where !node.trainingOnlyKeys.isEmpty && !node.inferenceOnly {
            if node.trainingOnlyKeys.contains(GraphNode.trainingNoise) {
                throw RuntimeError("layer '\(node.layerKey)' (\(node.className)): its random noise or augmentation in training is "
                                   + "not drawn by this trainer; remove the layer from the student (augment the images "
                                   + "instead) or call it with training=False")
            }
            let trains = node.weights.contains { w in params.find(node, w.name).map { params.entry($0).trainable } ?? false }
            if trains, let key = node.trainingOnlyKeys.first {
                throw RuntimeError("layer '\(node.layerKey)' (\(node.className)): '\(key)' acts in training and this trainer does not "
                                   + "apply it; freeze the layer or remove the \(key) from the student")
            }
        }
    }

    static func lowerNode(_ node: GraphNode, _ ins: [Int], _ nodes: inout [TrainNode], _ params: ParameterStore,
                          _ shape: [Int]) throws -> Int {
        let name = node.layerKey
        func append(_ op: TrainOp, _ inputs: [Int], _ shape: [Int]) -> Int {
            nodes.append(TrainNode(op: op, inputs: inputs, shape: shape, layer: name))
            return nodes.count - 1
        }
        func ref(_ w: String) throws -> Int {
            guard let i = params.find(node, w) else { throw RuntimeError("layer '\(name)' has no weight '\(w)'") }
            return i
        }
        func activate(_ producer: Int, _ act: ActivationSpec) -> Int {
            switch act.kind {
            case .linear: return producer
            case .softmax, .logSoftmax:
                return append(.softmax(axis: shape.count - 1, log: act.kind == .logSoftmax), [producer], shape)
            default: return append(.activation(act), [producer], shape)
            }
        }
        let inShape = ins.first.map { nodes[$0].shape } ?? []
        switch node.op {
        case .input:
            throw RuntimeError("layer '\(name)': an input inside the trainable part")
        case .conv2d(let s):
            if s.groups > 1 && s.groups == inShape[3] {
                // One group per input channel: a depthwise convolution (the same kernel layout).
                let p = convParams(inShape, s.kernel, s.strides, s.dilation, s.padding, shape[3])
                let d = append(.depthwise(p, multiplier: s.filters / s.groups, kernel: try ref("kernel"),
                                          bias: s.useBias ? try ref("bias") : nil), ins, shape)
                return activate(d, s.activation)
            }
            guard s.groups == 1 else {
                throw RuntimeError("layer '\(name)': a grouped convolution (groups \(s.groups)) cannot be trained yet; freeze it, or train only layers after it")
            }
            let p = convParams(inShape, s.kernel, s.strides, s.dilation, s.padding, s.filters)
            let c = append(.conv(p, kernel: try ref("kernel"), bias: s.useBias ? try ref("bias") : nil), ins, shape)
            return activate(c, s.activation)
        case .depthwiseConv2d(let s):
            let p = convParams(inShape, s.kernel, s.strides, s.dilation, s.padding, shape[3])
            let d = append(.depthwise(p, multiplier: s.depthMultiplier, kernel: try ref("depthwise_kernel"),
                                      bias: s.useBias ? try ref("bias") : nil), ins, shape)
            return activate(d, s.activation)
        case .separableConv2d(let s):
            let dw = s.depthwise
            let mid = [shape[0], shape[1], shape[2], inShape[3] * dw.depthMultiplier]
            let p = convParams(inShape, dw.kernel, dw.strides, dw.dilation, dw.padding, mid[3])
            let d = append(.depthwise(p, multiplier: dw.depthMultiplier, kernel: try ref("depthwise_kernel"), bias: nil), ins, mid)
            let pw = ConvParams(kernelH: 1, kernelW: 1, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1,
                                padTop: 0, padLeft: 0, outChannels: s.filters)
            let c = append(.conv(pw, kernel: try ref("pointwise_kernel"), bias: s.useBias ? try ref("bias") : nil), [d], shape)
            return activate(c, s.activation)
        case .dense(let s):
            let d = append(.dense(inFeatures: inShape.last!, outFeatures: s.units, kernel: try ref("kernel"),
                                  bias: s.useBias ? try ref("bias") : nil), ins, shape)
            return activate(d, s.activation)
        case .batchNorm(let s):
            let mean = try ref("moving_mean"), variance = try ref("moving_variance")
            // Training mode when its gamma/beta train (a layer frozen by --freeze, --unfreeze-from or
            // --trainable-head is not, whatever its config says); without either, its config's flag.
            let own = [s.scale ? "gamma" : nil, s.center ? "beta" : nil].compactMap { $0 }
                .compactMap { params.find(node, $0) }.map { params.entry($0).trainable }
            // A call with training=False keeps it in inference mode; Keras still trains its gamma and
            // beta then, through the moving statistics, which the folded form below cannot: refused.
            if node.inferenceOnly && own.contains(true) {
                throw RuntimeError("layer '\(name)': a batch normalization called with training=False whose gamma/beta "
                                   + "train is not supported; freeze the layer")
            }
            if (own.isEmpty ? node.trainable : own.contains(true)) && !node.inferenceOnly {
                return append(.batchNorm(gamma: s.scale ? try ref("gamma") : nil, beta: s.center ? try ref("beta") : nil,
                                         movingMean: mean, movingVariance: variance, epsilon: s.epsilon,
                                         momentum: s.momentum, besselForMoving: inShape.count == 4), ins, shape)
            }
            // A frozen BatchNormalization runs in inference mode, as in Keras.
            let c = inShape.last!
            func values(_ i: Int) -> [Float] { Array(UnsafeBufferPointer(start: params.entry(i).values, count: c)) }
            let (scale, shiftValues) = foldBatchNorm(
                gamma: s.scale ? values(try ref("gamma")) : nil, beta: s.center ? values(try ref("beta")) : nil,
                movingMean: values(mean), movingVariance: values(variance), epsilon: s.epsilon)
            return append(.affine(scale: scale, shift: shiftValues), ins, shape)
        case .normalization, .rescaling:
            // Constant per-channel affines: reuse the inference lowering's arithmetic.
            let (scale, shift) = try constantAffine(node, params, channels: inShape.last!)
            return append(.affine(scale: scale, shift: shift), ins, shape)
        case .layerNorm(let s):
            guard !s.rmsScaling else {
                throw RuntimeError("layer '\(name)': a LayerNormalization with rms_scaling cannot be trained yet; freeze it, "
                                   + "or train only layers after it")
            }
            let dims = try layerNormDims(s, shape, fail: { RuntimeError("layer '\(name)': \($0)") })
            return append(.layerNorm(dims: dims, gamma: s.scale ? try ref("gamma") : nil, beta: s.center ? try ref("beta") : nil,
                                     epsilon: s.epsilon), ins, shape)
        case .layerScale:
            return append(.layerScale(gamma: try ref("gamma")), ins, shape)
        case .scaledAdd(let scale):
            let c = nodes[ins[1]].shape.last!
            let scaled = append(.affine(scale: Array(repeating: scale, count: c), shift: Array(repeating: 0, count: c)),
                                [ins[1]], nodes[ins[1]].shape)
            return append(.merge(.add), [ins[0], scaled], shape)
        case .stochasticDepth(let rate):
            // Drop-path is dropout with one mask value per sample (Keras divides the kept samples
            // by 1 - rate, as dropout does).
            return rate > 0 && !node.inferenceOnly
                ? append(.dropout(rate: rate, noiseShape: stochasticDepthNoise(rank: shape.count)), ins, shape)
                : append(.view, ins, shape)
        case .centerCrop(let h, let w) where inShape[1] >= h && inShape[2] >= w:
            return append(.crop(top: (inShape[1] - h) / 2, left: (inShape[2] - w) / 2), ins, shape)
        case .resize, .centerCrop:
            let w = resizeWindow(node.op, inShape)
            return append(.resize(top: w.top, left: w.left, height: w.height, width: w.width, interpolation: w.interpolation),
                          ins, shape)
        case .activation(let a):
            return a.isIdentity ? append(.view, ins, shape) : activate(ins[0], a)
        case .softmax(let axis, let log):
            return append(.softmax(axis: axis < 0 ? shape.count + axis : axis, log: log), ins, shape)
        case .dropout(let rate, let noise, _):
            // A rate from the model's config (tf.nn.dropout refuses the same ones when training).
            guard rate >= 0 && rate < 1 else {
                throw RuntimeError("layer '\(name)': dropout rate \(rate) is outside [0, 1), which training cannot apply")
            }
            return node.inferenceOnly ? append(.view, ins, shape) : append(.dropout(rate: rate, noiseShape: noise), ins, shape)
        case .identity, .reshape, .flatten:
            return append(.view, ins, shape)
        case .pool2d(let s):
            let p = convParams(inShape, s.poolSize, s.strides, [1, 1], s.padding, inShape[3])
            return append(.pool(kind: s.kind, poolH: s.poolSize[0], poolW: s.poolSize[1], strideH: s.strides[0],
                                strideW: s.strides[1], padTop: p.padTop, padLeft: p.padLeft), ins, shape)
        case .globalPool(let kind, _):
            return append(.globalPool(kind), ins, shape)
        case .globalSum:
            let mean = append(.globalPool(.average), ins, shape)
            let c = inShape[3]
            return append(.affine(scale: Array(repeating: Float(inShape[1] * inShape[2]), count: c),
                                  shift: Array(repeating: 0, count: c)), [mean], shape)
        case .slice(let axes):
            return append(.slice(try sliceWindow(axes, inShape, fail: { RuntimeError("layer '\(name)': \($0)") }).window), ins, shape)
        case .zeroPad2d(let t, let b, let l, let r):
            return append(.pad(top: t, bottom: b, left: l, right: r), ins, shape)
        case .cropping2d(let t, _, let l, _):
            return append(.crop(top: t, left: l), ins, shape)
        case .upsampling2d(let size, let interp):
            return append(.upsample(sizeH: size[0], sizeW: size[1], interpolation: interp), ins, shape)
        case .permute(let dims):
            return append(.transpose(perm: [0] + dims), ins, shape)
        case .merge(let kind):
            return append(.merge(kind), ins, shape)
        case .concatenate(let axis):
            return append(.concat(axis: axis < 0 ? shape.count + axis : axis), ins, shape)
        }
    }

    static func constantAffine(_ node: GraphNode, _ params: ParameterStore, channels c: Int) throws -> ([Float], [Float]) {
        func weight(_ w: String) throws -> [Float] {
            guard let i = params.find(node, w) else { throw RuntimeError("layer '\(node.layerKey)' has no weight '\(w)'") }
            return Array(UnsafeBufferPointer(start: params.entry(i).values, count: params.entry(i).count))
        }
        return try Runtime.constantAffine(node.op, channels: c, weight: weight,
                                          fail: { RuntimeError("layer '\(node.layerKey)': \($0)") })
    }
}
