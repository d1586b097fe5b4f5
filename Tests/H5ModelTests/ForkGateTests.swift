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
            let (outcome, reply) = IsolatedRead.run(timeout: 20) { [1, 2, 3] }
            XCTAssertEqual(outcome, .ok)
            XCTAssertEqual(reply, [1, 2, 3])
        }
        stop.lock(); running = false; stop.unlock()
    }
}
