/// Element-wise activations as Keras names them (`activation` field of a layer config, or an
/// `Activation` layer). Softmax is not element-wise; it is a separate kind.
public enum ActivationKind: String, Sendable, CaseIterable {
    case linear, relu, relu6, elu, selu, sigmoid, hardSigmoid, swish, gelu, tanh, softplus
    case softsign, exponential, leakyRelu, mish, hardSilu, softmax, logSoftmax
    /// Element-wise math that models record as operation layers (tf.math.sqrt, keras.ops.log...),
    /// not Keras activation names: TensorFlow's meanings (sqrt and log of a negative are NaN,
    /// log(0) = -inf, rsqrt(0) = +inf).
    case sqrt, rsqrt, square, log

    /// Parses the string Keras writes. Keras 3 writes `silu` for swish; Keras 2 `swish`.
    /// `gelu` is Keras's default (exact, erf-based) form.
    public init?(kerasName: String) {
        switch kerasName {
        case "linear", "None": self = .linear
        case "relu": self = .relu
        case "relu6": self = .relu6
        case "elu": self = .elu
        case "selu": self = .selu
        case "sigmoid": self = .sigmoid
        case "hard_sigmoid": self = .hardSigmoid
        case "swish", "silu": self = .swish
        case "gelu": self = .gelu
        case "tanh": self = .tanh
        case "softplus": self = .softplus
        case "softsign": self = .softsign
        case "exponential": self = .exponential
        case "leaky_relu": self = .leakyRelu
        case "mish": self = .mish
        case "hard_silu", "hard_swish": self = .hardSilu
        case "softmax": self = .softmax
        case "log_softmax": self = .logSoftmax
        default: return nil
        }
    }

    /// True when the activation maps each element independently.
    public var isElementwise: Bool { self != .softmax && self != .logSoftmax }
}

/// An activation with its parameters, as a kernel's epilogue applies it.
/// - relu: `max(x, threshold)`-style ReLU layer semantics: x >= threshold ? x : negativeSlope * (x - threshold),
///   clipped at `maxValue` when given (relu6 is relu with maxValue 6).
/// - leakyRelu: x >= 0 ? x : alpha * x.  elu: x > 0 ? x : alpha * (exp(x) - 1).
/// - hardSigmoid: clip(alpha * x + 0.5, 0, 1); alpha is 0.2 in Keras 2 and 1/6 in Keras 3.
/// - hardSilu: x * clip(x / 6 + 0.5, 0, 1) (Keras 3).  mish: x * tanh(softplus(x)).
/// - sqrt, rsqrt (1 / sqrt x), square (x²), log (natural).
public struct ActivationSpec: Equatable, Sendable {
    public var kind: ActivationKind
    public var alpha: Float
    public var maxValue: Float?
    public var threshold: Float

    public init(_ kind: ActivationKind, alpha: Float = 0, maxValue: Float? = nil, threshold: Float = 0) {
        self.kind = kind
        self.alpha = alpha
        self.maxValue = maxValue
        self.threshold = threshold
    }

    public static let linear = ActivationSpec(.linear)
    public static let relu = ActivationSpec(.relu)
    public static let relu6 = ActivationSpec(.relu, maxValue: 6)
    public static let sigmoid = ActivationSpec(.sigmoid)
    public static let swish = ActivationSpec(.swish)

    /// The spec for an activation string of a layer config. `kerasMajor` picks between the
    /// Keras 2 and Keras 3 meanings where they differ (hard_sigmoid, leaky_relu's default slope).
    public init?(kerasName: String, kerasMajor: Int) {
        guard let kind = ActivationKind(kerasName: kerasName) else { return nil }
        switch kind {
        case .relu6: self.init(.relu, maxValue: 6)
        case .hardSigmoid: self.init(.hardSigmoid, alpha: kerasMajor >= 3 ? 1.0 / 6.0 : 0.2)
        case .elu: self.init(.elu, alpha: 1)
        case .leakyRelu: self.init(.leakyRelu, alpha: 0.2)
        default: self.init(kind)
        }
    }

    public var isIdentity: Bool { kind == .linear }
}
