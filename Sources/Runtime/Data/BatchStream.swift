// The next batches, prepared while the caller computes on the current one. A window of
// `prefetch` batches is in preparation at once (bounded memory); each of its images is one unit
// of work, taken earliest batch first by
//   - the helper threads (`LoaderOptions.decodeThreads`: by default one per core the step's
//     workers leave free, so none when they fill the machine);
//   - the worker pool's threads while the step leaves them idle (a worker done with its share of
//     a job while another finishes its last task, or waiting for the next job): one image at a
//     time, as the pool's idle work (`PoolIdleWork`);
//   - the caller, in `next()`, when the batch it needs is not ready: it loads the images left on
//     all the worker pool's threads at once (rather than wait), between two steps; a batch none
//     of the others has begun straight into the batch's own pixels, with no copy.
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
        shared.startIdleWork()
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
    /// every page of it faults in again (as does a per-image scratch buffer). The batches' own
    /// pixel arrays are passed on the same way (`Shared.handedOut`).
    private final class Slots {
        let pixels: UnsafeMutablePointer<Float>
        let capacity: Int
        init(capacity: Int) {
            self.capacity = max(1, capacity)
            pixels = .allocate(capacity: self.capacity)
        }
        deinit { pixels.deallocate() }
    }

    /// One batch in preparation: its rows, a slot per image (given when its first image is taken
    /// one at a time), and how many are taken and done.
    private final class Pending {
        let epoch: Int, index: Int
        let rows: (items: [Int], globalCount: Int, globalOffset: Int)
        var slots: Slots?
        var failures: [BadImage?]
        var claimed = 0, done = 0
        var result: Result<Batch, Error>?

        init(loader: BatchLoader, epoch: Int, index: Int) {
            self.epoch = epoch
            self.index = index
            rows = loader.rows(epoch: epoch, batch: index)
            failures = Array(repeating: nil, count: rows.items.count)
        }

        /// Its slots, from `spare` if one is large enough (caller holds the lock).
        func slotPixels(loader: BatchLoader, spare: inout [Slots]) -> UnsafeMutablePointer<Float> {
            if let slots { return slots.pixels }
            let needed = rows.items.count * loader.imageSize
            let given: Slots
            if let i = spare.firstIndex(where: { $0.capacity >= needed }) {
                given = spare.remove(at: i)
            } else {
                given = Slots(capacity: needed)
            }
            slots = given
            return given.pixels
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
        /// The pixel arrays of the last batches made, oldest first (under the lock): the next
        /// batch writes into the oldest of its size, which its consumer has let go of by then
        /// (or, if it still holds it, gets a copy of its own: arrays copy on write), so no batch
        /// maps and faults in 5 MB of fresh pages.
        var handedOut: [[Float]] = []
        /// The pool's idle work while it is this stream's (set once, before any image is loaded).
        var idle: PoolIdleWork?

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
            offerIdleWork()
        }

        /// Takes the pool's idle work for this stream's images if no one else has it.
        func startIdleWork() {
            let work = PoolIdleWork { [unowned self] in self.runOne(idle: true) }
            condition.lock()
            if work.start() {
                idle = work
                offerIdleWork()
            }
            condition.unlock()
        }

        /// Tells the pool whether an image is there to take (caller holds the lock).
        func offerIdleWork() {
            idle?.offer(!cancelled && window.contains { $0.claimed < $0.rows.items.count })
        }

        /// Withdraws the idle work and waits for the images the pool's threads are loading.
        func stopIdleWork() {
            condition.lock()
            let work = idle
            condition.unlock()
            work?.stop()
        }

        /// Loads one image of the earliest batch with one left; false when there is none.
        /// `consumer`: by the caller of `next()`; `idle`: by an idle thread of the pool.
        func runOne(consumer: Bool = false, idle: Bool = false) -> Bool {
            condition.lock()
            guard !cancelled, let pending = window.first(where: { $0.claimed < $0.rows.items.count }) else {
                offerIdleWork()
                condition.unlock()
                return false
            }
            let slot = pending.claimed
            pending.claimed += 1
            offerIdleWork()
            let size = loader.imageSize
            let pixels = pending.slotPixels(loader: loader, spare: &spareSlots)
            var scratch = takeScratch()
            condition.unlock()

            var t = LoaderTimings()
            let failure = loader.load(item: pending.rows.items[slot], epoch: pending.epoch,
                                      into: UnsafeMutableBufferPointer(start: pixels + slot * size, count: size),
                                      scratch: &scratch, timings: &t)

            condition.lock()
            spareScratch.append(scratch)
            pending.failures[slot] = failure
            pending.done += 1
            if consumer { t.byConsumer = t.images }
            if idle { t.byIdleWorkers = t.images }
            timings = timings + t
            let complete = pending.done == pending.rows.items.count
            condition.unlock()
            if complete { finish(pending) }
            return true
        }

        /// A scratch buffer for one image's augmentation (caller holds the lock).
        func takeScratch() -> [Float] {
            spareScratch.popLast() ?? [Float](repeating: 0, count: loader.augmenter == nil ? 0 : loader.imageSize)
        }

        /// An array for a batch's `count` pixels: the oldest handed out of that size, else a new
        /// one (caller holds the lock).
        func pixelArray(count: Int) -> [Float] {
            if let i = handedOut.firstIndex(where: { $0.count == count }) { return handedOut.remove(at: i) }
            return [Float](repeating: 0, count: count)
        }

        /// Gives `pending` its batch, made from its loaded `pixels` (off the lock); keeps the array
        /// to write a later batch into, and returns `slots` (copied out) for the next batches.
        func complete(_ pending: Pending, pixels: [Float], slots: Slots? = nil) {
            let result = Result {
                try loader.assemble(epoch: pending.epoch, batch: pending.index, rows: pending.rows, pixels: pixels,
                                    failures: pending.failures)
            }
            condition.lock()
            pending.result = result
            handedOut.append(pixels)
            if handedOut.count > loader.options.prefetch + 1 { handedOut.removeFirst() }
            if let slots { spareSlots.append(slots) }
            condition.broadcast()
            condition.unlock()
        }

        /// Builds the batch from its completed slots (off the lock: it copies the pixels).
        func finish(_ pending: Pending) {
            let count = pending.rows.items.count * loader.imageSize
            condition.lock()
            var pixels = pixelArray(count: count)
            let slots = pending.slots!
            pending.slots = nil
            condition.unlock()
            pixels.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: slots.pixels, count: count) }
            complete(pending, pixels: pixels, slots: slots)
        }

        /// Loads every image of `pending` (none of them taken yet) on the worker pool's threads at
        /// once, each worker taking the next image, straight into the batch's pixel array.
        func loadWhole(_ pending: Pending) {
            let items = pending.rows.items, size = loader.imageSize
            let workers = max(1, RuntimeThreads.count)
            condition.lock()
            var pixels = pixelArray(count: items.count * size)
            var scratch = (0..<workers).map { _ in takeScratch() }
            condition.unlock()
            var failures = [BadImage?](repeating: nil, count: items.count)
            var perWorker = [LoaderTimings](repeating: LoaderTimings(), count: workers)
            pixels.withUnsafeMutableBufferPointer { out in
                failures.withUnsafeMutableBufferPointer { bad in
                    scratch.withUnsafeMutableBufferPointer { scratch in
                        perWorker.withUnsafeMutableBufferPointer { timings in
                            parallelFor(items.count, threads: workers) { w, range in
                                for slot in range {
                                    bad[slot] = loader.load(item: items[slot], epoch: pending.epoch,
                                                            into: UnsafeMutableBufferPointer(rebasing: out[slot * size ..< (slot + 1) * size]),
                                                            scratch: &scratch[w], timings: &timings[w])
                                }
                            }
                        }
                    }
                }
            }
            var t = perWorker.reduce(LoaderTimings(), +)
            t.byConsumer = t.images
            condition.lock()
            spareScratch += scratch
            pending.failures = failures
            pending.done = items.count
            timings = timings + t
            condition.unlock()
            complete(pending, pixels: pixels)
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
            offerIdleWork()
            condition.broadcast()
            condition.unlock()
            stopIdleWork()
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
                    stopIdleWork()
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
                        stopIdleWork()
                        throw error
                    }
                }
                let unclaimed = first.rows.items.count - first.claimed
                if first.claimed == 0 && unclaimed > 1 {
                    // No image of it begun: all of them on the pool at once, into the batch itself.
                    first.claimed = unclaimed
                    offerIdleWork()
                    condition.unlock()
                    loadWhole(first)
                    continue
                }
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
