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

    /// Idle work: one provider at a time; while a unit is offered, the worker a job leaves idle
    /// (its last task done while another's runs) takes units, each marked as inside a task;
    /// none when none is offered; `stop` returns once no unit runs, and none runs after it.
    func testIdleWorkersTakeUnitsOnlyWhileOfferedAndStopWaitsForThem() {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        RuntimeThreads.set(2)
        let lock = NSLock()
        var left = 1000, ran = 0, running = 0, allInside = true
        let work = PoolIdleWork {
            lock.lock()
            guard left > 0 else { lock.unlock(); return false }
            left -= 1
            running += 1
            lock.unlock()
            let inside = ParallelRegion.inside
            usleep(300)
            lock.lock()
            ran += 1
            running -= 1
            allInside = allInside && inside
            lock.unlock()
            return true
        }
        XCTAssertTrue(work.start())
        let other = PoolIdleWork { XCTFail("a second provider's unit ran"); return false }
        XCTAssertFalse(other.start(), "the pool has one place for idle work")
        // One long task: the other worker is idle for 30 ms, but nothing is offered yet.
        var sums = [Int](repeating: 0, count: 2)
        parallelFor(2) { w, range in
            if range.lowerBound == 0 { usleep(30_000) }
            lock.lock(); sums[range.lowerBound] += 1; lock.unlock()
        }
        lock.lock(); XCTAssertEqual(ran, 0); lock.unlock()
        work.offer(true)
        parallelFor(2) { w, range in
            if range.lowerBound == 0 { usleep(30_000) }
            lock.lock(); sums[range.lowerBound] += 1; lock.unlock()
        }
        XCTAssertEqual(sums, [2, 2], "the job's own tasks ran once each")
        work.stop()
        lock.lock()
        let afterStop = ran
        XCTAssertGreaterThan(ran, 0, "the idle worker took units")
        XCTAssertEqual(running, 0, "stop waits for the units in flight")
        XCTAssertTrue(allInside)
        lock.unlock()
        work.offer(true)
        parallelFor(2) { _, range in if range.lowerBound == 0 { usleep(30_000) } }
        lock.lock(); XCTAssertEqual(ran, afterStop, "no unit after stop"); lock.unlock()
        XCTAssertTrue(other.start(), "the place is free again")
        other.stop()
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
