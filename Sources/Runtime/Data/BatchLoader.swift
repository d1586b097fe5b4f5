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
    /// Helper threads loading the next batches beside the step (BatchStream); threads sharing one
    /// batch in `makeBatch`. 0: no helpers. nil (the default): one for each core the step's
    /// workers (`RuntimeThreads.count`) leave free (at most one per image of the `prefetch`
    /// batches), so none on a machine they fill: there a helper only preempts a worker mid-loop
    /// (while the other spins, waiting for it), and the batch is loaded more cheaply on all the
    /// workers at once when the step asks for it.
    public var decodeThreads: Int? = nil
    public var interpolation: Interpolation = .nearest
    /// Decode JPEGs at least twice the target size with libjpeg-turbo's DCT scaling (`Image`'s
    /// `decodeAtLeast`): not Keras's `load_img` pixels, so off by default.
    public var fastDecode = false
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

/// Where the image pipeline's time went: seconds summed over the images loaded (decode: reading
/// and decoding the file, with its colour conversion and resize; resize: conversion to float; augment: the
/// random transform), and the seconds the consumer of a `BatchStream` spent in `next()` (loading
/// images itself or waiting for them).
public struct LoaderTimings: Sendable, Equatable {
    public var images = 0
    public var decode = 0.0
    public var resize = 0.0
    public var augment = 0.0
    public var waited = 0.0
    /// Of `images`, those the consumer loaded in `next()`, on the worker pool's threads.
    public var byConsumer = 0
    /// Of `images`, those the worker pool's threads loaded while the step left them idle (the
    /// rest: the helper threads, ahead of the step).
    public var byIdleWorkers = 0
    /// Of `images`, those held from the pre-flight check (`DecodedImages`): not decoded again.
    public var held = 0

    public init() {}

    /// One line: milliseconds per image of each stage, beside the steps' (`stepSeconds` over
    /// `stepImages`), and the time the steps waited for images.
    public func describe(stepSeconds: Double, stepImages: Int) -> String {
        let n = Double(max(1, images)), m = Double(max(1, stepImages))
        return String(format: "images: %d loaded (%d held from the pre-flight check, not decoded again), per image decode %.2f ms, "
                      + "resize %.2f ms, augment %.2f ms (%.2f ms of CPU; %d loaded while the steps waited, %d by workers the "
                      + "steps left idle); steps %.2f ms per image; the steps waited %.2f s for images",
                      images, held, 1e3 * decode / n, 1e3 * resize / n, 1e3 * augment / n,
                      1e3 * (decode + resize + augment) / n, byConsumer, byIdleWorkers, 1e3 * stepSeconds / m, waited)
    }

    public static func + (a: LoaderTimings, b: LoaderTimings) -> LoaderTimings {
        var r = a
        r.images += b.images
        r.decode += b.decode
        r.resize += b.resize
        r.augment += b.augment
        r.waited += b.waited
        r.byConsumer += b.byConsumer
        r.byIdleWorkers += b.byIdleWorkers
        r.held += b.held
        return r
    }
}

/// Wall-clock laps of one thread.
struct StageClock {
    private var last = DispatchTime.now().uptimeNanoseconds

    mutating func lap() -> Double {
        let now = DispatchTime.now().uptimeNanoseconds
        defer { last = now }
        return Double(now - last) / 1e9
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
    /// The pre-flight check's images, when they are what this loader would decode.
    let decoded: DecodedImages?

    public init(dataset: ImageDataset, options: LoaderOptions) throws {
        guard options.height > 0, options.width > 0 else {
            throw RuntimeError("image size must be positive, got \(options.height)x\(options.width)")
        }
        guard options.channels == 1 || options.channels == 3 else {
            throw RuntimeError("channels must be 1 (grayscale) or 3 (rgb), got \(options.channels)")
        }
        guard options.prefetch >= 1, (options.decodeThreads ?? 0) >= 0 else {
            throw RuntimeError("prefetch must be at least 1 and decode threads at least 0")
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
        decoded = dataset.decoded.flatMap { $0.serves(options) ? $0 : nil }
    }

    public var batchesPerEpoch: Int { schedule.batchesPerEpoch }

    /// Batch `batch` of epoch `epoch`, built on the calling thread. Throws the first bad image's
    /// `ImageError` under `.fail`; under `.skip` the batch may be smaller, even empty.
    public func makeBatch(epoch: Int, batch: Int) throws -> Batch {
        let rows = rows(epoch: epoch, batch: batch)
        let items = rows.items
        let size = imageSize
        var pixels = [Float](repeating: 0, count: items.count * size)
        var failures = [BadImage?](repeating: nil, count: items.count)
        let threads = min(helperThreads, items.count)
        pixels.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            failures.withUnsafeMutableBufferPointer { bad in
                let badBase = bad.baseAddress!
                let work = { (range: Range<Int>) in
                    var scratch = [Float](repeating: 0, count: self.augmenter == nil ? 0 : size)
                    var timings = LoaderTimings()
                    for slot in range {
                        let slice = UnsafeMutableBufferPointer(start: base + slot * size, count: size)
                        badBase[slot] = self.load(item: items[slot], epoch: epoch, into: slice, scratch: &scratch,
                                                  timings: &timings)
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
        return try assemble(epoch: epoch, batch: batch, rows: rows, pixels: pixels, failures: failures)
    }

    /// `options.decodeThreads`, or the cores the step's workers leave free, up to the images of
    /// the batches prepared at once (more would only wait).
    var helperThreads: Int {
        options.decodeThreads ?? min(max(0, ProcessInfo.processInfo.activeProcessorCount - RuntimeThreads.count),
                                     options.prefetch * options.batchSize)
    }

    /// Floats per image: height x width x channels.
    var imageSize: Int { options.height * options.width * options.channels }

    /// The dataset items of batch `batch` of `epoch` this process loads (its shard's rows), and
    /// the whole batch's size and where the share starts in it.
    func rows(epoch: Int, batch: Int) -> (items: [Int], globalCount: Int, globalOffset: Int) {
        let all = schedule.items(epoch: epoch, batch: batch)
        let lo = all.count * options.shardRank / options.shardCount
        let hi = all.count * (options.shardRank + 1) / options.shardCount
        return (Array(all[lo..<hi]), all.count, lo)
    }

    /// The batch from its rows' loaded pixels (`rows.items.count` images) and failures: the
    /// first failure thrown under `.fail`, the failed rows left out under `.skip`.
    func assemble(epoch: Int, batch: Int, rows: (items: [Int], globalCount: Int, globalOffset: Int),
                  pixels loaded: [Float], failures: [BadImage?]) throws -> Batch {
        let items = rows.items
        let size = imageSize
        if options.badImages == .fail, let first = failures.compactMap({ $0 }).first {
            throw ImageError(file: first.file.path, reason: first.reason)
        }
        var pixels = loaded
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
                        images: Tensor(shape: [kept.count, options.height, options.width, options.channels], data: pixels),
                        labels: Tensor(shape: [kept.count, k], data: labels),
                        hasLabel: kept.map { dataset.hasLabel[$0] },
                        skipped: failures.compactMap { $0 })
        out.globalCount = rows.globalCount
        out.globalOffset = rows.globalOffset
        return out
    }

    /// Decodes item `item` into `slot`, augmenting it for `epoch`; returns the failure, if any.
    /// Adds the time of each stage to `timings`.
    func load(item: Int, epoch: Int, into slot: UnsafeMutableBufferPointer<Float>, scratch: inout [Float],
              timings: inout LoaderTimings) -> BadImage? {
        let file = dataset.files[item]
        let (h, w, c) = (options.height, options.width, options.channels)
        var clock = StageClock()
        do {
            let image: Image
            if let held = decoded?.image(file.path, for: options) {
                image = held
                timings.held += 1
            } else {
                // Decoded and resized (at once where it can be), counted as decoding.
                image = try kerasImage(contentsOfFile: file.path, channels: c, targetHeight: h, targetWidth: w,
                                       interpolation: options.interpolation, fastDecode: options.fastDecode)
                timings.decode += clock.lap()
            }
            guard let augmenter else {
                image.writeFloatValues(into: slot)
                timings.resize += clock.lap()
                timings.images += 1
                return nil
            }
            scratch.withUnsafeMutableBufferPointer { image.writeFloatValues(into: $0) }
            timings.resize += clock.lap()
            let p = augmenter.randomParameters(height: h, width: w, seed: options.seed, epoch: epoch, item: item)
            scratch.withUnsafeBufferPointer { augmenter.apply(p, to: $0, height: h, width: w, channels: c, into: slot) }
            timings.augment += clock.lap()
            timings.images += 1
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
