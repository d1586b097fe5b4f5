import ArgumentParser
import Foundation
import Runtime
import Synchronization

/// Optimizer, learning-rate schedule and plateau options of `distill` and `train`.
struct OptimizerOptions: ParsableArguments {
    @Option(help: "adam (Keras defaults: beta 0.9/0.999, epsilon 1e-7), sgd or rmsprop (rho 0.9).")
    var optimizer: OptimizerKind = .adam

    @Option(help: "The initial learning rate (default: 1e-3; 1e-2 for sgd).")
    var learningRate: Double?

    @Option(help: "Momentum (sgd, rmsprop).") var momentum: Double = 0
    @Flag(help: "Nesterov momentum (sgd).") var nesterov = false

    @Option(help: "constant, step (multiply by --lr-decay-rate every --lr-decay-epochs epochs) or cosine (to --lr-min-ratio of the rate over all epochs).")
    var lrSchedule: ScheduleKind = .constant
    @Option(help: "Epochs between steps of the step schedule.") var lrDecayEpochs: Int = 1
    @Option(help: "Factor of each step of the step schedule.") var lrDecayRate: Double = 0.1
    @Option(help: "Final rate of the cosine schedule, as a fraction of the initial one (Keras's alpha).") var lrMinRatio: Double = 0

    @Option(help: "Reduce the learning rate when --monitor has not improved for N epochs (Keras's ReduceLROnPlateau).")
    var reduceLrPatience: Int?
    @Option(help: "Factor for --reduce-lr-patience.") var reduceLrFactor: Double = 0.1
    @Option(help: "Lowest rate --reduce-lr-patience goes to.") var minLr: Double = 0

    enum OptimizerKind: String, ExpressibleByArgument, CaseIterable { case adam, sgd, rmsprop }
    enum ScheduleKind: String, ExpressibleByArgument, CaseIterable { case constant, step, cosine }

    func validate() throws {
        if let lr = learningRate, !(lr > 0) { throw ValidationError("--learning-rate must be positive") }
        guard (0..<1).contains(momentum) else { throw ValidationError("--momentum must be in [0, 1)") }
        if nesterov && optimizer != .sgd { throw ValidationError("--nesterov is for --optimizer sgd") }
        if momentum != 0 && optimizer == .adam { throw ValidationError("--momentum is for sgd and rmsprop") }
        guard lrDecayEpochs > 0, lrDecayRate > 0, (0...1).contains(lrMinRatio) else {
            throw ValidationError("--lr-decay-epochs and --lr-decay-rate must be positive, --lr-min-ratio in [0, 1]")
        }
        if reduceLrPatience != nil && lrSchedule != .constant {
            throw ValidationError("--reduce-lr-patience changes a constant rate; it cannot be combined with --lr-schedule \(lrSchedule.rawValue)")
        }
        if let p = reduceLrPatience, p < 0 { throw ValidationError("--reduce-lr-patience must be 0 or more") }
        guard reduceLrFactor > 0 && reduceLrFactor < 1 else { throw ValidationError("--reduce-lr-factor must be in (0, 1)") }
    }

    var initialRate: Double { learningRate ?? (optimizer == .sgd ? 0.01 : 0.001) }

    /// The optimizer, its schedule counted in steps of `batchesPerEpoch` over `epochs`.
    func make(batchesPerEpoch: Int, epochs: Int) -> Optimizer {
        let rate: LearningRate
        switch lrSchedule {
        case .constant:
            rate = .constant(initialRate)
        case .step:
            rate = .schedule(ExponentialDecay(initialLearningRate: initialRate, decaySteps: lrDecayEpochs * batchesPerEpoch,
                                              decayRate: lrDecayRate, staircase: true))
        case .cosine:
            rate = .schedule(CosineDecay(initialLearningRate: initialRate, decaySteps: max(1, epochs * batchesPerEpoch),
                                         alpha: lrMinRatio))
        }
        switch optimizer {
        case .adam: return Adam(learningRate: rate)
        case .sgd: return SGD(learningRate: rate, momentum: momentum, nesterov: nesterov)
        case .rmsprop: return RMSprop(learningRate: rate, momentum: momentum)
        }
    }

    var describe: String {
        var s = "\(optimizer.rawValue), learning rate \(initialRate)"
        switch lrSchedule {
        case .constant: break
        case .step: s += " x\(lrDecayRate) every \(lrDecayEpochs) epoch\(lrDecayEpochs == 1 ? "" : "s")"
        case .cosine: s += " cosine to \(lrMinRatio)x"
        }
        if optimizer != .adam && momentum > 0 { s += ", momentum \(momentum)\(nesterov ? " (Nesterov)" : "")" }
        return s
    }
}

/// Checkpoints, monitoring, early stopping and the outputs beside the student.
struct RunOutputOptions: ParsableArguments {
    @Option(help: "Per-epoch history as CSV (Keras CSVLogger's layout, readable by R's read_csv).")
    var history: String?

    @Option(help: "Loss and accuracy curves as an SVG, refreshed every epoch.")
    var plot: String?

    @Option(help: "Folder for checkpoints: last.h5 every epoch, best.h5 when --monitor improves (both Keras full-model files).")
    var checkpointDir: String?

    @Flag(help: "Continue the run saved in --checkpoint-dir (last.h5) with the same command: same optimizer state, data order and history.")
    var resume = false

    @Option(help: "Metric for best.h5, early stopping and --reduce-lr-patience: loss, hard_loss, soft_loss, accuracy, val_loss, val_accuracy (default: val_loss, or loss without --val).")
    var monitor: String?

    @Option(help: "Which way --monitor improves: auto (accuracies up, losses down), min or max.")
    var monitorMode: MonitorMode = .auto

    @Option(help: "Stop when --monitor has not improved for N epochs (Keras's EarlyStopping patience).")
    var earlyStoppingPatience: Int?

    @Option(help: "Smallest change of --monitor that counts as an improvement for early stopping.")
    var minDelta: Double = 0

    @Flag(help: "When early stopping ends the run, write the weights of the best epoch (Keras's restore_best_weights).")
    var restoreBestWeights = false

    func validate() throws {
        if resume && checkpointDir == nil { throw ValidationError("--resume needs --checkpoint-dir (the folder holding last.h5)") }
        if let p = earlyStoppingPatience, p < 0 { throw ValidationError("--early-stopping-patience must be 0 or more") }
        if restoreBestWeights && earlyStoppingPatience == nil {
            throw ValidationError("--restore-best-weights goes with --early-stopping-patience")
        }
        if let monitor, !EpochRecord.metricNames.contains(monitor) {
            throw ValidationError("--monitor must be one of \(EpochRecord.metricNames.joined(separator: ", "))")
        }
    }
}

extension MonitorMode: ExpressibleByArgument {}

/// Ctrl-C (SIGINT) and SIGTERM during training: the first asks the loop to stop after the current
/// step and save a checkpoint; a second one ends the process at once (the checkpoint being written
/// is a temporary file until it is complete, so nothing is left half-written).
enum Interruption {
    static let requested = Atomic<Bool>(false)

    static func install() {
        let handler: @convention(c) (Int32) -> Void = { signal in
            Interruption.requested.store(true, ordering: .relaxed)
            _ = Glibc.signal(signal, SIG_DFL)
        }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
    }

    static var isRequested: Bool { requested.load(ordering: .relaxed) }
}
