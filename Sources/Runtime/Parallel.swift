// Threading for the kernels: one process-wide thread count, and `parallelFor`, which splits a
// loop into at most that many contiguous chunks on DispatchQueue.concurrentPerform.
//
// Why OpenBLAS runs single-threaded: the conv/dense kernels split their rows (or columns) across
// `parallelFor` workers and each worker calls sgemm on its own slice, so the epilogue (bias, BN,
// activation) runs on a tile that is still in cache. OpenBLAS threads on top of that would
// oversubscribe the cores, so `RuntimeThreads.set` pins OpenBLAS to 1 thread whenever our own
// workers are in use; `RuntimeThreads.set(1)` leaves both at 1.
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

/// Runs `body` over `0..<count` split into at most `RuntimeThreads.count` contiguous chunks,
/// each at least `minChunk` long (so tiny loops run inline, without a dispatch).
/// `body(worker, range)` gets the chunk index `worker` (0..<chunks), for picking a workspace slot.
/// Calls must not nest: the body must not call `parallelFor` again.
@inline(__always)
public func parallelFor(_ count: Int, minChunk: Int = 1, threads: Int = RuntimeThreads.count,
                        _ body: (_ worker: Int, _ range: Range<Int>) -> Void) {
    guard count > 0 else { return }
    let chunks = min(threads, max(1, count / max(1, minChunk)))
    if chunks <= 1 {
        body(0, 0..<count)
        return
    }
    DispatchQueue.concurrentPerform(iterations: chunks) { w in
        body(w, chunkRange(count, chunks, w))
    }
}

/// The `w`-th of `chunks` contiguous near-equal parts of `0..<count`.
@inline(__always)
func chunkRange(_ count: Int, _ chunks: Int, _ w: Int) -> Range<Int> {
    let base = count / chunks, extra = count % chunks
    let lo = w * base + min(w, extra)
    return lo..<(lo + base + (w < extra ? 1 : 0))
}
