// `distillctl teacher-cache`: the teacher's logits for every (un-augmented) training image, kept
// in an HDF5 file so that `distill --teacher-cache` need not run the teacher at every step. The
// cache records the teacher it came from (name, parameter count and a hash of every weight) and
// each image's file name and size; `distill` refuses it for another teacher or changed images,
// and with augmentation (the cached logits are of the images as they are).
//
// Several teachers: each teacher's logits are kept (not their mean), so `distill` can weigh them
// with any --teacher-weights without running them again. A one-teacher cache is format 1
// (`teacher`, logits [images, classes]); a several-teacher cache is format 2 (`teachers`, in
// order, logits [teachers, images, classes]).
import Foundation
import Graph
import H5Model

public struct TeacherCache: Sendable {
    public static let group = "distillctl_teacher_cache"

    public struct Image: Sendable, Codable, Equatable {
        public var name: String
        public var bytes: Int
    }

    struct Meta: Codable {
        var format = 1
        var teacher: String?
        var teachers: [String]?
        var classes: Int
        var images: [Image]
        /// The teachers' number format ("bf16"); absent: float32 (caches made before it was recorded).
        var precision: String?
    }

    /// Each teacher's identity, in the order of their logits.
    public var teachers: [String]
    public var classes: Int
    public var images: [Image]
    /// [teachers.count, images.count, classes]
    public var logits: [Float]
    /// The number format the teachers ran in: bf16 logits are not float32's, so a run taught by
    /// them is another teacher's (`identity(teachers:weights:precision:)`).
    public var precision: Precision

    public init(teachers: [String], classes: Int, images: [Image], logits: [Float], precision: Precision = .float32) {
        self.teachers = teachers
        self.classes = classes
        self.images = images
        self.logits = logits
        self.precision = precision
    }

    /// The teachers as one line (for messages).
    public var teacher: String { teachers.joined(separator: " + ") + (precision == .bfloat16 ? " in bf16" : "") }

    /// Several teachers weighed together, as a checkpoint records them; one teacher is its identity.
    /// Teachers run in bf16 are marked so ("in bf16"): their soft targets differ from float32's.
    public static func identity(teachers: [String], weights: [Double], precision: Precision = .float32) -> String {
        let marked = precision == .bfloat16 ? " in bf16" : ""
        guard teachers.count > 1 else { return (teachers.first ?? "") + marked }
        return teachers.joined(separator: " + ") + " (weights " + weights.map { "\($0)" }.joined(separator: ", ") + ")" + marked
    }

    /// The logits of the images at `rows`, [rows.count, classes]: the weighted mean of the teachers'.
    public func logits(rows: [Int], weights: [Double]) -> [Float] {
        let k = classes, perTeacher = images.count * classes
        let each = teachers.indices.map { t in
            var out = [Float](); out.reserveCapacity(rows.count * k)
            for r in rows { out += logits[t * perTeacher + r * k ..< t * perTeacher + (r + 1) * k] }
            return out
        }
        return Distiller.meanLogits(each, weights: weights)
    }

    /// A model's identity: its name, parameter count and a hash (FNV-1a 64 over the bit patterns)
    /// of every weight, in the graph's layer order.
    public static func identity(of model: LoadedModel) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for node in model.graph.uniqueLayers {
            for w in model.weights.weights(of: node) {
                for v in w.floats { h = (h ^ UInt64(v.bitPattern)) &* 0x0000_0100_0000_01B3 }
            }
        }
        return "\(model.graph.name) (\(model.graph.parameterCounts().total) parameters, weights \(String(h, radix: 16)))"
    }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
    }

    /// Runs `teacher` (inference mode, logits) on every image of `dataset`, loaded as for training
    /// without augmentation. Under a data-parallel collective, each rank computes a share and all
    /// ranks end with the whole cache.
    public static func compute(teacher: LoadedModel, dataset: ImageDataset, batchSize: Int,
                               collective: any Collective = SingleProcess(),
                               progress: ((Int, Int) -> Void)? = nil) throws -> TeacherCache {
        try compute(teachers: [teacher], dataset: dataset, batchSize: batchSize, collective: collective, progress: progress)
    }

    /// Each of `teachers` on every image, as `compute(teacher:...)`; the teachers must take the same
    /// input and give the same number of outputs. `precision`: the teachers' matrix products'.
    public static func compute(teachers: [LoadedModel], dataset: ImageDataset, batchSize: Int,
                               collective: any Collective = SingleProcess(), precision: Precision = .float32,
                               progress: ((Int, Int) -> Void)? = nil) throws -> TeacherCache {
        precondition(!teachers.isEmpty, "no teacher")
        var all: [Float] = []
        var classes = 0
        for teacher in teachers {
            let one = try computeOne(teacher: teacher, dataset: dataset, batchSize: batchSize, collective: collective,
                                     precision: precision, progress: progress)
            guard classes == 0 || one.classes == classes else {
                throw RuntimeError("the teachers give different numbers of outputs (\(classes) and \(one.classes) for \(teacher.graph.name))")
            }
            classes = one.classes
            all += one.logits
        }
        return TeacherCache(teachers: teachers.map { identity(of: $0) }, classes: classes,
                            images: dataset.files.map { Image(name: $0.name, bytes: fileSize($0.path)) }, logits: all,
                            precision: precision)
    }

    private static func computeOne(teacher: LoadedModel, dataset: ImageDataset, batchSize: Int,
                                   collective: any Collective, precision: Precision,
                                   progress: ((Int, Int) -> Void)?) throws -> (classes: Int, logits: [Float]) {
        try TrainingJob.refuseSeveralOutputs(teacher, name: "teacher '\(teacher.graph.name)'")
        let session = try InferenceSession(model: teacher, logits: true, precision: precision)
        let shape = session.inputShapes[0]
        guard shape.count == 3 else { throw RuntimeError("the teacher \(teacher.graph.name)'s input is \(shape), not an image") }
        var options = LoaderOptions(height: shape[0], width: shape[1], channels: shape[2], batchSize: batchSize, shuffle: false)
        let count = dataset.count
        let lo = count * collective.rank / collective.size, hi = count * (collective.rank + 1) / collective.size
        let share = dataset.subset(Array(lo..<hi))
        options.prefetch = 2
        var classes = 0
        var mine: [Float] = []
        if share.count > 0 {
            let loader = try BatchLoader(dataset: share, options: options)
            let stream = loader.epoch(0)
            var done = 0
            while let batch = try stream.next() {
                let out = try session.run([batch.images], batchSize: batchSize)[0]
                classes = out.itemCount
                mine.append(contentsOf: out.data)
                done += batch.count
                progress?(done, share.count)
            }
        }
        var k = [Double(classes)]
        if collective.isDistributed {
            // Every rank learns the class count (a rank may have had no image).
            var counts = [Double](repeating: 0, count: collective.size)
            counts[collective.rank] = Double(classes)
            try collective.allReduceSum(&counts)
            k = [counts.max() ?? 0]
        }
        classes = Int(k[0])
        var all = [Float](repeating: 0, count: count * classes)
        for (i, v) in mine.enumerated() { all[lo * classes + i] = v }
        if collective.isDistributed {
            try all.withUnsafeMutableBufferPointer { try collective.allReduceSum($0.baseAddress!, count: count * classes) }
        }
        return (classes, all)
    }

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let one = teachers.count == 1
        let meta = Meta(format: one ? 1 : 2, teacher: one ? teachers[0] : nil, teachers: one ? nil : teachers,
                        classes: classes, images: images, precision: precision == .float32 ? nil : precision.rawValue)
        let shape = one ? [images.count, classes] : [teachers.count, images.count, classes]
        try H5Attachment(group: Self.group, text: ["meta": String(decoding: try encoder.encode(meta), as: UTF8.self)],
                         arrays: ["logits": H5Array(shape: shape, values: .float32(logits))])
            .writeFile(to: path)
    }

    public static func read(path: String) throws -> TeacherCache {
        guard let a = try H5Attachment.read(path: path, group: group) else {
            throw RuntimeError("\(path): not a teacher cache (no '\(group)' group; make one with distillctl teacher-cache)")
        }
        guard let text = a.text["meta"], let meta = try? JSONDecoder().decode(Meta.self, from: Data(text.utf8)),
              let teachers = meta.format == 1 ? meta.teacher.map({ [$0] }) : meta.format == 2 ? meta.teachers : nil,
              teachers.count >= 1, let logits = a.arrays["logits"],
              logits.shape == (meta.format == 1 ? [] : [teachers.count]) + [meta.images.count, meta.classes] else {
            throw RuntimeError("\(path): a damaged teacher cache (its description and logits do not agree)")
        }
        guard let precision = meta.precision.map({ Precision(rawValue: $0) }) ?? .float32 else {
            throw RuntimeError("\(path): the teacher cache's precision '\(meta.precision!)' is not one this version knows")
        }
        return TeacherCache(teachers: teachers, classes: meta.classes, images: meta.images, logits: logits.floats,
                            precision: precision)
    }

    /// For each item of `dataset`, the row of its logits, after checking the cache belongs to these
    /// images: every file present under its name, with the size it had.
    public func rows(for dataset: ImageDataset, source: String) throws -> [Int] {
        var index: [String: Int] = [:]
        for (i, image) in images.enumerated() { index[image.name] = i }
        return try dataset.files.map { file in
            guard let row = index[file.name] else {
                throw RuntimeError("\(source): the teacher cache has no logits for \(file.name); make it again for these images")
            }
            let size = Self.fileSize(file.path)
            guard size == images[row].bytes else {
                throw RuntimeError("\(source): \(file.name) has changed since the teacher cache was made (\(images[row].bytes) bytes then, \(size) now)")
            }
            return row
        }
    }
}
