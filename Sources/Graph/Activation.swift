/// Element-wise activations as Keras names them (`activation` field of a layer config, or an
/// `Activation` layer). Softmax is not element-wise; it is a separate kind.
public enum ActivationKind: String, Sendable, CaseIterable {
    case linear, relu, relu6, elu, selu, sigmoid, hardSigmoid, swish, gelu, tanh, softplus
    case softsign, exponential, leakyRelu, softmax

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
        case "softmax": self = .softmax
        default: return nil
        }
    }

    /// True when the activation maps each element independently.
    public var isElementwise: Bool { self != .softmax }
}
