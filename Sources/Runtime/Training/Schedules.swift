// Learning-rate schedules, as tf-keras 2.21 computes them
// (tf_keras/src/optimizers/schedules/learning_rate_schedule.py; Keras 3.15's
// keras/src/optimizers/schedules/learning_rate_schedule.py is the same arithmetic).
// A schedule maps the optimizer's step counter (`iterations`: steps already taken, so the first
// update uses step 0) to a float32 learning rate. Constants from the config are rounded to
// float32 once, and derived constants (`1 - alpha`) are computed in Double first, as Python does.
import Foundation

public protocol LearningRateSchedule: Sendable {
    /// The learning rate for the update that follows `step` completed updates.
    func learningRate(at step: Int) -> Float
}

/// A constant learning rate, as a schedule.
public struct ConstantLearningRate: LearningRateSchedule, Equatable {
    public let value: Double
    public init(_ value: Double) { self.value = value }
    public func learningRate(at step: Int) -> Float { Float(value) }
}

/// `ExponentialDecay(initial_learning_rate, decay_steps, decay_rate, staircase)`:
/// lr = initial * decay_rate ^ (step / decay_steps), the exponent floored when `staircase`
/// (a step decay: multiply by `decay_rate` every `decay_steps` steps).
public struct ExponentialDecay: LearningRateSchedule, Equatable {
    public let initialLearningRate: Double
    public let decaySteps: Int
    public let decayRate: Double
    public let staircase: Bool

    public init(initialLearningRate: Double, decaySteps: Int, decayRate: Double, staircase: Bool = false) {
        precondition(decaySteps > 0, "decay_steps must be positive")
        self.initialLearningRate = initialLearningRate
        self.decaySteps = decaySteps
        self.decayRate = decayRate
        self.staircase = staircase
    }

    public func learningRate(at step: Int) -> Float {
        var p = Float(step) / Float(decaySteps)
        if staircase { p = p.rounded(.down) }
        return Float(initialLearningRate) * powf(Float(decayRate), p)
    }
}

/// `PiecewiseConstantDecay(boundaries, values)`: values[0] while step <= boundaries[0],
/// values[i] while boundaries[i-1] < step <= boundaries[i], the last value after the last
/// boundary.
public struct PiecewiseConstantDecay: LearningRateSchedule, Equatable {
    public let boundaries: [Int]
    public let values: [Double]

    public init(boundaries: [Int], values: [Double]) {
        precondition(!boundaries.isEmpty && values.count == boundaries.count + 1,
                     "PiecewiseConstantDecay needs one more value than boundaries")
        precondition(zip(boundaries, boundaries.dropFirst()).allSatisfy { $0 < $1 }, "boundaries must increase")
        self.boundaries = boundaries
        self.values = values
    }

    public func learningRate(at step: Int) -> Float {
        let i = boundaries.firstIndex { step <= $0 } ?? boundaries.count
        return Float(values[i])
    }
}

/// `CosineDecay(initial_learning_rate, decay_steps, alpha, warmup_target, warmup_steps)`.
/// Without warmup: lr = initial * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay) / decay)) + alpha).
/// With a `warmupTarget`: for step < warmup_steps a linear ramp from `initial` to the target
/// (initial + (target - initial) * step / warmup_steps), then the cosine decay from the target
/// over the next `decaySteps` steps (step counted from the end of the warmup), then constant.
public struct CosineDecay: LearningRateSchedule, Equatable {
    public let initialLearningRate: Double
    public let decaySteps: Int
    public let alpha: Double
    public let warmupTarget: Double?
    public let warmupSteps: Int

    public init(initialLearningRate: Double, decaySteps: Int, alpha: Double = 0, warmupTarget: Double? = nil,
                warmupSteps: Int = 0) {
        precondition(decaySteps > 0, "decay_steps must be positive")
        precondition(warmupTarget == nil || warmupSteps > 0, "warmup needs warmup_steps > 0")
        self.initialLearningRate = initialLearningRate
        self.decaySteps = decaySteps
        self.alpha = alpha
        self.warmupTarget = warmupTarget
        self.warmupSteps = warmupSteps
    }

    public func learningRate(at step: Int) -> Float {
        let initial = Float(initialLearningRate)
        let decay = Float(decaySteps)
        let s = Float(step)
        guard let target = warmupTarget.map({ Float($0) }) else {
            return decayed(min(s, decay), decay, from: initial)
        }
        let warmup = Float(warmupSteps)
        let clamped = min(s, decay + warmup)
        if clamped < warmup {
            let completed = clamped / warmup
            return (target - initial) * completed + initial
        }
        return decayed(clamped - warmup, decay, from: target)
    }

    private func decayed(_ step: Float, _ decay: Float, from lr: Float) -> Float {
        let completed = step / decay
        // tf.constant(math.pi, float32) rounds to nearest; Swift's Float.pi rounds toward zero.
        let pi = Float(Double.pi)
        let cosine: Float = 0.5 * (1 + cosf(pi * completed))
        return lr * (Float(1 - alpha) * cosine + Float(alpha))
    }
}
