// The isolated read (IsolatedRead) forks the process, and the child runs Swift code (libhdf5's
// reader, the Swift runtime, malloc). A thread that holds one of the runtime's internal locks at
// the moment of fork() would leave it held forever in the child, which then hangs until its
// timeout. So threads that may work while a model is read (the pre-flight decoding, which a
// training job runs while it reads its teachers) do their work inside the gate: each piece inside
// `ForkGate.work`, or the whole life of a thread started by `ForkGate.startThread` but for the
// moments it pauses between pieces. A fork waits until no thread is inside, and holds new work
// back until it is done (a few milliseconds: one image; the fork itself, not the child's read).
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

    /// A thread inside the gate from before it exists until `body` returns: `body` calls the
    /// `pause` it is given between its pieces of work, where a fork waiting for the gate goes
    /// ahead. Its start (before `body`'s first piece) and its end (after its last) are thus never
    /// beside a fork, as they would be for a thread that entered `work` only once running.
    /// `body` must not call `work` (the fork would wait for this thread while it waits for the fork).
    public static func startThread(_ body: @escaping (_ pause: () -> Void) -> Void) -> GateThread {
        let thread = GateThread(body)
        condition.lock()
        while forking { condition.wait() }
        active += 1
        condition.unlock()
        let started = pthread_create(&thread.id, nil, { raw in
            // The handle holds the thread object until it is joined: nothing is freed here.
            let thread = Unmanaged<GateThread>.fromOpaque(raw!).takeUnretainedValue()
            thread.body(ForkGate.pause)
            ForkGate.leave()
            return nil
        }, Unmanaged.passUnretained(thread).toOpaque())
        if started != 0 {
            // No thread: its work runs here, at once (the gate still counts it until it is done).
            thread.body(pause)
            leave()
            thread.joined = true
        }
        return thread
    }

    /// Lets a fork waiting for the gate go ahead, then goes on (a thread of `startThread` only).
    static func pause() {
        condition.lock()
        if forking {
            active -= 1
            if active == 0 { condition.broadcast() }
            while forking { condition.wait() }
            active += 1
        }
        condition.unlock()
    }

    private static func leave() {
        condition.lock()
        active -= 1
        if active == 0 { condition.broadcast() }
        condition.unlock()
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

/// A thread of `ForkGate.startThread`, to be joined.
public final class GateThread: @unchecked Sendable {
    fileprivate let body: (_ pause: () -> Void) -> Void
    fileprivate var id = pthread_t()
    fileprivate var joined = false

    fileprivate init(_ body: @escaping (_ pause: () -> Void) -> Void) { self.body = body }

    /// The thread uses this object without holding it: dropping the handle waits for its end.
    deinit { join() }

    /// Waits for the thread to end (once; later calls return at once).
    public func join() {
        guard !joined else { return }
        joined = true
        pthread_join(id, nil)
    }
}
