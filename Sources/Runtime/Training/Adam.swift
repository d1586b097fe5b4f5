// Adam as tf-keras 2.21 computes it (tf_keras/src/optimizers/adam.py, `update_step`, dense
// branch, lines 170-213; Keras 3.15's keras/src/optimizers/adam.py lines 104-137 is the same
// arithmetic). All float32, in this order:
//
//     lr_t  = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)        t = iterations + 1, pow in float32
//     m    += (g - m) * (1 - beta_1)
//     v    += (g*g - v) * (1 - beta_2)
//     vhat  = max(vhat, v);  v = vhat                          (AMSGrad only)
//     x    -= (m * lr_t) / (sqrt(v) + epsilon)
//
// So the bias correction is folded into the step size, and epsilon is added to sqrt(v) *without*
// bias correction (the paper's "epsilon hat"), not to sqrt(v_hat).
import Foundation

public final class Adam: Optimizer, @unchecked Sendable {
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let amsgrad: Bool

    /// Keras's defaults: `Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
    /// amsgrad=False)`.
    public init(learningRate: LearningRate = .constant(0.001), beta1: Double = 0.9, beta2: Double = 0.999,
                epsilon: Double = 1e-7, amsgrad: Bool = false, weightDecay: Double? = nil,
                weightDecayExcludes: [String] = [], clipping: GradientClipping = .none,
                flavor: KerasFlavor = .tfKeras2) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.amsgrad = amsgrad
        super.init(kind: "adam", learningRate: learningRate, clipping: clipping, weightDecay: weightDecay,
                   weightDecayExcludes: weightDecayExcludes, flavor: flavor)
    }

    override var slotNames: [String] { amsgrad ? ["m", "v", "vhat"] : ["m", "v"] }

    /// The step size with the bias correction folded in, for step t = iterations + 1.
    static func stepSize(learningRate lr: Float, beta1: Double, beta2: Double, step t: Int) -> Float {
        let localStep = Float(t)
        let beta1Power = powf(Float(beta1), localStep)
        let beta2Power = powf(Float(beta2), localStep)
        return lr * (1 - beta2Power).squareRoot() / (1 - beta1Power)
    }

    override func update(_ parameters: [ParameterBuffer], learningRate: Float, clip: ClipMode) {
        let alpha = Adam.stepSize(learningRate: learningRate, beta1: beta1, beta2: beta2, step: iterations + 1)
        let m = slot(0), v = slot(1)
        if amsgrad {
            run(parameters, learningRate: learningRate, clip: clip,
                AMSGradKernel(m: m, v: v, vhat: slot(2), oneMinusBeta1: Float(1 - beta1),
                              oneMinusBeta2: Float(1 - beta2), alpha: alpha, epsilon: Float(epsilon)))
        } else {
            run(parameters, learningRate: learningRate, clip: clip,
                AdamKernel(m: m, v: v, oneMinusBeta1: Float(1 - beta1), oneMinusBeta2: Float(1 - beta2),
                           alpha: alpha, epsilon: Float(epsilon)))
        }
    }
}

struct AdamKernel: UpdateKernel {
    let m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
    let oneMinusBeta1: Float, oneMinusBeta2: Float, alpha: Float, epsilon: Float

    @inline(__always) func update<V: Lanes>(_ x: V, _ g: V, _ i: Int) -> V {
        let m0 = V.load(m + i), v0 = V.load(v + i)
        let mi = m0 + (g - m0) * V(splat: oneMinusBeta1)
        let vi = v0 + (g * g - v0) * V(splat: oneMinusBeta2)
        mi.store(m + i)
        vi.store(v + i)
        return x - (mi * V(splat: alpha)) / (vi.squareRoot() + V(splat: epsilon))
    }
}

struct AMSGradKernel: UpdateKernel {
    let m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, vhat: UnsafeMutablePointer<Float>
    let oneMinusBeta1: Float, oneMinusBeta2: Float, alpha: Float, epsilon: Float

    @inline(__always) func update<V: Lanes>(_ x: V, _ g: V, _ i: Int) -> V {
        let m0 = V.load(m + i), v0 = V.load(v + i)
        let mi = m0 + (g - m0) * V(splat: oneMinusBeta1)
        let vi = v0 + (g * g - v0) * V(splat: oneMinusBeta2)
        mi.store(m + i)
        vi.store(v + i)
        let h = V.maximum(V.load(vhat + i), vi)
        h.store(vhat + i)
        return x - (mi * V(splat: alpha)) / (h.squareRoot() + V(splat: epsilon))
    }
}
