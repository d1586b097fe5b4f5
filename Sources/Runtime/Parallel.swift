// Threading for the kernels: one process-wide thread count, and `parallelFor`, which runs a loop
// on at most that many workers through DispatchQueue.concurrentPerform.
//
// Why OpenBLAS runs single-threaded: the conv/dense kernels split their rows (or columns) across
// `parallelFor` workers and each worker calls sgemm on its own slice, so the epilogue (bias, BN,
// activation) runs on a tile that is still in cache. OpenBLAS threads on top of that would
// oversubscribe the cores, so OpenBLAS is held at 1 thread (set before the first product and
// again by every `RuntimeThreads.set`). Measured on EfficientNet's 1x1-conv shapes (2 cores),
// OpenBLAS's own two threads gave 40-120 GFLOP/s where two workers on row slices gave 100-220.
import Dispatch
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
/// Calls must not nest: the body must not call `parallelFor` again.
public func parallelFor(_ count: Int, minChunk: Int = 1, threads: Int = RuntimeThreads.count,
                        _ body: (_ worker: Int, _ range: Range<Int>) -> Void) {
    guard count > 0 else { return }
    let minChunk = max(1, minChunk)
    let workers = min(threads, count / minChunk)
    if workers <= 1 {
        body(0, 0..<count)
        return
    }
    let chunks = min(workers * 4, count / minChunk)
    let next = ChunkCounter()
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        while true {
            let c = next.take()
            if c >= chunks { break }
            body(w, chunkRange(count, chunks, c))
        }
    }
}

/// Runs `body` once per worker on a fixed split of `0..<count` into at most `threads` contiguous
/// chunks, chunk `w` on worker `w`. For reductions that write one partial result per worker and
/// combine them in worker order: the result then does not depend on scheduling.
public func parallelForStatic(_ count: Int, minChunk: Int = 1, threads: Int = RuntimeThreads.count,
                              _ body: (_ worker: Int, _ range: Range<Int>) -> Void) {
    guard count > 0 else { return }
    let chunks = min(threads, max(1, count / max(1, minChunk)))
    if chunks <= 1 {
        body(0, 0..<count)
        return
    }
    DispatchQueue.concurrentPerform(iterations: chunks) { w in body(w, chunkRange(count, chunks, w)) }
}

/// Hands out chunk numbers 0, 1, 2, ... to whichever worker asks next.
private final class ChunkCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func take() -> Int {
        lock.lock(); defer { lock.unlock() }
        value += 1
        return value - 1
    }
}

/// The `w`-th of `chunks` contiguous near-equal parts of `0..<count`.
@inline(__always)
func chunkRange(_ count: Int, _ chunks: Int, _ w: Int) -> Range<Int> {
    let base = count / chunks, extra = count % chunks
    let lo = w * base + min(w, extra)
    return lo..<(lo + base + (w < extra ? 1 : 0))
}
