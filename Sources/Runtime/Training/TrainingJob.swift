// The whole training job as one library call: load the student (and resume a checkpoint), read
// the data sets, check everything that can be checked before the first step, train, write the
// student, measure it on a test set. The command line only configures it (flags to a
// `TrainingJob.Configuration`) and words what it reports: no flag name appears here, and nothing
// here prints or ends the process.
import Foundation
import Graph

/// Which data set an image of the job belongs to, so that the caller can name it its own way (the
/// command line by its flag).
public enum TrainingJobFile: Hashable, Sendable {
    case train, validation, test
}

/// A refusal before training starts, naming what is at fault (`TrainingJob` words each one; a
/// caller may word them otherwise).
public struct TrainingJobError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// Unlabelled images without a teacher: they could teach nothing.
        case unlabeledWithoutTeacher
        /// The checkpoint to resume from holds another model than the student.
        case checkpointOfAnotherModel(checkpoint: String, student: String)
        /// A model (the student, a teacher, the checkpoint) holds a NaN or infinite weight.
        case nonFiniteWeight(path: String, role: String, weight: String)
        /// The student's input is not an image (height, width, channels).
        case studentInputNotImage(student: String, shape: [Int])
        /// A teacher's input differs from the student's, at which size the images are loaded.
        case teacherInput(teacher: String, teacherShapes: [[Int]], imageShape: [Int])
        /// A teacher gives several outputs (named as Keras names them): which one teaches is not guessed.
        case teacherOutputs(teacher: String, outputs: [String])
        /// Images that cannot be decoded, and the job was not told to leave them out.
        case badImages(BadImagesError)
    }
    public var kind: Kind

    public var description: String {
        switch kind {
        case .unlabeledWithoutTeacher:
            return "unlabelled images need a teacher: they only teach through the soft loss"
        case .checkpointOfAnotherModel(let checkpoint, let student):
            return "\(checkpoint): the checkpoint holds another model than the student \(student)"
        case .nonFiniteWeight(let path, let role, let weight):
            return "\(path): the \(role)'s \(weight); training cannot start from it"
        case .studentInputNotImage(let student, let shape):
            return "\(student): the student's input is \(shape), not an image"
        case .teacherInput(let teacher, let shapes, let image):
            return "\(teacher): the teacher's input is \(shapeText(shapes)), the images are loaded at the student's "
                + "\(shapeText([image])): both must take the same image size"
        case .teacherOutputs(let teacher, let outputs):
            // Its one output is the class scores the student learns from; which of several is not guessed.
            return "\(teacher): the teacher has \(outputs.count) outputs (\(outputs.joined(separator: ", "))); a teacher gives "
                + "one, its class scores (save the teacher with the output that teaches as its only output)"
        case .badImages(let e):
            return e.description
        }
    }
}

/// "(28, 28, 1)", or several such joined.
public func shapeText(_ shapes: [[Int]]) -> String {
    shapes.map { "(" + $0.map { $0 < 0 ? "any" : String($0) }.joined(separator: ", ") + ")" }.joined(separator: ", ")
}

/// What the job tells its caller as it goes, in order.
public enum TrainingJobEvent: Sendable {
    /// Images left out because they cannot be decoded (`skipBadImages`); `set` is .train or .validation.
    case leftOut(set: TrainingJobFile, images: [BadImage])
    /// Continuing a checkpointed run: where, and what changed since (one phrase each).
    case resumed(checkpoint: String, epoch: Int, batch: Int, step: Int, changes: [String])
    /// Training begins.
    case starting(TrainingJob.Summary)
    /// The trained student was written.
    case wrote(path: String)
}

public final class TrainingJob {
    public struct Configuration {
        /// The student: a full model, or weights with `studentArchitecture`.
        public var student: String
        public var studentArchitecture: String? = nil
        /// Loaded teachers (none: plain training), named by `teacherNames` in messages; with a
        /// `teacherCache` the soft targets come from it and the models, if any, give test accuracy.
        public var teachers: [LoadedModel] = []
        /// Teachers to load (after `teachers`, in `teacherNames`' order): the job loads them while
        /// the images are decoded, after the student and the data sets are read and checked. A
        /// throw stops the decoding and ends the job.
        public var loadTeachers: (() throws -> [LoadedModel])? = nil
        public var teacherNames: [String] = []
        public var teacherCache: TeacherCache? = nil
        /// One per teacher (of the cache when there is one), summing to 1.
        public var teacherWeights: [Double] = []
        public var train: String
        public var validation: String? = nil
        public var test: String? = nil
        /// A folder of unlabelled images added to the training set (with a teacher only).
        public var unlabeled: String? = nil
        /// How CSVs are read (the classes come from the training set).
        public var dataset = DatasetOptions()
        /// Where the trained student goes (a full model, in the format its name asks for).
        public var output: String
        public var distill = DistillConfig()
        /// Epochs, batch size, seed, augmentation, checkpoints and callbacks.
        public var run = TrainingRunOptions()
        /// Continue the run whose last.h5 is in `run.checkpointDirectory`.
        public var resume = false
        public var syncBatchNorm = false
        /// The optimizer, given the batches per epoch (for schedules counted in steps) and the epochs.
        public var makeOptimizer: (_ batchesPerEpoch: Int, _ epochs: Int) -> Optimizer = { _, _ in Adam(learningRate: .constant(0.001)) }
        /// Called once the data sets are read and before anything long (decoding every image,
        /// training): the image files (inputs, which no output may be) and the outputs' estimated
        /// sizes. The caller checks its output paths and free space here; a throw ends the job.
        public var preflight: ((_ images: [(TrainingJobFile, String)], _ outputSizes: [(String, Int)]) throws -> Void)? = nil

        public init(student: String, train: String, output: String) {
            self.student = student
            self.train = train
            self.output = output
        }
    }

    /// What is trained on what, for the caller's banner.
    public struct Summary: Sendable {
        public var trainable: Int
        public var parameters: Int
        public var images: Int
        public var distilling: Bool
        public var ranks: Int
        public var teacherFromCache: Bool
        /// Where the student's frozen prefix leaves a teacher's values (`SharedPrefix.swift`): the
        /// layers at the cut, and which teacher (0-based); nil when nothing is shared.
        public var sharedPrefix: (layers: [String], teacher: Int)?
    }

    /// After `run`: how it ended, and the test accuracies when a test set was given.
    public struct Result {
        public var outcome: RunOutcome
        /// The trained student (nil when interrupted).
        public var student: LoadedModel?
        /// Each teacher model's test accuracy, then the student's, over `testImages` images.
        public var teacherTestAccuracies: [Double] = []
        public var studentTestAccuracy: Double? = nil
        public var testImages = 0
    }

    public let configuration: Configuration
    public let collective: any Collective
    public let distiller: Distiller
    /// The epoch loop (its image and step timings, its history).
    public let run: TrainingRun
    /// The teachers: `configuration.teachers`, then those `loadTeachers` loaded.
    public let teachers: [LoadedModel]
    /// Where a full batch's steps take the student's frozen prefix from a teacher's pass (`Summary`).
    let sharedPrefix: (layers: [String], teacher: Int)?
    /// Seconds `run` took to write the trained student (for `--profile`).
    public private(set) var writeSeconds = 0.0
    let testSet: ImageDataset?
    let events: (TrainingJobEvent) -> Void

    /// Loads and checks everything, in this order: the student (and the checkpoint to resume
    /// from), the data sets, the caller's `preflight`, the student's input size; then, while
    /// every image is decoded once on threads of their own, the teachers (`loadTeachers`), their
    /// input sizes, the memory a step needs, the distiller and the first step's plans;
    /// then the images' verdict (bad ones refused, or left out with `run.skipBadImages`). A refusal
    /// of the models stops the decoding and comes first. Nothing is trained or written yet.
    public init(_ configuration: Configuration, collective: any Collective = SingleProcess(),
                events: @escaping (TrainingJobEvent) -> Void = { _ in }) throws {
        let c = configuration
        self.configuration = c
        self.collective = collective
        self.events = events
        var studentModel = try LoadedModel.load(path: c.student, archPath: c.studentArchitecture)
        try Self.refuseNonFinite(studentModel, path: c.student, role: "student")
        var resumeFrom: (TrainingCheckpoint, String)? = nil
        if c.resume, let dir = c.run.checkpointDirectory {
            let path = (dir as NSString).appendingPathComponent("last.h5")
            let checkpoint = try TrainingCheckpoint.read(path: path)
            guard checkpoint.model.graph.uniqueLayers.map(\.layerKey) == studentModel.graph.uniqueLayers.map(\.layerKey) else {
                throw TrainingJobError(kind: .checkpointOfAnotherModel(checkpoint: path, student: c.student))
            }
            // The checkpoint's weights replace the student's; a nested Normalization's constants
            // (written into the checkpoint's config rather than as weights) stay the student's.
            studentModel.weights.byLayer.merge(checkpoint.model.weights.byLayer) { $1 }
            try Self.refuseNonFinite(studentModel, path: path, role: "checkpoint")
            resumeFrom = (checkpoint, path)
        }
        let distilling = !c.teachers.isEmpty || c.loadTeachers != nil || c.teacherCache != nil
        var trainSet = try ImageDataset.load(c.train, options: c.dataset.with(classNames: nil))
        if let unlabeled = c.unlabeled {
            guard distilling else { throw TrainingJobError(kind: .unlabeledWithoutTeacher) }
            trainSet = try trainSet.appending(ImageDataset.fromUnlabelledFolder(unlabeled, classNames: trainSet.classNames))
        }
        var valSet = try c.validation.map { try trainSet.validationSplit($0, options: c.dataset.with(classNames: trainSet.classNames)) }
        // The test set is read now, so that a bad one is refused before training rather than after.
        let testSet = try c.test.map { try ImageDataset.load($0, options: c.dataset.with(classNames: trainSet.classNames)) }
        let images = trainSet.files.map { (TrainingJobFile.train, $0.path) } + (valSet?.files ?? []).map { (.validation, $0.path) }
            + (testSet?.files ?? []).map { (.test, $0.path) }
        let modelBytes = estimatedFileBytes(studentModel)
        var sizes = [(c.output, modelBytes)]
        if let dir = c.run.checkpointDirectory {
            sizes += ["last.h5", "best.h5"].map { ((dir as NSString).appendingPathComponent($0), modelBytes * 3) }
        }
        sizes += [c.run.historyPath, c.run.plotPath].compactMap { $0 }.map { ($0, 64 * 1024 + 200 * c.run.epochs) }
        try c.preflight?(images, sizes)
        let inputShape = studentModel.graph.nodes[studentModel.graph.inputs[0]].outputShape
        guard inputShape.count == 3 else { throw TrainingJobError(kind: .studentInputNotImage(student: c.student, shape: inputShape)) }
        // Every image is decoded once before the first step: bad ones stop the run, listed, or are
        // left out. The decoding needs only the student's input size, so it starts here, beside
        // the teachers' reading (each file is read in a forked child, IsolatedRead, and the
        // decoding threads pause for the fork: ForkGate), their checks and the plans' compiling.
        let sets = [trainSet] + (valSet.map { [$0] } ?? [])
        // Under fast decoding the check decodes as the batches will (so it keeps what they use).
        let check = BackgroundImageCheck(sets: sets, height: inputShape[0], width: inputShape[1], channels: inputShape[2],
                                         fastDecode: c.run.fastDecode, keepBytes: DecodedImages.defaultBudget)
        let teachers: [LoadedModel]
        let distiller: Distiller
        do {
            teachers = c.teachers + (try c.loadTeachers?() ?? [])
            for (i, teacher) in teachers.enumerated() {
                let name = i < c.teacherNames.count ? c.teacherNames[i] : "teacher \(i + 1)"
                // The images are loaded at the student's size; each teacher must take that size too.
                let shapes = teacher.graph.inputs.map { teacher.graph.nodes[$0].outputShape }
                guard shapes.count == 1, shapes[0].count == 3, zip(shapes[0], inputShape).allSatisfy({ $0 < 0 || $0 == $1 }) else {
                    throw TrainingJobError(kind: .teacherInput(teacher: name, teacherShapes: shapes, imageShape: inputShape))
                }
                try Self.refuseSeveralOutputs(teacher, name: name)
            }
            let runningTeachers = c.teacherCache == nil ? teachers : []
            let stepImages = min(c.run.batchSize, trainSet.count)
            try checkMemory(what: "training with batch size \(c.run.batchSize)",
                            bytes: Self.memoryEstimate(student: studentModel, teachers: runningTeachers, batch: stepImages))
            let batchesPerEpoch = (trainSet.count + c.run.batchSize - 1) / c.run.batchSize
            distiller = try Distiller(student: studentModel, teachers: runningTeachers, teacherWeights: c.teacherWeights,
                                      optimizer: c.makeOptimizer(batchesPerEpoch, c.run.epochs), config: c.distill)
            distiller.collective = collective
            distiller.syncBatchNorm = c.syncBatchNorm
            distiller.teacherCacheIdentity = c.teacherCache.map {
                TeacherCache.identity(teachers: $0.teachers, weights: c.teacherWeights, precision: $0.precision)
            }
            // This rank's rows of a full batch (BatchLoader.rows); a batch with bad images left
            // out, or the last partial one, compiles its own plans when it comes.
            let rows = stepImages * (collective.rank + 1) / collective.size - stepImages * collective.rank / collective.size
            if rows > 0 { try Self.preparePlans(distiller, rows: rows, itemShape: inputShape) }
            sharedPrefix = rows > 0 ? distiller.prefixShared(batch: rows) : nil
        } catch {
            check.cancel()
            throw error
        }
        for ((file, set), decoded) in zip([(TrainingJobFile.train, trainSet)] + (valSet.map { [(.validation, $0)] } ?? []), check.wait()) {
            let checked: ImageDataset, left: [BadImage]
            do {
                (checked, left) = try set.checked(bad: decoded.bad, decoded: decoded.decoded, skipBad: c.run.skipBadImages)
            } catch let e as BadImagesError {
                throw TrainingJobError(kind: .badImages(e))
            }
            if !left.isEmpty { events(.leftOut(set: file, images: left)) }
            if file == .train { trainSet = checked } else { valSet = checked }
        }
        var runOptions = c.run
        runOptions.teacherCache = c.teacherCache
        let run = try TrainingRun(distiller: distiller, train: trainSet, validation: valSet, options: runOptions)
        if let (checkpoint, path) = resumeFrom {
            try run.resume(from: checkpoint, path: path)
            let p = run.state.position
            events(.resumed(checkpoint: path, epoch: p.epoch, batch: p.batch, step: run.state.step, changes: run.resumeChanges))
        }
        self.teachers = teachers
        self.distiller = distiller
        self.run = run
        self.testSet = testSet
    }

    /// Trains (from the start, or where the checkpoint left off), then (rank 0) writes the student
    /// and measures the teachers and the student on the test set. `interrupted` is asked after
    /// every step: true saves a checkpoint and returns `.interrupted` without writing the student.
    public func run(reporter: TrainingReporter?, interrupted: () -> Bool = { false }) throws -> Result {
        let c = configuration
        events(.starting(Summary(trainable: distiller.params.trainableCount, parameters: distiller.student.graph.parameterCounts().total,
                                 images: run.train.count, distilling: distiller.distilling, ranks: collective.size,
                                 teacherFromCache: c.teacherCache != nil,
                                 sharedPrefix: sharedPrefix)))
        let outcome = try run.run(reporter: reporter, interrupted: interrupted)
        if case .interrupted = outcome { return Result(outcome: outcome, student: nil) }
        let trained = distiller.trainedModel()
        var result = Result(outcome: outcome, student: trained)
        guard collective.isRoot else { return result }
        let writeStart = DispatchTime.now().uptimeNanoseconds
        try trained.writeKerasFile(to: c.output)
        writeSeconds = Double(DispatchTime.now().uptimeNanoseconds - writeStart) / 1e9
        events(.wrote(path: c.output))
        if let testSet {
            let batch = c.run.batchSize
            result.teacherTestAccuracies = try teachers.map { try accuracy(of: InferenceSession(model: $0), on: testSet, batchSize: batch) }
            result.studentTestAccuracy = try accuracy(of: InferenceSession(model: trained), on: testSet, batchSize: batch)
            result.testImages = testSet.count
        }
        return result
    }

    /// Compiles the plans of a step of `rows` images (the student's training plan, the running
    /// teachers' inference plans), which the first step would otherwise compile on the step's
    /// clock with one thread while the other waits.
    static func preparePlans(_ distiller: Distiller, rows: Int, itemShape: [Int]) throws {
        _ = try distiller.plan(batch: rows)
        // A first teacher with feature pairs runs through a session of its own, compiled in the step.
        for teacher in distiller.teachers.dropFirst(distiller.config.features.isEmpty ? 0 : 1) {
            try teacher.prepare(itemShapes: [itemShape], items: rows, batchSize: rows)
        }
    }

    /// Training cannot start from a NaN or infinite weight: refused naming the file and the weight.
    public static func refuseNonFinite(_ model: LoadedModel, path: String, role: String) throws {
        guard let bad = model.firstNonFiniteWeight() else { return }
        throw TrainingJobError(kind: .nonFiniteWeight(path: path, role: role, weight: bad.description))
    }

    /// A teacher gives one output, its class scores: one with several is refused naming it
    /// `name` and its outputs, rather than taught from the first.
    public static func refuseSeveralOutputs(_ teacher: LoadedModel, name: String) throws {
        guard teacher.graph.outputs.count == 1 else {
            throw TrainingJobError(kind: .teacherOutputs(teacher: name, outputs: InferenceSession.outputNames(of: teacher.graph)))
        }
    }

    /// Memory of a training step of `batch` images: the student's activations about three times
    /// (kept for the backward pass, and their gradients), the teachers' inference, and the
    /// student's weights four times (values, gradients, two optimizer slots).
    public static func memoryEstimate(student: LoadedModel, teachers: [LoadedModel], batch: Int) throws -> Int {
        let s = try InferenceSession(model: student).estimatedBytes(items: batch, batchSize: batch, threads: 1, wholeBatch: true)
        let t = saturatingSum(try teachers.map { try InferenceSession(model: $0).estimatedBytes(items: batch, batchSize: batch) })
        let weights = student.graph.parameterCounts().total * 4
        return saturatingSum([saturatingProduct([s, 3]), t, saturatingProduct([weights, 4])])
    }
}

extension DatasetOptions {
    func with(classNames: [String]?) -> DatasetOptions {
        var o = self
        o.classNames = classNames
        return o
    }
}

/// About the bytes a Keras file of `model` takes: float32 weights plus the config (twice: the
/// model config and the architecture JSON are near copies) and HDF5's headers (a few kB per weight
/// and layer: object headers, names, attributes).
public func estimatedFileBytes(_ model: LoadedModel) -> Int {
    let weights = model.weights.byLayer.values.reduce(0) { $0 + $1.count }
    return model.graph.parameterCounts().total * 4 + model.configJSON.utf8.count * 2
        + 2048 * (weights + model.weights.byLayer.count) + 16 * 1024
}
