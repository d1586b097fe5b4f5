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
