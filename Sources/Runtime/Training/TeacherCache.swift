// `distillctl teacher-cache`: the teacher's logits for every (un-augmented) training image, kept
// in an HDF5 file so that `distill --teacher-cache` need not run the teacher at every step. The
// cache records the teacher it came from (name, parameter count and a hash of every weight) and
// each image's file name and size; `distill` refuses it for another teacher or changed images,
// and with augmentation (the cached logits are of the images as they are).
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
        var teacher: String
        var classes: Int
        var images: [Image]
    }

    public var teacher: String
    public var classes: Int
    public var images: [Image]
    /// [images.count, classes]
    public var logits: [Float]

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
        let session = try InferenceSession(model: teacher, logits: true)
        let shape = session.inputShapes[0]
        guard shape.count == 3 else { throw RuntimeError("the teacher's input is \(shape), not an image") }
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
        return TeacherCache(teacher: identity(of: teacher), classes: classes,
                            images: dataset.files.map { Image(name: $0.name, bytes: fileSize($0.path)) }, logits: all)
    }

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let meta = Meta(teacher: teacher, classes: classes, images: images)
        try H5Attachment(group: Self.group, text: ["meta": String(decoding: try encoder.encode(meta), as: UTF8.self)],
                         arrays: ["logits": H5Array(shape: [images.count, classes], values: .float32(logits))])
            .writeFile(to: path)
    }

    public static func read(path: String) throws -> TeacherCache {
        guard let a = try H5Attachment.read(path: path, group: group) else {
            throw RuntimeError("\(path): not a teacher cache (no '\(group)' group; make one with distillctl teacher-cache)")
        }
        guard let text = a.text["meta"], let meta = try? JSONDecoder().decode(Meta.self, from: Data(text.utf8)),
              meta.format == 1, let logits = a.arrays["logits"],
              logits.shape == [meta.images.count, meta.classes] else {
            throw RuntimeError("\(path): a damaged teacher cache (its description and logits do not agree)")
        }
        return TeacherCache(teacher: meta.teacher, classes: meta.classes, images: meta.images, logits: logits.floats)
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
