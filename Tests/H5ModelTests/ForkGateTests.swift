import Foundation
import XCTest
@testable import H5Model

final class ForkGateTests: XCTestCase {
    /// A fork waits for every piece of work in progress to finish, and work begun while it waits
    /// starts only after it: no thread is inside one as the process is copied.
    func testForkWaitsForWorkInProgressAndHoldsNewWorkBack() {
        let lock = NSLock()
        var log: [String] = []
        func note(_ s: String) { lock.lock(); log.append(s); lock.unlock() }
        let inside = DispatchSemaphore(value: 0)
        let first = Thread {
            ForkGate.work {
                note("work 1 begins")
                inside.signal()
                Thread.sleep(forTimeInterval: 0.2)
                note("work 1 ends")
            }
        }
        first.start()
        inside.wait()
        let second = Thread {
            Thread.sleep(forTimeInterval: 0.05)    // asks while the fork waits for the first
            ForkGate.work { note("work 2") }
        }
        second.start()
        let pid = ForkGate.fork()
        if pid == 0 { _exit(0) }
        lock.lock(); let atFork = log; lock.unlock()
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        XCTAssertEqual(Array(atFork.prefix(2)), ["work 1 begins", "work 1 ends"], "the fork waited for the work in progress")
        while true {
            lock.lock(); let n = log.count; lock.unlock()
            if n == 3 { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        // Asked at 50 ms, while the fork waited: held back until it was done.
        XCTAssertEqual(log, ["work 1 begins", "work 1 ends", "work 2"])
    }

    /// The isolated read still works with work going on beside it (a model read while images decode).
    func testIsolatedReadBesideWork() throws {
        let stop = NSLock()
        var running = true
        let worker = Thread {
            while true {
                stop.lock(); let go = running; stop.unlock()
                guard go else { break }
                ForkGate.work { _ = (0..<2000).map { $0 * 2 }.reduce(0, +) }
            }
        }
        worker.start()
        for _ in 0..<5 {
            let (outcome, reply) = IsolatedRead.run(timeout: 20, regionBytes: 4096) { $0.array([UInt8]([1, 2, 3])) }
            XCTAssertEqual(outcome, .ok)
            var input = TransferReader(try XCTUnwrap(reply))
            XCTAssertEqual(input.array(of: UInt8.self), [1, 2, 3])
        }
        stop.lock(); running = false; stop.unlock()
    }

    /// A thread of `startThread` is inside the gate from before it runs until it ends, but for
    /// its pauses: a fork begun just after it was started waits for its first piece of work, and
    /// every fork lands while each thread pauses or after it ended, never in the middle of a
    /// piece, its start or its end. The children see the threads' flags as they were at the fork.
    func testGateThreadsOnlyEverForkWhilePausing() {
        // Per thread: 2 not started, 1 inside a piece, 0 pausing or done; flags[2]: 1 asks them to stop.
        let flags = UnsafeMutablePointer<Int>.allocate(capacity: 3)
        defer { flags.deallocate() }
        flags.initialize(repeating: 2, count: 2)
        (flags + 2).initialize(to: 0)
        let pieces = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        defer { pieces.deallocate() }
        pieces.initialize(repeating: 0, count: 2)
        let threads = (0..<2).map { t in
            ForkGate.startThread { pause in
                flags[t] = 1
                Thread.sleep(forTimeInterval: 0.05)    // the first piece: a fork asked now waits for it
                while true {
                    _ = (0..<50).map { String($0) }.joined()
                    pieces[t] += 1
                    flags[t] = 0
                    pause()
                    if flags[2] == 1 { break }
                    flags[t] = 1
                }
            }
        }
        for fork in 0..<40 {
            let pid = ForkGate.fork()
            if pid == 0 { _exit(flags[0] == 0 && flags[1] == 0 ? 0 : 1) }
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
            XCTAssertEqual(status, 0, "fork \(fork): a thread was inside a piece of work (or not yet started)")
        }
        ForkGate.work { flags[2] = 1 }
        for thread in threads { thread.join() }
        XCTAssertGreaterThan(pieces[0], 1, "the thread worked between the forks")
        XCTAssertGreaterThan(pieces[1], 1, "the thread worked between the forks")
        XCTAssertEqual(flags[0], 0)
        XCTAssertEqual(flags[1], 0)
    }
}
