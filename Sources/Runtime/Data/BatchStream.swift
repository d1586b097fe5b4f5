// The next batches, prepared while the caller computes on the current one. A window of
// `prefetch` batches is in preparation at once (bounded memory); each of its images is one unit
// of work, taken earliest batch first by
//   - the helper threads (`LoaderOptions.decodeThreads`: by default one per core the step's
//     workers leave free, so none when they fill the machine);
//   - the caller, in `next()`, when the batch it needs is not ready: it loads the images left on
//     all the worker pool's threads at once (rather than wait), between two steps.
// An image lands in its own slot whoever loads it, and a batch is a pure function of (epoch,
// index) (BatchLoader), so the batches are those of `BatchLoader.makeBatch`, bit for bit.
import Foundation

public final class BatchStream: @unchecked Sendable {
    private let shared: Shared
    public let loader: BatchLoader

    init(loader: BatchLoader, start: DataPosition, endEpoch: Int) {
        self.loader = loader
        shared = Shared(loader: loader, start: start, endEpoch: endEpoch)
        let shared = self.shared
        for i in 0..<loader.helperThreads {
            let thread = Thread { shared.help() }
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

    /// Memory for a batch's image slots, passed from one batch to the next: a 5 MB block
    /// allocated per batch is a fresh mapping whenever malloc maps blocks that size, and then
    /// every page of it faults in again (as does a per-image scratch buffer).
    private final class Slots {
        let pixels: UnsafeMutablePointer<Float>
        let capacity: Int
        init(capacity: Int) {
            self.capacity = max(1, capacity)
            pixels = .allocate(capacity: self.capacity)
        }
        deinit { pixels.deallocate() }
    }

    /// One batch in preparation: its rows, a slot per image, and how many are taken and done.
    private final class Pending {
        let epoch: Int, index: Int
        let rows: (items: [Int], globalCount: Int, globalOffset: Int)
        let slots: Slots
        var pixels: UnsafeMutablePointer<Float> { slots.pixels }
        var failures: [BadImage?]
        var claimed = 0, done = 0
        var result: Result<Batch, Error>?

        init(loader: BatchLoader, epoch: Int, index: Int, spare: inout [Slots]) {
            self.epoch = epoch
            self.index = index
            rows = loader.rows(epoch: epoch, batch: index)
            let needed = rows.items.count * loader.imageSize
            if let i = spare.firstIndex(where: { $0.capacity >= needed }) {
                slots = spare.remove(at: i)
            } else {
                slots = Slots(capacity: needed)
            }
            failures = Array(repeating: nil, count: rows.items.count)
        }
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
        /// Slots of finished batches and scratch buffers, for the next ones (under the lock).
        var spareSlots: [Slots] = []
        var spareScratch: [[Float]] = []

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
                window.append(Pending(loader: loader, epoch: position.epoch, index: position.batch, spare: &spareSlots))
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
            let size = loader.imageSize
            var scratch = spareScratch.popLast() ?? [Float](repeating: 0, count: loader.augmenter == nil ? 0 : size)
            condition.unlock()

            var t = LoaderTimings()
            let failure = loader.load(item: pending.rows.items[slot], epoch: pending.epoch,
                                      into: UnsafeMutableBufferPointer(start: pending.pixels + slot * size, count: size),
                                      scratch: &scratch, timings: &t)

            condition.lock()
            spareScratch.append(scratch)
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
            let pixels = [Float](unsafeUninitializedCapacity: count) { out, initialized in
                out.baseAddress!.initialize(from: pending.pixels, count: count)
                initialized = count
            }
            let result = Result {
                try loader.assemble(epoch: pending.epoch, batch: pending.index, rows: pending.rows, pixels: pixels,
                                    failures: pending.failures)
            }
            condition.lock()
            pending.result = result
            // Its slots are copied out: the next batch opened may fill them.
            spareSlots.append(pending.slots)
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
                    finished = true
                    condition.broadcast()
                    condition.unlock()
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
                        if batch.count > 0 { return batch }
                        continue
                    case .failure(let error):
                        finished = true
                        condition.unlock()
                        throw error
                    }
                }
                let unclaimed = first.rows.items.count - first.claimed
                condition.unlock()
                if unclaimed > 1 {
                    // Not ready: the batch's images on every worker of the pool at once (each
                    // takes the earliest image left, as the helpers would), rather than wait.
                    parallelFor(unclaimed) { _, range in for _ in range { _ = runOne(consumer: true) } }
                    continue
                }
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
