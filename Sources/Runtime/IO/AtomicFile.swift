import Foundation

/// Writes through a temporary file in the target's folder, renamed over the target when complete,
/// so a reader never sees a half-written file and a failure leaves nothing behind.
public func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let folder = url.deletingLastPathComponent()
    let temp = folder.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    guard FileManager.default.createFile(atPath: temp.path, contents: data) else {
        throw RuntimeError("\(path): cannot write (folder '\(folder.path)' missing or not writable)")
    }
    if rename(temp.path, url.path) != 0 {
        let reason = String(cString: strerror(errno))
        unlink(temp.path)
        throw RuntimeError("\(path): cannot write (\(reason))")
    }
}

public func writeAtomically(_ text: String, to path: String) throws {
    try writeAtomically(Data(text.utf8), to: path)
}
