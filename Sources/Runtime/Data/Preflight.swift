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
    let total = dataset.count
    let workers = max(1, min(threads, total))
    let lock = NSLock()
    var bad: [(Int, BadImage)] = []
    var done = 0
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        var buffer = [Float](repeating: 0, count: height * width * channels)
        var found: [(Int, BadImage)] = []
        var sinceReport = 0
        for i in chunkRange(total, workers, w) {
            let file = dataset.files[i]
            do {
                try buffer.withUnsafeMutableBufferPointer {
                    try loadImage(path: file.path, channels: channels, targetHeight: height, targetWidth: width,
                                  interpolation: interpolation, into: $0)
                }
            } catch let e as ImageError {
                found.append((i, BadImage(file: file, reason: e.reason)))
            } catch {
                found.append((i, BadImage(file: file, reason: "\(error)")))
            }
            sinceReport += 1
            if sinceReport == 64 || i == chunkRange(total, workers, w).upperBound - 1 {
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
        lock.unlock()
    }
    return bad.sorted { $0.0 < $1.0 }.map(\.1)
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
