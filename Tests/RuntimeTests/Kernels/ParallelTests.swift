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
