import ArgumentParser
import Foundation
import Graph
import Runtime

struct TeacherCacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "teacher-cache",
        abstract: "Run the teacher once over the training images and keep its logits for distill --teacher-cache.",
        discussion: """
        The images are loaded as for training, without augmentation (a cache cannot follow random
        augmentation; distill refuses --augment with a cache). The file records the teacher (name,
        parameter count, a hash of its weights) and every image's name and size; distill rejects it
        for changed images. Under mpirun, the ranks share the images and rank 0 writes the file.
        """)

    @Option(help: "The teacher: a full-model .h5, or a weights-only file with --teacher-arch. Repeat for several teachers: each one's logits are kept, for distill's --teacher-weights.")
    var teacher: [String]

    @Option(help: "Architecture JSON for a weights-only teacher (one per --teacher, in the same order, when given).")
    var teacherArch: [String] = []

    @Option(help: "Training images, as distill's --train: a CSV or a folder per class.")
    var train: String

    @Option(help: "A folder of unlabelled images, as distill's --unlabeled.")
    var unlabeled: String?

    @OptionGroup var layout: CSVLayoutOptions

    @Option(help: "Where to write the cache (HDF5).")
    var output: String

    @Option(help: "Images per teacher run.") var batchSize: Int = 32
    @Option(help: "Number format of the teachers' pointwise convolutions and dense layers: f32, or bf16 (needs AVX512_BF16).")
    var teacherPrecision: Precision = .float32
    @Option(help: "Threads (default: all cores, shared among the ranks under mpirun).") var threads: Int?

    func run() throws {
        try reportingErrors {
            guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
            try checkPrecision(teacherPrecision, flag: "--teacher-precision")
            guard teacherArch.isEmpty || teacherArch.count == teacher.count else {
                throw ValidationError("\(teacherArch.count) --teacher-arch for \(teacher.count) --teacher: give one per teacher, or none")
            }
            var files = FilePlan()
            for path in teacher { files.input("--teacher", path) }
            for path in teacherArch { files.input("--teacher-arch", path) }
            files.input("--train", train)
            files.input("--unlabeled", unlabeled)
            files.output("--output", output)
            try files.check()
            let collective = try ActiveRun.start(threads: threads)
            let models = try teacher.enumerated().map { i, path in
                let model = try LoadedModel.load(path: path, archPath: teacherArch.isEmpty ? nil : teacherArch[i])
                try TrainingJob.refuseNonFinite(model, path: path, role: "teacher")
                try TrainingJob.refuseSeveralOutputs(model, name: path)
                return model
            }
            var dataset = try ImageDataset.load(train, options: layout.datasetOptions())
            if let unlabeled {
                dataset = try dataset.appending(ImageDataset.fromUnlabelledFolder(unlabeled, classNames: dataset.classNames))
            }
            files.inputs += dataset.files.map { ("--train", $0.path) }
            try files.check()
            var classes = 1
            for model in models {
                let session = try InferenceSession(model: model, logits: true, precision: teacherPrecision)
                try checkMemory(what: "teacher-cache --batch-size \(batchSize)",
                                bytes: session.estimatedBytes(items: min(batchSize, dataset.count), batchSize: batchSize))
                classes = try session.outputItemCounts().first ?? 1
            }
            try files.checkSpace([(output, dataset.count * (classes * 4 * models.count + 128) + 64 * 1024)])
            let start = Date()
            let cache = try TeacherCache.compute(teachers: models, dataset: dataset, batchSize: batchSize, collective: collective,
                                                 precision: teacherPrecision)
            guard collective.isRoot else { return }
            try cache.write(to: output)
            print(String(format: "wrote %@: %d images x %d logits of %@ (%.1f s%@)", output, cache.images.count, cache.classes,
                         cache.teacher, Date().timeIntervalSince(start),
                         collective.isDistributed ? " on \(collective.size) ranks" : ""))
        }
    }
}
