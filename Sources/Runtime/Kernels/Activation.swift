// Element-wise activations (Keras meanings; see Graph/Activation.swift for the formulas), as
// eight-lane functors so the conv/dense/depthwise epilogues apply them in registers.
//
// Dispatch: a kernel that wants an activation conforms a small job struct to
// `ActivationConsumer` and calls `withActivation(spec, job)`; the switch over the kind runs once
// per call and `job.run` is specialised per functor, so the inner loops carry no branch on the
// kind. Softmax is not element-wise: it is the separate `softmax` kernel.
import Graph

/// One element-wise activation over eight lanes.
protocol VectorActivation {
    func callAsFunction(_ x: Vec) -> Vec
    /// True for the identity, so a kernel can skip a pass.
    var isIdentity: Bool { get }
}
extension VectorActivation { var isIdentity: Bool { false } }

/// A computation parameterised by an activation functor (see `withActivation`).
protocol ActivationConsumer {
    func run<A: VectorActivation>(_ activation: A)
}

struct LinearActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x }
    var isIdentity: Bool { true }
}
/// Plain relu: max(x, 0).
struct ReluActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { vmax(x, 0) }
}
/// relu with max_value only (relu6): min(max(x, 0), maxValue).
struct ClippedReluActivation: VectorActivation {
    let maxValue: Float
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { vmin(vmax(x, 0), maxValue) }
}
/// Keras's general relu(x, negative_slope=alpha, max_value, threshold), as its backend computes it:
/// (x > threshold ? x : 0), clipped to [0, max_value] when given, minus alpha * max(threshold - x, 0).
struct GeneralReluActivation: VectorActivation {
    let alpha: Float, threshold: Float, maxValue: Float?
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        let t = Vec(repeating: threshold)
        var pos = x.replacing(with: 0, where: x .<= t)
        if let m = maxValue { pos = vmin(vmax(pos, 0), m) }
        return pos - alpha * vmax(t - x, 0)
    }
}
/// leaky_relu: x >= 0 ? x : alpha * x.
struct LeakyReluActivation: VectorActivation {
    let alpha: Float
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x.replacing(with: x * alpha, where: x .< 0) }
}
/// elu: x > 0 ? x : alpha * (e^x - 1).
struct EluActivation: VectorActivation {
    let alpha: Float
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        x.replacing(with: alpha * expm1(vmin(x, 0)), where: x .<= 0)
    }
}
/// selu: scale * elu(x, alpha) with Keras's fixed constants.
struct SeluActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        let alpha: Float = 1.673_263_242_354_377_2, scale: Float = 1.050_700_987_355_480_5
        let neg = alpha * expm1(vmin(x, 0))
        return scale * x.replacing(with: neg, where: x .<= 0)
    }
}
/// sigmoid: 1 / (1 + e^-x), e^-x from `expForLogistic`. e^-x is clamped at e^88.3, which still gives the right value
/// (or one within float's denormal range) in both tails.
struct SigmoidActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { 1 / (1 + expForLogistic(-x)) }
}
/// hard_sigmoid: clip(alpha * x + 0.5, 0, 1).
struct HardSigmoidActivation: VectorActivation {
    let alpha: Float
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { vmin(vmax(madd(x, alpha, 0.5), 0), 1) }
}
/// swish / silu: x * sigmoid(x).
/// x is first raised to -87 (NaN kept): `expForLogistic` clamps its argument, so below that
/// x / (1 + e^-x) would shrink too slowly (-1e30 gave -4e-9); swish(x) is then > -1.5e-36.
struct SwishActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        let lo = vmax(x, -87)
        return lo / (1 + expForLogistic(-lo))
    }
}
/// gelu (exact, Keras's default): x * Phi(x), Phi from erfc so the negative tail keeps its
/// relative accuracy: Phi(x) = 1 - erfc(x/sqrt2)/2 for x >= 0, erfc(-x/sqrt2)/2 for x < 0.
struct GeluActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        let half = 0.5 * erfcOfAbsOverSqrt2(x)
        return x * (1 - half).replacing(with: half, where: x .< 0)
    }
}
struct TanhActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { tanh(x) }
}
/// softplus: log(1 + e^x) = max(x, 0) + log1p(e^-|x|), which neither overflows nor cancels.
struct SoftplusActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        vmax(x, 0) + log1pNonNegative(expClamped(-vabs(x)))
    }
}
/// softsign: x / (1 + |x|).
struct SoftsignActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x / (1 + vabs(x)) }
}
/// exponential: e^x, with float overflow to +inf.
struct ExponentialActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { expFull(x) }
}

/// Runs `consumer` with the functor for `spec`. Softmax is not element-wise and traps here.
@inline(__always)
func withActivation<C: ActivationConsumer>(_ spec: ActivationSpec, _ consumer: C) {
    switch spec.kind {
    case .linear: consumer.run(LinearActivation())
    case .relu, .relu6:
        let maxValue = spec.kind == .relu6 ? (spec.maxValue ?? 6) : spec.maxValue
        if spec.alpha == 0 && spec.threshold == 0 {
            if let m = maxValue { consumer.run(ClippedReluActivation(maxValue: m)) }
            else { consumer.run(ReluActivation()) }
        } else if maxValue == nil && spec.threshold == 0 {
            consumer.run(LeakyReluActivation(alpha: spec.alpha))
        } else {
            consumer.run(GeneralReluActivation(alpha: spec.alpha, threshold: spec.threshold, maxValue: maxValue))
        }
    case .leakyRelu: consumer.run(LeakyReluActivation(alpha: spec.alpha))
    case .elu: consumer.run(EluActivation(alpha: spec.alpha))
    case .selu: consumer.run(SeluActivation())
    case .sigmoid: consumer.run(SigmoidActivation())
    case .hardSigmoid: consumer.run(HardSigmoidActivation(alpha: spec.alpha))
    case .swish: consumer.run(SwishActivation())
    case .gelu: consumer.run(GeluActivation())
    case .tanh: consumer.run(TanhActivation())
    case .softplus: consumer.run(SoftplusActivation())
    case .softsign: consumer.run(SoftsignActivation())
    case .exponential: consumer.run(ExponentialActivation())
    case .mish: consumer.run(MishActivation())
    case .hardSilu: consumer.run(HardSiluActivation())
    case .sqrt: consumer.run(SqrtActivation())
    case .rsqrt: consumer.run(RsqrtActivation())
    case .square: consumer.run(SquareActivation())
    case .log: consumer.run(LogActivation())
    case .softmax, .logSoftmax: preconditionFailure("softmax is not element-wise: use the softmax kernel")
    }
}

/// Applies `functor` to `count` floats at `x` in place (tail lanes through a padded vector).
@inline(__always)
func mapInPlace<A: VectorActivation>(_ functor: A, _ x: UnsafeMutablePointer<Float>, _ count: Int) {
    map(functor, from: x, to: x, count)
}

/// dst[i] = functor(src[i]) over `count` floats; dst may be src.
func map<A: VectorActivation>(_ functor: A, from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>,
                              _ count: Int) {
    var i = 0
    while i + 8 <= count {
        store(functor(load(src + i)), dst + i)
        i += 8
    }
    if i < count {
        storePartial(functor(loadPartial(src + i, count - i)), dst + i, count - i)
    }
}

private struct MapJob: ActivationConsumer {
    let src: UnsafePointer<Float>, dst: UnsafeMutablePointer<Float>, count: Int
    func run<A: VectorActivation>(_ activation: A) {
        if activation.isIdentity {
            if src != UnsafePointer(dst) { dst.update(from: src, count: count) }
            return
        }
        parallelFor(count, minChunk: 1 << 15) { _, r in
            map(activation, from: src + r.lowerBound, to: dst + r.lowerBound, r.count)
        }
    }
}

/// y = act(y) over `count` floats in place. All kinds but softmax (use `softmax`).
public func applyActivation(_ spec: ActivationSpec, _ x: UnsafeMutablePointer<Float>, count: Int) {
    withActivation(spec, MapJob(src: x, dst: x, count: count))
}

/// dst = act(src) over `count` floats in one pass (dst may be src). All kinds but softmax.
public func applyActivation(_ spec: ActivationSpec, from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>,
                            count: Int) {
    withActivation(spec, MapJob(src: src, dst: dst, count: count))
}
