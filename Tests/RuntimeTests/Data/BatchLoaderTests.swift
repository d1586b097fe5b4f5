import Foundation
import XCTest
import TestSupport
@testable import Runtime

final class BatchLoaderTests: TemporaryFolderTestCase {
    let flow = fixturesDirectory.appendingPathComponent("augment/flow").path

    func seedDataset() throws -> ImageDataset {
        var o = DatasetOptions()
        o.imageDirectory = flow + "/images"
        o.labels = .oneHot(DatasetTests.classes)
        return try ImageDataset.load(flow + "/train.csv", options: o)
    }

    func drain(_ stream: BatchStream) throws -> [Batch] {
        var out: [Batch] = []
        while let b = try stream.next() { out.append(b) }
        return out
    }

    /// Without augmentation and shuffling, batches are Keras's DataFrameIterator / DirectoryIterator
    /// batches exactly (target size 12x10, batch 2: sizes 2, 2, 1 -- the last partial batch kept).
    func testMatchesKerasIterators() throws {
        for (dataset, name) in [(try seedDataset(), "dataframe"), (try ImageDataset.load(flow + "/classes"), "directory")] {
            let loader = try BatchLoader(dataset: dataset, options: LoaderOptions(height: 12, width: 10, batchSize: 2, shuffle: false))
            let batches = try drain(loader.epoch(0))
            XCTAssertEqual(batches.map(\.count), [2, 2, 1], name)
            XCTAssertEqual(batches.map(\.index), [0, 1, 2], name)
            XCTAssertEqual(batches.flatMap(\.items), [0, 1, 2, 3, 4], name)
            XCTAssertEqual(batches[0].images.shape, [2, 12, 10, 3])
            XCTAssertEqual(batches.flatMap(\.images.data), try NpyArray.read(path: "\(flow)/\(name)_x.npy").values, name)
            XCTAssertEqual(batches.flatMap(\.labels.data), try NpyArray.read(path: "\(flow)/\(name)_y.npy").values, name)
            XCTAssertEqual(batches[2].labels.shape, [1, dataset.classCount])
        }
    }

    func testScheduleIsDeterministicPerSeedAndEpoch() throws {
        let s = try EpochSchedule(count: 21, batchSize: 8, shuffle: true, seed: 42)
        XCTAssertEqual(s.batchesPerEpoch, 3)
        XCTAssertEqual((0..<3).map { s.range(ofBatch: $0).count }, [8, 8, 5])
        let e0 = s.order(epoch: 0)
        XCTAssertEqual(e0.sorted(), Array(0..<21))
        XCTAssertEqual(e0, try EpochSchedule(count: 21, batchSize: 4, shuffle: true, seed: 42).order(epoch: 0),
                       "the order does not depend on the batch size")
        XCTAssertEqual(e0, s.order(epoch: 0))
        XCTAssertNotEqual(e0, s.order(epoch: 1))
        XCTAssertNotEqual(e0, try EpochSchedule(count: 21, batchSize: 8, shuffle: true, seed: 43).order(epoch: 0))
        XCTAssertEqual(try EpochSchedule(count: 21, batchSize: 8, shuffle: false, seed: 42).order(epoch: 5), Array(0..<21))
        // Pinned: a checkpoint's DataPosition means the same items only while this stays put.
        XCTAssertEqual(try EpochSchedule(count: 10, batchSize: 3, shuffle: true, seed: 1).order(epoch: 0),
                       Self.pinnedOrder)
        XCTAssertThrowsError(try EpochSchedule(count: 0, batchSize: 8, shuffle: true, seed: 1))
        XCTAssertThrowsError(try EpochSchedule(count: 3, batchSize: 0, shuffle: true, seed: 1))
        XCTAssertEqual(DataPosition.after(epoch: 2, batch: 2, batchesPerEpoch: 3), DataPosition(epoch: 3, batch: 0))
        XCTAssertEqual(DataPosition.after(epoch: 2, batch: 1, batchesPerEpoch: 3), DataPosition(epoch: 2, batch: 2))
    }

    static let pinnedOrder = [7, 2, 0, 6, 9, 3, 5, 8, 4, 1]

    /// Many items from a few fixture images, for order/augmentation tests.
    func manyItems(_ n: Int) throws -> ImageDataset {
        let base = try seedDataset()
        return base.subset((0..<n).map { $0 % base.count })
    }

    func augmentedOptions(batchSize: Int = 4) -> LoaderOptions {
        LoaderOptions(height: 16, width: 14, batchSize: batchSize, shuffle: true, seed: 9, augment: .seedExample)
    }

    /// Background batches equal synchronously built ones, with the default helpers, 2 helper
    /// threads and none (each batch loaded on the pool's threads when asked for), and a stream
    /// started at (epoch 1, batch 3) equals the tail of an uninterrupted run.
    func testBackgroundAndResumedBatchesAreIdentical() throws {
        let dataset = try manyItems(23)
        let loader = try BatchLoader(dataset: dataset, options: augmentedOptions())
        var two = augmentedOptions()
        two.decodeThreads = 2
        two.prefetch = 1
        let loader2 = try BatchLoader(dataset: dataset, options: two)
        let full = try drain(loader.batches(untilEpoch: 2))
        XCTAssertEqual(full.count, 2 * 6)
        XCTAssertEqual(full.map(\.count), [4, 4, 4, 4, 4, 3, 4, 4, 4, 4, 4, 3])
        XCTAssertEqual(full.map(\.epoch), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
        for b in full {
            let direct = try loader.makeBatch(epoch: b.epoch, batch: b.index)
            XCTAssertEqual(b.items, direct.items)
            XCTAssertEqual(b.images, direct.images)
            XCTAssertEqual(b.labels, direct.labels)
            XCTAssertEqual(try loader2.makeBatch(epoch: b.epoch, batch: b.index).images, b.images)
        }
        let resumed = try drain(loader2.batches(from: DataPosition(epoch: 1, batch: 3), untilEpoch: 2))
        XCTAssertEqual(resumed.map(\.index), [3, 4, 5])
        XCTAssertEqual(resumed.map(\.images), full[9...].map(\.images))
        // Each batch loaded on the pool's threads when asked for (no helpers, no prefetching).
        var between = augmentedOptions()
        between.decodeThreads = 0
        let inTurn = try drain(BatchLoader(dataset: dataset, options: between).batches(untilEpoch: 2))
        XCTAssertEqual(inTurn.map(\.items), full.map(\.items))
        XCTAssertEqual(inTurn.map(\.images), full.map(\.images))
        XCTAssertEqual(inTurn.map(\.labels), full.map(\.labels))
        // Each epoch visits every item once; epochs differ in order and augmentation.
        XCTAssertEqual(full[0..<6].flatMap(\.items).sorted(), Array(0..<23))
        XCTAssertNotEqual(full[0..<6].flatMap(\.items), full[6...].flatMap(\.items))
        // Augmentation is per item, not per position: item 0 looks the same wherever it lands
        // within one epoch, whichever batch size.
        let other = try BatchLoader(dataset: dataset, options: augmentedOptions(batchSize: 5))
        let a = try drain(other.epoch(0))
        let size = 16 * 14 * 3
        func image(of item: Int, in batches: [Batch]) -> [Float] {
            for b in batches { if let k = b.items.firstIndex(of: item) { return Array(b.images.data[k * size ..< (k + 1) * size]) } }
            return []
        }
        XCTAssertEqual(image(of: 0, in: a), image(of: 0, in: Array(full[0..<6])))
        XCTAssertNotEqual(image(of: 0, in: Array(full[0..<6])), image(of: 0, in: Array(full[6...])))
    }

    /// JPEGs decoded, resized and augmented on the worker pool's threads when the consumer asks
    /// for each batch (no helper threads, as on a machine the step's workers fill), or by a
    /// worker a "step" leaves idle (one long task of a job keeps the other worker waiting), make
    /// the batches `makeBatch` makes serially, bit for bit: same images, order and random draws.
    func testImagesLoadedBetweenStepsEqualSerialBatches() throws {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        RuntimeThreads.set(2)
        for i in 0..<12 { try copyImage("augment/bench_600x800.jpg", to: "imgs/\(i).jpg") }
        let dataset = try ImageDataset.load(folder + "/imgs")
        var options = LoaderOptions(height: 96, width: 80, batchSize: 4, shuffle: true, seed: 5, augment: .seedExample)
        options.decodeThreads = 0     // no helper threads: the consumer loads every image
        options.prefetch = 2
        let loader = try BatchLoader(dataset: dataset, options: options)
        let stream = loader.batches(untilEpoch: 2)
        var batches: [Batch] = []
        let sums = UnsafeMutablePointer<Double>.allocate(capacity: 64)
        defer { sums.deallocate() }
        while let b = try stream.next() {
            batches.append(b)
            for _ in 0..<400 {
                parallelFor(64, minChunk: 1) { w, r in
                    var x = 0.0
                    for i in r { for k in 0..<200 { x += sin(Double(i * k)) } }
                    sums[w] = x
                }
            }
            parallelFor(2) { _, r in if r.lowerBound == 0 { usleep(20_000) } }
        }
        XCTAssertEqual(batches.count, 6)
        let t = stream.timings
        XCTAssertEqual(t.images, 24)
        XCTAssertEqual(t.byConsumer + t.byIdleWorkers, t.images)
        XCTAssertGreaterThan(t.byIdleWorkers, 0, "the worker the long task left idle loaded images")
        XCTAssertGreaterThan(t.byConsumer, 0, "the first batch was loaded when asked for")
        print(t.describe(stepSeconds: 0, stepImages: 0))
        var serial = options
        serial.decodeThreads = 1
        let reference = try BatchLoader(dataset: dataset, options: serial)
        for b in batches {
            let direct = try reference.makeBatch(epoch: b.epoch, batch: b.index)
            XCTAssertEqual(b.items, direct.items)
            XCTAssertEqual(b.images, direct.images, "epoch \(b.epoch) batch \(b.index)")
            XCTAssertEqual(b.labels, direct.labels)
        }
        // The batches above were all kept, so each was made in an array of its own. A consumer
        // that lets each batch go before the next gets them in a few arrays written again (no
        // fresh 5 MB per batch), with the same pixels.
        let again = loader.batches(untilEpoch: 2)
        var arrays: Set<UnsafePointer<Float>> = []
        var k = 0
        while let b = try again.next() {
            arrays.insert(b.images.data.withUnsafeBufferPointer { $0.baseAddress! })
            XCTAssertEqual(b.images, batches[k].images, "epoch \(b.epoch) batch \(b.index), written again")
            k += 1
        }
        XCTAssertEqual(k, 6)
        XCTAssertLessThanOrEqual(arrays.count, 3)
        XCTAssertEqual(Set(batches.map { b in b.images.data.withUnsafeBufferPointer { $0.baseAddress! } }).count, 6)
    }

    /// By default a stream starts one helper thread per core the step's workers leave free: none
    /// when they fill the machine (the batches are then loaded on the workers when asked for).
    func testHelperThreadsAreTheCoresTheStepLeavesFree() throws {
        let dataset = try manyItems(3)
        let loader = try BatchLoader(dataset: dataset, options: augmentedOptions())
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        RuntimeThreads.set(cores)
        XCTAssertEqual(loader.helperThreads, 0)
        RuntimeThreads.set(1)
        XCTAssertEqual(loader.helperThreads, min(cores - 1, 2 * 4))   // at most the window's images
        var three = augmentedOptions()
        three.decodeThreads = 3
        XCTAssertEqual(try BatchLoader(dataset: dataset, options: three).helperThreads, 3)
    }

    func testValidationIteratesInOrderWithoutAugmentation() throws {
        let dataset = try manyItems(11)
        let loader = try BatchLoader(dataset: dataset, options: LoaderOptions(height: 12, width: 10, batchSize: 4, shuffle: false))
        for _ in 0..<2 {  // every pass the same
            let batches = try drain(loader.epoch(0))
            XCTAssertEqual(batches.map(\.count), [4, 4, 3])
            XCTAssertEqual(batches.flatMap(\.items), Array(0..<11))
            let keras = try NpyArray.read(path: flow + "/dataframe_x.npy").values
            let size = 12 * 10 * 3
            // Item 10 is file 10 % 5 = 0, last in the last batch.
            XCTAssertEqual(Array(batches[2].images.data[(2 * size)...]), Array(keras[0..<size]))
        }
    }

    /// A bad image: with .fail the stream delivers the batches before it, then throws naming the
    /// file; with .skip its batch is one smaller and the file is reported.
    func testBadImagePolicies() throws {
        try copyImage("images/rgb420.jpg", to: "imgs/good1.jpg")
        try copyImage("images/truncated_header.jpg", to: "imgs/bad.jpg")
        try copyImage("images/gray.png", to: "imgs/good2.png")
        try copyImage("images/rgb.png", to: "imgs/good3.png")
        let csv = try write("t.csv", "image_id,label\ngood1.jpg,0\ngood2.png,1\nbad.jpg,1\ngood3.png,0\n")
        var o = DatasetOptions()
        o.imageDirectory = folder + "/imgs"
        let dataset = try ImageDataset.load(csv, options: o)
        var options = LoaderOptions(height: 8, width: 8, batchSize: 2, shuffle: false)
        let failing = try BatchLoader(dataset: dataset, options: options).epoch(0)
        XCTAssertEqual(try failing.next()?.items, [0, 1])
        assertThrows(try failing.next() as Any, mentioning: [folder + "/imgs/bad.jpg"])
        XCTAssertNil(try failing.next())
        options.badImages = .skip
        let skipping = try BatchLoader(dataset: dataset, options: options).epoch(0)
        let batches = try drain(skipping)
        XCTAssertEqual(batches.map(\.items), [[0, 1], [3]])
        XCTAssertEqual(batches[1].images.shape, [1, 8, 8, 3])
        XCTAssertEqual(batches[1].labels.data, [1, 0])
        XCTAssertEqual(batches[1].skipped.map(\.file.name), ["bad.jpg"])
        XCTAssertEqual(skipping.skipped.map(\.file.name), ["bad.jpg"])
    }

    func testPreflightListsEveryBadFile() throws {
        try copyImage("images/rgb420.jpg", to: "imgs/good.jpg")
        try copyImage("images/corrupt.png", to: "imgs/corrupt.png")
        try copyImage("images/empty.jpg", to: "imgs/empty.jpg")
        try copyImage("images/small.gif", to: "imgs/gif.png")
        let csv = try write("t.csv", "image_id\ngood.jpg\ncorrupt.png\nmissing.jpg\nempty.jpg\ngif.png\ngood.jpg\n")
        var o = DatasetOptions()
        o.imageDirectory = folder + "/imgs"
        o.requireFiles = false
        let dataset = try ImageDataset.load(csv, options: o)
        let seen = LockedCounter()
        let bad = preflightCheck(dataset, height: 12, width: 10, threads: 2, progress: { done, total in
            XCTAssertEqual(total, 6)
            seen.record(done)
        })
        XCTAssertEqual(bad.map(\.file.name), ["corrupt.png", "missing.jpg", "empty.jpg", "gif.png"])
        XCTAssertTrue(bad.allSatisfy { !$0.reason.isEmpty })
        XCTAssertEqual(seen.maximum, 6)
        let message = BadImagesError(source: csv, bad: bad).description
        XCTAssertTrue(message.contains("4 images cannot be loaded") && message.contains("corrupt.png") && message.contains("and 1 more"), message)
        let cleaned = try dataset.removing(paths: Set(bad.map(\.file.path)))
        XCTAssertEqual(cleaned.count, 2)
        XCTAssertEqual(preflightCheck(cleaned, height: 12, width: 10), [])
    }

    /// The images the pre-flight check keeps (`DecodedImages`) make the same batches as decoding
    /// the files again, with augmentation, over two epochs, in the background stream and in
    /// `makeBatch`; none is decoded twice; the budget bounds what is kept; a loader that decodes
    /// otherwise (`--fast-decode`, another size) does not use them.
    func testImagesHeldFromPreflightMakeTheSameBatches() throws {
        try copyImage("augment/bench_600x800.jpg", to: "imgs/photo.jpg")
        try copyImage("images/rgb420.jpg", to: "imgs/rgb420.jpg")
        try copyImage("images/gray.png", to: "imgs/gray.png")
        try copyImage("images/rgb.png", to: "imgs/rgb.png")
        try copyImage("images/truncated_header.jpg", to: "imgs/bad.jpg")
        let dataset = try ImageDataset.load(folder + "/imgs")
        XCTAssertThrowsError(try TrainingRun.checkImages(dataset, height: 40, width: 36, channels: 3, skipBad: false,
                                                         keepBytes: DecodedImages.defaultBudget))
        let (checked, left) = try TrainingRun.checkImages(dataset, height: 40, width: 36, channels: 3, skipBad: true,
                                                          keepBytes: DecodedImages.defaultBudget)
        XCTAssertEqual(left.map(\.file.name), ["bad.jpg"])
        XCTAssertEqual(checked.count, 4)
        XCTAssertEqual(checked.decoded?.count, 4)
        var fresh = checked
        fresh.decoded = nil
        let options = LoaderOptions(height: 40, width: 36, batchSize: 3, shuffle: true, seed: 9, augment: .seedExample)
        let held = try BatchLoader(dataset: checked, options: options)
        let reference = try BatchLoader(dataset: fresh, options: options)
        let stream = held.batches(untilEpoch: 2)
        let batches = try drain(stream)
        XCTAssertEqual(batches.count, 4)
        XCTAssertEqual(stream.timings.images, 8)
        XCTAssertEqual(stream.timings.held, 8, "every image came from the pre-flight check")
        for b in batches {
            let direct = try reference.makeBatch(epoch: b.epoch, batch: b.index)
            XCTAssertEqual(b.items, direct.items)
            XCTAssertEqual(b.images, direct.images, "epoch \(b.epoch) batch \(b.index)")
            XCTAssertEqual(try held.makeBatch(epoch: b.epoch, batch: b.index).images, direct.images)
        }
        // Grayscale is kept as grayscale: its batches too are the fresh ones.
        let grey = try TrainingRun.checkImages(fresh, height: 40, width: 36, channels: 1, skipBad: false,
                                                keepBytes: DecodedImages.defaultBudget).dataset
        var greyOptions = options
        greyOptions.channels = 1
        var greyFresh = grey
        greyFresh.decoded = nil
        XCTAssertEqual(try BatchLoader(dataset: grey, options: greyOptions).makeBatch(epoch: 1, batch: 0).images,
                       try BatchLoader(dataset: greyFresh, options: greyOptions).makeBatch(epoch: 1, batch: 0).images)

        let photoBytes = 40 * 36 * 3
        let budgeted = preflightDecode(fresh, height: 40, width: 36, keepBytes: photoBytes + photoBytes / 2).decoded
        XCTAssertEqual(budgeted.count, 1, "the budget holds one image")
        XCTAssertEqual(preflightDecode(fresh, height: 40, width: 36, keepBytes: 0).decoded.count, 0)
        var fast = options
        fast.fastDecode = true
        XCTAssertNil(try BatchLoader(dataset: checked, options: fast).decoded)
        var otherSize = options
        otherSize.height = 41
        XCTAssertNil(try BatchLoader(dataset: checked, options: otherSize).decoded)
        XCTAssertNotNil(held.decoded)

        // Under fast decoding the check keeps the fast decode's images, each equal to a fresh
        // fast decode (the 600x800 photo is decoded at 1/8 scale: not Keras's pixels), serves them
        // only to a fast-decoding loader, and its batches are the fresh fast ones.
        let fastDecoded = preflightDecode(fresh, height: 40, width: 36, fastDecode: true,
                                          keepBytes: DecodedImages.defaultBudget).decoded
        XCTAssertTrue(fastDecoded.fastDecode)
        XCTAssertFalse(try XCTUnwrap(checked.decoded).fastDecode)
        XCTAssertEqual(fastDecoded.count, 4)
        for file in fresh.files {
            let again = try kerasImage(contentsOfFile: file.path, channels: 3, targetHeight: 40, targetWidth: 36,
                                       interpolation: .nearest, fastDecode: true)
            XCTAssertEqual(fastDecoded.image(file.path, for: fast), again, file.name)
            XCTAssertNil(fastDecoded.image(file.path, for: options), "a Keras-decoding loader gets no fast image")
        }
        let photo = try XCTUnwrap(fresh.files.first { $0.name == "photo.jpg" }).path
        XCTAssertNotEqual(fastDecoded.image(photo, for: fast), checked.decoded?.image(photo, for: options),
                          "the photo's fast decode differs from Keras's")
        var fastHeld = fresh
        fastHeld.decoded = fastDecoded
        let fastLoader = try BatchLoader(dataset: fastHeld, options: fast)
        XCTAssertNotNil(fastLoader.decoded)
        XCTAssertNil(try BatchLoader(dataset: fastHeld, options: options).decoded)
        let fastStream = fastLoader.batches(untilEpoch: 2)
        let fastBatches = try drain(fastStream)
        XCTAssertEqual(fastStream.timings.held, 8, "every image came from the fast pre-flight check")
        let fastReference = try BatchLoader(dataset: fresh, options: fast)
        for b in fastBatches {
            XCTAssertEqual(b.images, try fastReference.makeBatch(epoch: b.epoch, batch: b.index).images,
                           "fast: epoch \(b.epoch) batch \(b.index)")
        }
    }

    /// The seed's setting: batch 8, 228x228, seed augmentation, photo-sized JPEGs, one
    /// background thread. Prints the time per batch; the training step it must hide is ~0.3 s.
    func testPipelineKeepsUpAtSeedSize() throws {
        for i in 0..<16 { try copyImage("augment/bench_600x800.jpg", to: "imgs/\(i).jpg") }
        let dataset = try ImageDataset.load(folder + "/imgs")
        let options = LoaderOptions(height: 228, width: 228, batchSize: 8, shuffle: true, seed: 3, augment: .seedExample)
        let loader = try BatchLoader(dataset: dataset, options: options)
        let cpu0 = threadCPUSeconds()
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try loader.makeBatch(epoch: 0, batch: 0)
        _ = try loader.makeBatch(epoch: 0, batch: 1)
        let perBatch = Double(DispatchTime.now().uptimeNanoseconds - start) / 2e9
        let cpuPerBatch = (threadCPUSeconds() - cpu0) / 2
        // And through the background stream, with the consumer "training" 0.3 s per step.
        let stream = loader.batches(untilEpoch: 2)
        var waited = 0.0
        var steps = 0
        while true {
            let t0 = DispatchTime.now().uptimeNanoseconds
            guard let batch = try stream.next() else { break }
            if steps > 0 { waited += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
            XCTAssertEqual(batch.images.shape, [8, 228, 228, 3])
            steps += 1
            usleep(300_000)
        }
        print(String(format: "pipeline 8 x 228x228x3 from 600x800 JPEGs + seed augmentation: %.1f ms per batch (thread CPU %.1f ms); waited %.1f ms in total over %d steps of 0.3 s",
                     perBatch * 1e3, cpuPerBatch * 1e3, waited * 1e3, steps - 1))
        XCTAssertEqual(steps, 4)
    }
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var maximum = 0
    func record(_ v: Int) {
        lock.lock(); defer { lock.unlock() }
        maximum = max(maximum, v)
    }
}
