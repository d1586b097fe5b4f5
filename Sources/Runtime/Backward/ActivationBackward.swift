// Element-wise activation backward: dInput = dOutput * f'(x), f as the forward
// (Kernels/Activation.swift, formulas in Graph/Activation.swift), over flat float buffers.
// Softmax is not element-wise: see SoftmaxBackward.swift.
//
// Derivatives are eight-lane functors, dispatched once per call like the forward's
// (`withActivationDerivative`), so the conv/BN epilogue backward can evaluate f'(z) in registers.
// At kinks (relu at 0, relu6 at 6, hard_sigmoid's corners...) the value is one of the one-sided
// derivatives, chosen as TensorFlow's gradients choose it where that is simple: relu'(0) = 0,
// leaky_relu'(0) = alpha, relu6 passes the gradient on the open interval (0, 6).
//
// Some derivatives are cheaper from the output y (sigmoid: y(1 - y), tanh: 1 - y²): the tape can
// then keep y only and run the activation in place. `activationDerivativeFromOutputIsAvailable`
// says which.
import Graph

/// The derivative f'(x) of one element-wise activation over eight lanes.
protocol VectorActivationDerivative {
    func callAsFunction(_ x: Vec) -> Vec
    /// True when f' is 1 everywhere (linear), so a kernel can skip the multiply.
    var isOne: Bool { get }
}
extension VectorActivationDerivative { var isOne: Bool { false } }

/// A computation parameterised by an activation's derivative (see `withActivationDerivative`).
protocol ActivationDerivativeConsumer {
    func run<D: VectorActivationDerivative>(_ derivative: D)
}

@inline(__always) private func select(_ c: SIMDMask<SIMD8<Int32>>, _ a: Vec, _ b: Vec) -> Vec { b.replacing(with: a, where: c) }
@inline(__always) private func sigmoid(_ x: Vec) -> Vec { 1 / (1 + expClamped(-x)) }

struct OneDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { Vec(repeating: 1) }
    var isOne: Bool { true }
}
/// relu: 1 for x > 0, else 0; with `maxValue` (relu6) 1 only on the open interval (0, max).
struct ReluDerivative: VectorActivationDerivative {
    let maxValue: Float?
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        var on = x .> 0
        if let m = maxValue { on = on .& (x .< m) }
        return Vec(repeating: 0).replacing(with: 1, where: on)
    }
}
/// Keras's general relu: (x > threshold ? x : 0), clipped to [0, max] when given, minus
/// alpha * max(threshold - x, 0). The first part passes where x > threshold (and 0 < x < max when
/// clipped); the second contributes alpha where x < threshold.
struct GeneralReluDerivative: VectorActivationDerivative {
    let alpha: Float, threshold: Float, maxValue: Float?
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        var on = x .> threshold
        if let m = maxValue { on = on .& (x .> 0) .& (x .< m) }
        let pos = Vec(repeating: 0).replacing(with: 1, where: on)
        return pos + Vec(repeating: 0).replacing(with: alpha, where: x .< threshold)
    }
}
/// leaky_relu: 1 for x > 0, alpha otherwise (TensorFlow's LeakyReluGrad).
struct LeakyReluDerivative: VectorActivationDerivative {
    let alpha: Float
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { Vec(repeating: alpha).replacing(with: 1, where: x .> 0) }
}
/// elu: 1 for x > 0, alpha * e^x otherwise.
struct EluDerivative: VectorActivationDerivative {
    let alpha: Float
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        select(x .> 0, Vec(repeating: 1), alpha * expClamped(vmin(x, 0)))
    }
}
struct SeluDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        let alpha: Float = 1.673_263_242_354_377_2, scale: Float = 1.050_700_987_355_480_5
        return select(x .> 0, Vec(repeating: scale), (scale * alpha) * expClamped(vmin(x, 0)))
    }
}
/// sigmoid: s (1 - s).
struct SigmoidDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { let s = sigmoid(x); return s * (1 - s) }
}
/// hard_sigmoid: alpha inside the linear part 0 < alpha x + 0.5 < 1, else 0.
struct HardSigmoidDerivative: VectorActivationDerivative {
    let alpha: Float
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        let z = madd(x, alpha, 0.5)
        return Vec(repeating: 0).replacing(with: alpha, where: (z .> 0) .& (z .< 1))
    }
}
/// swish: d/dx x s(x) = s (1 + x (1 - s)).
struct SwishDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { let s = sigmoid(x); return s * madd(x, 1 - s, 1) }
}
/// gelu (exact): Phi(x) + x phi(x), phi(x) = e^{-x²/2} / sqrt(2 pi). In the negative tail the
/// two terms have opposite signs but x phi dominates (Phi ~ phi / |x|), so nothing cancels badly.
struct GeluDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        let half = 0.5 * erfcOfAbsOverSqrt2(x)
        let phiUpper = (1 - half).replacing(with: half, where: x .< 0)   // Phi(x)
        let density = 0.398_942_280_401_432_7 * expClamped(-0.5 * x * x)
        return madd(x, density, phiUpper)
    }
}
/// tanh: 1 - tanh².
struct TanhDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { let t = tanh(x); return 1 - t * t }
}
/// softplus: sigmoid(x).
struct SoftplusDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { sigmoid(x) }
}
/// softsign: 1 / (1 + |x|)².
struct SoftsignDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { let d = 1 + vabs(x); return 1 / (d * d) }
}
/// exponential: e^x (overflowing to +inf as the forward does).
struct ExponentialDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { expFull(x) }
}
/// mish: t + x (1 - t²) sigmoid(x), t = tanh(softplus(x)).
struct MishDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        let t = tanh(SoftplusActivation()(x))
        return madd(x * (1 - t * t), sigmoid(x), t)
    }
}
/// hard_silu: x relu6(x + 3) / 6 -> 0 below -3, 1 above 3, (2x + 3) / 6 between.
struct HardSiluDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        let mid = madd(x, 1.0 / 3.0, 0.5)
        return mid.replacing(with: 0, where: x .<= -3).replacing(with: 1, where: x .>= 3)
    }
}
/// sqrt: 1 / (2 sqrt x) (+inf at 0, as TensorFlow's SqrtGrad).
struct SqrtDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { 0.5 / x.squareRoot() }
}
/// rsqrt: -x^(-3/2) / 2 = -r³ / 2 with r = 1 / sqrt x.
struct RsqrtDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { let r = 1 / x.squareRoot(); return -0.5 * r * r * r }
}
struct SquareDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x + x }
}
/// log: 1 / x.
struct LogDerivative: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { 1 / x }
}

/// Runs `consumer` with the derivative functor for `spec` (as a function of the input x).
/// Softmax is not element-wise and traps here.
@inline(__always)
func withActivationDerivative<C: ActivationDerivativeConsumer>(_ spec: ActivationSpec, _ consumer: C) {
    switch spec.kind {
    case .linear: consumer.run(OneDerivative())
    case .relu, .relu6:
        let maxValue = spec.kind == .relu6 ? (spec.maxValue ?? 6) : spec.maxValue
        if spec.alpha == 0 && spec.threshold == 0 {
            consumer.run(ReluDerivative(maxValue: maxValue))
        } else if maxValue == nil && spec.threshold == 0 {
            consumer.run(LeakyReluDerivative(alpha: spec.alpha))
        } else {
            consumer.run(GeneralReluDerivative(alpha: spec.alpha, threshold: spec.threshold, maxValue: maxValue))
        }
    case .leakyRelu: consumer.run(LeakyReluDerivative(alpha: spec.alpha))
    case .elu: consumer.run(EluDerivative(alpha: spec.alpha))
    case .selu: consumer.run(SeluDerivative())
    case .sigmoid: consumer.run(SigmoidDerivative())
    case .hardSigmoid: consumer.run(HardSigmoidDerivative(alpha: spec.alpha))
    case .swish: consumer.run(SwishDerivative())
    case .gelu: consumer.run(GeluDerivative())
    case .tanh: consumer.run(TanhDerivative())
    case .softplus: consumer.run(SoftplusDerivative())
    case .softsign: consumer.run(SoftsignDerivative())
    case .exponential: consumer.run(ExponentialDerivative())
    case .mish: consumer.run(MishDerivative())
    case .hardSilu: consumer.run(HardSiluDerivative())
    case .sqrt: consumer.run(SqrtDerivative())
    case .rsqrt: consumer.run(RsqrtDerivative())
    case .square: consumer.run(SquareDerivative())
    case .log: consumer.run(LogDerivative())
    case .softmax, .logSoftmax: preconditionFailure("softmax is not element-wise: use softmaxBackward")
    }
}

private struct BackwardJob: ActivationDerivativeConsumer {
    let x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>
    let count: Int, accumulate: Bool
    func run<D: VectorActivationDerivative>(_ d: D) {
        parallelFor(count, minChunk: 1 << 15) { _, r in
            var i = r.lowerBound
            while i + 8 <= r.upperBound {
                put(load(dy + i) * d(load(x + i)), dx + i, accumulate: accumulate)
                i += 8
            }
            if i < r.upperBound {
                let n = r.upperBound - i
                putPartial(loadPartial(dy + i, n) * d(loadPartial(x + i, n)), dx + i, n, accumulate: accumulate)
            }
        }
    }
}

/// dInput = dOutput * f'(input) over `count` floats, from the forward's input x. Overwrites
/// dInput or adds into it (`accumulate`); dInput may be dOutput itself. All kinds but softmax.
public func activationBackward(_ spec: ActivationSpec, input x: UnsafePointer<Float>,
                               dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
                               count: Int, accumulate: Bool) {
    withActivationDerivative(spec, BackwardJob(x: x, dy: dOutput, dx: dInput, count: count, accumulate: accumulate))
}

// MARK: derivatives from the output

/// y > 0 ? 1 : (y + c): elu (c = alpha) and, scaled, selu.
private struct FromOutputElu: VectorActivationDerivative {
    let scale: Float, c: Float
    @inline(__always) func callAsFunction(_ y: Vec) -> Vec { select(y .> 0, Vec(repeating: scale), y + c) }
}
private struct FromOutputSigmoid: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ y: Vec) -> Vec { y * (1 - y) }
}
private struct FromOutputTanh: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ y: Vec) -> Vec { 1 - y * y }
}
private struct FromOutputExponential: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ y: Vec) -> Vec { y }
}
private struct FromOutputSoftsign: VectorActivationDerivative {
    @inline(__always) func callAsFunction(_ y: Vec) -> Vec { let d = 1 - vabs(y); return d * d }
}
/// Where y lies strictly inside (lo, hi): slope there, else `outside`.
private struct FromOutputBand: VectorActivationDerivative {
    let lo: Float, hi: Float, slope: Float, outside: Float
    @inline(__always) func callAsFunction(_ y: Vec) -> Vec {
        Vec(repeating: outside).replacing(with: slope, where: (y .> lo) .& (y .< hi))
    }
}

/// True when `activationBackward(_:output:...)` can differentiate `spec` from its output alone:
/// linear, relu/relu6 without slope or threshold, leaky relu and elu with alpha > 0, selu,
/// sigmoid, hard_sigmoid, tanh, softsign, exponential.
public func activationDerivativeFromOutputIsAvailable(_ spec: ActivationSpec) -> Bool {
    switch spec.kind {
    case .linear, .selu, .sigmoid, .tanh, .softsign, .exponential, .hardSigmoid: return true
    case .relu, .relu6: return spec.alpha == 0 && spec.threshold == 0
    case .leakyRelu, .elu: return spec.alpha > 0
    default: return false
    }
}

/// dInput = dOutput * f'(x) computed from the forward's output y = f(x) (so the tape need not keep
/// x; see `activationDerivativeFromOutputIsAvailable`). Same conventions as the input form.
public func activationBackward(_ spec: ActivationSpec, output y: UnsafePointer<Float>,
                               dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
                               count: Int, accumulate: Bool) {
    precondition(activationDerivativeFromOutputIsAvailable(spec), "\(spec.kind) needs the input to differentiate")
    let job = BackwardJob(x: y, dy: dOutput, dx: dInput, count: count, accumulate: accumulate)
    switch spec.kind {
    case .linear: job.run(OneDerivative())
    case .relu, .relu6:
        let maxValue = spec.kind == .relu6 ? (spec.maxValue ?? 6) : spec.maxValue
        job.run(FromOutputBand(lo: 0, hi: maxValue ?? .infinity, slope: 1, outside: 0))
    case .leakyRelu: job.run(FromOutputBand(lo: 0, hi: .infinity, slope: 1, outside: spec.alpha))
    case .elu: job.run(FromOutputElu(scale: 1, c: spec.alpha))
    case .selu:
        let alpha: Float = 1.673_263_242_354_377_2, scale: Float = 1.050_700_987_355_480_5
        job.run(FromOutputElu(scale: scale, c: scale * alpha))
    case .sigmoid: job.run(FromOutputSigmoid())
    case .hardSigmoid: job.run(FromOutputBand(lo: 0, hi: 1, slope: spec.alpha, outside: 0))
    case .tanh: job.run(FromOutputTanh())
    case .softsign: job.run(FromOutputSoftsign())
    case .exponential: job.run(FromOutputExponential())
    default: preconditionFailure("unreachable")
    }
}
