// Decode every image once before training, so a bad file stops the run before the first step
// (or is dropped up front with --skip-bad-images) instead of surfacing hours in.
import Foundation
import Graph
import H5Model

/// Decodes (and resizes, exactly as the batches will) every image of `dataset` and returns the
/// ones that fail, in dataset order, each with the decoder's reason. Runs on `threads` workers;
/// `progress(done, total)` is called now and then from a worker thread.
public func preflightCheck(_ dataset: ImageDataset, height: Int, width: Int, channels: Int = 3,
                           interpolation: Interpolation = .nearest, threads: Int = RuntimeThreads.count,
                           progress: (@Sendable (Int, Int) -> Void)? = nil) -> [BadImage] {
    preflightDecode(dataset, height: height, width: width, channels: channels, interpolation: interpolation,
                    threads: threads, keepBytes: 0, progress: progress).bad
}

/// `preflightCheck` that also keeps the decoded, resized images, up to `keepBytes` of them (in
/// the order the workers finish them), for the batches to use instead of decoding again.
/// `fastDecode`: decode as a `--fast-decode` loader does (`LoaderOptions.fastDecode`), whose
/// batches are then the ones served. `stopped`, when given, is asked before each image: true
/// ends the decoding early (the result then covers only the images decoded so far).
public func preflightDecode(_ dataset: ImageDataset, height: Int, width: Int, channels: Int = 3,
                            interpolation: Interpolation = .nearest, fastDecode: Bool = false,
                            threads: Int = RuntimeThreads.count,
                            keepBytes: Int, progress: (@Sendable (Int, Int) -> Void)? = nil,
                            stopped: (@Sendable () -> Bool)? = nil)
    -> (bad: [BadImage], decoded: DecodedImages) {
    let decoder = PreflightDecoder(sets: [dataset], height: height, width: width, channels: channels,
                                   interpolation: interpolation, fastDecode: fastDecode, keepBytes: keepBytes,
                                   progress: progress, stopped: stopped)
    // Each worker takes the next image as it finishes one (not a fixed share): on a busy machine
    // one descheduled worker would otherwise leave its whole share to the end.
    DispatchQueue.concurrentPerform(iterations: max(1, min(threads, dataset.count))) { _ in
        // A model may be read in a forked child meanwhile: each image is a piece of work of
        // ForkGate's, so no fork lands in the middle of one.
        while ForkGate.work({ decoder.decodeNext() }) {}
        decoder.finishWorker()
    }
    return decoder.outcome[0]
}

/// The pre-flight decoding of some image sets, one image at a time on whatever threads call
/// `decodeNext` (the sets one after the other, each image once): which images are bad, with the
/// decoder's reason, and the decoded images kept.
final class PreflightDecoder: @unchecked Sendable {
    private let sets: [ImageDataset]
    private let height: Int, width: Int, channels: Int
    private let interpolation: Interpolation
    private let fastDecode: Bool
    private let keepBytes: Int
    private let progress: (@Sendable (Int, Int) -> Void)?
    private let stopped: (@Sendable () -> Bool)?
    private let total: Int
    private let lock = NSLock()
    private var next = 0
    private var done = 0
    private var stop = false
    private var bad: [[(Int, BadImage)]]
    private var kept: [[String: Image]]
    private var keptBytes: [Int]

    init(sets: [ImageDataset], height: Int, width: Int, channels: Int, interpolation: Interpolation, fastDecode: Bool,
         keepBytes: Int, progress: (@Sendable (Int, Int) -> Void)? = nil, stopped: (@Sendable () -> Bool)? = nil) {
        (self.sets, self.height, self.width, self.channels) = (sets, height, width, channels)
        self.fastDecode = fastDecode
        (self.interpolation, self.keepBytes, self.progress, self.stopped) = (interpolation, keepBytes, progress, stopped)
        total = sets.reduce(0) { $0 + $1.count }
        bad = sets.map { _ in [] }
        kept = sets.map { _ in [:] }
        keptBytes = sets.map { _ in 0 }
    }

    /// Decodes the next image; false when none is left or the decoding was stopped.
    func decodeNext() -> Bool {
        lock.lock()
        let i = next
        next += 1
        let halted = stop
        lock.unlock()
        guard i < total, !halted, stopped?() != true else { return false }
        var set = 0, item = i
        while item >= sets[set].count { item -= sets[set].count; set += 1 }
        let file = sets[set].files[item]
        var image: Image? = nil, failure: BadImage? = nil
        do {
            image = try kerasImage(contentsOfFile: file.path, channels: channels, targetHeight: height, targetWidth: width,
                                   interpolation: interpolation, fastDecode: fastDecode)
        } catch let e as ImageError {
            failure = BadImage(file: file, reason: e.reason)
        } catch {
            failure = BadImage(file: file, reason: "\(error)")
        }
        lock.lock()
        if let failure { bad[set].append((item, failure)) }
        if let image, keepBytes > 0, keptBytes[set] + image.byteCount <= keepBytes {
            keptBytes[set] += image.byteCount
            kept[set][file.path] = image
        }
        done += 1
        let report = done % 64 == 0 || done == total ? done : nil
        lock.unlock()
        if let report { progress?(report, total) }
        return true
    }

    /// Reports the count once more as a worker leaves (the count a stopped decoding reached).
    func finishWorker() {
        guard let progress else { return }
        lock.lock()
        let d = done
        lock.unlock()
        if d % 64 != 0 && d != total { progress(d, total) }
    }

    /// Ends the decoding at the next image.
    func halt() {
        lock.lock()
        stop = true
        lock.unlock()
    }

    /// Each set's bad images (in the set's order) and kept images, once no thread decodes.
    var outcome: [(bad: [BadImage], decoded: DecodedImages)] {
        lock.lock(); defer { lock.unlock() }
        return sets.indices.map { s in
            (bad[s].sorted { $0.0 < $1.0 }.map(\.1),
             DecodedImages(height: height, width: width, channels: channels, interpolation: interpolation,
                           fastDecode: fastDecode, images: kept[s]))
        }
    }
}

/// Images of a split that cannot be loaded (found by `preflightCheck`): the first few named with
/// their reasons, in one line.
public struct BadImagesError: Error, CustomStringConvertible, Sendable {
    public var source: String
    public var bad: [BadImage]

    public init(source: String, bad: [BadImage]) {
        self.source = source
        self.bad = bad
    }

    public var description: String {
        let shown = bad.prefix(3).map { "\($0.file.path) (\($0.reason))" }.joined(separator: "; ")
        let more = bad.count > 3 ? "; and \(bad.count - 3) more" : ""
        return "\(source): \(bad.count) image\(bad.count == 1 ? "" : "s") cannot be loaded: \(shown)\(more)"
    }
}

extension ImageDataset {
    /// The set after its pre-flight decoding (`preflightDecode`'s result): the images it kept
    /// attached for the batches, and the bad ones refused (`BadImagesError`) or, with `skipBad`,
    /// left out and returned.
    func checked(bad: [BadImage], decoded: DecodedImages, skipBad: Bool) throws -> (dataset: ImageDataset, left: [BadImage]) {
        var checked = self
        if decoded.count > 0 { checked.decoded = decoded }
        guard !bad.isEmpty else { return (checked, []) }
        guard skipBad else { throw BadImagesError(source: source, bad: bad) }
        return (try checked.removing(paths: Set(bad.map(\.file.path))), bad)
    }
}

/// The pre-flight decoding of a job's image sets on threads of their own (one per core the
/// runtime uses), so that the caller can read the teachers and compile the plans meanwhile: on
/// two cores the decoding (most of the time before a job's first step) then takes the core a
/// model read leaves idle while its forked child reads, and shares both with the plans'
/// compiling. The threads live inside `ForkGate` (`startThread`), pausing between images, so a
/// model read forks only between two images and never beside a thread starting or ending.
final class BackgroundImageCheck: @unchecked Sendable {
    typealias Outcome = [(bad: [BadImage], decoded: DecodedImages)]
    private let decoder: PreflightDecoder
    private var threads: [GateThread] = []

    /// How many checks have started in this process (tests see from it when the threads began).
    nonisolated(unsafe) static var started = 0

    init(sets: [ImageDataset], height: Int, width: Int, channels: Int, fastDecode: Bool = false, keepBytes: Int,
         threads count: Int = RuntimeThreads.count) {
        Self.started += 1
        decoder = PreflightDecoder(sets: sets, height: height, width: width, channels: channels, interpolation: .nearest,
                                   fastDecode: fastDecode, keepBytes: keepBytes)
        let images = sets.reduce(0) { $0 + $1.count }
        threads = (0..<max(1, min(count, images))).map { _ in
            ForkGate.startThread { [decoder] pause in
                while decoder.decodeNext() { pause() }
            }
        }
    }

    /// Each set's bad images and kept images, in the order given, once every image is decoded.
    func wait() -> Outcome {
        for thread in threads { thread.join() }
        return decoder.outcome
    }

    /// Stops the decoding at the next image and waits for its threads to finish (the caller is
    /// giving up on the job: nothing of it may run on).
    func cancel() {
        decoder.halt()
        for thread in threads { thread.join() }
    }
}
