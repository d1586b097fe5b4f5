// The next batches, prepared while the caller computes on the current one. A window of
// `prefetch` batches is in preparation at once (bounded memory); each of its images is one unit
// of work, taken earliest batch first by
//   - `decodeThreads` helper threads;
//   - the caller, in `next()`, when the batch it needs is not ready (it loads images rather than
//     waits);
//   - with `LoaderOptions.pipeline == .pool`, also the worker pool's threads between the jobs of
//     a step (instead of spinning: see CKernels/pool.c), polling for the step's next job as they
//     go, so the images use the gaps in the step without a third thread competing with the two
//     that compute; the helpers then run at idle scheduling priority, getting only a core
//     nothing else wants (the pool not started yet, one compute thread, the caller between steps);
//   - with `LoaderOptions.pipeline == .between`, no helpers: the caller's `next()` loads the
//     batch's images on all the pool's threads at once, between two steps.
// An image lands in its own slot whoever loads it, and a batch is a pure function of (epoch,
// index) (BatchLoader), so the batches are those of `BatchLoader.makeBatch`, bit for bit.
import CKernels
import Foundation

public final class BatchStream: @unchecked Sendable {
    private let shared: Shared
    public let loader: BatchLoader

    init(loader: BatchLoader, start: DataPosition, endEpoch: Int) {
        self.loader = loader
        shared = Shared(loader: loader, start: start, endEpoch: endEpoch)
        let shared = self.shared
        let pool = loader.options.pipeline == .pool
        if pool { BackgroundWork.add(shared) { shared.runOne() } }
        for i in 0..<(loader.options.pipeline == .between ? 0 : loader.options.decodeThreads) {
            let thread = Thread {
                if pool { lowerToIdlePriority() }
                shared.help()
            }
            thread.name = "distillctl.images.\(i)"
            thread.start()
        }
    }

    deinit { shared.cancel() }

    /// The next batch in order, loading its images on this thread if they are not ready; nil
    /// after the last one. Rethrows a failure (a bad image under `.fail`) at the batch it belongs to.
    public func next() throws -> Batch? {
        try shared.take()
    }

    /// Stops the preparation of further batches (also done when the stream is released).
    public func cancel() { shared.cancel() }

    /// Images left out under `.skip` in the batches returned so far, in order (including those
    /// of batches that lost every image and so were passed over).
    public var skipped: [BadImage] { shared.skippedSoFar }

    /// Where the images' time went so far.
    public var timings: LoaderTimings { shared.timingsSoFar }

    /// One batch in preparation: its rows, a slot per image, and how many are taken and done.
    private final class Pending {
        let epoch: Int, index: Int
        let rows: (items: [Int], globalCount: Int, globalOffset: Int)
        let pixels: UnsafeMutablePointer<Float>
        var failures: [BadImage?]
        var claimed = 0, done = 0
        var result: Result<Batch, Error>?

        init(loader: BatchLoader, epoch: Int, index: Int) {
            self.epoch = epoch
            self.index = index
            rows = loader.rows(epoch: epoch, batch: index)
            pixels = .allocate(capacity: max(1, rows.items.count * loader.imageSize))
            failures = Array(repeating: nil, count: rows.items.count)
        }

        deinit { pixels.deallocate() }
    }

    /// The window and its lock, shared by every thread that loads images.
    private final class Shared: @unchecked Sendable {
        let loader: BatchLoader
        let condition = NSCondition()
        let endEpoch: Int
        var position: DataPosition          // the next batch to open
        var window: [Pending] = []
        var cancelled = false
        var finished = false                // every batch returned, or a failure thrown
        var skipped: [BadImage] = []
        var timings = LoaderTimings()

        init(loader: BatchLoader, start: DataPosition, endEpoch: Int) {
            self.loader = loader
            self.endEpoch = endEpoch
            position = start
            fill()
        }

        /// Opens batches until the window holds `prefetch` (caller holds the lock).
        func fill() {
            let perEpoch = loader.batchesPerEpoch
            while window.count < loader.options.prefetch && position.epoch < endEpoch && position.batch < perEpoch {
                window.append(Pending(loader: loader, epoch: position.epoch, index: position.batch))
                position = DataPosition.after(epoch: position.epoch, batch: position.batch, batchesPerEpoch: perEpoch)
            }
        }

        /// Loads one image of the earliest batch with one left; false when there is none.
        func runOne(consumer: Bool = false) -> Bool {
            condition.lock()
            guard !cancelled, let pending = window.first(where: { $0.claimed < $0.rows.items.count }) else {
                condition.unlock()
                return false
            }
            let slot = pending.claimed
            pending.claimed += 1
            condition.unlock()

            let size = loader.imageSize
            var scratch = [Float](repeating: 0, count: loader.augmenter == nil ? 0 : size)
            var t = LoaderTimings()
            let failure = loader.load(item: pending.rows.items[slot], epoch: pending.epoch,
                                      into: UnsafeMutableBufferPointer(start: pending.pixels + slot * size, count: size),
                                      scratch: &scratch, timings: &t)

            condition.lock()
            pending.failures[slot] = failure
            pending.done += 1
            if consumer { t.byConsumer = t.images }
            timings = timings + t
            let complete = pending.done == pending.rows.items.count
            condition.unlock()
            if complete { finish(pending) }
            return true
        }

        /// Builds the batch from its completed slots (off the lock: it copies the pixels).
        func finish(_ pending: Pending) {
            let count = pending.rows.items.count * loader.imageSize
            // In pieces, polling between them: on a pool thread a step's next loop may be waiting.
            let pixels = [Float](unsafeUninitializedCapacity: count) { out, initialized in
                var i = 0
                while i < count {
                    let n = min(1 << 16, count - i)
                    (out.baseAddress! + i).initialize(from: pending.pixels + i, count: n)
                    i += n
                    ck_pool_poll()
                }
                initialized = count
            }
            let result = Result {
                try loader.assemble(epoch: pending.epoch, batch: pending.index, rows: pending.rows, pixels: pixels,
                                    failures: pending.failures)
            }
            condition.lock()
            pending.result = result
            condition.broadcast()
            condition.unlock()
        }

        /// A helper thread's loop: images while there are any, else wait until the window moves.
        func help() {
            while runOne() || waitForWork() {}
        }

        /// Waits until an image may be free to take; false when none ever will be.
        private func waitForWork() -> Bool {
            condition.lock(); defer { condition.unlock() }
            while true {
                if cancelled || finished { return false }
                if window.contains(where: { $0.claimed < $0.rows.items.count }) { return true }
                let perEpoch = loader.batchesPerEpoch
                if !(position.epoch < endEpoch && position.batch < perEpoch) { return false }
                condition.wait()
            }
        }

        func cancel() {
            condition.lock()
            cancelled = true
            condition.broadcast()
            condition.unlock()
            BackgroundWork.remove(self)
        }

        func take() throws -> Batch? {
            let start = DispatchTime.now().uptimeNanoseconds
            defer {
                condition.lock()
                timings.waited += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                condition.unlock()
            }
            while true {
                condition.lock()
                if cancelled || finished || window.isEmpty {
                    let wasFinished = finished
                    finished = true
                    condition.broadcast()
                    condition.unlock()
                    if !wasFinished { BackgroundWork.remove(self) }
                    return nil
                }
                let first = window[0]
                if let result = first.result {
                    window.removeFirst()
                    fill()
                    condition.broadcast()
                    switch result {
                    case .success(let batch):
                        skipped.append(contentsOf: batch.skipped)
                        condition.unlock()
                        BackgroundWork.posted()
                        if batch.count > 0 { return batch }
                        continue
                    case .failure(let error):
                        finished = true
                        condition.unlock()
                        BackgroundWork.remove(self)
                        throw error
                    }
                }
                let unclaimed = first.rows.items.count - first.claimed
                condition.unlock()
                if loader.options.pipeline == .between && unclaimed > 1 {
                    // The batch's images on every worker of the pool at once (each takes the
                    // earliest image left, as the helpers would).
                    parallelFor(unclaimed) { _, range in for _ in range { _ = runOne(consumer: true) } }
                    continue
                }
                // Not ready: load an image of it (or of a later batch) here rather than wait.
                if runOne(consumer: true) { continue }
                condition.lock()
                while first.result == nil && !cancelled { condition.wait() }
                condition.unlock()
            }
        }

        var skippedSoFar: [BadImage] {
            condition.lock(); defer { condition.unlock() }
            return skipped
        }

        var timingsSoFar: LoaderTimings {
            condition.lock(); defer { condition.unlock() }
            return timings
        }
    }
}

/// Puts the calling thread at idle scheduling priority (Linux's SCHED_IDLE): it runs only on a
/// core no other thread wants, so image helpers never take time from the step's threads.
private func lowerToIdlePriority() {
    #if os(Linux)
    let schedIdle: Int32 = 5   // SCHED_IDLE of <sched.h>, which declares it only under _GNU_SOURCE
    var param = sched_param()
    param.sched_priority = 0
    _ = pthread_setschedparam(pthread_self(), schedIdle, &param)
    #endif
}
