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

    @Option(help: "The teacher: a full-model .h5, or a weights-only file with --teacher-arch.")
    var teacher: String

    @Option(help: "Architecture JSON for a weights-only teacher.")
    var teacherArch: String?

    @Option(help: "Training images, as distill's --train: a CSV or a folder per class.")
    var train: String

    @Option(help: "A folder of unlabelled images, as distill's --unlabeled.")
    var unlabeled: String?

    @OptionGroup var layout: CSVLayoutOptions

    @Option(help: "Where to write the cache (HDF5).")
    var output: String

    @Option(help: "Images per teacher run.") var batchSize: Int = 32
    @Option(help: "Threads (default: all cores, shared among the ranks under mpirun).") var threads: Int?

    func run() throws {
        try reportingErrors {
            guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
            var files = FilePlan()
            files.input("--teacher", teacher)
            files.input("--teacher-arch", teacherArch)
            files.input("--train", train)
            files.input("--unlabeled", unlabeled)
            files.output("--output", output)
            try files.check()
            let collective = try ActiveRun.start(threads: threads)
            let model = try LoadedModel.load(path: teacher, archPath: teacherArch)
            try refuseNonFinite(model, path: teacher, role: "teacher")
            var dataset = try ImageDataset.load(train, options: layout.datasetOptions())
            if let unlabeled {
                dataset = try dataset.appending(ImageDataset.fromUnlabelledFolder(unlabeled, classNames: dataset.classNames))
            }
            files.inputs += dataset.files.map { ("--train", $0.path) }
            try files.check()
            let session = try InferenceSession(model: model, logits: true)
            try checkMemory(what: "teacher-cache --batch-size \(batchSize)",
                            bytes: session.estimatedBytes(items: min(batchSize, dataset.count), batchSize: batchSize))
            let classes = try session.outputItemCounts().first ?? 1
            try files.checkSpace([(output, dataset.count * (classes * 4 + 128) + 64 * 1024)])
            let start = Date()
            let cache = try TeacherCache.compute(teacher: model, dataset: dataset, batchSize: batchSize, collective: collective)
            guard collective.isRoot else { return }
            try cache.write(to: output)
            print(String(format: "wrote %@: %d images x %d logits of %@ (%.1f s%@)", output, cache.images.count, cache.classes,
                         cache.teacher, Date().timeIntervalSince(start),
                         collective.isDistributed ? " on \(collective.size) ranks" : ""))
        }
    }
}
