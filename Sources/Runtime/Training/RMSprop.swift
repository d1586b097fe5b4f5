// RMSprop as tf-keras 2.21 computes it (tf_keras/src/optimizers/rmsprop.py, `update_step`,
// dense branch, lines 186-197), float32:
//
//     velocity = rho * velocity + (1 - rho) * g*g
//     avg      = rho * avg + (1 - rho) * g                       (centered)
//     denom    = velocity + (epsilon - avg*avg)                  (centered; see below)
//              = velocity + epsilon                              (otherwise)
//     incr     = lr * g * rsqrt(denom)       tf-keras
//              = (lr * g) / sqrt(denom)      Keras 3 (keras/src/optimizers/rmsprop.py 144-146)
//     mom      = momentum * mom + incr;  x -= mom                (momentum > 0)
//     x       -= incr                                            (otherwise)
//
// The source says `velocity - square(avg) + epsilon`; model.fit runs the update in tf.function
// and Grappler's arithmetic optimiser re-associates it to `velocity + (epsilon - square(avg))`
// (measured: fixtures/make_training_math_fixtures.py, both Keras versions). We match the graph.
// TensorFlow's small-tensor rsqrt is 1 / sqrt(x) in float32 (two roundings); large tensors take
// a vectorised approximation within 2 ulp that cannot be reproduced across CPUs.
import Foundation

public final class RMSprop: Optimizer, @unchecked Sendable {
    public let rho: Double
    public let momentum: Double
    public let epsilon: Double
    public let centered: Bool

    /// Keras's defaults: `RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-07,
    /// centered=False)`.
    public init(learningRate: LearningRate = .constant(0.001), rho: Double = 0.9, momentum: Double = 0,
                epsilon: Double = 1e-7, centered: Bool = false, weightDecay: Double? = nil,
                weightDecayExcludes: [String] = [], clipping: GradientClipping = .none,
                flavor: KerasFlavor = .tfKeras2) {
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered
        super.init(kind: "rmsprop", learningRate: learningRate, clipping: clipping, weightDecay: weightDecay,
                   weightDecayExcludes: weightDecayExcludes, flavor: flavor)
    }

    override var slotNames: [String] {
        ["velocity"] + (momentum > 0 ? ["momentum"] : []) + (centered ? ["average_gradient"] : [])
    }

    override func update(_ parameters: [ParameterBuffer], learningRate: Float, clip: ClipMode) {
        // Slots in `slotNames` order: velocity, [momentum], [average_gradient].
        let velocity = slot(0)
        let kernel = RMSpropKernel<FlagOff, FlagOff, FlagOff>(
            velocity: velocity,
            momentumSlot: momentum > 0 ? slot(1) : velocity,
            average: centered ? slot(momentum > 0 ? 2 : 1) : velocity,
            lr: learningRate, rho: Float(rho), oneMinusRho: Float(1 - rho), momentum: Float(momentum),
            epsilon: Float(epsilon))
        // One specialisation per feature combination, so the element loop has no branches.
        func go<C: KernelFlag, M: KernelFlag, D: KernelFlag>(_: C.Type, _: M.Type, _: D.Type) {
            run(parameters, learningRate: learningRate, clip: clip, kernel.retyped(C.self, M.self, D.self))
        }
        func withDivide<C: KernelFlag, M: KernelFlag>(_ c: C.Type, _ m: M.Type) {
            flavor == .keras3 ? go(c, m, FlagOn.self) : go(c, m, FlagOff.self)
        }
        func withMomentum<C: KernelFlag>(_ c: C.Type) {
            momentum > 0 ? withDivide(c, FlagOn.self) : withDivide(c, FlagOff.self)
        }
        centered ? withMomentum(FlagOn.self) : withMomentum(FlagOff.self)
    }
}

/// Compile-time switches for kernel specialisation.
protocol KernelFlag { static var on: Bool { get } }
enum FlagOn: KernelFlag { static var on: Bool { true } }
enum FlagOff: KernelFlag { static var on: Bool { false } }

struct RMSpropKernel<Centered: KernelFlag, WithMomentum: KernelFlag, Divide: KernelFlag>: UpdateKernel {
    let velocity: UnsafeMutablePointer<Float>
    let momentumSlot: UnsafeMutablePointer<Float>
    let average: UnsafeMutablePointer<Float>
    let lr: Float, rho: Float, oneMinusRho: Float, momentum: Float, epsilon: Float

    func retyped<C: KernelFlag, M: KernelFlag, D: KernelFlag>(_: C.Type, _: M.Type, _: D.Type) -> RMSpropKernel<C, M, D> {
        RMSpropKernel<C, M, D>(velocity: velocity, momentumSlot: momentumSlot, average: average, lr: lr, rho: rho,
                               oneMinusRho: oneMinusRho, momentum: momentum, epsilon: epsilon)
    }

    @inline(__always) func update<V: Lanes>(_ x: V, _ g: V, _ i: Int) -> V {
        let rhoV = V(splat: rho), oneMinusRhoV = V(splat: oneMinusRho)
        let vel = rhoV * V.load(velocity + i) + oneMinusRhoV * (g * g)
        vel.store(velocity + i)
        let denominator: V
        if Centered.on {
            let a = rhoV * V.load(average + i) + oneMinusRhoV * g
            a.store(average + i)
            denominator = vel + (V(splat: epsilon) - a * a)
        } else {
            denominator = vel + V(splat: epsilon)
        }
        let lrg = V(splat: lr) * g
        let increment = Divide.on ? lrg / denominator.squareRoot() : lrg * (V(splat: 1) / denominator.squareRoot())
        if WithMomentum.on {
            let mo = V(splat: momentum) * V.load(momentumSlot + i) + increment
            mo.store(momentumSlot + i)
            return x - mo
        }
        return x - increment
    }
}
