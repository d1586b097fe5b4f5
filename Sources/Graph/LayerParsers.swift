import Foundation

/// One parser per Keras `class_name`. A class missing here fails with the layer's name and class.
typealias LayerParser = (LayerConfig, ParseContext) throws -> LayerOp

struct ParseContext {
    /// 2 or 3: where Keras versions give a name different meanings (hard_sigmoid, LeakyReLU).
    var kerasMajor: Int
}

let layerParsers: [String: LayerParser] = [
    "InputLayer": { _, _ in .input },
    "Conv2D": parseConv2D,
    "Convolution2D": parseConv2D,
    "DepthwiseConv2D": { c, ctx in .depthwiseConv2d(try parseDepthwise(c, ctx)) },
    "SeparableConv2D": parseSeparable,
    "SeparableConvolution2D": parseSeparable,
    "Dense": parseDense,
    "BatchNormalization": parseBatchNorm,
    "Activation": { c, ctx in try activationOp(try parseActivation(c, key: "activation", ctx)) },
    "ReLU": parseReLU,
    "LeakyReLU": parseLeakyReLU,
    "ELU": { c, _ in .activation(ActivationSpec(.elu, alpha: Float(try c.double("alpha", default: 1)))) },
    "Softmax": { c, _ in .softmax(axis: try c.int("axis", default: -1), log: false) },
    "Dropout": parseDropout,
    "SpatialDropout2D": { c, ctx in try parseSpatialDropout(c, ctx, noiseShape: [-1, 1, 1, -1]) },
    "SpatialDropout1D": { c, ctx in try parseSpatialDropout(c, ctx, noiseShape: [-1, 1, -1]) },
    "GaussianNoise": { c, _ in try parseNoise(c, amount: "stddev") },
    "GaussianDropout": { c, _ in try parseNoise(c, amount: "rate") },
    "AlphaDropout": { c, _ in try parseNoise(c, amount: "rate") },
    "ActivityRegularization": { _, _ in .identity },
    "GlobalAveragePooling2D": { c, _ in try parseGlobalPool(c, .average) },
    "GlobalAvgPool2D": { c, _ in try parseGlobalPool(c, .average) },
    "GlobalMaxPooling2D": { c, _ in try parseGlobalPool(c, .max) },
    "GlobalMaxPool2D": { c, _ in try parseGlobalPool(c, .max) },
    "MaxPooling2D": { c, _ in .pool2d(try parsePool(c, .max)) },
    "MaxPool2D": { c, _ in .pool2d(try parsePool(c, .max)) },
    "AveragePooling2D": { c, _ in .pool2d(try parsePool(c, .average)) },
    "AvgPool2D": { c, _ in .pool2d(try parsePool(c, .average)) },
    "ZeroPadding2D": { c, _ in
        let p = try pairs(c, "padding")
        return .zeroPad2d(top: p[0], bottom: p[1], left: p[2], right: p[3])
    },
    "Cropping2D": { c, _ in
        let p = try pairs(c, "cropping")
        return .cropping2d(top: p[0], bottom: p[1], left: p[2], right: p[3])
    },
    "UpSampling2D": { c, _ in
        try checkChannelsLast(c)
        let interp = try c.string("interpolation", default: "nearest")
        guard let kind = Interpolation(rawValue: interp), kind.isLinear else {
            throw c.fail("interpolation '\(interp)' is not supported (nearest, bilinear)")
        }
        return .upsampling2d(size: try c.sizes("size", count: 2), interpolation: kind)
    },
    "Reshape": { c, _ in .reshape(target: try c.intList("target_shape")) },
    "Flatten": { c, _ in try checkChannelsLast(c); return .flatten },
    "Permute": { c, _ in .permute(dims: try c.intList("dims")) },
    "Add": { _, _ in .merge(.add) },
    "Subtract": { _, _ in .merge(.subtract) },
    "Multiply": { _, _ in .merge(.multiply) },
    "Average": { _, _ in .merge(.average) },
    "Maximum": { _, _ in .merge(.maximum) },
    "Minimum": { _, _ in .merge(.minimum) },
    "Concatenate": { c, _ in .concatenate(axis: try c.int("axis", default: -1)) },
    "Rescaling": { c, _ in
        .rescaling(scale: try c.doubles("scale").map(Float.init),
                   offset: c.has("offset") ? try c.doubles("offset").map(Float.init) : [0])
    },
    "Normalization": parseNormalization,
    // Augmentation layers (AugmentLayers.swift): the identity at inference, as in Keras (RandomCrop
    // aside); applied in training where they sit in the frozen prefix.
    "RandomFlip": parseRandomFlip,
    "RandomRotation": parseRandomRotation,
    "RandomZoom": parseRandomZoom,
    "RandomTranslation": parseRandomTranslation,
    "RandomContrast": parseRandomContrast,
    "RandomBrightness": parseRandomBrightness,
    "RandomCrop": parseRandomCrop,
    "Resizing": parseResizing,
    "CenterCrop": { c, _ in
        try checkChannelsLast(c)
        return .centerCrop(height: try c.size("height"), width: try c.size("width"))
    },
    "LayerNormalization": parseLayerNorm,
    // The applications' own classes, by the names both Kerases register them under.
    "LayerScale": { c, _ in
        _ = c.has("init_values")      // gamma's initial value only
        return .layerScale(dim: try c.size("projection_dim"))
    },
    "StochasticDepth": { c, _ in
        let rate = try c.double("drop_path_rate")
        guard rate >= 0 && rate < 1 else { throw c.fail("drop_path_rate \(rate) is outside [0, 1)") }
        return .stochasticDepth(rate: Float(rate))
    },
    "CustomScaleLayer": parseCustomScale,
    // tf-keras registers it in the "Custom" package, which its .h5 files write into class_name.
    "Custom>CustomScaleLayer": parseCustomScale,
]

func checkChannelsLast(_ c: LayerConfig) throws {
    if c.has("data_format"), try c.string("data_format") != "channels_last" {
        throw c.fail("data_format '\(try c.string("data_format"))' is not supported (channels_last only)")
    }
}

func parsePadding(_ c: LayerConfig) throws -> Padding {
    let p = try c.string("padding", default: "valid").lowercased()
    guard let padding = Padding(rawValue: p) else { throw c.fail("padding '\(p)' is not supported") }
    return padding
}

func parseActivation(_ c: LayerConfig, key: String, _ ctx: ParseContext) throws -> ActivationSpec {
    let name = try c.string(key, default: "linear")
    guard let spec = ActivationSpec(kerasName: name, kerasMajor: ctx.kerasMajor) else {
        throw c.fail("activation '\(name)' is not supported")
    }
    return spec
}

/// An Activation layer with (log-)softmax is a softmax over the last axis.
func activationOp(_ spec: ActivationSpec) throws -> LayerOp {
    spec.kind.isElementwise ? .activation(spec) : .softmax(axis: -1, log: spec.kind == .logSoftmax)
}

func parseConv2D(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    try checkChannelsLast(c)
    try refuseKeras3Variants(c)
    return .conv2d(Conv2DSpec(
        filters: try c.size("filters"),
        kernel: try c.sizes("kernel_size", count: 2),
        strides: try c.sizes("strides", count: 2, default: [1, 1]),
        dilation: try c.sizes("dilation_rate", count: 2, default: [1, 1]),
        padding: try parsePadding(c),
        groups: try c.size("groups", default: 1),
        useBias: try c.bool("use_bias", default: true),
        activation: try parseActivation(c, key: "activation", ctx)))
}

func parseDepthwise(_ c: LayerConfig, _ ctx: ParseContext) throws -> DepthwiseSpec {
    try checkChannelsLast(c)
    // tf-keras writes groups: 1 for these (inherited from Conv); anything else is not Keras's.
    guard try c.int("groups", default: 1) == 1 else { throw c.fail("groups \(try c.int("groups")) is not supported") }
    return DepthwiseSpec(
        kernel: try c.sizes("kernel_size", count: 2),
        strides: try c.sizes("strides", count: 2, default: [1, 1]),
        dilation: try c.sizes("dilation_rate", count: 2, default: [1, 1]),
        padding: try parsePadding(c),
        depthMultiplier: try c.size("depth_multiplier", default: 1),
        useBias: try c.bool("use_bias", default: true),
        activation: try parseActivation(c, key: "activation", ctx))
}

func parseSeparable(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    var dw = try parseDepthwise(c, ctx)
    let useBias = dw.useBias
    let act = dw.activation
    dw.useBias = false
    dw.activation = .linear
    return .separableConv2d(SeparableSpec(depthwise: dw, filters: try c.size("filters"),
                                          useBias: useBias, activation: act))
}

func parseDense(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    try refuseKeras3Variants(c)
    return .dense(DenseSpec(units: try c.size("units"), useBias: try c.bool("use_bias", default: true),
                     activation: try parseActivation(c, key: "activation", ctx)))
}

func parseBatchNorm(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    // axis is an int (Keras 3), a one-element list (Keras 2); only the channel axis is supported.
    let axis = try c.int("axis", default: -1)
    if axis != -1 && axis < 1 { throw c.fail("axis \(axis) is not supported") }
    // Batch renormalization and ghost batches change the training statistics; off is Keras's default.
    if try c.bool("renorm", default: false) { throw c.fail("renorm (batch renormalization) is not supported") }
    _ = (c.has("renorm_clipping"), c.has("renorm_momentum"))
    // tf-keras's fused kernel (its default for 4-D inputs) feeds the moving variance the unbiased
    // batch variance; its unfused path and Keras 3 feed it the biased one.
    let fusedAllowed = try c.bool("fused", default: true)
    let fused = ctx.kerasMajor < 3 && fusedAllowed
    for key in ["virtual_batch_size", "adjustment"] where c.has(key) {
        throw c.fail("'\(key)' is not supported")
    }
    return .batchNorm(BatchNormSpec(epsilon: Float(try c.double("epsilon", default: 1e-3)),
                                    momentum: Float(try c.double("momentum", default: 0.99)),
                                    center: try c.bool("center", default: true),
                                    scale: try c.bool("scale", default: true), fused: fused))
}

func parseReLU(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    let maxValue = try c.optionalDouble("max_value")
    let slope = try c.double("negative_slope", default: 0)
    let threshold = try c.double("threshold", default: 0)
    return .activation(ActivationSpec(.relu, alpha: Float(slope), maxValue: maxValue.map(Float.init),
                                      threshold: Float(threshold)))
}

func parseLeakyReLU(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    // Keras 2 calls the slope `alpha`, Keras 3 `negative_slope`; both default to 0.3.
    let slope = c.has("negative_slope") ? try c.double("negative_slope") : try c.double("alpha", default: 0.3)
    return .activation(ActivationSpec(.leakyRelu, alpha: Float(slope)))
}

func parseDropout(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    let noise = c.has("noise_shape") ? try c.intList("noise_shape") : nil
    let seed = c.has("seed") ? try c.int("seed") : nil
    return .dropout(rate: Float(try c.double("rate", default: 0)), noiseShape: noise, seed: seed)
}

/// SpatialDropout drops whole feature maps: Keras's noise shape (batch, 1, 1, channels) for 2-D
/// (channels last), (batch, 1, channels) for 1-D; -1 follows the input.
func parseSpatialDropout(_ c: LayerConfig, _ ctx: ParseContext, noiseShape: [Int]) throws -> LayerOp {
    try checkChannelsLast(c)
    if c.has("noise_shape") { throw c.fail("'noise_shape' is not supported (spatial dropout fixes its own)") }
    let seed = c.has("seed") ? try c.int("seed") : nil
    return .dropout(rate: Float(try c.double("rate", default: 0)), noiseShape: noiseShape, seed: seed)
}

func parsePool(_ c: LayerConfig, _ kind: PoolKind) throws -> Pool2DSpec {
    try checkChannelsLast(c)
    let size = try c.sizes("pool_size", count: 2, default: [2, 2])
    return Pool2DSpec(kind: kind, poolSize: size, strides: try c.sizes("strides", count: 2, default: size),
                      padding: try parsePadding(c))
}

/// ZeroPadding2D / Cropping2D amounts: an int, [sym_h, sym_w], or [[top, bottom], [left, right]].
func pairs(_ c: LayerConfig, _ key: String) throws -> [Int] {
    try checkChannelsLast(c)
    guard c.has(key) else { throw c.fail("config has no '\(key)'") }
    let value = c.dict[key]!
    var amounts: [Int]?
    if let n = number(value).flatMap(integral) { amounts = Array(repeating: n, count: 4) }
    if let list = value as? [Any], list.count == 2 {
        if let a = number(list[0]).flatMap(integral), let b = number(list[1]).flatMap(integral) { amounts = [a, a, b, b] }
        if let a = list[0] as? [Any], let b = list[1] as? [Any], a.count == 2, b.count == 2 {
            let flat = (a + b).compactMap { number($0).flatMap(integral) }
            if flat.count == 4 { amounts = flat }
        }
    }
    guard let amounts else { throw c.fail("'\(key)' is not an int, a pair or a pair of pairs") }
    guard amounts.allSatisfy({ $0 >= 0 }) else { throw c.fail("'\(key)' is \(amounts), expected integers >= 0") }
    return amounts
}

func parseNormalization(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    if c.has("axis") {
        let axis = try c.intList("axis", allowScalar: true)
        if !(axis.isEmpty || axis == [-1] || axis.count == 1) {
            throw c.fail("axis \(axis) is not supported (the channel axis only)")
        }
    }
    let mean = c.has("mean") ? try c.doubles("mean").map(Float.init) : nil
    let variance = c.has("variance") ? try c.doubles("variance").map(Float.init) : nil
    return .normalization(mean: mean, variance: variance, invert: try c.bool("invert", default: false))
}

extension LayerConfig {
    /// Normalization's `axis` may be an int in Keras 3; intList handles lists only.
    func intList(_ key: String, allowScalar: Bool) throws -> [Int] {
        if has(key), let n = dict[key].flatMap(number) {
            guard let i = integral(n) else { throw fail("'\(key)' is not an integer") }
            return [i]
        }
        return try intList(key)
    }
}

func parseGlobalPool(_ c: LayerConfig, _ kind: PoolKind) throws -> LayerOp {
    try checkChannelsLast(c)
    return .globalPool(kind, keepDims: try c.bool("keepdims", default: false))
}

/// Noise layers (GaussianNoise, GaussianDropout, AlphaDropout) are the identity at inference. Their
/// training-time noise is not drawn here: `ConfigAudit.noiseKey` marks them so that training
/// through one is refused.
func parseNoise(_ c: LayerConfig, amount: String) throws -> LayerOp {
    _ = (c.has("seed"), c.has("noise_shape"))
    _ = try c.double(amount, default: 0)
    return .identity
}

/// Keras 3 layer variants this reader does not compute: quantized kernels and LoRA adapters.
func refuseKeras3Variants(_ c: LayerConfig) throws {
    if c.has("quantization_config") { throw c.fail("quantized layers are not supported") }
    if try c.int("lora_rank", default: 0) != 0 { throw c.fail("LoRA (lora_rank \(try c.int("lora_rank"))) is not supported") }
    _ = c.has("lora_alpha")
}

func parseLayerNorm(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    let axes = c.has("axis") ? try c.intList("axis", allowScalar: true) : [-1]
    guard !axes.isEmpty else { throw c.fail("axis [] normalizes over nothing") }
    let rms = try c.bool("rms_scaling", default: false)
    let spec = LayerNormSpec(axes: axes, epsilon: Float(try c.double("epsilon", default: 1e-3)),
                             center: try c.bool("center", default: true), scale: try c.bool("scale", default: true),
                             rmsScaling: rms)
    return .layerNorm(spec)
}

/// Resizing as both Kerases compute it on float images: tf.image.resize after an optional crop to
/// the aspect ratio. What this reader does not reproduce is refused by name.
func parseResizing(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    try checkChannelsLast(c)
    let interp = try c.string("interpolation", default: "bilinear")
    guard let kind = Interpolation(rawValue: interp) else {
        throw c.fail("interpolation '\(interp)' is not supported (nearest, bilinear, bicubic, area)")
    }
    if try c.bool("antialias", default: false) { throw c.fail("antialias is not supported") }
    if try c.bool("pad_to_aspect_ratio", default: false) { throw c.fail("pad_to_aspect_ratio is not supported") }
    // fill_mode / fill_value only colour the padding of pad_to_aspect_ratio, refused above.
    _ = (c.has("fill_mode"), c.has("fill_value"))
    return .resize(ResizeSpec(height: try c.size("height"), width: try c.size("width"), interpolation: kind,
                              cropToAspectRatio: try c.bool("crop_to_aspect_ratio", default: false)))
}

func parseCustomScale(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    .scaledAdd(scale: Float(try c.double("scale")))
}
