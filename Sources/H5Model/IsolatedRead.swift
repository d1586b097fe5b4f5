// A corrupt file can crash libhdf5 itself (Debian's 1.10.8 trusts some on-disk indices and sizes:
// fixtures/fuzz/README.md lists what fuzzing found). Swift cannot catch a segfault in C, so a file
// is first read once in a forked child: if the library crashes or hangs there, the user gets one
// line naming the file instead of a dead process.
import Foundation

enum IsolatedRead {
    /// What the child's read came to.
    enum Outcome: Equatable {
        case ok
        case failed(String)          // the read threw: its message
        case crashed(String)         // the child died (signal, sanitizer exit) or hung: a description
        case swiftTrap               // a Swift runtime trap: a bug of ours, not of the file
    }

    /// Seconds the child may take (DISTILLCTL_HDF5_TIMEOUT overrides it; the fuzzer sets a few).
    /// Reading the seed's 16 MB model takes well under one.
    static let timeout = ProcessInfo.processInfo.environment["DISTILLCTL_HDF5_TIMEOUT"].flatMap(Double.init) ?? 120

    /// Set DISTILLCTL_NO_ISOLATION=1 to read in-process only (debugging the reader).
    static let enabled = ProcessInfo.processInfo.environment["DISTILLCTL_NO_ISOLATION"] == nil

    /// Children forked so far (tests count the forks a read takes).
    nonisolated(unsafe) static var children = 0

    /// `read` run in a forked child first, then (if the child got through) here: a crash or hang
    /// of libhdf5 on `path` becomes one error line naming the file. Call it holding the HDF5 lock.
    static func guarded<T>(path: String, _ read: () throws -> T) throws -> T {
        guard enabled else { return try read() }
        try check(probe({ _ = try read() }), path: path)
        return try read()
    }

    /// `guarded` for a value the child can send back: the file is read once, in the child, and
    /// the parent takes the child's result instead of reading it again (the seed's 16 MB model:
    /// 0.15-0.3 s saved per file). A reply the parent cannot decode falls back to reading here.
    static func guarded<T: ChildTransferable>(path: String, _ read: () throws -> T) throws -> T {
        guard enabled else { return try read() }
        // The reply is about the file's size (its weights, as floats): the child writes it into
        // memory shared with the parent, which reads the values from there.
        var info = stat()
        let expected = stat(path, &info) == 0 ? Int(info.st_size) + (1 << 16) : 0
        let (outcome, reply) = run(regionBytes: expected) { out in try read().write(to: &out) }
        try check(outcome, path: path)
        if outcome == .ok, let reply {
            var input = TransferReader(reply)
            if let value = T(from: &input), input.atEnd { return value }
        }
        return try read()
    }

    /// Throws for a child that failed or crashed; a trap is our bug: let it show itself in the
    /// parent's own read, not as a file error.
    private static func check(_ outcome: Outcome, path: String) throws {
        switch outcome {
        case .ok, .swiftTrap: return
        case .failed(let message): throw H5ModelError(message)
        case .crashed(let what): throw H5ModelError("\(path): corrupt HDF5 file: \(what)")
        }
    }

    /// Runs `body` in a forked child and says how it ended.
    static func probe(timeout: Double = IsolatedRead.timeout, _ body: () throws -> Void) -> Outcome {
        run(timeout: timeout) { _ in try body() }.outcome
    }

    /// Runs `body` in a forked child; on success what it wrote comes back as the reply. With
    /// `regionBytes`, that many bytes of memory are shared with the child, which writes its reply
    /// there (what does not fit goes through the pipe). The child reports an error's message
    /// through the pipe and exits; it never returns here.
    /// fork() copies only this thread: glibc re-initialises malloc in the child, and the caller
    /// holds the HDF5 lock, so no other thread is inside libhdf5.
    static func run(timeout: Double = IsolatedRead.timeout, regionBytes: Int = 0,
                    _ body: (inout TransferWriter) throws -> Void) -> (outcome: Outcome, reply: TransferBytes?) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return (.ok, nil) }   // no pipe: read in-process as before
        var region: UnsafeMutableRawBufferPointer? = nil
        if regionBytes > 0, let p = mmap(nil, regionBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
           p != MAP_FAILED {
            region = UnsafeMutableRawBufferPointer(start: p, count: regionBytes)
        }
        var unmapRegion = true
        defer { if unmapRegion, let region { munmap(region.baseAddress, region.count) } }
        // No other thread of ours is inside a piece of work (ForkGate) as the process is copied.
        let pid = ForkGate.fork()
        children += 1
        if pid == 0 {
            close(fds[0])
            signal(SIGPIPE, SIG_IGN)
            alarm(UInt32(min(timeout + 5, 1e6)))   // outlives no parent: ends itself after the deadline
            // Die quietly: the parent reports the crash in one line. (Swift's backtracer, or a
            // sanitizer's handler, would print its report from here; no core file either.)
            for sig in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP] { signal(sig, SIG_DFL) }
            var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
            setrlimit(Int32(RLIMIT_CORE.rawValue), &noCore)
            var out = TransferWriter(region: region)
            var code: Int32 = 0
            var message = TransferWriter()
            do {
                try body(&out)
                // The pipe says where the reply is: a tag, then its length (in the region) or itself.
                message.bool(out.inRegion)
                if out.inRegion { message.int(out.count) } else { out.bytes.withUnsafeBytes { message.append($0) } }
            } catch {
                message = TransferWriter()
                Array(String(describing: error).utf8).withUnsafeBytes { message.append($0) }
                code = 3
            }
            writeAll(fds[1], message.bytes)
            _exit(code)
        }
        close(fds[1])
        defer { close(fds[0]) }
        guard pid > 0 else { return (.ok, nil) }           // fork failed: read in-process as before
        let (message, finished) = readAll(fds[0], timeout: timeout)
        var status: Int32 = 0
        if !finished {
            kill(pid, SIGKILL)
            _ = waitpid(pid, &status, 0)
            return (.crashed("libhdf5 did not finish reading it within \(Int(timeout)) s"), nil)
        }
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signalled = status & 0x7f != 0 && status & 0x7f != 0x7f
        if signalled {
            let sig = status & 0x7f
            if sig == SIGILL || sig == SIGTRAP { return (.swiftTrap, nil) }
            return (.crashed("libhdf5 crashed reading it (signal \(sig), \(String(cString: strsignal(sig))))"), nil)
        }
        switch (status >> 8) & 0xff {
        case 0:
            // A reply the parent cannot make sense of is no reply: the caller reads the file itself.
            var input = TransferReader(message)
            guard let inRegion = input.bool() else { return (.ok, nil) }
            if !inRegion { return (.ok, TransferBytes(Array(message.dropFirst()))) }
            guard let region, let n = input.int(), n >= 0, n <= region.count, input.atEnd else { return (.ok, nil) }
            unmapRegion = false
            return (.ok, TransferBytes(buffer: UnsafeRawBufferPointer(rebasing: region[..<n])) {
                munmap(region.baseAddress, region.count)
            })
        case 3: return (.failed(String(decoding: message, as: UTF8.self)), nil)
        case let code: return (.crashed("libhdf5 stopped the reading process (exit status \(code))"), nil)
        }
    }

    /// Writes every byte (a pipe takes 64 KB at a time while the parent reads).
    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let n = write(fd, buffer.baseAddress! + done, buffer.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                done += n
            }
        }
    }

    /// Everything the child writes, until it closes the pipe (exits) or `timeout` passes.
    private static func readAll(_ fd: Int32, timeout: Double) -> (bytes: [UInt8], finished: Bool) {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return (bytes, false) }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, Int32(min(left, 1) * 1000))
            if ready < 0 && errno != EINTR { return (bytes, true) }
            if ready <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return (bytes, true) }
            bytes += buffer[..<n]
        }
    }
}
