import Foundation

/// Refuses output paths that name an input (or each other): writing over the model being read
/// would destroy it if anything went wrong halfway. Existing files are compared by device and
/// inode (so links and `./a` vs `a` are caught), others by their resolved absolute path.
public func ensureDistinctOutputs(_ outputs: [String], inputs: [String]) throws {
    for (i, output) in outputs.enumerated() {
        if let input = inputs.first(where: { sameFile(output, $0) }) {
            throw GraphError("\(output): refusing to write over the input file '\(input)'; choose another output path")
        }
        if let other = outputs[..<i].first(where: { sameFile(output, $0) }) {
            throw GraphError("\(output): the same path is given for two outputs ('\(other)')")
        }
    }
}

/// Whether two paths name the same file (or would, once created).
public func sameFile(_ a: String, _ b: String) -> Bool {
    var sa = stat(), sb = stat()
    if stat(a, &sa) == 0, stat(b, &sb) == 0 { return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino }
    func resolved(_ p: String) -> String { URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path }
    return resolved(a) == resolved(b)
}

/// A file written to a temporary name beside its target (`.<name>.tmp-<pid>`), renamed over the
/// target by `commit()`, removed by `discard()`.
struct StagedFile {
    let path: String
    let temporary: String

    init(contents: Data, for path: String) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        self.path = path
        temporary = folder + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        // open(2) rather than FileManager: its errno says why ("Permission denied", "No such file").
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o666)
        guard fd >= 0 else {
            throw GraphError("\(path): cannot write in folder '\(folder)': \(String(cString: strerror(errno)))")
        }
        let written = contents.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let failure = written == contents.count ? nil : String(cString: strerror(errno))
        close(fd)
        if let failure {
            unlink(temporary)
            throw GraphError("\(path): cannot write: \(failure)")
        }
    }

    func commit() throws {
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            discard()
            throw GraphError("\(path): cannot replace it with the new file: \(reason)")
        }
    }

    func discard() { unlink(temporary) }
}
