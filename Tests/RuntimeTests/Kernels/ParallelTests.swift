import Graph
import XCTest
import Foundation
@testable import Runtime

final class ParallelTests: XCTestCase {
    /// Every index visited exactly once; worker numbers below the worker count and never in use
    /// twice at the same time (they index per-worker workspace slots).
    func testParallelForCoversEachIndexOnceWithExclusiveWorkers() {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        for threads in [1, 2, 3, 7] {
            RuntimeThreads.set(threads)
            for (count, minChunk) in [(1, 1), (5, 1), (100, 1), (1000, 7), (10, 100), (12_345, 64)] {
                let lock = NSLock()
                var visits = [Int](repeating: 0, count: count)
                var busy = Set<Int>()
                var failures: [String] = []
                parallelFor(count, minChunk: minChunk) { w, range in
                    lock.lock()
                    if w < 0 || w >= threads { failures.append("worker \(w) of \(threads)") }
                    if !busy.insert(w).inserted { failures.append("worker \(w) used concurrently") }
                    lock.unlock()
                    for i in range { lock.lock(); visits[i] += 1; lock.unlock() }
                    usleep(50)
                    lock.lock(); busy.remove(w); lock.unlock()
                }
                XCTAssertEqual(failures, [], "threads \(threads) count \(count)")
                XCTAssertEqual(visits.firstIndex { $0 != 1 }, nil, "threads \(threads) count \(count) minChunk \(minChunk)")
            }
        }
    }

    func testRunsInlineWithOneWorkerOrTinyLoops() {
        let caller = Thread.current
        var sameThread = true
        parallelFor(10, threads: 1) { _, _ in sameThread = sameThread && Thread.current == caller }
        parallelFor(10, minChunk: 8, threads: 4) { _, _ in sameThread = sameThread && Thread.current == caller }
        XCTAssertTrue(sameThread)
    }

    /// A parallelFor inside another's body runs inline on that worker; the outer loop is shared.
    func testNestedLoopsRunInline() {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        RuntimeThreads.set(2)
        let lock = NSLock()
        var visits = [Int](repeating: 0, count: 64)
        var innerWorkers = Set<Int>()
        parallelFor(8) { _, outer in
            for o in outer {
                let caller = Thread.current
                parallelFor(8) { w, inner in
                    lock.lock()
                    innerWorkers.insert(w)
                    XCTAssertTrue(Thread.current == caller, "inner loop ran on another thread")
                    for i in inner { visits[o * 8 + i] += 1 }
                    lock.unlock()
                }
            }
        }
        XCTAssertEqual(visits, [Int](repeating: 1, count: 64))
        XCTAssertEqual(innerWorkers, [0])
    }

    /// Two threads using the pool at once: one gets it, the other runs its loop inline; both
    /// loops still visit every index once, and the static split hands out chunk numbers once.
    func testConcurrentCallersAndStaticChunks() {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        RuntimeThreads.set(3)
        let lock = NSLock()
        var visits = [[Int]](repeating: [Int](repeating: 0, count: 5000), count: 2)
        DispatchQueue.concurrentPerform(iterations: 2) { caller in
            for _ in 0..<50 {
                parallelFor(5000, minChunk: 16) { _, range in
                    lock.lock(); for i in range { visits[caller][i] += 1 }; lock.unlock()
                }
            }
        }
        XCTAssertEqual(visits[0], [Int](repeating: 50, count: 5000))
        XCTAssertEqual(visits[1], [Int](repeating: 50, count: 5000))
        var chunks: [Int: Range<Int>] = [:]
        parallelForStatic(1000, minChunk: 10) { w, range in lock.lock(); XCTAssertNil(chunks.updateValue(range, forKey: w)); lock.unlock() }
        XCTAssertEqual(chunks.keys.sorted(), [0, 1, 2])
        XCTAssertEqual(chunks.values.map(\.count).reduce(0, +), 1000)
    }

    func testThreadCountIsSettableAndAtLeastOne() {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        RuntimeThreads.set(0)
        XCTAssertEqual(RuntimeThreads.count, 1)
        RuntimeThreads.set(5)
        XCTAssertEqual(RuntimeThreads.count, 5)
        XCTAssertEqual(blasThreads(), 1, "OpenBLAS stays single-threaded")
    }
}
