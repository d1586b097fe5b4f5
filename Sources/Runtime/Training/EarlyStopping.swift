// Keras's EarlyStopping callback, driven once per epoch with the monitored value
// (tf_keras/src/callbacks.py and keras/src/callbacks/early_stopping.py agree on it). Per epoch:
//
//     wait += 1
//     if improved(current, best): best = current; best_epoch = epoch; wait = 0; return
//     if wait >= patience and epoch > 0: stop
//
// `improved` is `current - min_delta > best` when maximising, `current + min_delta < best` when
// minimising (min_delta taken as its absolute value); the first epoch always improves. `auto`
// maximises metrics named like accuracy, minimises the rest (tf-keras's rule; Keras 3 reads the
// metric's direction, which gives the same answer for loss and accuracy).
import Foundation

/// Which way a monitored metric improves.
public enum MonitorMode: String, Sendable, Codable, CaseIterable {
    case min, max, auto

    public func maximises(_ monitor: String) -> Bool {
        switch self {
        case .min: return false
        case .max: return true
        case .auto: return monitor.hasSuffix("acc") || monitor.hasSuffix("accuracy") || monitor.hasSuffix("auc")
        }
    }
}

public struct EarlyStopping: Sendable, Equatable, Codable {
    public let monitor: String
    public let patience: Int
    public let minDelta: Double
    public let mode: MonitorMode
    public let restoreBestWeights: Bool
    public private(set) var best: Double?
    public private(set) var bestEpoch = 0
    public private(set) var wait = 0
    /// The epoch training stopped after, once it has.
    public private(set) var stoppedEpoch: Int?

    public init(monitor: String = "val_loss", patience: Int = 0, minDelta: Double = 0, mode: MonitorMode = .auto,
                restoreBestWeights: Bool = false) throws {
        guard patience >= 0 else { throw RuntimeError("early stopping: patience must be 0 or more, not \(patience)") }
        self.monitor = monitor
        self.patience = patience
        self.minDelta = abs(minDelta)
        self.mode = mode
        self.restoreBestWeights = restoreBestWeights
    }

    public var maximises: Bool { mode.maximises(monitor) }

    /// Records epoch `epoch`'s value. Returns whether it is the best so far (the weights to keep
    /// for `restoreBestWeights`) and whether training should stop after this epoch.
    public mutating func epochEnded(_ epoch: Int, monitored current: Double) -> (improved: Bool, stop: Bool) {
        wait += 1
        if improved(current) {
            best = current
            bestEpoch = epoch
            wait = 0
            return (true, false)
        }
        if wait >= patience && epoch > 0 {
            stoppedEpoch = epoch
            return (false, true)
        }
        return (false, false)
    }

    private func improved(_ current: Double) -> Bool {
        guard let best else { return true }
        return maximises ? current - minDelta > best : current + minDelta < best
    }
}

/// Keras's ModelCheckpoint(save_best_only = TRUE): a value is the best when it strictly beats every
/// earlier one (no min_delta).
public struct BestValue: Sendable, Equatable, Codable {
    public let monitor: String
    public let mode: MonitorMode
    public private(set) var value: Double?
    public private(set) var epoch: Int?

    public init(monitor: String, mode: MonitorMode = .auto) {
        self.monitor = monitor
        self.mode = mode
    }

    /// Records `current`; true when it is a new best.
    public mutating func update(_ epoch: Int, _ current: Double) -> Bool {
        guard current.isFinite else { return false }
        if let value, mode.maximises(monitor) ? !(current > value) : !(current < value) { return false }
        value = current
        self.epoch = epoch
        return true
    }
}

extension EpochRecord {
    /// The value of a metric by its Keras name (`loss`, `val_accuracy`, ...), when measured.
    public func metric(_ name: String) -> Double? {
        switch name {
        case "loss": return loss
        case "hard_loss": return hardLoss
        case "soft_loss": return softLoss
        case "accuracy": return accuracy
        case "val_loss": return valLoss
        case "val_accuracy": return valAccuracy
        default: return nil
        }
    }

    public static let metricNames = ["loss", "hard_loss", "soft_loss", "accuracy", "val_loss", "val_accuracy"]
}
