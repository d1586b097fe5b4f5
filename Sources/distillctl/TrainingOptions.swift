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

    @Flag(help: "Decode training and validation JPEGs of at least twice the model's input size at a reduced scale (libjpeg-turbo's DCT scaling), then resize as usual: faster, but not Keras's load_img pixels (each pixel averages a block). The test set keeps Keras's decode.")
    var fastDecode = false

    @Flag(help: "After training, print the image pipeline's time per image (decode, resize, augment) beside the steps', and where the whole job's time went (before the first step, training, writing the student).")
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

    /// The library's training job, configured by these options (the teachers' by `distill`).
    func jobConfiguration(loadTeachers: (() throws -> [LoadedModel])?, teacherPaths: [String], teacherCache: TeacherCache?,
                          teacherWeights: [Double], distill: DistillConfig) throws -> TrainingJob.Configuration {
        var job = TrainingJob.Configuration(student: student, train: train, output: output)
        job.studentArchitecture = studentArch
        job.loadTeachers = loadTeachers
        job.teacherNames = teacherPaths
        job.teacherCache = teacherCache
        job.teacherWeights = teacherWeights
        job.validation = val
        job.test = test
        job.unlabeled = unlabeled
        job.dataset = layout.datasetOptions()
        job.distill = distill
        job.distill.seed = seed
        job.distill.trainable = selection
        job.distill.frozen = Set(freeze)
        job.resume = outputs.resume
        job.syncBatchNorm = syncBatchnorm
        let optimizer = self.optimizer
        job.makeOptimizer = { optimizer.make(batchesPerEpoch: $0, epochs: $1) }
        var options = TrainingRunOptions()
        options.epochs = epochs
        options.batchSize = batchSize
        options.seed = seed
        options.augment = try augmentConfig()
        options.augmentText = augment
        options.skipBadImages = skipBadImages
        options.fastDecode = fastDecode
        options.checkpointDirectory = outputs.checkpointDir
        options.interruptDirectory = interruptDirectory
        options.historyPath = outputs.history
        options.plotPath = outputs.plot
        options.monitor = outputs.monitor
        options.monitorMode = outputs.monitorMode
        options.learningRateText = optimizer.describe
        options.initialLearningRate = optimizer.initialRate
        let monitor = outputs.monitor ?? (val == nil ? "loss" : "val_loss")
        if let patience = outputs.earlyStoppingPatience {
            options.earlyStopping = try EarlyStopping(monitor: monitor, patience: patience, minDelta: outputs.minDelta,
                                                      mode: outputs.monitorMode, restoreBestWeights: outputs.restoreBestWeights)
        }
        if let patience = optimizer.reduceLrPatience {
            options.reduceLROnPlateau = try ReduceLROnPlateau(monitor: monitor, factor: optimizer.reduceLrFactor, patience: patience,
                                                              mode: outputs.monitorMode, minLearningRate: optimizer.minLr)
        }
        job.run = options
        return job
    }

    /// Runs the library's training job configured by these options and says what it does: the
    /// banner, the progress bar, the student written, the test accuracies. No teacher: plain
    /// training. `loadTeachers` loads the teachers `teacherPaths` name (the job runs it after the
    /// student and the data sets are read and checked, before it decodes the images); `teacherWeights`: normalised, one per teacher (of the cache when there
    /// is one). `files` was checked by the caller before it read anything.
    func run(loadTeachers: (() throws -> [LoadedModel])? = nil, teacherPaths: [String] = [], teacherCache: TeacherCache? = nil,
             teacherWeights: [Double] = [], distill: DistillConfig = DistillConfig(), files: FilePlan) throws {
        let collective = try ActiveRun.start(threads: threads)
        // Rank 0 alone speaks and writes; the others only compute.
        if !collective.isRoot { _ = freopen("/dev/null", "w", stdout) }
        var config = try jobConfiguration(loadTeachers: loadTeachers, teacherPaths: teacherPaths, teacherCache: teacherCache,
                                          teacherWeights: teacherWeights, distill: distill)
        let flagOf: [TrainingJobFile: String] = [.train: "--train", .validation: "--val", .test: "--test"]
        config.preflight = { images, sizes in
            // The images are inputs too: no output may be one of them.
            var files = files
            files.inputs += images.map { (flagOf[$0.0] ?? "--train", $0.1) }
            try files.check()
            try files.checkSpace(sizes)
        }
        let job: TrainingJob
        let setupStart = Date()
        do {
            job = try TrainingJob(config, collective: collective) { event in
                switch event {
                case .leftOut(let set, let left):
                    print("left out \(left.count) \(set == .train ? "training" : "validation") image\(left.count == 1 ? "" : "s") that cannot be loaded: "
                          + left.prefix(5).map { "\($0.file.path) (\($0.reason))" }.joined(separator: "; ")
                          + (left.count > 5 ? "; and \(left.count - 5) more" : ""))
                case .resumed(let path, let epoch, let batch, let step, let changes):
                    print("resuming from \(path): epoch \(epoch + 1), batch \(batch + 1) (step \(step + 1))"
                          + (changes.isEmpty ? "" : "; changed: " + changes.joined(separator: "; ")))
                case .starting(let s):
                    print("training \(s.trainable) of \(s.parameters) parameters on \(s.images) images"
                          + (s.distilling ? String(format: ", alpha %.3g, temperature %.3g, loss %@", distill.alpha, distill.temperature,
                                                   distill.softLoss.description) : "")
                          + "; \(optimizer.describe)"
                          + (s.ranks > 1 ? "; \(s.ranks) ranks, \(batchSize) images per step in all\(syncBatchnorm ? ", batch norm synchronised" : "")" : "")
                          + (s.teacherFromCache ? "; teacher logits from the cache" : "")
                          + (s.sharedPrefix.map { shared in
                              "; the student's frozen layers up to \(shared.layers.joined(separator: ", ")) computed once, in "
                                  + (teacherPaths.count > 1 ? "teacher \(shared.teacher + 1)'s" : "the teacher's") + " pass"
                          } ?? ""))
                case .wrote(let path):
                    print("wrote \(path)")
                }
            }
        } catch let e as TrainingJobError {
            throw CommandLineError(jobErrorText(e))
        } catch let e as ResumeMismatch {
            throw CommandLineError(resumeMismatchText(e))
        } catch var e as MemoryEstimateError {
            e.what = "training with --batch-size \(batchSize)"
            throw e
        }
        let setupSeconds = Date().timeIntervalSince(setupStart), runStart = Date()
        let terminal = isatty(STDOUT_FILENO) != 0
        let progress = KerasProgress(terminal: terminal) { text in print(text, terminator: ""); fflush(stdout) }
        Interruption.install()
        var announced = false
        let result: TrainingJob.Result
        do {
            result = try job.run(reporter: progress, interrupted: {
                guard Interruption.isRequested else { return false }
                if !announced { announced = true; if terminal { print("") } }
                return true
            })
        } catch let e as TrainingStopped where e.checkpoint == nil && outputs.checkpointDir == nil {
            throw TrainingStopped(message: e.message + " (--checkpoint-dir keeps a checkpoint every epoch)", checkpoint: nil)
        }
        if profile {
            print(job.run.imageTimings.describe(stepSeconds: job.run.stepSeconds, stepImages: job.run.stepImages))
            let before = secondsSinceProcessStart().map { String(format: "%.2f s from the process's start to the job, ", $0 - Date().timeIntervalSince(setupStart)) }
            print("job: " + (before ?? "")
                  + String(format: "%.2f s in the job before the first step, %.2f s training and writing (steps %.2f s, writing the student %.2f s)",
                           setupSeconds, Date().timeIntervalSince(runStart), job.run.stepSeconds, job.writeSeconds))
        }
        if case .interrupted(let path) = result.outcome {
            let p = job.run.state.position
            let dir = (path as NSString).deletingLastPathComponent
            print("interrupted in epoch \(p.epoch + 1) after batch \(p.batch): saved \(path); \(output) was not written. "
                  + "Continue with the same command and --resume --checkpoint-dir \(dir)")
            throw ExitCode(130)
        }
        for (i, a) in result.teacherTestAccuracies.enumerated() {
            print(String(format: "teacher%@ test accuracy %.4f", result.teacherTestAccuracies.count > 1 ? " \(i + 1)" : "", a))
        }
        if let a = result.studentTestAccuracy {
            print(String(format: "student test accuracy %.4f (%d images)", a, result.testImages))
        }
    }
}

/// A refusal of the training job, in the command line's words where a flag is the remedy.
func jobErrorText(_ e: TrainingJobError) -> String {
    switch e.kind {
    case .unlabeledWithoutTeacher:
        return "--unlabeled needs a teacher: unlabelled images only teach through the soft loss"
    case .checkpointOfAnotherModel(let checkpoint, let student):
        return "\(checkpoint): the checkpoint holds another model than --student \(student)"
    case .badImages(let bad):
        return "\(bad) (--skip-bad-images leaves them out)"
    default:
        return e.description
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
        if teachers.teacherCache != nil && options.fastDecode {
            throw ValidationError("--teacher-cache holds the logits of the images as Keras decodes them: it cannot be combined with --fast-decode")
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
            let (cache, weights) = try teachers.loadCache()
            let teachers = self.teachers
            var distill = DistillConfig()
            distill.alpha = alpha
            distill.temperature = temperature
            distill.softLoss = try loss.softLoss()
            distill.teacherPrecision = teachers.teacherPrecision
            distill.features = try features.pairs()
            try options.run(loadTeachers: teachers.teacher.isEmpty ? nil : { try teachers.loadModels(cache: cache) },
                            teacherPaths: teachers.teacher, teacherCache: cache, teacherWeights: weights,
                            distill: distill, files: files)
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
            // No teacher: cross-entropy alone (recorded in checkpoints as alpha 1, temperature 1).
            var distill = DistillConfig()
            distill.alpha = 1
            distill.temperature = 1
            try options.run(distill: distill, files: files)
        }
    }
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

/// Seconds since this process started (Linux: /proc/self/stat's start time, in clock ticks since
/// boot, against /proc/uptime; 10 ms resolution), for `--profile`'s account of the whole process.
func secondsSinceProcessStart() -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
          let uptime = (try? String(contentsOfFile: "/proc/uptime", encoding: .utf8))?.split(separator: " ").first.flatMap({ Double($0) }),
          let close = stat.lastIndex(of: ")") else { return nil }
    // Fields after the command name (which may hold spaces): state is field 3, starttime field 22.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 19, let ticks = Double(fields[19]) else { return nil }
    let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
    return uptime - ticks / hz
}
