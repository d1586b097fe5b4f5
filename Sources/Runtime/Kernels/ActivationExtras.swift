// Activations Keras added later than the core set (see Graph/Activation.swift for formulas).

/// mish: x * tanh(softplus(x)).
struct MishActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x * tanh(SoftplusActivation()(x)) }
}

/// hard_silu (Keras 3): x * relu6(x + 3) / 6, in Keras's order of operations: near x = -3 the
/// form x / 6 + 0.5 would cancel and lose relative accuracy.
struct HardSiluActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x * vmin(vmax(x + 3, 0), 6) / 6 }
}

/// sqrt: NaN below 0 (the hardware square root, as TensorFlow's).
struct SqrtActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x.squareRoot() }
}
/// rsqrt: 1 / sqrt(x); +inf at 0, NaN below.
struct RsqrtActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { 1 / x.squareRoot() }
}
struct SquareActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x * x }
}
/// log over the whole float range: `logPositive` takes normal positive numbers, so denormals
/// are scaled by 2^23 first (and 23 ln 2 taken off); 0 gives -inf, +inf itself, negatives and
/// NaN give NaN.
struct LogActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec {
        let denormal = (x .> 0) .& (x .< Float.leastNormalMagnitude)
        let scaled = x.replacing(with: x * 8_388_608, where: denormal)
        let y = logPositive(scaled).replacing(with: logPositive(scaled) - 15.942_385_152_878_742, where: denormal)
        return y.replacing(with: -.infinity, where: x .== 0).replacing(with: .infinity, where: x .== .infinity)
            .replacing(with: .nan, where: .!(x .>= 0))
    }
}
