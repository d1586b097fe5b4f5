import ArgumentParser
import Foundation
import Graph
import Runtime

/// The data and schedule options `distill` and `train` share.
struct TrainingOptions: ParsableArguments {
    @Option(help: "The student: a full model (.h5 or .keras), or a weights-only file (.h5 or .weights.h5) with --student-arch.")
    var student: String

    @Option(help: "Architecture JSON for a weights-only student.")
    var studentArch: String?

    @Option(help: "Training images: a CSV (image_id + one-hot columns, or a label column) or a folder per class.")
    var train: String

    @Option(help: "Validation images, as --train; evaluated in full after every epoch.")
    var val: String?

    @Option(help: "A folder of unlabelled images added to the training set: they teach through the soft loss alone (distill only).")
    var unlabeled: String?

    @Option(help: "Held-out images, as --train: the student's (and teacher's) accuracy on them is printed at the end.")
    var test: String?

    @OptionGroup var layout: CSVLayoutOptions

    @Option(help: "Where to write the trained student, a full model: STUDENT.keras (Keras 3) or STUDENT.h5 (tf-keras and Keras 3).")
    var output: String

    @Option(help: "Epochs.") var epochs: Int = 10
    @Option(help: "Images per step; the last partial batch of an epoch is used too.") var batchSize: Int = 8
    @Option(help: "Seed for shuffling, augmentation and dropout.") var seed: UInt64 = 0

    @Option(help: "Train only from this layer on (R's unfreeze_weights(from = LAYER)); earlier layers are frozen.")
    var unfreezeFrom: String?

    @Option(parsing: .upToNextOption, help: "Layers (or nested models) to freeze.")
    var freeze: [String] = []

    @Flag(help: "Train only the top-level layers after the nested base model.")
    var trainableHead = false

    @Option(help: "Keras image_data_generator arguments, e.g. \"rotation_range=40, zoom_range=0.5, horizontal_flip=TRUE, fill_mode='reflect'\", or 'seed' for the blog post's settings.")
    var augment: String?

    @Flag(help: "Leave out images that cannot be decoded (listed and counted) instead of stopping before the first step.")
    var skipBadImages = false

    @Option(help: "Threads (default: all cores; under mpirun, the cores shared among the ranks on each machine).")
    var threads: Int?

    @Flag(help: "Under mpirun: batch-normalization statistics over every rank's images (default: each rank's own, as Horovod).")
    var syncBatchnorm = false

    @Flag(help: "After training, print the image pipeline's time per image (decode, resize, augment) beside the steps'.")
    var profile = false

    @OptionGroup(title: "Optimizer") var optimizer: OptimizerOptions
    @OptionGroup(title: "Checkpoints, history and stopping") var outputs: RunOutputOptions

    func validate() throws {
        guard epochs > 0, batchSize > 0 else { throw ValidationError("--epochs and --batch-size must be positive") }
        if output.lowercased().hasSuffix(".weights.h5") {
            throw ValidationError("--output \(output): the student is written as a full model; name it .keras or .h5 (convert makes weights-only files)")
        }
        if unfreezeFrom != nil && trainableHead { throw ValidationError("give --unfreeze-from or --trainable-head, not both") }
        if let monitor = outputs.monitor, monitor.hasPrefix("val_"), val == nil {
            throw ValidationError("--monitor \(monitor) needs a validation set (--val)")
        }
    }

    var selection: TrainableSelection {
        if let layer = unfreezeFrom { return .unfreezeFrom(layer) }
        return trainableHead ? .headOnly : .asConfigured
    }

    func augmentConfig() throws -> AugmentConfig? {
        guard let augment else { return nil }
        return augment == "seed" ? .seedExample : try AugmentConfig.parse(augment)
    }

    /// Where a Ctrl-C checkpoint goes without --checkpoint-dir: beside the output.
    var interruptDirectory: String { outputs.checkpointDir ?? (output as NSString).deletingPathExtension + "-checkpoint" }

    /// The files this run reads and writes (the teachers' added by `distill`).
    func filePlan() -> FilePlan {
        var files = FilePlan()
        files.input("--student", student)
        files.input("--student-arch", studentArch)
        files.input("--train", train)
        files.input("--val", val)
        files.input("--test", test)
        files.input("--unlabeled", unlabeled)
        files.output("--output", output)
        files.output("--history", outputs.history)
        files.output("--plot", outputs.plot)
        if let dir = outputs.checkpointDir {
            files.folders.append(("--checkpoint-dir", dir))
            for name in ["last.h5", "best.h5"] { files.laterFiles.append(("--checkpoint-dir", (dir as NSString).appendingPathComponent(name))) }
        } else {
            files.laterFiles.append(("the checkpoint an interruption writes", (interruptDirectory as NSString).appendingPathComponent("last.h5")))
        }
        return files
    }

    /// Loads the data, trains, writes the student and the history. No teacher: plain training.
    /// `teacherPaths` name `teachers` in messages; `teacherWeights`: normalised, one per teacher (of
    /// the cache when there is one). `files` was checked by the caller before it read anything.
    func run(teachers: [LoadedModel] = [], teacherPaths: [String] = [], teacherCache: TeacherCache? = nil,
             teacherWeights: [Double] = [], alpha: Double, temperature: Double, softLoss: SoftLoss = .kd,
             features: [FeaturePair] = [], files: FilePlan) throws {
        var files = files
        let collective = try ActiveRun.start(threads: threads)
        // Rank 0 alone speaks and writes; the others only compute.
        if !collective.isRoot { _ = freopen("/dev/null", "w", stdout) }
        var studentModel = try LoadedModel.load(path: student, archPath: studentArch)
        try refuseNonFinite(studentModel, path: student, role: "student")
        var resumeFrom: (TrainingCheckpoint, String)? = nil
        if outputs.resume, let dir = outputs.checkpointDir {
            let path = (dir as NSString).appendingPathComponent("last.h5")
            let checkpoint = try TrainingCheckpoint.read(path: path)
            guard checkpoint.model.graph.uniqueLayers.map(\.layerKey) == studentModel.graph.uniqueLayers.map(\.layerKey) else {
                throw ValidationError("\(path): the checkpoint holds another model than --student \(student)")
            }
            // The checkpoint's weights replace the student's; a nested Normalization's constants
            // (written into the checkpoint's config rather than as weights) stay the student's.
            studentModel.weights.byLayer.merge(checkpoint.model.weights.byLayer) { $1 }
            try refuseNonFinite(studentModel, path: path, role: "checkpoint")
            resumeFrom = (checkpoint, path)
        }
        var trainSet = try ImageDataset.load(train, options: layout.datasetOptions(classNames: nil))
        if let unlabeled {
            guard !teachers.isEmpty || teacherCache != nil else { throw ValidationError("--unlabeled needs a teacher: unlabelled images only teach through the soft loss") }
            trainSet = try trainSet.appending(ImageDataset.fromUnlabelledFolder(unlabeled, classNames: trainSet.classNames))
        }
        var valSet = try val.map { try trainSet.validationSplit($0, options: layout.datasetOptions(classNames: trainSet.classNames)) }
        // Every image is decoded once before the first step: bad ones stop the run here, listed,
        // or are left out with --skip-bad-images.
        // The test set is read now, so that a bad one is refused before training rather than after.
        let testSet = try test.map { try ImageDataset.load($0, options: layout.datasetOptions(classNames: trainSet.classNames)) }
        // The images are inputs too: no output may be one of them.
        files.inputs += trainSet.files.map { ("--train", $0.path) } + (valSet?.files ?? []).map { ("--val", $0.path) }
            + (testSet?.files ?? []).map { ("--test", $0.path) }
        try files.check()
        let inputShape = studentModel.graph.nodes[studentModel.graph.inputs[0]].outputShape
        guard inputShape.count == 3 else { throw ValidationError("\(student): the student's input is \(inputShape), not an image") }
        for (teacher, teacherPath) in zip(teachers, teacherPaths) {
            // The images are loaded at the student's size; each teacher must take that size too.
            let shapes = teacher.graph.inputs.map { teacher.graph.nodes[$0].outputShape }
            guard shapes.count == 1, shapes[0].count == 3, zip(shapes[0], inputShape).allSatisfy({ $0 < 0 || $0 == $1 }) else {
                throw CommandLineError("\(teacherPath): the teacher's input is \(shapeText(shapes)), the images are loaded at "
                                       + "the student's \(shapeText([inputShape])): both must take the same image size")
            }
        }
        let stepImages = min(batchSize, trainSet.count)
        try checkMemory(what: "training with --batch-size \(batchSize)",
                        bytes: trainingMemoryEstimate(student: studentModel, teachers: teacherCache == nil ? teachers : [], batch: stepImages))
        let modelBytes = estimatedFileBytes(studentModel)
        try files.checkSpace([(output, modelBytes)] + files.laterFiles.filter { $0.flag == "--checkpoint-dir" }.map { ($0.path, modelBytes * 3) }
                             + [outputs.history, outputs.plot].compactMap { $0 }.map { ($0, 64 * 1024 + 200 * epochs) })
        for (name, set) in [("training", Optional(trainSet)), ("validation", valSet)] {
            guard let set else { continue }
            let checked: ImageDataset, left: [BadImage]
            do {
                (checked, left) = try TrainingRun.checkImages(set, height: inputShape[0], width: inputShape[1], channels: inputShape[2],
                                                              skipBad: skipBadImages)
            } catch let e as BadImagesError {
                throw CommandLineError("\(e) (--skip-bad-images leaves them out)")
            }
            if !left.isEmpty {
                print("left out \(left.count) \(name) image\(left.count == 1 ? "" : "s") that cannot be loaded: "
                      + left.prefix(5).map { "\($0.file.path) (\($0.reason))" }.joined(separator: "; ")
                      + (left.count > 5 ? "; and \(left.count - 5) more" : ""))
            }
            if name == "training" { trainSet = checked } else { valSet = checked }
        }
        var config = DistillConfig()
        config.alpha = alpha
        config.temperature = temperature
        config.seed = seed
        config.trainable = selection
        config.frozen = Set(freeze)
        config.softLoss = softLoss
        config.features = features
        let batchesPerEpoch = (trainSet.count + batchSize - 1) / batchSize
        let distiller = try Distiller(student: studentModel, teachers: teacherCache == nil ? teachers : [],
                                      teacherWeights: teacherWeights,
                                      optimizer: optimizer.make(batchesPerEpoch: batchesPerEpoch, epochs: epochs), config: config)
        distiller.collective = collective
        distiller.syncBatchNorm = syncBatchnorm
        distiller.teacherCacheIdentity = teacherCache.map { TeacherCache.identity(teachers: $0.teachers, weights: teacherWeights) }
        var options = TrainingRunOptions()
        options.epochs = epochs
        options.batchSize = batchSize
        options.seed = seed
        options.augment = try augmentConfig()
        options.augmentText = augment
        options.skipBadImages = skipBadImages
        options.checkpointDirectory = outputs.checkpointDir
        options.interruptDirectory = interruptDirectory
        options.historyPath = outputs.history
        options.plotPath = outputs.plot
        options.teacherCache = teacherCache
        options.monitor = outputs.monitor
        options.monitorMode = outputs.monitorMode
        options.learningRateText = optimizer.describe
        options.initialLearningRate = optimizer.initialRate
        let monitor = outputs.monitor ?? (valSet == nil ? "loss" : "val_loss")
        if let patience = outputs.earlyStoppingPatience {
            options.earlyStopping = try EarlyStopping(monitor: monitor, patience: patience, minDelta: outputs.minDelta,
                                                      mode: outputs.monitorMode, restoreBestWeights: outputs.restoreBestWeights)
        }
        if let patience = optimizer.reduceLrPatience {
            options.reduceLROnPlateau = try ReduceLROnPlateau(monitor: monitor, factor: optimizer.reduceLrFactor, patience: patience,
                                                              mode: outputs.monitorMode,
                                                              minLearningRate: optimizer.minLr)
        }
        let run = try TrainingRun(distiller: distiller, train: trainSet, validation: valSet, options: options)
        if let (checkpoint, path) = resumeFrom {
            do { try run.resume(from: checkpoint, path: path) } catch let e as ResumeMismatch {
                throw CommandLineError(resumeMismatchText(e))
            }
            let p = run.state.position
            print("resuming from \(path): epoch \(p.epoch + 1), batch \(p.batch + 1) (step \(run.state.step + 1))"
                  + (run.resumeChanges.isEmpty ? "" : "; changed: " + run.resumeChanges.joined(separator: "; ")))
        }
        let terminal = isatty(STDOUT_FILENO) != 0
        print("training \(distiller.params.trainableCount) of \(studentModel.graph.parameterCounts().total) parameters on \(trainSet.count) images\(distiller.distilling ? String(format: ", alpha %.3g, temperature %.3g, loss %@", alpha, temperature, softLoss.description) : ""); \(optimizer.describe)"
              + (collective.isDistributed ? "; \(collective.size) ranks, \(batchSize) images per step in all\(syncBatchnorm ? ", batch norm synchronised" : "")" : "")
              + (teacherCache != nil ? "; teacher logits from the cache" : ""))
        let progress = KerasProgress(terminal: terminal) { text in print(text, terminator: ""); fflush(stdout) }
        Interruption.install()
        var announced = false
        let outcome: RunOutcome
        do {
            outcome = try run.run(reporter: progress, interrupted: {
                guard Interruption.isRequested else { return false }
                if !announced { announced = true; if terminal { print("") } }
                return true
            })
        } catch let e as TrainingStopped where e.checkpoint == nil && outputs.checkpointDir == nil {
            throw TrainingStopped(message: e.message + " (--checkpoint-dir keeps a checkpoint every epoch)", checkpoint: nil)
        }
        if profile { print(run.imageTimings.describe(stepSeconds: run.stepSeconds, stepImages: run.stepImages)) }
        if case .interrupted(let path) = outcome {
            let p = run.state.position
            let dir = (path as NSString).deletingLastPathComponent
            print("interrupted in epoch \(p.epoch + 1) after batch \(p.batch): saved \(path); \(output) was not written. "
                  + "Continue with the same command and --resume --checkpoint-dir \(dir)")
            throw ExitCode(130)
        }
        let trained = distiller.trainedModel()
        if collective.isRoot {
            try trained.writeKerasFile(to: output)
            print("wrote \(output)")
        }
        guard collective.isRoot else { return }
        if let testSet {
            for (i, teacher) in teachers.enumerated() {
                let a = try accuracy(of: InferenceSession(model: teacher), on: testSet, batchSize: batchSize)
                print(String(format: "teacher%@ test accuracy %.4f", teachers.count > 1 ? " \(i + 1)" : "", a))
            }
            let a = try accuracy(of: InferenceSession(model: trained), on: testSet, batchSize: batchSize)
            print(String(format: "student test accuracy %.4f (%d images)", a, testSet.count))
        }
    }
}

struct DistillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Distil a teacher into a student on your images and write the student as a Keras file (.h5 or .keras).",
        discussion: """
        Loss: alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T)), on logits (taken before a trailing softmax when a model has one). alpha weights the HARD-label loss, as in the blog post (alpha = 0.9) and Keras's distillation example; images without a label teach through the soft term alone. --loss dkd or dist replaces the KL term (see --loss); several --teacher give the weighted mean of their logits as the teacher's; each --feature adds weight * feature_loss (see --feature).

        Teacher: inference mode. Student: training mode (trainable BatchNormalization uses batch statistics and updates its moving statistics; frozen ones run in inference mode, as in Keras). Optimizer: Adam with Keras's defaults unless --optimizer says otherwise.

        A NaN or infinite loss, gradient or weight stops the run (exit 1) naming the epoch, batch and step; the last checkpoint stays as it was. Ctrl-C saves a checkpoint that --resume continues from (exit 130). Under mpirun, each rank takes its share of every batch and the gradients are summed over ranks.
        """)


    @OptionGroup(title: "Teachers") var teachers: TeacherOptions

    @Option(help: "Weight of the hard-label loss (the soft loss gets 1 - alpha).")
    var alpha: Double = 0.9

    @Option(help: "Softmax temperature of the soft loss.")
    var temperature: Double = 3

    @OptionGroup(title: "Logit loss") var loss: LossOptions
    @OptionGroup(title: "Feature distillation") var features: FeatureOptions

    @OptionGroup var options: TrainingOptions

    func validate() throws {
        if teachers.teacherCache != nil && options.augment != nil {
            throw ValidationError("--teacher-cache holds the logits of the images as they are: it cannot be combined with --augment")
        }
        if teachers.teacherCache != nil && !features.feature.isEmpty {
            throw ValidationError("--feature needs the teacher's inner layers, which --teacher-cache does not hold: give --teacher instead")
        }
        guard (0...1).contains(alpha) else { throw ValidationError("--alpha must be in [0, 1]") }
        guard temperature > 0, temperature.isFinite else { throw ValidationError("--temperature must be a positive finite number") }
    }

    func run() throws {
        try reportingErrors {
            var files = options.filePlan()
            for path in teachers.teacher { files.input("--teacher", path) }
            for path in teachers.teacherArch { files.input("--teacher-arch", path) }
            files.input("--teacher-cache", teachers.teacherCache)
            try files.check()
            let (models, cache, weights) = try teachers.load()
            for (model, path) in zip(models, teachers.teacher) { try refuseNonFinite(model, path: path, role: "teacher") }
            try options.run(teachers: models, teacherPaths: teachers.teacher, teacherCache: cache, teacherWeights: weights,
                            alpha: alpha, temperature: temperature, softLoss: try loss.softLoss(), features: try features.pairs(),
                            files: files)
        }
    }
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a student without a teacher (cross-entropy on its logits): the baseline for distillation.")

    @OptionGroup var options: TrainingOptions

    func run() throws {
        try reportingErrors {
            let files = options.filePlan()
            try files.check()
            try options.run(alpha: 1, temperature: 1, files: files)
        }
    }
}

/// "(28, 28, 1)", or several such joined.
func shapeText(_ shapes: [[Int]]) -> String {
    shapes.map { "(" + $0.map { $0 < 0 ? "any" : String($0) }.joined(separator: ", ") + ")" }.joined(separator: ", ")
}

/// Memory of a training step of `batch` images: the student's activations about three times
/// (kept for the backward pass, and their gradients), the teachers' inference, and the student's
/// weights four times (values, gradients, two optimizer slots).
func trainingMemoryEstimate(student: LoadedModel, teachers: [LoadedModel], batch: Int) throws -> Int {
    let s = try InferenceSession(model: student).estimatedBytes(items: batch, batchSize: batch, threads: 1, wholeBatch: true)
    let t = try teachers.reduce(0) { sum, teacher in
        let (r, o) = sum.addingReportingOverflow(try InferenceSession(model: teacher).estimatedBytes(items: batch, batchSize: batch))
        return o ? Int.max : r
    }
    let weights = student.graph.parameterCounts().total * 4
    let parts = [s > Int.max / 4 ? Int.max : s * 3, t, weights * 4]
    return parts.reduce(0) { let (r, o) = $0.addingReportingOverflow($1); return o ? Int.max : r }
}

/// A checkpoint of another run, in the command line's words: each difference names its flag.
func resumeMismatchText(_ e: ResumeMismatch) -> String {
    e.text { d in
        switch d {
        case .batchSize(let b): return "--batch-size was \(b)"
        case .seed(let s): return "--seed was \(s)"
        case .augment(let a): return "--augment was \(a.map { "'\($0)'" } ?? "off")"
        case .loss(let a, let t): return "--alpha/--temperature were \(a.map { "\($0)" } ?? "-")/\(t.map { "\($0)" } ?? "-")"
        case .softLoss(let l): return "--loss was \(l)"
        case .features(let f): return "--feature was \(f ?? "none")"
        case .kind, .images, .teacher: return nil
        }
    }
}
