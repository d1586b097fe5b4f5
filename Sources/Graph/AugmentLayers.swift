import Foundation

// Keras's augmentation layers (RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
// RandomContrast, RandomBrightness, RandomCrop): their configs as tf-keras 2.x
// (tf_keras/src/layers/preprocessing/image_preprocessing.py) and Keras 3
// (keras/src/layers/preprocessing/image_preprocessing/*.py) read them. Both are the identity at
// inference (RandomCrop aside) and draw a random transformation per image in training.

/// How a geometric augmentation fills output pixels whose source lies outside the image: the modes
/// of TensorFlow's ImageProjectiveTransformV3, which both Kerases call. Not ImageDataGenerator's
/// scipy modes of the same names (`FillMode`): TensorFlow maps the sample point into the image and
/// then reads each bilinear tap, a tap outside the image reading `fill_value`.
public enum TransformFill: String, Sendable, CaseIterable {
    case reflect, wrap, constant, nearest
}

/// A uniform draw's bounds, as the layer computes them from its config.
public struct DrawRange: Equatable, Sendable {
    public var lower: Double
    public var upper: Double
    public init(_ lower: Double, _ upper: Double) { (self.lower, self.upper) = (lower, upper) }
    public var isFixed: Bool { lower == upper }
}

/// One augmentation layer, with its ranges already in the form its Keras draws from.
public struct AugmentSpec: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// Each enabled flip with probability 1/2. `oneDraw`: Keras 3 flips both axes on one draw
        /// (horizontal_and_vertical flips both or neither); tf-keras draws each axis on its own.
        case flip(horizontal: Bool, vertical: Bool, oneDraw: Bool)
        /// Angle in turns (tf-keras: radians = turns * 2 pi; Keras 3: degrees = turns * 360).
        case rotation(DrawRange)
        /// Zoom = 1 + draw (above 1: zoomed out); width nil: the height's zoom.
        case zoom(height: DrawRange, width: DrawRange?)
        /// Shift as a fraction of the height / width.
        case translation(height: DrawRange, width: DrawRange)
        /// Contrast factor drawn in `factor`, output clipped to `clip`. `perBatch`: tf-keras draws
        /// one factor per call (tf.image.random_contrast), Keras 3 one per image.
        case contrast(factor: DrawRange, clip: DrawRange, perBatch: Bool)
        /// delta = draw * (high - low) of `valueRange` added, output clipped to `valueRange`.
        case brightness(factor: DrawRange, valueRange: DrawRange)
        /// A crop to (height, width) at one random place per call. At inference tf-keras resizes to
        /// (height, width) after a crop to the aspect ratio and Keras 3 passes the images through.
        case crop(height: Int, width: Int, kerasMajor: Int)
    }
    public var kind: Kind
    public var fill: TransformFill = .reflect
    public var fillValue: Float = 0
    /// nearest or bilinear.
    public var interpolation: Interpolation = .bilinear
    /// Which Keras's formulas (rotation matrix, ranges) this layer follows.
    public var kerasMajor: Int

    public init(kind: Kind, kerasMajor: Int) { (self.kind, self.kerasMajor) = (kind, kerasMajor) }

    /// Whether it moves pixels (a projective transform), rather than adjusting values or cropping.
    public var isGeometric: Bool {
        switch kind {
        case .rotation, .zoom, .translation: return true
        default: return false
        }
    }
}

/// A factor as the layer reads it: a number f is [-|f|, |f|] (tf-keras: [-f, f], refused when
/// f < 0), a pair is [lower, upper] (Keras 3 sorts it; tf-keras refuses upper < lower).
func drawRange(_ c: LayerConfig, _ key: String, _ ctx: ParseContext, limit: ClosedRange<Double>? = nil) throws -> DrawRange {
    let values = try c.doubles(key)
    var r: DrawRange
    switch values.count {
    case 1:
        if ctx.kerasMajor < 3 && values[0] < 0 { throw c.fail("'\(key)' \(values[0]) is negative") }
        r = DrawRange(-abs(values[0]), abs(values[0]))
    case 2:
        if ctx.kerasMajor < 3 && values[1] < values[0] { throw c.fail("'\(key)' \(values) has its upper bound below its lower") }
        r = DrawRange(min(values[0], values[1]), max(values[0], values[1]))
    default:
        throw c.fail("'\(key)' \(values) is not a number or a pair")
    }
    if let limit, !(limit.contains(r.lower) && limit.contains(r.upper)) {
        throw c.fail("'\(key)' \(values) is outside [\(limit.lowerBound), \(limit.upperBound)]")
    }
    return r
}

/// fill_mode, fill_value and interpolation of the geometric layers.
func parseTransformOptions(_ c: LayerConfig, _ spec: inout AugmentSpec) throws {
    let fill = try c.string("fill_mode", default: "reflect")
    guard let mode = TransformFill(rawValue: fill) else {
        throw c.fail("fill_mode '\(fill)' is not supported (reflect, wrap, constant, nearest)")
    }
    let interp = try c.string("interpolation", default: "bilinear")
    guard let kind = Interpolation(rawValue: interp), kind.isLinear else {
        throw c.fail("interpolation '\(interp)' is not supported (nearest, bilinear)")
    }
    spec.fill = mode
    spec.interpolation = kind
    spec.fillValue = Float(try c.double("fill_value", default: 0))
}

/// The keys every augmentation layer may carry that change nothing here: its own seed (this
/// trainer draws from the run's seed), tf-keras's choice of random generator, and Keras 3's
/// bounding-box format (images only pass through a model).
func readSeedKeys(_ c: LayerConfig) throws {
    try checkChannelsLast(c)
    for key in ["seed", "rng_type", "bounding_box_format"] { _ = c.has(key) }
}

func parseRandomFlip(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    try readSeedKeys(c)
    let mode = try c.string("mode", default: "horizontal_and_vertical")
    let (h, v): (Bool, Bool)
    switch mode {
    case "horizontal": (h, v) = (true, false)
    case "vertical": (h, v) = (false, true)
    case "horizontal_and_vertical": (h, v) = (true, true)
    default: throw c.fail("mode '\(mode)' is not horizontal, vertical or horizontal_and_vertical")
    }
    return .augment(AugmentSpec(kind: .flip(horizontal: h, vertical: v, oneDraw: ctx.kerasMajor >= 3), kerasMajor: ctx.kerasMajor))
}

func parseRandomRotation(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    try readSeedKeys(c)
    var spec = AugmentSpec(kind: .rotation(try drawRange(c, "factor", ctx, limit: ctx.kerasMajor >= 3 ? -1...1 : nil)),
                           kerasMajor: ctx.kerasMajor)
    try parseTransformOptions(c, &spec)
    return .augment(spec)
}

func parseRandomZoom(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    try readSeedKeys(c)
    let height = try drawRange(c, "height_factor", ctx, limit: -1...1)
    // tf-keras bounds only the width's lower end.
    let width = c.has("width_factor") ? try drawRange(c, "width_factor", ctx, limit: ctx.kerasMajor >= 3 ? -1...1 : nil) : nil
    // A zoom of 1 + (-1) = 0 maps the whole output onto one point (Keras 3 refuses it; tf-keras
    // only refuses below -1).
    if height.lower <= -1 || (width?.lower ?? 0) <= -1 { throw c.fail("a zoom factor of -1 leaves no image") }
    var spec = AugmentSpec(kind: .zoom(height: height, width: width), kerasMajor: ctx.kerasMajor)
    try parseTransformOptions(c, &spec)
    return .augment(spec)
}

func parseRandomTranslation(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    try readSeedKeys(c)
    var spec = AugmentSpec(kind: .translation(height: try drawRange(c, "height_factor", ctx, limit: -1...1),
                                              width: try drawRange(c, "width_factor", ctx, limit: -1...1)),
                           kerasMajor: ctx.kerasMajor)
    try parseTransformOptions(c, &spec)
    return .augment(spec)
}

/// The factor is drawn in [1 - lower, 1 + upper]. tf-keras reads a number f as lower = upper = f
/// and clips to [0, 255]; Keras 3 reads f as (0, f) (its factor bounds are [0, 1]) and clips to
/// `value_range`.
func parseRandomContrast(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    try readSeedKeys(c)
    let values = try c.doubles("factor")
    guard values.count == 1 || values.count == 2 else { throw c.fail("'factor' \(values) is not a number or a pair") }
    var lower: Double, upper: Double
    if ctx.kerasMajor < 3 {
        (lower, upper) = (values[0], values.last!)
        guard lower >= 0, upper >= 0, lower <= 1 else { throw c.fail("'factor' \(values) is outside [0, 1]") }
    } else {
        (lower, upper) = values.count == 1 ? (max(-abs(values[0]), 0), abs(values[0]))
                                            : (min(values[0], values[1]), max(values[0], values[1]))
    }
    let clip: DrawRange
    if ctx.kerasMajor < 3 {
        clip = DrawRange(0, 255)
    } else {
        let range = c.has("value_range") ? try c.doubles("value_range") : [0, 255]
        guard range.count == 2 else { throw c.fail("'value_range' \(range) is not a pair") }
        clip = DrawRange(range[0], range[1])
    }
    return .augment(AugmentSpec(kind: .contrast(factor: DrawRange(1 - lower, 1 + upper), clip: clip, perBatch: ctx.kerasMajor < 3),
                                kerasMajor: ctx.kerasMajor))
}

func parseRandomBrightness(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    try readSeedKeys(c)
    let factor = try drawRange(c, "factor", ctx, limit: -1...1)
    let range = c.has("value_range") ? try c.doubles("value_range") : [0, 255]
    guard range.count == 2 else { throw c.fail("'value_range' \(range) is not a pair") }
    return .augment(AugmentSpec(kind: .brightness(factor: factor, valueRange: DrawRange(range.min()!, range.max()!)),
                                kerasMajor: ctx.kerasMajor))
}

func parseRandomCrop(_ c: LayerConfig, _ ctx: ParseContext) throws -> LayerOp {
    try readSeedKeys(c)
    return .augment(AugmentSpec(kind: .crop(height: try c.size("height"), width: try c.size("width"), kerasMajor: ctx.kerasMajor),
                                kerasMajor: ctx.kerasMajor))
}
