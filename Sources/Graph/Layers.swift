/// What a Keras layer computes, as parsed from its config. Shapes exclude the batch dimension;
/// -1 marks a dimension unknown until an input is given.

public enum Padding: String, Sendable { case same, valid }

public struct Conv2DSpec: Equatable, Sendable {
    public var filters: Int
    public var kernel: [Int]          // [kh, kw]
    public var strides: [Int]
    public var dilation: [Int]
    public var padding: Padding
    public var groups: Int
    public var useBias: Bool
    public var activation: ActivationSpec
}

public struct DepthwiseSpec: Equatable, Sendable {
    public var kernel: [Int]
    public var strides: [Int]
    public var dilation: [Int]
    public var padding: Padding
    public var depthMultiplier: Int
    public var useBias: Bool
    public var activation: ActivationSpec
}

public struct SeparableSpec: Equatable, Sendable {
    public var depthwise: DepthwiseSpec   // useBias false, activation linear
    public var filters: Int
    public var useBias: Bool
    public var activation: ActivationSpec
}

public struct DenseSpec: Equatable, Sendable {
    public var units: Int
    public var useBias: Bool
    public var activation: ActivationSpec
}

public struct BatchNormSpec: Equatable, Sendable {
    public var epsilon: Float
    public var momentum: Float
    public var center: Bool
    public var scale: Bool
    /// Whether training updates the moving variance with the unbiased batch variance n/(n-1) on
    /// 4-D inputs (tf-keras's fused kernel) rather than the biased one (Keras 3, unfused).
    public var fused: Bool = true
}

public enum PoolKind: String, Sendable { case max, average }

public struct Pool2DSpec: Equatable, Sendable {
    public var kind: PoolKind
    public var poolSize: [Int]
    public var strides: [Int]
    public var padding: Padding
}

public enum MergeKind: String, Sendable { case add, subtract, multiply, average, maximum, minimum }

/// How an image is resized. UpSampling2D takes nearest and bilinear; Resizing and
/// tf.image.resize bicubic and area too (TensorFlow's ResizeBicubic with half-pixel centres, and
/// ResizeArea).
public enum Interpolation: String, Sendable, CaseIterable {
    case nearest, bilinear, bicubic, area

    /// What UpSampling2D (and the resize backward) computes.
    public var isLinear: Bool { self == .nearest || self == .bilinear }
}

/// LayerNormalization: mean and variance over `axes`, per sample.
public struct LayerNormSpec: Equatable, Sendable {
    /// As written in the config (negative from the end, positive counting the batch axis), in
    /// Keras's order, which is the order of gamma's and beta's dimensions.
    public var axes: [Int]
    public var epsilon: Float
    public var center: Bool
    public var scale: Bool
    /// Keras 3's `rms_scaling`: y = x * rsqrt(variance + epsilon) * gamma, without centring the
    /// output (the variance is still the centred one) and without beta.
    public var rmsScaling: Bool
}

/// An image resize as tf.image.resize computes it (half-pixel centres, no antialiasing), after an
/// optional centred crop to the target's aspect ratio (Keras's `crop_to_aspect_ratio`, `smart_resize`).
public struct ResizeSpec: Equatable, Sendable {
    public var height: Int
    public var width: Int
    public var interpolation: Interpolation
    public var cropToAspectRatio: Bool
}

/// One axis of `x[...]` (batch excluded), as Python reads a subscript: a slice start:stop:step
/// (nil where omitted), or an index (`start`), which takes one position and drops the axis.
public struct SliceAxis: Equatable, Sendable {
    public var start: Int?
    public var stop: Int?
    public var step: Int
    public var isIndex: Bool

    public init(start: Int?, stop: Int?, step: Int, isIndex: Bool = false) {
        self.start = start; self.stop = stop; self.step = step; self.isIndex = isIndex
    }
    public static let all = SliceAxis(start: nil, stop: nil, step: 1)

    /// The first position taken and how many, over an axis of `size`, as Python's
    /// `slice.indices` resolves them (out-of-range bounds clamped); nil for an index outside
    /// the axis, which TensorFlow refuses.
    public func resolve(_ size: Int) -> (begin: Int, count: Int)? {
        if isIndex {
            let i = (start ?? 0) < 0 ? (start ?? 0) + size : (start ?? 0)
            return i >= 0 && i < size ? (i, 1) : nil
        }
        func bound(_ v: Int?, _ fallback: Int, _ lo: Int, _ hi: Int) -> Int {
            guard let v else { return fallback }
            return min(max(v < 0 ? v + size : v, lo), hi)
        }
        if step > 0 {
            let b = bound(start, 0, 0, size), e = bound(stop, size, 0, size)
            return (b, max(0, (e - b + step - 1) / step))
        }
        let b = bound(start, size - 1, -1, size - 1), e = bound(stop, -1, -1, size - 1)
        return (b, max(0, (b - e - step - 1) / -step))
    }
}

public enum LayerOp: Equatable, Sendable {
    case input
    case conv2d(Conv2DSpec)
    case depthwiseConv2d(DepthwiseSpec)
    case separableConv2d(SeparableSpec)
    case dense(DenseSpec)
    case batchNorm(BatchNormSpec)
    case activation(ActivationSpec)
    case softmax(axis: Int, log: Bool)
    /// Dropout and friends: identity at inference. `rate` is kept for training.
    case dropout(rate: Float, noiseShape: [Int]?, seed: Int?)
    case identity
    case pool2d(Pool2DSpec)
    case globalPool(PoolKind, keepDims: Bool)
    /// The sum over an image's spatial axes (tf.reduce_sum / keras.ops.sum over axes 1 and 2).
    case globalSum(keepDims: Bool)
    /// `x[...]`: one entry per axis after the batch (missing trailing axes taken whole).
    case slice([SliceAxis])
    case zeroPad2d(top: Int, bottom: Int, left: Int, right: Int)
    case cropping2d(top: Int, bottom: Int, left: Int, right: Int)
    case upsampling2d(size: [Int], interpolation: Interpolation)
    case reshape(target: [Int])
    case flatten
    case permute(dims: [Int])            // 1-based, batch excluded, as Keras writes it
    case merge(MergeKind)
    case concatenate(axis: Int)          // as written: negative from the end, positive counts batch
    case rescaling(scale: [Float], offset: [Float])
    /// mean/variance from the config (then the layer has no weights) or nil (weights mean, variance, count).
    case normalization(mean: [Float]?, variance: [Float]?, invert: Bool)
    case layerNorm(LayerNormSpec)
    /// x * gamma over the last axis (ConvNeXt's LayerScale; gamma has `dim` values).
    case layerScale(dim: Int)
    /// inputs[0] + inputs[1] * scale (InceptionResNetV2's CustomScaleLayer).
    case scaledAdd(scale: Float)
    /// ConvNeXt's StochasticDepth: the identity at inference; in training each sample is dropped
    /// with probability `rate` and the kept ones scaled by 1 / (1 - rate) (drop-path).
    case stochasticDepth(rate: Float)
    case resize(ResizeSpec)
    /// Keras's CenterCrop: a centred crop when the input is at least (height, width) in both
    /// dimensions, otherwise a bilinear resize with crop to the aspect ratio.
    case centerCrop(height: Int, width: Int)
    /// An augmentation layer (RandomFlip, RandomRotation, ...): the identity at inference (RandomCrop:
    /// see `AugmentSpec.Kind.crop`), a random transformation per image in training.
    case augment(AugmentSpec)
}

/// A weight a layer owns, in Keras's creation order for that layer.
public struct WeightSpec: Equatable, Sendable {
    /// Keras's short name: kernel, bias, depthwise_kernel, pointwise_kernel, gamma, beta, moving_mean, ...
    public var name: String
    public var shape: [Int]
    /// Whether Keras makes this variable trainable at all (moving statistics and Normalization
    /// state never are), before the layer's trainable flag is considered.
    public var trainableKind: Bool
    /// Other names the same weight has in some Keras version (Keras 3 DepthwiseConv2D: `kernel`).
    public var aliases: [String] = []

    public var count: Int { shape.reduce(1, *) }
}
