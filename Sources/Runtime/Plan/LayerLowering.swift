import Graph

/// A primitive step of computation, with its weights as `W`: values (`[Float]`) for inference,
/// parameter references (`Int`) for training. A layer's lowering (`LayerLowering`) produces these;
/// each target then maps a primitive, never a layer, onto its own operations: `Lowering` onto the
/// fused inference plan's `PlanOp`s, `TrainingLowering` onto `TrainOp`s, whose forward and
/// backward kernels sit side by side in `Runtime/Backward`.
enum Primitive<W> {
    /// Conv2D, HWIO kernel (I = input channels / groups); `act` is element-wise (a softmax is a
    /// separate step).
    case conv(ConvParams, kernel: W, bias: W?, groups: Int, act: ActivationSpec)
    case depthwise(ConvParams, multiplier: Int, kernel: W, bias: W?, act: ActivationSpec)
    case dense(inFeatures: Int, outFeatures: Int, kernel: W, bias: W?, act: ActivationSpec)
    /// BatchNormalization: the targets choose between the folded inference form and training mode.
    /// `besselForMoving`: the variance fed to the moving average is the unbiased one (tf-keras's
    /// fused kernel, used for 4-D inputs; Keras 3 uses the biased one).
    case batchNorm(gamma: W?, beta: W?, movingMean: W, movingVariance: W, epsilon: Float, momentum: Float,
                   besselForMoving: Bool)
    /// y = x * scale + shift per channel, constants.
    case affine(scale: [Float], shift: [Float])
    /// LayerNormalization over `dims` (0-based, batch counted, increasing); gamma/beta nil when absent.
    case layerNorm(dims: [Int], gamma: W?, beta: W?, epsilon: Float, rms: Bool)
    /// y = x * gamma over the last axis (ConvNeXt's LayerScale).
    case layerScale(gamma: W)
    case activation(ActivationSpec)
    /// Softmax or log-softmax (`log`) along `axis` (0-based, batch counted).
    case softmax(axis: Int, log: Bool)
    /// Dropout as training applies it (Dropout, SpatialDropout, drop-path); inference leaves it out.
    case dropout(rate: Float, noiseShape: [Int]?)
    /// An augmentation layer as training applies it (no backward: only a frozen prefix runs it).
    case augment(AugmentSpec)
    /// Pooling, padding, cropping, slicing, resizing, upsampling, transposing, concatenating.
    case move(DataMove)
    case merge(MergeKind)
    /// Same data, new shape (Reshape, Flatten, identity layers).
    case view
}

/// Where a layer's primitives go. `Value` indices are the target's own (plan or train nodes).
protocol LoweringTarget {
    associatedtype Weight
    /// Whether the layers that act only in training (augmentation) are lowered in training mode.
    var trainingMode: Bool { get }
    /// The layer's weight by Keras's short name, as this target refers to it.
    func weight(_ name: String, of node: GraphNode) throws -> Weight
    /// A weight's current values, for constants computed from it (an adapted Normalization).
    func values(of weight: Weight) -> [Float]
    /// The shape (batch included) of a value already emitted.
    func shape(of value: Int) -> [Int]
    /// Appends one primitive step reading `inputs` and giving a value of `shape`.
    mutating func emit(_ step: Primitive<Weight>, _ inputs: [Int], _ shape: [Int], for node: GraphNode) throws -> Int
}

/// The one definition of what each `LayerOp` computes: its weights, geometry, output shape and
/// decomposition into primitives, for inference and training alike.
enum LayerLowering {
    static func lower<T: LoweringTarget>(_ node: GraphNode, inputs ins: [Int], into t: inout T) throws -> Int {
        let inShape = ins.first.map { t.shape(of: $0) } ?? []
        /// The output shape (batch included) by the graph's own shape rule.
        func outputShape(_ op: LayerOp, _ inputs: [[Int]]) throws -> [Int] {
            do { return [inputs[0][0]] + (try op.outputShape(inputs: inputs.map { Array($0.dropFirst()) })) }
            catch let e as GraphError { throw layerError(node, e.message) }
        }
        let inShapes = ins.map { t.shape(of: $0) }
        let shape = node.op == .input ? [] : try outputShape(node.op, inShapes)
        func emit(_ step: Primitive<T.Weight>, _ inputs: [Int], _ shape: [Int]) throws -> Int {
            try t.emit(step, inputs, shape, for: node)
        }
        func w(_ name: String) throws -> T.Weight { try t.weight(name, of: node) }
        func bias(_ on: Bool) throws -> T.Weight? { on ? try w("bias") : nil }
        /// A (log-)softmax activation follows its kernel as a separate step; element-wise ones
        /// stay on the kernel.
        func withActivation(_ act: ActivationSpec, _ shape: [Int], inputs: [Int]? = nil,
                            _ kernel: (ActivationSpec) -> Primitive<T.Weight>) throws -> Int {
            let k = try emit(kernel(act.kind.isElementwise ? act : .linear), inputs ?? ins, shape)
            guard !act.kind.isElementwise else { return k }
            return try emit(.softmax(axis: shape.count - 1, log: act.kind == .logSoftmax), [k], shape)
        }
        switch node.op {
        case .input:
            throw layerError(node, "an input that is not a model input")
        case .conv2d(let s):
            let p = convParams(inShape, s.kernel, s.strides, s.dilation, s.padding, s.filters)
            let kernel = try w("kernel"), b = try bias(s.useBias)
            if s.groups > 1 && s.groups == inShape[3] {
                // One group per input channel (ConvNeXt's 7x7): a depthwise convolution, whose
                // HWCM kernel has the grouped HWIO kernel's layout (I = 1, O = C * multiplier).
                return try withActivation(s.activation, shape) {
                    .depthwise(p, multiplier: s.filters / s.groups, kernel: kernel, bias: b, act: $0)
                }
            }
            return try withActivation(s.activation, shape) {
                .conv(p, kernel: kernel, bias: b, groups: s.groups, act: $0)
            }
        case .depthwiseConv2d(let s):
            let p = convParams(inShape, s.kernel, s.strides, s.dilation, s.padding, shape[3])
            let kernel = try w("depthwise_kernel"), b = try bias(s.useBias)
            return try withActivation(s.activation, shape) {
                .depthwise(p, multiplier: s.depthMultiplier, kernel: kernel, bias: b, act: $0)
            }
        case .separableConv2d(let s):
            let d = s.depthwise
            let mid = try outputShape(.depthwiseConv2d(d), inShapes)
            let p = convParams(inShape, d.kernel, d.strides, d.dilation, d.padding, mid[3])
            let dw = try emit(.depthwise(p, multiplier: d.depthMultiplier, kernel: try w("depthwise_kernel"), bias: nil,
                                         act: .linear), ins, mid)
            let pw = ConvParams(kernelH: 1, kernelW: 1, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1,
                                padTop: 0, padLeft: 0, outChannels: s.filters)
            let kernel = try w("pointwise_kernel"), b = try bias(s.useBias)
            return try withActivation(s.activation, shape, inputs: [dw]) {
                .conv(pw, kernel: kernel, bias: b, groups: 1, act: $0)
            }
        case .dense(let s):
            let kernel = try w("kernel"), b = try bias(s.useBias)
            return try withActivation(s.activation, shape) {
                .dense(inFeatures: inShape.last!, outFeatures: s.units, kernel: kernel, bias: b, act: $0)
            }
        case .batchNorm(let s):
            return try emit(.batchNorm(gamma: s.scale ? try w("gamma") : nil, beta: s.center ? try w("beta") : nil,
                                       movingMean: try w("moving_mean"), movingVariance: try w("moving_variance"),
                                       epsilon: s.epsilon, momentum: s.momentum,
                                       besselForMoving: s.fused && inShape.count == 4),
                            ins, inShape)
        case .normalization, .rescaling:
            let (scale, shift) = try constantAffine(node.op, channels: inShape.last!,
                                                    weight: { t.values(of: try t.weight($0, of: node)) },
                                                    fail: { layerError(node, $0) })
            return try emit(.affine(scale: scale, shift: shift), ins, inShape)
        case .layerNorm(let s):
            let dims = try layerNormDims(s, inShape, fail: { layerError(node, $0) })
            // rms_scaling keeps gamma whatever `scale` says, and has no beta.
            return try emit(.layerNorm(dims: dims, gamma: s.scale || s.rmsScaling ? try w("gamma") : nil,
                                       beta: s.center && !s.rmsScaling ? try w("beta") : nil,
                                       epsilon: s.epsilon, rms: s.rmsScaling), ins, inShape)
        case .layerScale:
            return try emit(.layerScale(gamma: try w("gamma")), ins, inShape)
        case .scaledAdd(let scale):
            // inputs[1] * scale as an affine, then the sum.
            let c = inShapes[1].last!
            let scaled = try emit(.affine(scale: Array(repeating: scale, count: c), shift: Array(repeating: 0, count: c)),
                                  [ins[1]], inShapes[1])
            return try emit(.merge(.add), [ins[0], scaled], shape)
        case .stochasticDepth(let rate):
            // Drop-path is dropout with one mask value per sample (Keras divides the kept samples
            // by 1 - rate, as dropout does).
            guard rate > 0 && !node.inferenceOnly else { return try emit(.view, ins, inShape) }
            return try emit(.dropout(rate: rate, noiseShape: stochasticDepthNoise(rank: inShape.count)), ins, inShape)
        case .dropout(let rate, let noiseShape, _):
            guard rate > 0 && !node.inferenceOnly else { return try emit(.view, ins, inShape) }
            return try emit(.dropout(rate: rate, noiseShape: noiseShape), ins, inShape)
        case .identity:
            return try emit(.view, ins, inShape)
        case .augment(let s):
            if case .crop(let h, let w, let major) = s.kind {
                if major < 3 && (!t.trainingMode || node.inferenceOnly) {
                    let window = aspectCropWindow(height: inShape[1], width: inShape[2], targetHeight: h, targetWidth: w)
                    return try emitResize(window, h, w, .bilinear, ins, inShape, &t, node)
                }
                // Keras 3 passes images through at inference and crops in training: one shape in
                // both only when the input is already (height, width), where the crop is the identity.
                if major >= 3 && (inShape[1] != h || inShape[2] != w) && t.trainingMode && !node.inferenceOnly {
                    throw layerError(node, "Keras 3's RandomCrop gives (\(h), \(w)) in training but passes its "
                                     + "\(inShape[1])x\(inShape[2]) input through at inference, which one model cannot "
                                     + "do here; resize the images to \(h)x\(w) first, or call it with training=False")
                }
                if major >= 3 { return try emit(.view, ins, inShape) }
            }
            guard t.trainingMode && !node.inferenceOnly else { return try emit(.view, ins, inShape) }
            return try emit(.augment(s), ins, shape)
        case .resize(let s):
            let window = s.cropToAspectRatio
                ? aspectCropWindow(height: inShape[1], width: inShape[2], targetHeight: s.height, targetWidth: s.width)
                : (0, 0, inShape[1], inShape[2])
            return try emitResize(window, s.height, s.width, s.interpolation, ins, inShape, &t, node)
        case .centerCrop(let h, let w):
            if inShape[1] >= h && inShape[2] >= w {
                return try emit(.move(.crop(top: (inShape[1] - h) / 2, left: (inShape[2] - w) / 2)), ins, shape)
            }
            let window = aspectCropWindow(height: inShape[1], width: inShape[2], targetHeight: h, targetWidth: w)
            return try emitResize(window, h, w, .bilinear, ins, inShape, &t, node)
        case .activation(let a):
            return try emit(a.isIdentity ? .view : .activation(a), ins, inShape)
        case .softmax(let axis, let log):
            return try emit(.softmax(axis: axis < 0 ? inShape.count + axis : axis, log: log), ins, inShape)
        case .pool2d(let s):
            let p = convParams(inShape, s.poolSize, s.strides, [1, 1], s.padding, inShape[3])
            return try emit(.move(.pool(kind: s.kind, poolH: s.poolSize[0], poolW: s.poolSize[1], strideH: s.strides[0],
                                        strideW: s.strides[1], padTop: p.padTop, padLeft: p.padLeft)), ins, shape)
        case .globalPool(let kind, _):
            return try emit(.move(.globalPool(kind)), ins, shape)
        case .globalSum:
            // The spatial mean times the pixel count.
            let mean = try emit(.move(.globalPool(.average)), ins, shape)
            let c = inShape[3]
            return try emit(.affine(scale: Array(repeating: Float(inShape[1] * inShape[2]), count: c),
                                    shift: Array(repeating: 0, count: c)), [mean], shape)
        case .slice(let axes):
            let (window, sliced) = try sliceWindow(axes, inShape, fail: { layerError(node, $0) })
            precondition(sliced == shape, "the slice's shape rule and its window agree")
            return try emit(.move(.slice(window)), ins, shape)
        case .zeroPad2d(let top, let bottom, let left, let right):
            return try emit(.move(.pad(top: top, bottom: bottom, left: left, right: right)), ins, shape)
        case .cropping2d(let top, _, let left, _):
            return try emit(.move(.crop(top: top, left: left)), ins, shape)
        case .upsampling2d(let size, let interp):
            return try emit(.move(.upsample(sizeH: size[0], sizeW: size[1], interpolation: interp)), ins, shape)
        case .reshape, .flatten:
            return try emit(.view, ins, shape)
        case .permute(let dims):
            return try emit(.move(.transpose(perm: [0] + dims)), ins, shape)
        case .merge(let kind):
            return try emit(.merge(kind), ins, shape)
        case .concatenate(let axis):
            return try emit(.move(.concat(axis: axis < 0 ? inShape.count + axis : axis)), ins, shape)
        }
    }

    /// A resize of the window to (h, w); a window the size of the input resized to its own size is
    /// the identity (both interpolations then sample each pixel at its centre), a window already of
    /// the target size a crop.
    static func emitResize<T: LoweringTarget>(_ window: (top: Int, left: Int, height: Int, width: Int), _ h: Int, _ w: Int,
                                             _ interpolation: Interpolation, _ ins: [Int], _ inShape: [Int],
                                             _ t: inout T, _ node: GraphNode) throws -> Int {
        let shape = [inShape[0], h, w, inShape[3]]
        if window.height == h && window.width == w {
            if h == inShape[1] && w == inShape[2] { return try t.emit(.view, ins, shape, for: node) }
            return try t.emit(.move(.crop(top: window.top, left: window.left)), ins, shape, for: node)
        }
        return try t.emit(.move(.resize(top: window.top, left: window.left, height: window.height, width: window.width,
                                        interpolation: interpolation)), ins, shape, for: node)
    }
}

/// An error about one layer, naming it and its class.
func layerError(_ node: GraphNode, _ what: String) -> RuntimeError {
    RuntimeError("layer '\(node.layerKey)' (\(node.className)): \(what)")
}
