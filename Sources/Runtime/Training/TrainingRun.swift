import Foundation

/// One epoch's figures, each computed over that epoch only (the seed's R loop never reset its
/// accuracy metric, so its "epoch accuracy" was a running mean).
public struct EpochRecord: Sendable, Equatable, Codable {
    public var epoch: Int
    public var loss: Double
    public var hardLoss: Double?
    public var softLoss: Double?
    public var accuracy: Double?
    public var valLoss: Double?
    public var valAccuracy: Double?
    public var seconds: Double
    /// The learning rate the epoch ended with.
    public var learningRate: Double?
}

public struct TrainingRunOptions: Sendable {
    public var epochs = 10
    public var batchSize = 8
    public var seed: UInt64 = 0
    public var augment: AugmentConfig? = nil
    /// The `--augment` text, recorded in checkpoints so a resume uses the same.
    public var augmentText: String? = nil
    public var skipBadImages = false
    /// Training and validation JPEGs at least twice the model's input size decoded with
    /// libjpeg-turbo's DCT scaling (`LoaderOptions.fastDecode`); test sets keep Keras's decode.
    public var fastDecode = false
    /// Where `last.h5` (every epoch) and `best.h5` (when `monitor` improves) go.
    public var checkpointDirectory: String? = nil
    /// Where a Ctrl-C checkpoint goes when there is no `checkpointDirectory`.
    public var interruptDirectory: String? = nil
    /// The metric for best.h5, early stopping and reduce-on-plateau (default: val_loss, or loss
    /// without a validation set).
    public var monitor: String? = nil
    public var monitorMode: MonitorMode = .auto
    public var earlyStopping: EarlyStopping? = nil
    public var reduceLROnPlateau: ReduceLROnPlateau? = nil
    public var historyPath: String? = nil
    public var plotPath: String? = nil
    /// The teacher's logits from `distillctl teacher-cache` instead of running the teacher.
    public var teacherCache: TeacherCache? = nil
    /// The optimizer, learning rate and schedule as the caller describes them (recorded in
    /// checkpoints: a resumption that changes it uses `initialLearningRate` from then on).
    public var learningRateText: String? = nil
    public var initialLearningRate: Double? = nil
    public init() {}
}

/// How a run ended (errors aside).
public enum RunOutcome: Sendable, Equatable {
    case completed
    /// Early stopping after this epoch (0-based).
    case stoppedEarly(epoch: Int)
    /// Ctrl-C: the checkpoint written.
    case interrupted(checkpoint: String)
}

/// What the epoch loop tells its user; the command line draws a Keras-style progress bar.
public protocol TrainingReporter: AnyObject {
    func epochBegan(_ epoch: Int, of epochs: Int, batches: Int)
    /// `secondsPerBatch`: the mean over the batches this process has run in the epoch (for ETA).
    func batchEnded(_ batch: Int, of batches: Int, secondsPerBatch: Double, logs: [(String, Double)])
    func epochEnded(_ record: EpochRecord, batches: Int)
    func note(_ text: String)
}

/// Training stopped on a non-finite loss, gradient or weight: what, where, and which checkpoint
/// is the last good one.
public struct TrainingStopped: Error, CustomStringConvertible, Sendable {
    public var message: String
    /// The last good checkpoint, if one was written.
    public var checkpoint: String?
    public var description: String { message }

    public init(message: String, checkpoint: String?) {
        self.message = message
        self.checkpoint = checkpoint
    }
}

/// A checkpoint that belongs to another run than the one asked to resume from it.
public struct ResumeMismatch: Error, CustomStringConvertible, Sendable {
    /// What was different then (the run's own words; the value it had then, where it has one).
    public enum Difference: Sendable, Equatable {
        case kind(then: String, now: String)
        case images(then: Int, now: Int)
        case batchSize(Int)
        case seed(UInt64)
        case augment(String?)
        case loss(alpha: Double?, temperature: Double?)
        /// The soft loss (kd, dkd, dist with their parameters) of the checkpointed run.
        case softLoss(String)
        /// The feature pairs of the checkpointed run (nil: none).
        case features(String?)
        case teacher(String?)
    }
    public var path: String
    public var differences: [Difference]

    public init(path: String, differences: [Difference]) {
        self.path = path
        self.differences = differences
    }

    public var description: String { text() }

    /// The message; `naming` may word a difference otherwise (the command line names its flag).
    public func text(naming: (Difference) -> String? = { _ in nil }) -> String {
        "\(path): cannot resume: " + differences.map { d -> String in
            if let own = naming(d) { return own }
            switch d {
            case .kind(let then, let now): return "it was made by '\(then)', this is '\(now)'"
            case .images(let then, let now): return "the training images differ (\(then) then, \(now) now)"
            case .batchSize(let b): return "the batch size was \(b)"
            case .seed(let s): return "the seed was \(s)"
            case .augment(let a): return "the augmentation was \(a.map { "'\($0)'" } ?? "off")"
            case .loss(let a, let t): return "alpha/temperature were \(a.map { "\($0)" } ?? "-")/\(t.map { "\($0)" } ?? "-")"
            case .softLoss(let l): return "the distillation loss was \(l)"
            case .features(let f): return "the feature pairs were \(f ?? "none")"
            case .teacher(let t): return "the teacher was \(t ?? "none")"
            }
        }.joined(separator: "; ")
    }
}

/// The epoch loop: shuffled batches (the last partial one included) through the distiller, the
/// validation set in full after each epoch, a record per epoch, checkpoints, callbacks.
public final class TrainingRun {
    public let distiller: Distiller
    public let train: ImageDataset
    public let validation: ImageDataset?
    public let options: TrainingRunOptions
    public private(set) var state: RunState
    /// The training images' pipeline times and the steps' (`profile`), summed over this run.
    public private(set) var imageTimings = LoaderTimings()
    public private(set) var stepSeconds = 0.0
    public private(set) var stepImages = 0
    public var history: [EpochRecord] { state.history }

    public init(distiller: Distiller, train: ImageDataset, validation: ImageDataset?, options: TrainingRunOptions) throws {
        self.distiller = distiller
        self.train = train
        self.validation = validation
        self.options = options
        // A wholly unlabelled set (no class columns) teaches through the soft loss alone.
        guard train.classCount == distiller.classes || (train.classCount == 0 && distiller.distilling) else {
            // The names show what was taken for a class (e.g. a CSV's extra numeric column).
            let names = train.classCount <= 12 ? " (\(train.classNames.joined(separator: ", ")))" : ""
            throw RuntimeError("\(train.source): \(train.classCount) classes\(names), but the student has \(distiller.classes) outputs")
        }
        let monitor = options.monitor ?? (validation == nil ? "loss" : "val_loss")
        guard EpochRecord.metricNames.contains(monitor) else {
            throw RuntimeError("cannot monitor '\(monitor)': the metrics are \(EpochRecord.metricNames.joined(separator: ", "))")
        }
        if monitor.hasPrefix("val_") && validation == nil {
            throw RuntimeError("cannot monitor '\(monitor)' without a validation set")
        }
        if monitor == "soft_loss" && !distiller.distilling {
            throw RuntimeError("cannot monitor 'soft_loss' without a teacher")
        }
        let distilling = distiller.distilling
        state = RunState(identity: RunIdentity(
            kind: distilling ? "distill" : "train", dataFingerprint: String(train.fingerprint, radix: 16),
            images: train.count, batchSize: options.batchSize, seed: options.seed, augment: options.augmentText,
            alpha: distilling ? distiller.config.alpha : nil,
            temperature: distilling ? distiller.config.temperature : nil,
            teacher: distiller.teacherIdentity, loss: distilling ? distiller.config.softLoss.description : nil,
            features: FeatureDistillation.identity(distiller.config.features)))
        if let cache = options.teacherCache {
            guard distiller.config.features.isEmpty else {
                throw RuntimeError("feature distillation needs the teacher's inner layers, which a teacher cache does not hold")
            }
            guard options.augment == nil || options.augment!.isIdentity else {
                throw RuntimeError("a teacher cache holds the logits of the images as they are; it cannot be used with augmentation")
            }
            guard cache.classes == distiller.classes else {
                throw RuntimeError("the teacher cache has \(cache.classes) classes, the student \(distiller.classes)")
            }
            guard cache.teachers.count == distiller.teacherWeights.count else {
                throw RuntimeError("the teacher cache holds \(cache.teachers.count) teachers, but \(distiller.teacherWeights.count) teacher weights were given")
            }
            cacheRows = try cache.rows(for: train, source: train.source)
        }
        state.earlyStopping = options.earlyStopping
        state.reduceLR = options.reduceLROnPlateau
        state.settings = settings
        if options.checkpointDirectory != nil { state.best = BestValue(monitor: monitor, mode: options.monitorMode) }
    }

    /// Per training item, its row in the teacher cache.
    private var cacheRows: [Int] = []
    var collective: any Collective { distiller.collective }

    /// The metric best.h5, early stopping and reduce-on-plateau watch.
    public var monitor: String { options.monitor ?? (validation == nil ? "loss" : "val_loss") }

    /// The student's input (height, width, channels).
    var imageShape: (Int, Int, Int) {
        let s = distiller.student.graph.nodes[distiller.student.graph.inputs[0]].outputShape
        return (s[0], s[1], s[2])
    }

    /// Decodes every image of `dataset` once: with bad ones, an error listing them, or (`skipBad`)
    /// the dataset without them and their list. The dataset returned carries the decoded images
    /// (`keepBytes` of them at most, e.g. `DecodedImages.defaultBudget`), which its batches then
    /// use instead of decoding again; 0 when nothing will read them (a check alone, or
    /// `--fast-decode`, whose batches decode otherwise).
    public static func checkImages(_ dataset: ImageDataset, height: Int, width: Int, channels: Int,
                                   skipBad: Bool, keepBytes: Int)
        throws -> (dataset: ImageDataset, left: [BadImage]) {
        let (bad, decoded) = preflightDecode(dataset, height: height, width: width, channels: channels, keepBytes: keepBytes)
        return try dataset.checked(bad: bad, decoded: decoded, skipBad: skipBad)
    }

    // MARK: checkpoints

    public var lastCheckpointPath: String? { options.checkpointDirectory.map { ($0 as NSString).appendingPathComponent("last.h5") } }
    public var bestCheckpointPath: String? { options.checkpointDirectory.map { ($0 as NSString).appendingPathComponent("best.h5") } }

    /// Continues from `checkpoint` (read with `TrainingCheckpoint.read`; the distiller must have been
    /// made from the checkpoint's weights): same data, batch size, seed, augmentation, loss and
    /// trainable weights, or an error saying what differs.
    public func resume(from checkpoint: TrainingCheckpoint, path: String) throws {
        let saved = checkpoint.state.identity, now = state.identity
        var differences: [ResumeMismatch.Difference] = []
        if saved.kind != now.kind { differences.append(.kind(then: saved.kind, now: now.kind)) }
        if saved.dataFingerprint != now.dataFingerprint || saved.images != now.images {
            differences.append(.images(then: saved.images, now: now.images))
        }
        if saved.batchSize != now.batchSize { differences.append(.batchSize(saved.batchSize)) }
        if saved.seed != now.seed { differences.append(.seed(saved.seed)) }
        if saved.augment != now.augment { differences.append(.augment(saved.augment)) }
        if saved.alpha != now.alpha || saved.temperature != now.temperature {
            differences.append(.loss(alpha: saved.alpha, temperature: saved.temperature))
        }
        // Checkpoints from before the choice of soft loss existed were all kd.
        if saved.kind == "distill" && (saved.loss ?? "kd") != (now.loss ?? "kd") {
            differences.append(.softLoss(saved.loss ?? "kd"))
        }
        if saved.teacher != now.teacher { differences.append(.teacher(saved.teacher)) }
        if saved.features != now.features { differences.append(.features(saved.features)) }
        guard differences.isEmpty else { throw ResumeMismatch(path: path, differences: differences) }
        do { try distiller.optimizer.restore(checkpoint.optimizer) } catch {
            throw RuntimeError("\(path): cannot resume: the optimizer state does not fit this run (\(error)); "
                               + "the optimizer and the trainable layers must be those of the checkpointed run")
        }
        do { try distiller.restoreFeatureAdaptors(checkpoint.adaptors) } catch {
            throw RuntimeError("\(path): cannot resume: \(error)")
        }
        var restored = checkpoint.state
        // Callbacks: the checkpoint's state when the run still asks for them, the options' when new.
        if let e = options.earlyStopping {
            if let s = restored.earlyStopping, s.monitor == e.monitor, s.patience == e.patience,
               s.minDelta == e.minDelta, s.mode == e.mode, s.restoreBestWeights == e.restoreBestWeights {
                restored.earlyStopping = s
            } else { restored.earlyStopping = e }
        } else { restored.earlyStopping = nil }
        if let r = options.reduceLROnPlateau {
            if let s = restored.reduceLR, s.monitor == r.monitor, s.factor == r.factor, s.patience == r.patience {
                restored.reduceLR = s
            } else { restored.reduceLR = r }
        } else { restored.reduceLR = nil }
        if let b = state.best, restored.best?.monitor != b.monitor || restored.best?.mode != b.mode { restored.best = b }
        if state.best == nil { restored.best = nil }
        resumeChanges = []
        if let then = restored.settings {
            let now = settings
            func note(_ what: String, _ a: String?, _ b: String?) {
                if a != b { resumeChanges.append("\(what) \(a ?? "off") -> \(b ?? "off")") }
            }
            note("epochs", String(then.epochs), String(now.epochs))
            note("optimizer", then.learningRate, now.learningRate)
            note("early stopping", then.earlyStopping, now.earlyStopping)
            note("reduce on plateau", then.reduceLROnPlateau, now.reduceLROnPlateau)
            // The checkpoint's constant rate (maybe lowered on a plateau) holds unless the run now
            // asks for another; a schedule is this run's own already.
            if then.learningRate != now.learningRate, let rate = options.initialLearningRate {
                try? distiller.optimizer.setLearningRate(Float(rate))
            }
        }
        restored.settings = settings
        state = restored
    }

    /// This run's changeable settings, as recorded in its checkpoints.
    var settings: RunSettings {
        RunSettings(epochs: options.epochs, learningRate: options.learningRateText,
                    earlyStopping: options.earlyStopping.map {
                        "monitor \($0.monitor), patience \($0.patience), min delta \($0.minDelta), mode \($0.mode)"
                            + ($0.restoreBestWeights ? ", restoring the best weights" : "")
                    },
                    reduceLROnPlateau: options.reduceLROnPlateau.map {
                        "monitor \($0.monitor), factor \($0.factor), patience \($0.patience), min rate \($0.minLearningRate)"
                    })
    }

    /// What `resume` found changed since the checkpointed run, one phrase each ("epochs 10 -> 20").
    public private(set) var resumeChanges: [String] = []

    func checkpoint() -> TrainingCheckpoint {
        TrainingCheckpoint(model: distiller.trainedModel(), state: state, optimizer: distiller.optimizer.state(),
                           adaptors: distiller.featureAdaptorState)
    }

    // MARK: the loop

    /// Trains from the current position (the start, or where `resume` left it) to `epochs`.
    /// `interrupted` is asked after every step: true saves a checkpoint and returns.
    public func run(reporter: TrainingReporter?, interrupted: () -> Bool = { false }) throws -> RunOutcome {
        let (h, w, c) = imageShape
        var loaderOptions = LoaderOptions(height: h, width: w, channels: c, batchSize: options.batchSize, shuffle: true,
                                          seed: options.seed, augment: options.augment)
        loaderOptions.badImages = options.skipBadImages ? .skip : .fail
        loaderOptions.fastDecode = options.fastDecode
        loaderOptions.shardRank = collective.rank
        loaderOptions.shardCount = collective.size
        let loader = try BatchLoader(dataset: train, options: loaderOptions)
        let batches = loader.batchesPerEpoch
        if let dir = options.checkpointDirectory, collective.isRoot { try makeDirectory(dir) }
        // Every rank must agree to stop: a Ctrl-C seen by any rank stops them all at the same step.
        func agreedInterrupt() throws -> Bool {
            var flag = [interrupted() ? 1.0 : 0]
            try collective.allReduceSum(&flag)
            return flag[0] > 0
        }
        while state.position.epoch < options.epochs {
            let epoch = state.position.epoch
            let start = Date()
            let resumedAt = state.position.batch
            reporter?.epochBegan(epoch, of: options.epochs, batches: batches)
            let stream = loader.epoch(epoch, from: state.position.batch)
            while let batch = try stream.next() {
                let labels = train.classCount == 0 ? [Float](repeating: 0, count: batch.count * distiller.classes)
                                                   : batch.labels.data
                var cached: [Float]? = nil
                if let cache = options.teacherCache {
                    cached = cache.logits(rows: batch.items.map { cacheRows[$0] }, weights: distiller.teacherWeights)
                }
                let r: StepResult
                let stepStart = DispatchTime.now().uptimeNanoseconds
                do {
                    r = try distiller.step(batch.images, labels: labels, index: state.step, teacherLogits: cached,
                                           share: (batch.globalOffset, batch.globalCount))
                } catch let e as TrainingDiverged {
                    throw TrainingStopped(message: "training stopped: \(e.reason) in epoch \(epoch + 1), batch \(batch.index + 1) of \(batches) (step \(e.step + 1)); "
                                          + lastGoodCheckpointText(), checkpoint: lastGoodCheckpoint)
                }
                stepSeconds += Double(DispatchTime.now().uptimeNanoseconds - stepStart) / 1e9
                stepImages += batch.count
                state.step += 1
                state.position.batch = batch.index + 1
                state.sums.add(r)
                reporter?.batchEnded(state.position.batch, of: batches,
                                     secondsPerBatch: Date().timeIntervalSince(start) / Double(max(1, state.position.batch - resumedAt)),
                                     logs: runningLogs())
                if state.position.batch < batches, try agreedInterrupt() {
                    return .interrupted(checkpoint: try saveInterrupted())
                }
            }
            imageTimings = imageTimings + stream.timings
            var record = EpochRecord(epoch: epoch, loss: state.sums.meanLoss, hardLoss: state.sums.meanHard,
                                     softLoss: distiller.distilling ? state.sums.meanSoft : nil,
                                     accuracy: state.sums.accuracy, valLoss: nil, valAccuracy: nil, seconds: 0)
            if let validation {
                let (loss, accuracy) = try evaluate(validation)
                record.valLoss = loss
                record.valAccuracy = accuracy
            }
            record.seconds = Date().timeIntervalSince(start)
            record.learningRate = Double(distiller.optimizer.learningRate)
            state.history.append(record)
            state.position = DataPosition(epoch: epoch + 1, batch: 0)
            state.sums = EpochSums()
            let outcome = try epochEnded(record)
            reporter?.epochEnded(record, batches: batches)
            if case .stoppedEarly = outcome {
                reporter?.note("early stopping: \(monitor) has not improved for \(state.earlyStopping!.patience) epochs"
                               + (state.earlyStopping!.restoreBestWeights ? "; weights of epoch \(state.earlyStopping!.bestEpoch + 1) restored" : ""))
                return outcome
            }
            if state.position.epoch < options.epochs, try agreedInterrupt() {
                return .interrupted(checkpoint: try saveInterrupted())
            }
        }
        return .completed
    }

    /// The callbacks, in the order Keras users list them: history and plot, best and last
    /// checkpoints, reduce-on-plateau, early stopping.
    func epochEnded(_ record: EpochRecord) throws -> RunOutcome {
        let value = record.metric(monitor)
        let root = collective.isRoot
        if let path = options.historyPath, root { try writeAtomically(EpochRecord.csv(state.history), to: path) }
        if let path = options.plotPath, root { try writeAtomically(TrainingPlot.svg(state.history), to: path) }
        var stop = false
        if var early = state.earlyStopping, let value {
            let (improved, shouldStop) = early.epochEnded(record.epoch, monitored: value)
            state.earlyStopping = early
            if improved && early.restoreBestWeights { bestWeights = distiller.params.snapshot() }
            stop = shouldStop
        }
        if var plateau = state.reduceLR, let value {
            try plateau.epochEnded(monitored: value, optimizer: distiller.optimizer)
            state.reduceLR = plateau
        }
        if let last = lastCheckpointPath, let bestPath = bestCheckpointPath {
            var paths = [last]
            if var best = state.best, let value, best.update(record.epoch, value) {
                state.best = best
                paths.append(bestPath)
            }
            if root { try checkpoint().write(to: paths) }
        }
        // As Keras: the checkpoints hold the epoch's own weights; the best ones come back at the end.
        if stop, state.earlyStopping!.restoreBestWeights, let bestWeights { distiller.params.restore(bestWeights) }
        return stop ? .stoppedEarly(epoch: record.epoch) : .completed
    }

    /// Weights of the best epoch so far, kept for early stopping's restore_best_weights.
    private var bestWeights: [[Float]]?

    func saveInterrupted() throws -> String {
        guard let dir = options.checkpointDirectory ?? options.interruptDirectory else {
            throw RuntimeError("interrupted; no checkpoint folder to save to")
        }
        let path = (dir as NSString).appendingPathComponent("last.h5")
        if collective.isRoot {
            try makeDirectory(dir)
            try checkpoint().write(to: path)
        }
        return path
    }

    var lastGoodCheckpoint: String? {
        lastCheckpointPath.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
    }

    func lastGoodCheckpointText() -> String {
        guard let path = lastGoodCheckpoint else { return "no checkpoint was written yet; nothing else was written" }
        return "the last good checkpoint is \(path) (epoch \(state.history.count)); nothing else was written"
    }

    func runningLogs() -> [(String, Double)] {
        var logs = [("loss", state.sums.meanLoss)]
        if let v = state.sums.meanHard, distiller.distilling { logs.append(("hard_loss", v)) }
        if distiller.distilling { logs.append(("soft_loss", state.sums.meanSoft)) }
        if let v = state.sums.accuracy { logs.append(("accuracy", v)) }
        return logs
    }

    /// Cross-entropy and accuracy of the student over a whole dataset, in order, inference mode.
    public func evaluate(_ dataset: ImageDataset) throws -> (loss: Double, accuracy: Double?) {
        let (h, w, c) = imageShape
        var options = LoaderOptions(height: h, width: w, channels: c, batchSize: self.options.batchSize, shuffle: false)
        options.fastDecode = self.options.fastDecode
        options.shardRank = collective.rank
        options.shardCount = collective.size
        let loader = try BatchLoader(dataset: dataset, options: options)
        // [loss sum, rows, correct, counted], summed over ranks (each evaluates its share).
        var sums = [Double](repeating: 0, count: 4)
        let stream = loader.epoch(0)
        while let batch = try stream.next() {
            guard batch.count > 0 else { continue }
            let r = try distiller.evaluate(batch.images, labels: batch.labels.data)
            sums[0] += Double(r.total) * Double(r.rows)
            sums[1] += Double(r.rows)
            sums[2] += Double(r.correct)
            sums[3] += Double(r.counted)
        }
        try collective.allReduceSum(&sums)
        return (sums[0] / max(1, sums[1]), sums[3] > 0 ? sums[2] / sums[3] : nil)
    }
}

func makeDirectory(_ path: String) throws {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw RuntimeError("\(path): cannot create the checkpoint folder (\(error.localizedDescription))")
    }
}

extension EpochRecord {
    /// Keras CSVLogger's layout: `epoch` then the metric names sorted; empty where not measured.
    public static func csv(_ records: [EpochRecord]) -> String {
        let header = "epoch,accuracy,hard_loss,learning_rate,loss,soft_loss,val_accuracy,val_loss"
        func f(_ v: Double?) -> String { v.map { String(format: "%.8g", $0) } ?? "" }
        let rows = records.map { r in
            [String(r.epoch), f(r.accuracy), f(r.hardLoss), f(r.learningRate), f(r.loss), f(r.softLoss),
             f(r.valAccuracy), f(r.valLoss)].joined(separator: ",")
        }
        return ([header] + rows).joined(separator: "\n") + "\n"
    }
}

/// Accuracy of any model (e.g. the teacher) on a labelled dataset: argmax of its outputs against
/// the labels, images loaded as for training but never augmented.
public func accuracy(of session: InferenceSession, on dataset: ImageDataset, batchSize: Int = 32) throws -> Double {
    let k = dataset.classCount
    let (outputs, count) = try predictions(of: session, on: dataset, batchSize: batchSize)
    guard count == k else { throw RuntimeError("\(dataset.source): \(k) classes, the model gives \(count) outputs") }
    let r = Metrics.correctPredictions(outputs: outputs, targets: .distribution(dataset.labels), classes: k)
    guard r.counted > 0 else { throw RuntimeError("\(dataset.source): no labelled images") }
    return Double(r.correct) / Double(r.counted)
}
