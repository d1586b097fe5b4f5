// Decode every image once before training, so a bad file stops the run before the first step
// (or is dropped up front with --skip-bad-images) instead of surfacing hours in.
import Foundation
import Graph

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
public func preflightDecode(_ dataset: ImageDataset, height: Int, width: Int, channels: Int = 3,
                            interpolation: Interpolation = .nearest, threads: Int = RuntimeThreads.count,
                            keepBytes: Int, progress: (@Sendable (Int, Int) -> Void)? = nil)
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
            lock.lock()
            let i = next
            next += 1
            lock.unlock()
            guard i < total else { break }
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
