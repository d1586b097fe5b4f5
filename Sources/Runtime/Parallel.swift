// Threading for the kernels: one process-wide thread count, and `parallelFor`, which runs a loop
// on at most that many workers of a spinning pool (CKernels/pool.c).
//
// Why OpenBLAS runs single-threaded: the conv/dense kernels split their rows (or columns) across
// `parallelFor` workers and each worker calls sgemm on its own slice, so the epilogue (bias, BN,
// activation) runs on a tile that is still in cache. OpenBLAS threads on top of that would
// oversubscribe the cores, so OpenBLAS is held at 1 thread (set before the first product and
// again by every `RuntimeThreads.set`). Measured on EfficientNet's 1x1-conv shapes (2 cores),
// OpenBLAS's own two threads gave 40-120 GFLOP/s where two workers on row slices gave 100-220.
import CKernels
import Foundation

public enum RuntimeThreads {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var value: Int = {
        _ = blasPinned
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Pins OpenBLAS to one thread the first time anything here or `sgemm` runs.
    static let blasPinned: Bool = { setBLASThreads(1); return true }()

    /// Number of workers the kernels use (default: the active processor count).
    public static var count: Int {
        lock.lock(); defer { lock.unlock() }
        return value
    }

    /// Sets the number of workers (at least 1) and OpenBLAS's thread count to match the scheme
    /// above (OpenBLAS stays at 1: the kernels parallelise around it).
    public static func set(_ n: Int) {
        lock.lock(); defer { lock.unlock() }
        value = max(1, n)
        setBLASThreads(1)
    }
}

/// Runs `body` over `0..<count` on at most `RuntimeThreads.count` workers (`threads`), inline
/// when that is 1 or when the loop is shorter than two chunks of `minChunk`.
/// The range is cut into up to four contiguous chunks per worker (each at least `minChunk`), and
/// workers take the next chunk as they finish the last. On a dedicated machine that is the same as
/// one chunk each; when another process holds a core, the worker that still runs takes over the
/// rest instead of the whole call waiting for the slow one.
/// `body(worker, range)` may run several times per worker, never concurrently for the same
/// `worker` (0..<workers), which therefore can index a per-worker workspace slot.
/// A call made from inside another's body runs inline on that worker (so whole images can be
/// shared among the workers while every kernel within them runs single-threaded).
public func parallelFor(_ count: Int, minChunk: Int = 1, threads: Int = RuntimeThreads.count,
                        _ body: (_ worker: Int, _ range: Range<Int>) -> Void) {
    guard count > 0 else { return }
    let minChunk = max(1, minChunk)
    let workers = ParallelRegion.inside ? 1 : min(threads, count / minChunk)
    if workers <= 1 {
        body(0, 0..<count)
        return
    }
    let chunks = min(workers * 4, count / minChunk)
    poolFor(workers: workers, tasks: chunks) { w, c in body(w, chunkRange(count, chunks, c)) }
}

/// Whether the current thread runs inside a `parallelFor`/`parallelForStatic` body.
enum ParallelRegion {
    static var inside: Bool { ck_pool_inside() != 0 }
}

/// `body(worker, task)` for every task in 0..<tasks on the worker pool (CKernels/pool.c), on at
/// most `workers` workers (inline on worker 0 inside another's body), each worker taking the next
/// task as it finishes one.
func poolFor(workers: Int, tasks: Int, _ body: (_ worker: Int, _ task: Int) -> Void) {
    withoutActuallyEscaping(body) { run in
        var job = PoolJob(run: run)
        withUnsafeMutablePointer(to: &job) { p in
            ck_pool_for(Int32(clamping: workers), tasks, { context, worker, task in
                context!.assumingMemoryBound(to: PoolJob.self).pointee.run(Int(worker), task)
            }, p)
        }
    }
}

private struct PoolJob {
    let run: (Int, Int) -> Void
}

/// Runs `body` once per worker on a fixed split of `0..<count` into at most `threads` contiguous
/// chunks, chunk `w` on worker `w`. For reductions that write one partial result per worker and
/// combine them in worker order: the result then does not depend on scheduling.
public func parallelForStatic(_ count: Int, minChunk: Int = 1, threads: Int = RuntimeThreads.count,
                              _ body: (_ worker: Int, _ range: Range<Int>) -> Void) {
    guard count > 0 else { return }
    let chunks = ParallelRegion.inside ? 1 : min(threads, max(1, count / max(1, minChunk)))
    if chunks <= 1 {
        body(0, 0..<count)
        return
    }
    // Chunk w is handed to the body as worker w whichever thread runs it.
    poolFor(workers: chunks, tasks: chunks) { _, w in body(w, chunkRange(count, chunks, w)) }
}

/// The `w`-th of `chunks` contiguous near-equal parts of `0..<count`.
@inline(__always)
func chunkRange(_ count: Int, _ chunks: Int, _ w: Int) -> Range<Int> {
    let base = count / chunks, extra = count % chunks
    let lo = w * base + min(w, extra)
    return lo..<(lo + base + (w < extra ? 1 : 0))
}

/// Work the pool's threads take a unit at a time when they would otherwise spin: a pool thread
/// waiting for the next job, a caller waiting for another thread's last task
/// (`ck_pool_set_idle_work`). The pool has one place for it: `start` takes it if it is free.
/// `stop` withdraws it and returns once no thread runs a unit any more (call it before what the
/// units use goes away; it must not be called from inside a unit).
final class PoolIdleWork: @unchecked Sendable {
    private let unit: () -> Bool

    /// `unit` does one small piece of work and says whether there was one.
    init(_ unit: @escaping () -> Bool) { self.unit = unit }

    private var context: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// Becomes the pool's idle work, with no unit offered yet; false if another holds the place.
    func start() -> Bool {
        ck_pool_set_idle_work({ context in
            Unmanaged<PoolIdleWork>.fromOpaque(context!).takeUnretainedValue().unit() ? 1 : 0
        }, context) != 0
    }

    /// Whether a unit is there to take (set it under the lock that guards the units).
    func offer(_ available: Bool) { ck_pool_offer_idle_work(context, available ? 1 : 0) }

    func stop() { ck_pool_clear_idle_work(context) }

    deinit { stop() }
}
