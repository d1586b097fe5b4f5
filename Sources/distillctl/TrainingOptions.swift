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

    /// Loads the data, trains, writes the student and the history. `teacher` nil: plain training.
    func run(teacher: LoadedModel?, teacherCache: TeacherCache? = nil, alpha: Double, temperature: Double) throws {
        let collective = try ActiveRun.start(threads: threads)
        // Rank 0 alone speaks and writes; the others only compute.
        if !collective.isRoot { _ = freopen("/dev/null", "w", stdout) }
        let written = [output, outputs.history, outputs.plot].compactMap { $0 }
        try ensureDistinctOutputs(written, inputs: [student, studentArch, train, val, test].compactMap { $0 })
        var studentModel = try LoadedModel.load(path: student, archPath: studentArch)
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
            resumeFrom = (checkpoint, path)
        }
        var trainSet = try ImageDataset.load(train, options: layout.datasetOptions(classNames: nil))
        if let unlabeled {
            guard teacher != nil else { throw ValidationError("--unlabeled needs a teacher: unlabelled images only teach through the soft loss") }
            trainSet = try trainSet.appending(ImageDataset.fromUnlabelledFolder(unlabeled, classNames: trainSet.classNames))
        }
        var valSet = try val.map { try trainSet.validationSplit($0, options: layout.datasetOptions(classNames: trainSet.classNames)) }
        // Every image is decoded once before the first step: bad ones stop the run here, listed,
        // or are left out with --skip-bad-images.
        let inputShape = studentModel.graph.nodes[studentModel.graph.inputs[0]].outputShape
        guard inputShape.count == 3 else { throw ValidationError("\(student): the student's input is \(inputShape), not an image") }
        for (name, set) in [("training", Optional(trainSet)), ("validation", valSet)] {
            guard let set else { continue }
            let (checked, left) = try TrainingRun.checkImages(set, height: inputShape[0], width: inputShape[1], channels: inputShape[2],
                                                             skipBad: skipBadImages)
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
        let batchesPerEpoch = (trainSet.count + batchSize - 1) / batchSize
        let distiller = try Distiller(student: studentModel, teacher: teacherCache == nil ? teacher : nil,
                                      optimizer: optimizer.make(batchesPerEpoch: batchesPerEpoch, epochs: epochs), config: config)
        distiller.collective = collective
        distiller.syncBatchNorm = syncBatchnorm
        distiller.teacherCacheIdentity = teacherCache?.teacher
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
            try run.resume(from: checkpoint, path: path)
            let p = run.state.position
            print("resuming from \(path): epoch \(p.epoch + 1), batch \(p.batch + 1) (step \(run.state.step + 1))")
        }
        let terminal = isatty(STDOUT_FILENO) != 0
        print("training \(distiller.params.trainableCount) of \(studentModel.graph.parameterCounts().total) parameters on \(trainSet.count) images\(distiller.distilling ? String(format: ", alpha %.3g, temperature %.3g", alpha, temperature) : ""); \(optimizer.describe)"
              + (collective.isDistributed ? "; \(collective.size) ranks, \(batchSize) images per step in all\(syncBatchnorm ? ", batch norm synchronised" : "")" : "")
              + (teacherCache != nil ? "; teacher logits from the cache" : ""))
        let progress = KerasProgress(terminal: terminal) { text in print(text, terminator: ""); fflush(stdout) }
        Interruption.install()
        var announced = false
        let outcome = try run.run(reporter: progress, interrupted: {
            guard Interruption.isRequested else { return false }
            if !announced { announced = true; if terminal { print("") } }
            return true
        })
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
        if let test {
            let testSet = try ImageDataset.load(test, options: layout.datasetOptions(classNames: trainSet.classNames))
            if let teacher {
                let a = try accuracy(of: InferenceSession(model: teacher), on: testSet, batchSize: batchSize)
                print(String(format: "teacher test accuracy %.4f", a))
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
        Loss: alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T)), on logits (taken before a trailing softmax when a model has one). alpha weights the HARD-label loss, as in the blog post (alpha = 0.9) and Keras's distillation example; images without a label teach through the soft term alone.

        Teacher: inference mode. Student: training mode (trainable BatchNormalization uses batch statistics and updates its moving statistics; frozen ones run in inference mode, as in Keras). Optimizer: Adam with Keras's defaults unless --optimizer says otherwise.

        A NaN or infinite loss, gradient or weight stops the run (exit 1) naming the epoch, batch and step; the last checkpoint stays as it was. Ctrl-C saves a checkpoint that --resume continues from (exit 130). Under mpirun, each rank takes its share of every batch and the gradients are summed over ranks.
        """)


    @Option(help: "The teacher: a full model (.h5 or .keras), or a weights-only file (.h5 or .weights.h5) with --teacher-arch.")
    var teacher: String?

    @Option(help: "The teacher's logits from `distillctl teacher-cache`, used instead of running the teacher (no augmentation). With --teacher too, the cache must be that teacher's.")
    var teacherCache: String?

    @Option(help: "Architecture JSON for a weights-only teacher.")
    var teacherArch: String?

    @Option(help: "Weight of the hard-label loss (the soft loss gets 1 - alpha).")
    var alpha: Double = 0.9

    @Option(help: "Softmax temperature of the soft loss.")
    var temperature: Double = 3

    @OptionGroup var options: TrainingOptions

    func validate() throws {
        guard teacher != nil || teacherCache != nil else { throw ValidationError("give --teacher, or --teacher-cache") }
        if teacherCache != nil && options.augment != nil {
            throw ValidationError("--teacher-cache holds the logits of the images as they are: it cannot be combined with --augment")
        }
        guard (0...1).contains(alpha) else { throw ValidationError("--alpha must be in [0, 1]") }
        guard temperature > 0 else { throw ValidationError("--temperature must be positive") }
    }

    func run() throws {
        try reportingErrors {
            let teacherModel = try teacher.map { try LoadedModel.load(path: $0, archPath: teacherArch) }
            let cache = try teacherCache.map { try TeacherCache.read(path: $0) }
            // With both, the cache must be this teacher's (the teacher then only gives its test accuracy).
            if let cache, let teacherModel, cache.teacher != TeacherCache.identity(of: teacherModel) {
                throw ValidationError("\(teacherCache!): the cache was made by another teacher (\(cache.teacher)), not \(teacher!)")
            }
            try options.run(teacher: teacherModel, teacherCache: cache, alpha: alpha, temperature: temperature)
        }
    }
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a student without a teacher (cross-entropy on its logits): the baseline for distillation.")

    @OptionGroup var options: TrainingOptions

    func run() throws {
        try reportingErrors { try options.run(teacher: nil, alpha: 1, temperature: 1) }
    }
}
