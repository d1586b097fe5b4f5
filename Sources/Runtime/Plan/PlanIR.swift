import Graph

/// The execution plan's operations: what a compiled model runs, after lowering Keras layers and
/// folding what can be folded. Shapes include the batch axis (plans are compiled per batch size).
/// Weights are already transformed (batch-norm folded into kernels, and so on).
enum PlanOp {
    case input(index: Int)
    /// Conv2D (HWIO kernel) with explicit padding; epilogue y = act(acc + shift[c]).
    case conv(ConvParams, kernel: [Float], shift: [Float]?, act: ActivationSpec)
    /// A 1x1 stride-1 Conv2D whose input is first multiplied by per-item channel scales
    /// (inputs: x [N,H,W,Cin], s [N,Cin]): squeeze-and-excitation's excite folded into the
    /// projection, as x·diag(s)·W = x·(diag(s)·W), so the scale costs Cin·Cout per item instead
    /// of a pass over the feature map.
    case scaledPointwise(ConvParams, kernel: [Float], shift: [Float]?, act: ActivationSpec)
    /// A pointwise expansion feeding a depthwise convolution, run as one pass that never stores
    /// the expanded tensor (see `ExpandDepthwise`). Input: the expansion's input.
    case expandDepthwise(ExpandDepthwise)
    /// An image stem (a convolution over few input channels) feeding a depthwise convolution, run
    /// as one pass that never stores the stem's map (see `ConvDepthwise`). Input: the stem's input.
    case convDepthwise(ConvDepthwise)
    /// DepthwiseConv2D (HWCM kernel); epilogue y = act(acc + shift[c]).
    case depthwise(ConvParams, multiplier: Int, kernel: [Float], shift: [Float]?, act: ActivationSpec)
    /// Dense over the last axis (IO kernel).
    case dense(inFeatures: Int, outFeatures: Int, kernel: [Float], shift: [Float]?, act: ActivationSpec)
    /// y = act(x * scale[c] + shift[c]) over the last axis (BatchNormalization that could not be
    /// folded, Rescaling, Normalization).
    case affine(scale: [Float], shift: [Float], act: ActivationSpec)
    case activation(ActivationSpec)
    /// Softmax (or log-softmax) along `axis` (0-based, counting the batch axis).
    case softmax(axis: Int, log: Bool)
    /// Pooling, padding, cropping, slicing, resizing, upsampling, transposing, concatenating.
    case move(DataMove)
    /// Global average pooling of a depthwise step's output (the input node) from the per-row
    /// channel sums that step left while its values were in registers (AVX-512 plans only; the
    /// pass over the map is saved).
    case meanOfRowSums
    case merge(MergeKind)
    /// x[N,H,W,C] * s[N,C] (squeeze-and-excitation's broadcast multiply).
    case channelScale
    /// LayerNormalization over `dims` (0-based, counting the batch axis, increasing); gamma and
    /// beta hold one value per normalized index (ones and zeros when the layer has none).
    case layerNorm(dims: [Int], gamma: [Float], beta: [Float], epsilon: Float, rms: Bool)
    /// Dropout in training mode (kept only in a training plan's frozen prefix: Keras runs a frozen
    /// part's Dropout layers in training mode too). `key` tells the layer's mask from others'.
    case dropout(rate: Float, noiseShape: [Int]?, key: UInt64)
    /// An augmentation layer in training mode (kept only in a training plan's frozen prefix, where
    /// Keras's augmentation layers sit); the identity (or tf-keras RandomCrop's resize) while the
    /// plan's noise clock is inactive. `key` tells the layer's draws from others'.
    case augment(AugmentSpec, key: UInt64)
    /// Same data, new shape (Reshape, Flatten, identity layers).
    case view
}

/// Convolution geometry as the kernels want it: explicit top/left padding, output size given.
struct ConvParams: Equatable {
    var kernelH: Int, kernelW: Int
    var strideH: Int, strideW: Int
    var dilationH: Int, dilationW: Int
    var padTop: Int, padLeft: Int
    var outChannels: Int
    /// The node's last input is added to the result before the activation (a following Add
    /// folded into the convolution's epilogue).
    var residual = false
    /// A grouped convolution (1 < groups < input channels, as RegNet writes it): the kernel is HWIO
    /// with I = input channels / groups, and each group runs as its own convolution
    /// (`groupedConv2d`), so the plan does the layer's own multiply-adds rather than `groups`
    /// times as many through a block-diagonal dense kernel.
    var groups = 1

    /// A 1x1, stride-1, unpadded, ungrouped convolution: a matrix product over pixels, whose kernel
    /// the plan keeps packed for `pointwiseConv`.
    var isPointwise: Bool {
        kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 && padTop == 0 && padLeft == 0 && groups == 1
    }

    /// The kernels' geometry for NHWC input and output shapes (batch included).
    func geometry(input x: [Int], output y: [Int]) -> Conv2DGeometry {
        Conv2DGeometry(batch: x[0], inH: x[1], inW: x[2], inC: x[3], outH: y[1], outW: y[2], outC: y[3],
                       kernelH: kernelH, kernelW: kernelW, strideH: strideH, strideW: strideW,
                       dilationH: dilationH, dilationW: dilationW, padTop: padTop, padLeft: padLeft)
    }
}

/// MobileNet/EfficientNet's inverted-bottleneck front: a 1x1 convolution to `expandChannels`
/// (batch-norm and activation folded in) whose output only a depthwise convolution (multiplier
/// 1, dilation 1 in height) reads. Fused, each worker expands just the input rows the next output
/// row needs into a ring of kernelH rows that stays in its cache: early in EfficientNet the
/// expanded map is 2-5 MB per image, written and read back through memory otherwise.
struct ExpandDepthwise {
    var expandChannels: Int
    var expandKernel: [Float], expandShift: [Float]?, expandAct: ActivationSpec
    var depthwise: ConvParams
    var kernel: [Float], shift: [Float]?, act: ActivationSpec
}

/// EfficientNet's and MobileNet's stem: a convolution over the image's few channels (computed
/// directly, `conv2dIsDirect`; batch-norm and activation folded in) whose output only a
/// depthwise convolution (multiplier 1, dilation 1 in height) reads. Fused, each worker computes
/// just the stem rows the next depthwise row needs into a ring of kernelH rows, as
/// `ExpandDepthwise` does: EfficientNetB0's stem map at 228x228 is 1.7 MB per image.
struct ConvDepthwise {
    var conv: ConvParams
    /// The stem's output shape (batch included): the depthwise's input.
    var stemShape: [Int]
    var convKernel: [Float], convShift: [Float]?, convAct: ActivationSpec
    var depthwise: ConvParams
    var kernel: [Float], shift: [Float]?, act: ActivationSpec
}

/// One value-producing step of the plan.
struct PlanNode {
    var op: PlanOp
    var inputs: [Int]        // PlanNode indices
    var shape: [Int]         // with batch
    /// The Keras layer this came from (for errors and profiles).
    var layer: String
    var count: Int { shape.reduce(1, *) }

    /// The operation's kind, for profiles.
    var kindName: String {
        switch op {
        case .conv(let p, _, _, _):
            return p.kernelH == 1 && p.kernelW == 1 && p.strideH == 1 && p.strideW == 1 ? "conv1x1" : "conv"
        case .scaledPointwise: return "conv1x1"
        case .depthwise: return "depthwise"
        case .expandDepthwise: return "conv1x1+depthwise"
        case .convDepthwise: return "conv+depthwise"
        case .dense: return "dense"
        case .move(let m): return m.kindName
        default: return String(describing: op).prefix { $0 != "(" }.description
        }
    }
}
