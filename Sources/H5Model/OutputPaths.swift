// Where a command may write, decided before it does any work: an output never names one of the
// command's inputs (a typo like `--output teacher.h5` would otherwise destroy the teacher), never a
// file the user did not name, and its folder exists, takes a new file and has room for it. Used by
// every writer of the package, so it lives in its lowest library; it knows no command line.
import Foundation

/// Why an output path was refused. The description is one line naming the path; it names no
/// command-line flag (the caller adds what the user can do about it).
public struct OutputPathError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The output is (a link to, or another name of) this input.
        case sameAsInput(String)
        /// Two outputs name the same file.
        case sameAsOutput(String)
        /// A file exists there that the caller did not ask to replace (a side file named after the output).
        case wouldReplace
        case isFolder
        /// The folder the file would go into is missing, or not a folder.
        case folderMissing(String)
        case notAFolder(String)
        /// The folder refuses a new file: the reason (strerror).
        case notWritable(String, reason: String)
        /// Bytes needed, bytes free, the folder.
        case noSpace(needed: Int, free: Int, folder: String)
    }

    public var path: String
    public var kind: Kind

    public init(path: String, kind: Kind) {
        self.path = path
        self.kind = kind
    }

    public var description: String {
        switch kind {
        case .sameAsInput(let input):
            return "\(path): refusing to write over the input file '\(input)'; choose another output path"
        case .sameAsOutput(let other):
            return "\(path): the same file is given for two outputs ('\(other)')"
        case .wouldReplace:
            return "\(path): a file is already there and would be replaced"
        case .isFolder:
            return "\(path): is a folder; name a file to write"
        case .folderMissing(let folder):
            return "\(path): cannot write: folder '\(folder)' does not exist"
        case .notAFolder(let folder):
            return "\(path): cannot write: '\(folder)' is not a folder"
        case .notWritable(let folder, let reason):
            return "\(path): cannot write in folder '\(folder)': \(reason)"
        case .noSpace(let needed, let free, let folder):
            return "\(path): needs about \(byteText(needed)), but the file system of '\(folder)' has \(byteText(free)) free"
        }
    }
}

/// "12.3 MB", "512 bytes".
public func byteText(_ n: Int) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB"]
    var value = Double(n), unit = 0
    while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
    return unit == 0 ? "\(n) bytes" : String(format: "%.1f %@", value, units[unit])
}

public enum OutputPaths {
    /// `path` made absolute with `..`, `.` and symlinks resolved: the file's real path when it
    /// exists, else the real path of its folder plus its name (a file to be created there).
    public static func resolved(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        if let real = realPath(absolute) { return real }
        let url = URL(fileURLWithPath: absolute).standardizedFileURL
        let name = url.lastPathComponent
        let folder = url.deletingLastPathComponent().path
        if let realFolder = realPath(folder) { return (realFolder == "/" ? "" : realFolder) + "/" + name }
        return url.path
    }

    /// Whether writing `a` would change the file `b` (or would, once both exist): the same file
    /// (device and inode, so hard and symbolic links are caught), or the same resolved path.
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        if let ia = identity(a), let ib = identity(b) { return ia == ib }
        return resolved(a) == resolved(b)
    }

    /// Refuses any output that names an input or another output. Inputs that are folders are
    /// compared by identity only (an output cannot be a folder: `checkLocation` says so).
    public static func checkDistinct(outputs: [String], inputs: [String]) throws {
        // Inputs are stat'ed once: a training set's thousands of images cost one call each.
        var byIdentity: [FileIdentity: String] = [:]
        var missingInputs: [String: String] = [:]
        for input in inputs {
            if let id = identity(input) {
                if byIdentity[id] == nil { byIdentity[id] = input }
            } else {
                missingInputs[resolved(input)] = input
            }
        }
        var seen: [String: String] = [:]   // resolved output path -> as given
        var seenIdentity: [FileIdentity: String] = [:]
        for output in outputs {
            let id = identity(output)
            if let id, let input = byIdentity[id] {
                throw OutputPathError(path: output, kind: .sameAsInput(input))
            }
            let real = resolved(output)
            if id == nil, let input = missingInputs[real] {
                throw OutputPathError(path: output, kind: .sameAsInput(input))
            }
            if let other = seen[real] ?? id.flatMap({ seenIdentity[$0] }) {
                throw OutputPathError(path: output, kind: .sameAsOutput(other))
            }
            seen[real] = output
            if let id { seenIdentity[id] = output }
        }
    }

    /// Refuses a file at `path` that exists: for side files the caller derives from another name.
    public static func checkAbsent(_ path: String) throws {
        var info = stat()
        if lstat(path, &info) == 0 { throw OutputPathError(path: path, kind: .wouldReplace) }
    }

    /// Checks that a file can be created at `path`: not a folder, its folder exists and takes a new
    /// file (a probe file is created there and removed).
    public static func checkLocation(_ path: String) throws {
        var info = stat()
        if path.hasSuffix("/") || (stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR) {
            throw OutputPathError(path: path, kind: .isFolder)
        }
        let folder = folderOf(path)
        guard stat(folder, &info) == 0 else { throw OutputPathError(path: path, kind: .folderMissing(folder)) }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw OutputPathError(path: path, kind: .notAFolder(folder)) }
        try probe(folder, for: path)
    }

    /// Checks a folder the caller will create if needed (with its parents): it is a folder that
    /// takes new files, or the nearest existing folder above it does.
    public static func checkFolderLocation(_ folder: String) throws {
        var info = stat()
        var current = folder.isEmpty ? "." : folder
        while stat(current, &info) != 0 {
            let parent = folderOf(current)
            if parent == current { break }
            current = parent
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw OutputPathError(path: folder, kind: .notAFolder(current)) }
        try probe(current, for: folder)
    }

    /// Checks the file systems have room for the outputs: `(path, estimated bytes)`, summed per
    /// file system. A replaced file still occupies its space until the new one is renamed over it.
    public static func checkSpace(_ outputs: [(path: String, bytes: Int)]) throws {
        guard spaceCheckEnabled else { return }
        var needed: [UInt64: (bytes: Int, path: String, folder: String, free: Int)] = [:]
        for (path, bytes) in outputs where bytes > 0 {
            var folder = folderOf(path)
            var info = stat()
            while stat(folder, &info) != 0 {
                let parent = folderOf(folder)
                if parent == folder { break }
                folder = parent
            }
            var fs = statvfs()
            guard statvfs(folder, &fs) == 0 else { continue }
            let free = Int(clamping: UInt64(fs.f_bavail) &* UInt64(fs.f_frsize))
            let device = UInt64(info.st_dev)
            let before = needed[device]?.bytes ?? 0
            needed[device] = (before + bytes, path, folder, free)
        }
        for (_, entry) in needed.sorted(by: { $0.key < $1.key }) where entry.bytes > entry.free {
            throw OutputPathError(path: entry.path, kind: .noSpace(needed: entry.bytes, free: entry.free, folder: entry.folder))
        }
    }

    /// The temporary name a file is written under before it is renamed to `path`: hidden, in the
    /// same folder (a rename does not cross file systems), named by the process.
    public static func temporaryPath(for path: String) -> String {
        let folder = folderOf(path)
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return (folder == "/" ? "" : folder) + "/." + name + ".tmp-\(getpid())"
    }

    /// DISTILLCTL_NO_SPACE_CHECK=1 skips `checkSpace`: the tests use it to reach a write that
    /// fails halfway, as when another program fills the disk while the file is written.
    static let spaceCheckEnabled = ProcessInfo.processInfo.environment["DISTILLCTL_NO_SPACE_CHECK"] == nil

    // MARK: helpers

    struct FileIdentity: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    static func identity(_ path: String) -> FileIdentity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// The folder a path's file goes into ("." for a bare name).
    static func folderOf(_ path: String) -> String {
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        let folder = String(trimmed[..<slash])
        return folder.isEmpty ? "/" : folder
    }

    private static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Creates and removes a file in `folder`: a permission bit, a read-only mount or a full inode
    /// table all show here, before any work, with errno's reason.
    private static func probe(_ folder: String, for path: String) throws {
        let name = folder + "/.distillctl-probe-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else {
            throw OutputPathError(path: path, kind: .notWritable(folder, reason: String(cString: strerror(errno))))
        }
        close(fd)
        unlink(name)
    }
}
