import ArgumentParser
import Foundation
import Graph
import Runtime

/// The data and schedule options `distill` and `train` share.
struct TrainingOptions: ParsableArguments {
    @Option(help: "The student: a full-model .h5, or a weights-only file with --student-arch.")
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

    @Option(help: "Folder the CSVs' file names are relative to (default: each CSV's folder).")
    var images: String?

    @Option(help: "CSV column naming the image files.")
    var xCol: String = "image_id"

    @Option(help: "Comma-separated one-hot label columns (default: every column but --x-col, or a 'label' column).")
    var yCols: String?

    @Option(help: "Where to write the trained student (a full-model Keras .h5).")
    var output: String

    @Option(help: "Epochs.") var epochs: Int = 10
    @Option(help: "Images per step; the last partial batch of an epoch is used too.") var batchSize: Int = 8
    @Option(help: "Adam's learning rate.") var learningRate: Double = 1e-3
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

    @Option(help: "Per-epoch history as CSV (Keras CSVLogger's layout).")
    var history: String?

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        guard epochs > 0, batchSize > 0, learningRate > 0 else {
            throw ValidationError("--epochs, --batch-size and --learning-rate must be positive")
        }
        if unfreezeFrom != nil && trainableHead { throw ValidationError("give --unfreeze-from or --trainable-head, not both") }
    }

    var selection: TrainableSelection {
        if let layer = unfreezeFrom { return .unfreezeFrom(layer) }
        return trainableHead ? .headOnly : .asConfigured
    }

    func datasetOptions(classNames: [String]?) -> DatasetOptions {
        var o = DatasetOptions()
        o.xColumn = xCol
        o.imageDirectory = images
        if let yCols { o.labels = .oneHot(yCols.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) }
        o.classNames = classNames
        return o
    }

    func augmentConfig() throws -> AugmentConfig? {
        guard let augment else { return nil }
        return augment == "seed" ? .seedExample : try AugmentConfig.parse(augment)
    }

    /// Loads the data, trains, writes the student and the history. `teacher` nil: plain training.
    func run(teacher: LoadedModel?, alpha: Double, temperature: Double) throws {
        if let threads { RuntimeThreads.set(threads) }
        try ensureDistinctOutputs([output] + (history.map { [$0] } ?? []),
                                  inputs: [student, studentArch, train, val, test].compactMap { $0 })
        let studentModel = try LoadedModel.load(path: student, archPath: studentArch)
        var trainSet = try ImageDataset.load(train, options: datasetOptions(classNames: nil))
        if let unlabeled {
            guard teacher != nil else { throw ValidationError("--unlabeled needs a teacher: unlabelled images only teach through the soft loss") }
            trainSet = try trainSet.appending(ImageDataset.fromUnlabelledFolder(unlabeled, classNames: trainSet.classNames))
        }
        let valSet = try val.map { try trainSet.validationSplit($0, options: datasetOptions(classNames: trainSet.classNames)) }
        var config = DistillConfig()
        config.alpha = alpha
        config.temperature = temperature
        config.seed = seed
        config.trainable = selection
        config.frozen = Set(freeze)
        let distiller = try Distiller(student: studentModel, teacher: teacher,
                                      optimizer: Adam(learningRate: .constant(learningRate)), config: config)
        var options = TrainingRunOptions()
        options.epochs = epochs
        options.batchSize = batchSize
        options.seed = seed
        options.augment = try augmentConfig()
        options.skipBadImages = skipBadImages
        let checked = try TrainingRun(distiller: distiller, train: trainSet, validation: valSet, options: options)
            .checkingImages()
        let terminal = isatty(STDOUT_FILENO) != 0
        print("training \(distiller.params.trainableCount) of \(studentModel.graph.parameterCounts().total) parameters on \(checked.train.count) images\(teacher == nil ? "" : String(format: ", alpha %.3g, temperature %.3g", alpha, temperature))")
        try checked.run(report: { line in
            if line.hasPrefix("epoch") && line.contains("ETA") {
                if terminal { print("\r" + line, terminator: ""); fflush(stdout) }
            } else {
                if terminal { print("\r", terminator: "") }
                print(line)
            }
        }, epochEnded: { _ in
            if let history { try writeAtomically(EpochRecord.csv(checked.history), to: history) }
        })
        let trained = distiller.trainedModel()
        try trained.writeKerasFile(to: output)
        print("wrote \(output)")
        if let test {
            let testSet = try ImageDataset.load(test, options: datasetOptions(classNames: trainSet.classNames))
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
        abstract: "Distil a teacher into a student on your images and write the student as a Keras .h5.",
        discussion: """
        Loss: alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T)),
        on logits (taken before a trailing softmax when a model has one). alpha weights the HARD-label
        loss, as in the blog post (alpha = 0.9) and Keras's distillation example; images without a label
        teach through the soft term alone. Teacher: inference mode. Student: training mode (trainable
        BatchNormalization uses batch statistics and updates its moving statistics; frozen ones run in
        inference mode, as in Keras). Optimizer: Adam (Keras defaults but --learning-rate).
        """)

    @Option(help: "The teacher: a full-model .h5, or a weights-only file with --teacher-arch.")
    var teacher: String

    @Option(help: "Architecture JSON for a weights-only teacher.")
    var teacherArch: String?

    @Option(help: "Weight of the hard-label loss (the soft loss gets 1 - alpha).")
    var alpha: Double = 0.9

    @Option(help: "Softmax temperature of the soft loss.")
    var temperature: Double = 3

    @OptionGroup var options: TrainingOptions

    func validate() throws {
        guard (0...1).contains(alpha) else { throw ValidationError("--alpha must be in [0, 1]") }
        guard temperature > 0 else { throw ValidationError("--temperature must be positive") }
    }

    func run() throws {
        try reportingErrors {
            let teacherModel = try LoadedModel.load(path: teacher, archPath: teacherArch)
            try options.run(teacher: teacherModel, alpha: alpha, temperature: temperature)
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
