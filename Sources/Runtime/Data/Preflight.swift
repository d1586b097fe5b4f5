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
/// `stopped`, when given, is asked before each image: true ends the decoding early (the result
/// then covers only the images decoded so far).
public func preflightDecode(_ dataset: ImageDataset, height: Int, width: Int, channels: Int = 3,
                            interpolation: Interpolation = .nearest, threads: Int = RuntimeThreads.count,
                            keepBytes: Int, progress: (@Sendable (Int, Int) -> Void)? = nil,
                            stopped: (@Sendable () -> Bool)? = nil)
    -> (bad: [BadImage], decoded: DecodedImages) {
    let total = dataset.count
    let workers = max(1, min(threads, total))
    let lock = NSLock()
    var bad: [(Int, BadImage)] = []
    var kept: [String: Image] = [:]
    var keptBytes = 0
    var done = 0
    var next = 0
    // Each worker takes the next image as it finishes one (not a fixed share): on a busy machine
    // one descheduled worker would otherwise leave its whole share to the end.
    DispatchQueue.concurrentPerform(iterations: workers) { _ in
        var found: [(Int, BadImage)] = []
        var sinceReport = 0
        while true {
            // A model may be read in a forked child meanwhile: each image is a piece of work of
            // ForkGate's, so no fork lands in the middle of one.
            let more = ForkGate.work { () -> Bool in
                lock.lock()
                let i = next
                next += 1
                lock.unlock()
                guard i < total, stopped?() != true else { return false }
                let file = dataset.files[i]
                do {
                    let image = try kerasImage(Image(contentsOfFile: file.path), name: file.path, channels: channels,
                                               targetHeight: height, targetWidth: width, interpolation: interpolation)
                    if keepBytes > 0 {
                        lock.lock()
                        if keptBytes + image.byteCount <= keepBytes {
                            keptBytes += image.byteCount
                            kept[file.path] = image
                        }
                        lock.unlock()
                    }
                } catch let e as ImageError {
                    found.append((i, BadImage(file: file, reason: e.reason)))
                } catch {
                    found.append((i, BadImage(file: file, reason: "\(error)")))
                }
                return true
            }
            guard more else { break }
            sinceReport += 1
            if sinceReport == 64 {
                lock.lock()
                done += sinceReport
                let d = done
                lock.unlock()
                sinceReport = 0
                progress?(d, total)
            }
        }
        lock.lock()
        bad.append(contentsOf: found)
        done += sinceReport
        let d = done
        lock.unlock()
        if sinceReport > 0 { progress?(d, total) }
    }
    let decoded = DecodedImages(height: height, width: width, channels: channels, interpolation: interpolation, images: kept)
    return (bad.sorted { $0.0 < $1.0 }.map(\.1), decoded)
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

/// The pre-flight decoding of a job's image sets on a thread of its own, so that the caller can
/// load the other models and compile the plans meanwhile: on two cores the decoding (most of the
/// time before a job's first step) then shares them with work that would otherwise come before
/// or after it, one thread at a time. The sets are decoded one after the other, each as
/// `preflightDecode` does.
final class BackgroundImageCheck: @unchecked Sendable {
    typealias Outcome = [(bad: [BadImage], decoded: DecodedImages)]
    private let condition = NSCondition()
    private var outcome: Outcome?
    private var stop = false

    /// How many checks have started in this process (tests see from it when the threads began).
    nonisolated(unsafe) static var started = 0

    init(sets: [ImageDataset], height: Int, width: Int, channels: Int, keepBytes: Int) {
        Self.started += 1
        let thread = Thread { [self] in
            let stopped: @Sendable () -> Bool = { [self] in
                condition.lock(); defer { condition.unlock() }
                return stop
            }
            let results = sets.map {
                preflightDecode($0, height: height, width: width, channels: channels, keepBytes: keepBytes, stopped: stopped)
            }
            condition.lock()
            outcome = results
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "distillctl.check"
        thread.start()
    }

    /// Each set's bad images and kept images, in the order given, once every image is decoded.
    func wait() -> Outcome {
        condition.lock(); defer { condition.unlock() }
        while outcome == nil { condition.wait() }
        return outcome!
    }

    /// Stops the decoding at the next image and waits for its threads to finish (the caller is
    /// giving up on the job: nothing of it may run on).
    func cancel() {
        condition.lock()
        stop = true
        condition.unlock()
        _ = wait()
    }
}
