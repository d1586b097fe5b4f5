// Batches of decoded (and augmented) images, as Keras's DataFrameIterator / DirectoryIterator
// make them: load_img(target_size, nearest) -> img_to_array -> (training) random_transform.
//
// A batch is a pure function of (dataset, options, epoch, batch index): the order comes from
// EpochSchedule, the augmentation of item i in epoch e from derivedSeed(seed, .augment, e, i).
// So batches are identical whether built here or in the background, in any thread timing, and
// after a restart at any DataPosition.
import Foundation
import Graph

/// What to do with an image that cannot be decoded while batches are made.
public enum BadImagePolicy: Sendable, Equatable {
    /// Stop the run with an error naming the file.
    case fail
    /// Leave it out of its batch (which gets smaller) and count it.
    case skip
}

/// An image that could not be used, and why (the decoder's one-line message).
public struct BadImage: Sendable, Equatable {
    public var file: ImageFile
    public var reason: String

    public init(file: ImageFile, reason: String) {
        self.file = file
        self.reason = reason
    }
}

public struct LoaderOptions: Sendable {
    public var height: Int
    public var width: Int
    /// 3: color_mode "rgb", 1: "grayscale".
    public var channels: Int
    public var batchSize: Int
    /// Shuffle each epoch (training); off: dataset order (validation, prediction).
    public var shuffle: Bool
    public var seed: UInt64
    /// nil or an identity config: no augmentation (validation).
    public var augment: AugmentConfig?
    public var badImages: BadImagePolicy = .fail
    /// Batches prepared ahead of the consumer (bounded queue).
    public var prefetch = 2
    /// Threads decoding one batch's images in the background (1: one background thread, so the
    /// training step keeps the other cores).
    public var decodeThreads = 1
    public var interpolation: Interpolation = .nearest
    /// Data parallelism: this process loads only its share of every batch, rows
    /// [n * rank / ranks, n * (rank + 1) / ranks) of the batch's n.
    public var shardRank = 0
    public var shardCount = 1

    public init(height: Int, width: Int, channels: Int = 3, batchSize: Int, shuffle: Bool, seed: UInt64 = 0,
                augment: AugmentConfig? = nil) {
        self.height = height
        self.width = width
        self.channels = channels
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
    }
}

/// One step's data. Teacher and student both get `images`.
public struct Batch: Sendable {
    public var epoch: Int
    /// Batch number within the epoch (0..<batchesPerEpoch).
    public var index: Int
    /// Dataset indices of the rows, in order (bad images left out under `.skip`).
    public var items: [Int]
    /// [n, height, width, channels], values 0...255 as img_to_array gives them.
    public var images: Tensor
    /// [n, classCount]; zero rows where `hasLabel` is false.
    public var labels: Tensor
    public var hasLabel: [Bool]
    /// Images of this batch left out under `.skip`.
    public var skipped: [BadImage]
    /// Under sharding: the whole batch's size and where this share starts in it.
    public var globalCount = 0
    public var globalOffset = 0

    public var count: Int { items.count }
}

public final class BatchLoader: Sendable {
    public let dataset: ImageDataset
    public let options: LoaderOptions
    public let schedule: EpochSchedule
    let augmenter: ImageAugmenter?

    public init(dataset: ImageDataset, options: LoaderOptions) throws {
        guard options.height > 0, options.width > 0 else {
            throw RuntimeError("image size must be positive, got \(options.height)x\(options.width)")
        }
        guard options.channels == 1 || options.channels == 3 else {
            throw RuntimeError("channels must be 1 (grayscale) or 3 (rgb), got \(options.channels)")
        }
        guard options.prefetch >= 1, options.decodeThreads >= 1 else {
            throw RuntimeError("prefetch and decode threads must be at least 1")
        }
        self.dataset = dataset
        self.options = options
        self.schedule = try EpochSchedule(count: dataset.count, batchSize: options.batchSize,
                                          shuffle: options.shuffle, seed: options.seed)
        if let a = options.augment, !a.isIdentity {
            augmenter = try ImageAugmenter(a)
        } else {
            augmenter = nil
        }
    }

    public var batchesPerEpoch: Int { schedule.batchesPerEpoch }

    /// Batch `batch` of epoch `epoch`, built on the calling thread. Throws the first bad image's
    /// `ImageError` under `.fail`; under `.skip` the batch may be smaller, even empty.
    public func makeBatch(epoch: Int, batch: Int) throws -> Batch {
        let all = schedule.items(epoch: epoch, batch: batch)
        let lo = all.count * options.shardRank / options.shardCount
        let hi = all.count * (options.shardRank + 1) / options.shardCount
        let items = Array(all[lo..<hi])
        let (h, w, c) = (options.height, options.width, options.channels)
        let size = h * w * c
        var pixels = [Float](repeating: 0, count: items.count * size)
        var failures = [BadImage?](repeating: nil, count: items.count)
        let threads = min(options.decodeThreads, items.count)
        pixels.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            failures.withUnsafeMutableBufferPointer { bad in
                let badBase = bad.baseAddress!
                let work = { (range: Range<Int>) in
                    var scratch = [Float](repeating: 0, count: self.augmenter == nil ? 0 : size)
                    for slot in range {
                        let slice = UnsafeMutableBufferPointer(start: base + slot * size, count: size)
                        if let failure = self.load(item: items[slot], epoch: epoch, into: slice, scratch: &scratch) {
                            badBase[slot] = failure
                        }
                    }
                }
                if threads <= 1 {
                    work(0..<items.count)
                } else {
                    DispatchQueue.concurrentPerform(iterations: threads) { t in
                        work(chunkRange(items.count, threads, t))
                    }
                }
            }
        }
        if options.badImages == .fail, let first = failures.compactMap({ $0 }).first {
            throw ImageError(file: first.file.path, reason: first.reason)
        }
        let keep = items.indices.filter { failures[$0] == nil }
        if keep.count < items.count {
            var compact = [Float](repeating: 0, count: keep.count * size)
            for (to, from) in keep.enumerated() {
                compact[to * size ..< (to + 1) * size] = pixels[from * size ..< (from + 1) * size]
            }
            pixels = compact
        }
        let kept = keep.map { items[$0] }
        let k = dataset.classCount
        var labels: [Float] = []
        labels.reserveCapacity(kept.count * k)
        for i in kept { labels.append(contentsOf: dataset.labelRow(i)) }
        var out = Batch(epoch: epoch, index: batch, items: kept,
                        images: Tensor(shape: [kept.count, h, w, c], data: pixels),
                        labels: Tensor(shape: [kept.count, k], data: labels),
                        hasLabel: kept.map { dataset.hasLabel[$0] },
                        skipped: failures.compactMap { $0 })
        out.globalCount = all.count
        out.globalOffset = lo
        return out
    }

    /// Decodes item `item` into `slot`, augmenting it for `epoch`; returns the failure, if any.
    func load(item: Int, epoch: Int, into slot: UnsafeMutableBufferPointer<Float>, scratch: inout [Float]) -> BadImage? {
        let file = dataset.files[item]
        let (h, w, c) = (options.height, options.width, options.channels)
        do {
            guard let augmenter else {
                try loadImage(path: file.path, channels: c, targetHeight: h, targetWidth: w,
                              interpolation: options.interpolation, into: slot)
                return nil
            }
            try scratch.withUnsafeMutableBufferPointer { decoded in
                try loadImage(path: file.path, channels: c, targetHeight: h, targetWidth: w,
                              interpolation: options.interpolation, into: decoded)
                let p = augmenter.randomParameters(height: h, width: w, seed: options.seed, epoch: epoch, item: item)
                augmenter.apply(p, to: UnsafeBufferPointer(decoded), height: h, width: w, channels: c, into: slot)
            }
            return nil
        } catch let e as ImageError {
            return BadImage(file: file, reason: e.reason)
        } catch {
            return BadImage(file: file, reason: "\(error)")
        }
    }

    /// Batches from `start` up to (not including) epoch `endEpoch`, prepared on a background
    /// thread, `options.prefetch` ahead of the caller.
    public func batches(from start: DataPosition = DataPosition(epoch: 0, batch: 0), untilEpoch endEpoch: Int) -> BatchStream {
        BatchStream(loader: self, start: start, endEpoch: endEpoch)
    }

    /// All batches of one epoch, in order (validation: every item once, the last batch partial).
    public func epoch(_ epoch: Int, from batch: Int = 0) -> BatchStream {
        batches(from: DataPosition(epoch: epoch, batch: batch), untilEpoch: epoch + 1)
    }
}
