// Keras's ReduceLROnPlateau callback, driven once per epoch with the monitored value
// (tf_keras/src/callbacks.py, class ReduceLROnPlateau, `on_epoch_end`; Keras 3.15:
// keras/src/callbacks/reduce_lr_on_plateau.py with monitor_callback.py). Per epoch:
//
//     if cooldown_counter > 0: cooldown_counter -= 1; wait = 0
//     if improved(current, best): best = current; wait = 0
//     elif cooldown_counter == 0:
//         wait += 1
//         if wait >= patience and lr > float32(min_lr):
//             lr = max(lr * factor, min_lr); cooldown_counter = cooldown; wait = 0
//
// Differences between the two Keras versions, selected by `flavor`:
// - improvement test, min mode: tf-keras `current < best - min_delta` (best starts at +inf);
//   Keras 3 `current + min_delta < best` (best starts unset: the first epoch always improves).
//   Max mode mirrors it (`current > best + min_delta` / `current - min_delta > best`).
// - the new rate: tf-keras multiplies the float32 rate by factor in float32 (numpy scalar
//   arithmetic); Keras 3 in Double (Python float), then stores it as float32.
// tf-keras's `wait >= patience` check happens even when the rate is already at min_lr, and then
// neither wait nor the cooldown is reset (so it keeps trying every epoch); both versions agree.
import Foundation

public struct ReduceLROnPlateau: Sendable, Equatable, Codable {
    /// `auto` follows this callback's own tf-keras rule (see `maximises`), which is not
    /// EarlyStopping's.
    public typealias Mode = MonitorMode

    public let monitor: String
    public let factor: Double
    public let patience: Int
    public let mode: Mode
    public let minDelta: Double
    public let cooldown: Int
    public let minLearningRate: Double
    public let flavor: KerasFlavor

    /// Best monitored value so far (nil before the first epoch).
    public private(set) var best: Double?
    /// Epochs since the last improvement (outside cooldown).
    public private(set) var wait = 0
    /// Epochs of cooldown left.
    public private(set) var cooldownCounter = 0

    /// Keras's defaults: monitor "val_loss", factor 0.1, patience 10, mode auto, min_delta 1e-4,
    /// cooldown 0, min_lr 0.
    public init(monitor: String = "val_loss", factor: Double = 0.1, patience: Int = 10, mode: Mode = .auto,
                minDelta: Double = 1e-4, cooldown: Int = 0, minLearningRate: Double = 0,
                flavor: KerasFlavor = .tfKeras2) throws {
        guard factor < 1 else { throw OptimizerError("ReduceLROnPlateau does not support a factor >= 1.0 (got \(factor))") }
        guard patience >= 0, cooldown >= 0 else { throw OptimizerError("ReduceLROnPlateau patience and cooldown must be >= 0") }
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.mode = mode
        self.minDelta = minDelta
        self.cooldown = cooldown
        self.minLearningRate = minLearningRate
        self.flavor = flavor
    }

    /// Whether larger monitored values are better.
    public var maximises: Bool {
        switch mode {
        case .min: return false
        case .max: return true
        case .auto: return monitor.contains("acc")   // tf-keras: max if the name contains "acc"
        }
    }

    /// Keras's `on_train_begin`: forget the best value, wait and cooldown.
    public mutating func reset() {
        best = nil
        wait = 0
        cooldownCounter = 0
    }

    /// Feeds one epoch's monitored value; returns the learning rate for the next epoch (the same
    /// `learningRate` unless it was reduced).
    public mutating func epochEnded(monitored current: Double, learningRate: Float) -> Float {
        var lr = learningRate
        if cooldownCounter > 0 {
            cooldownCounter -= 1
            wait = 0
        }
        if improved(current) {
            best = current
            wait = 0
        } else if cooldownCounter == 0 {
            wait += 1
            if wait >= patience && lr > Float(minLearningRate) {
                lr = reduced(lr)
                cooldownCounter = cooldown
                wait = 0
            }
        }
        return lr
    }

    /// Drives an optimizer with a fixed (settable) learning rate. Returns true if it was reduced.
    @discardableResult
    public mutating func epochEnded(monitored current: Double, optimizer: Optimizer) throws -> Bool {
        let old = optimizer.learningRate
        let new = epochEnded(monitored: current, learningRate: old)
        if new != old { try optimizer.setLearningRate(new) }
        return new != old
    }

    private func improved(_ current: Double) -> Bool {
        let delta = abs(minDelta)
        switch flavor {
        case .tfKeras2:
            // np.less(current, best - min_delta) with best = +inf at first (min_delta as given).
            let b = best ?? (maximises ? -.infinity : .infinity)
            return maximises ? current > b + minDelta : current < b - minDelta
        case .keras3:
            guard let b = best else { return true }
            return maximises ? current - delta > b : current + delta < b
        }
    }

    private func reduced(_ lr: Float) -> Float {
        switch flavor {
        case .tfKeras2:
            // np.float32 * Python float -> float32; Python's max(new, min_lr), then float32.
            let new = lr * Float(factor)
            return minLearningRate > Double(new) ? Float(minLearningRate) : new
        case .keras3:
            let new = Double(lr) * factor
            return Float(Swift.max(new, minLearningRate))
        }
    }
}
