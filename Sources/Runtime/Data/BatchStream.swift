// The background half of the pipeline: one producer thread builds batch k+1, k+2 (decode +
// augment) into a bounded queue while the caller computes on batch k.
import Foundation

public final class BatchStream: @unchecked Sendable {
    private let shared: Shared
    public let loader: BatchLoader

    init(loader: BatchLoader, start: DataPosition, endEpoch: Int) {
        self.loader = loader
        shared = Shared(capacity: loader.options.prefetch)
        let shared = self.shared
        let thread = Thread {
            Self.produce(loader, start: start, endEpoch: endEpoch, into: shared)
        }
        thread.name = "distillctl.batches"
        thread.start()
    }

    deinit { shared.cancel() }

    /// The next batch in order, waiting for it if the background thread is behind; nil after the
    /// last one. Rethrows a failure (a bad image under `.fail`) at the batch it belongs to.
    public func next() throws -> Batch? {
        try shared.take()
    }

    /// Stops the background thread (also done when the stream is released).
    public func cancel() { shared.cancel() }

    /// Images left out under `.skip` in the batches returned so far, in order (including those
    /// of batches that lost every image and so were passed over).
    public var skipped: [BadImage] { shared.skippedSoFar }

    private static func produce(_ loader: BatchLoader, start: DataPosition, endEpoch: Int, into shared: Shared) {
        let perEpoch = loader.batchesPerEpoch
        var position = start
        while position.epoch < endEpoch && position.batch < perEpoch {
            guard shared.waitForRoom() else { return }
            do {
                let batch = try loader.makeBatch(epoch: position.epoch, batch: position.batch)
                shared.put(batch)
            } catch {
                shared.fail(error)
                return
            }
            position = DataPosition.after(epoch: position.epoch, batch: position.batch, batchesPerEpoch: perEpoch)
        }
        shared.finish()
    }

    /// The bounded queue between the producer and the caller.
    private final class Shared: @unchecked Sendable {
        let condition = NSCondition()
        let capacity: Int
        var queue: [Batch] = []
        var failure: Error? = nil
        var finished = false
        var cancelled = false
        var skipped: [BadImage] = []

        init(capacity: Int) { self.capacity = capacity }

        /// Blocks while the queue is full; false once cancelled.
        func waitForRoom() -> Bool {
            condition.lock(); defer { condition.unlock() }
            while queue.count >= capacity && !cancelled { condition.wait() }
            return !cancelled
        }

        func put(_ batch: Batch) {
            condition.lock(); defer { condition.unlock() }
            queue.append(batch)
            condition.broadcast()
        }

        func fail(_ error: Error) {
            condition.lock(); defer { condition.unlock() }
            failure = error
            finished = true
            condition.broadcast()
        }

        func finish() {
            condition.lock(); defer { condition.unlock() }
            finished = true
            condition.broadcast()
        }

        func cancel() {
            condition.lock(); defer { condition.unlock() }
            cancelled = true
            condition.broadcast()
        }

        func take() throws -> Batch? {
            condition.lock(); defer { condition.unlock() }
            while true {
                while queue.isEmpty && !finished && !cancelled { condition.wait() }
                guard !queue.isEmpty else { break }
                let batch = queue.removeFirst()
                condition.broadcast()
                skipped.append(contentsOf: batch.skipped)
                if batch.count > 0 { return batch }
            }
            if let failure {
                self.failure = nil
                finished = true
                throw failure
            }
            return nil
        }

        var skippedSoFar: [BadImage] {
            condition.lock(); defer { condition.unlock() }
            return skipped
        }
    }
}
