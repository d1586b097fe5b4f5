// Activations Keras added later than the core set (see Graph/Activation.swift for formulas).

/// mish: x * tanh(softplus(x)).
struct MishActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x * tanh(SoftplusActivation()(x)) }
}

/// hard_silu (Keras 3): x * clip(x / 6 + 0.5, 0, 1).
struct HardSiluActivation: VectorActivation {
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x * vmin(vmax(madd(x, 1.0 / 6.0, 0.5), 0), 1) }
}
