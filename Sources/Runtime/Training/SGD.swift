// SGD as tf-keras 2.21 computes it (tf_keras/src/optimizers/sgd.py, `update_step`, dense
// branch, lines 180-188), all float32:
//
//     m  = -g * lr + m * momentum
//     x += -g * lr + m * momentum      (nesterov, with the new m)
//     x += m                           (otherwise)
//
// Keras 3 (keras/src/optimizers/sgd.py) writes `m * momentum - g * lr`: the same two roundings
// and the same sum, so the same bits. With momentum 0 there is no slot and x -= g * lr (tf-keras
// keeps a slot holding -g*lr and adds it: the same value).
import Foundation

public final class SGD: Optimizer, @unchecked Sendable {
    public let momentum: Double
    public let nesterov: Bool

    /// Keras's defaults: `SGD(learning_rate=0.01, momentum=0.0, nesterov=False)`.
    public init(learningRate: LearningRate = .constant(0.01), momentum: Double = 0, nesterov: Bool = false,
                weightDecay: Double? = nil, weightDecayExcludes: [String] = [],
                clipping: GradientClipping = .none, flavor: KerasFlavor = .tfKeras2) {
        precondition(momentum >= 0 && momentum <= 1, "SGD momentum must be in [0, 1]")
        self.momentum = momentum
        self.nesterov = nesterov
        super.init(kind: "sgd", learningRate: learningRate, clipping: clipping, weightDecay: weightDecay,
                   weightDecayExcludes: weightDecayExcludes, flavor: flavor)
    }

    override var slotNames: [String] { momentum != 0 ? ["momentum"] : [] }

    override func update(_ parameters: [ParameterBuffer], learningRate: Float, clip: ClipMode) {
        if momentum == 0 {
            run(parameters, learningRate: learningRate, clip: clip, PlainSGDKernel(lr: learningRate))
        } else if nesterov {
            run(parameters, learningRate: learningRate, clip: clip,
                NesterovKernel(m: slot(0), lr: learningRate, momentum: Float(momentum)))
        } else {
            run(parameters, learningRate: learningRate, clip: clip,
                MomentumKernel(m: slot(0), lr: learningRate, momentum: Float(momentum)))
        }
    }
}

struct PlainSGDKernel: UpdateKernel {
    let lr: Float
    @inline(__always) func update<V: Lanes>(_ x: V, _ g: V, _ i: Int) -> V { x - g * V(splat: lr) }
}

struct MomentumKernel: UpdateKernel {
    let m: UnsafeMutablePointer<Float>, lr: Float, momentum: Float
    @inline(__always) func update<V: Lanes>(_ x: V, _ g: V, _ i: Int) -> V {
        let mi = -g * V(splat: lr) + V.load(m + i) * V(splat: momentum)
        mi.store(m + i)
        return x + mi
    }
}

struct NesterovKernel: UpdateKernel {
    let m: UnsafeMutablePointer<Float>, lr: Float, momentum: Float
    @inline(__always) func update<V: Lanes>(_ x: V, _ g: V, _ i: Int) -> V {
        let step = -g * V(splat: lr)
        let mi = step + V.load(m + i) * V(splat: momentum)
        mi.store(m + i)
        return x + (step + mi * V(splat: momentum))
    }
}
