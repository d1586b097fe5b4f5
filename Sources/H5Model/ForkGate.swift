// The isolated read (IsolatedRead) forks the process, and the child runs Swift code (libhdf5's
// reader, the Swift runtime, malloc). A thread that holds one of the runtime's internal locks at
// the moment of fork() would leave it held forever in the child, which then hangs until its
// timeout. A training job therefore reads its models before its image threads start; and threads
// that may work while a model is read (the pre-flight decoding, which a library caller may run
// beside a load) do each piece of work inside `ForkGate.work`: the fork waits until none is
// inside, and holds new ones back until it is done (a few milliseconds: one image).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum ForkGate {
    private static let condition = NSCondition()
    nonisolated(unsafe) private static var active = 0
    nonisolated(unsafe) private static var forking = false

    /// Runs `body` with no fork() in progress: one begun meanwhile waits for it to return.
    public static func work<T>(_ body: () throws -> T) rethrows -> T {
        condition.lock()
        while forking { condition.wait() }
        active += 1
        condition.unlock()
        defer {
            condition.lock()
            active -= 1
            if active == 0 { condition.broadcast() }
            condition.unlock()
        }
        return try body()
    }

    /// fork() once no thread is inside `work`, holding new ones back until it returns in the
    /// parent. The child touches the gate no more: its lock may be held by a thread that was
    /// checking whether to wait at the instant of the fork, and that thread is not in the child.
    static func fork() -> pid_t {
        condition.lock()
        while forking { condition.wait() }
        forking = true
        while active > 0 { condition.wait() }
        condition.unlock()
        let pid = Glibc.fork()
        if pid != 0 {
            condition.lock()
            forking = false
            condition.broadcast()
            condition.unlock()
        }
        return pid
    }
}
