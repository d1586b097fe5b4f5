// The thin HDF5 layer: this file (library state, errors, handles, files, groups) with
// HDF5Attributes.swift and HDF5Datasets.swift are the only Swift files that import CHDF5.
// Everything above it (the Keras layout) speaks in groups, attributes and datasets, never hid_t.
//
// Rules kept here: every hid_t has exactly one owner (a final class closing it in deinit), every
// HDF5 status goes through `h5check`, and HDF5 never prints its error stack (see `withHDF5`).
import CHDF5
import Foundation

// MARK: - Library state and errors

/// Debian's libhdf5 is the serial build, which is not thread-safe: all HDF5 work of H5Model runs
/// under this lock (recursive, so entry points may nest).
private let libraryLock = NSRecursiveLock()

/// HDF5 prints its error stack to stderr by default; switched off once, before any other call,
/// so a failure reaches the user only as one H5ModelError line.
///
/// HDF5 also registers an exit handler that closes every file still open. A file whose H5Fclose
/// failed (its metadata could not be flushed: a full disk) stays registered half torn down, and
/// 1.10.8's handler then dereferences freed state in H5F__close_cb: the user saw the right error
/// line followed by a segfault at exit. Every file of ours is closed (or abandoned after such a
/// failure, its temporary file removed) before we return, so the handler has nothing to do but
/// crash: it is switched off before the library starts.
private let errorPrintingOff: Void = {
    _ = H5dont_atexit()
    _ = H5open()
    _ = H5Eset_auto2(hid_t(H5E_DEFAULT), nil, nil)
}()

/// Runs `body` with exclusive use of the HDF5 library. Every handle must die inside `body`.
func withHDF5<T>(_ body: () throws -> T) throws -> T {
    libraryLock.lock()
    defer { libraryLock.unlock() }
    _ = errorPrintingOff
    return try body()
}

/// The one place HDF5 statuses are checked. A negative status becomes an H5ModelError: `what`
/// (which names the file and the object) plus HDF5's most specific reason.
@discardableResult
func h5check<T: BinaryInteger>(_ status: T, _ what: @autoclosure () -> String) throws -> T {
    guard status < 0 else { return status }
    throw H5ModelError(what() + hdf5Reason())
}

/// The innermost message of HDF5's error stack (e.g. "truncated file: eof = 96, ..."), as
/// " (HDF5: ...)", or "" when the stack is empty. Clears the stack.
private func hdf5Reason() -> String {
    var innermost: String?
    withUnsafeMutablePointer(to: &innermost) { slot in
        _ = H5Ewalk2(hid_t(H5E_DEFAULT), H5E_WALK_UPWARD, { n, error, slot in
            if n == 0, let desc = error?.pointee.desc {
                slot?.assumingMemoryBound(to: String?.self).pointee = String(cString: desc)
            }
            return 0
        }, slot)
    }
    _ = H5Eclear2(hid_t(H5E_DEFAULT))
    guard let text = innermost?.split(whereSeparator: \.isNewline).joined(separator: " "),
          !text.isEmpty else { return "" }
    // A failed system call ("file write failed: time = ..., filename = '<the temporary file>', ...,
    // errno = 28, error message = 'No space left on device', buf = ..."): its reason alone.
    if let start = text.range(of: "error message = '"),
       let end = text[start.upperBound...].firstIndex(of: "'") {
        return ": \(text[start.upperBound..<end])"
    }
    return " (HDF5: \(text))"
}

// MARK: - Handle owners

final class H5Space {
    let id: hid_t
    init(_ id: hid_t) { self.id = id }
    deinit { _ = H5Sclose(id) }

    static func scalar() throws -> H5Space { H5Space(try h5check(H5Screate(H5S_SCALAR), "cannot create a dataspace")) }

    static func simple(_ dims: [Int]) throws -> H5Space {
        let hdims = dims.map { hsize_t($0) }
        return H5Space(try h5check(H5Screate_simple(Int32(dims.count), hdims, nil), "cannot create a dataspace"))
    }

    /// nil for a NULL dataspace (h5py's `Empty`), [] for a scalar.
    func dims(_ what: @autoclosure () -> String) throws -> [Int]? {
        if H5Sget_simple_extent_type(id) == H5S_NULL { return nil }
        let rank = Int(try h5check(H5Sget_simple_extent_ndims(id), what()))
        var hdims = [hsize_t](repeating: 0, count: rank)
        try h5check(H5Sget_simple_extent_dims(id, &hdims, nil), what())
        return hdims.map { $0 > hsize_t(Int.max) ? Int.max : Int($0) }
    }
}

final class H5Type {
    let id: hid_t
    init(_ id: hid_t) { self.id = id }
    deinit { _ = H5Tclose(id) }

    /// A private copy of a predefined type (those must not be closed; copies must).
    static func copy(_ predefined: hid_t) throws -> H5Type {
        H5Type(try h5check(H5Tcopy(predefined), "cannot copy an HDF5 datatype"))
    }
}

final class H5Attribute {
    let id: hid_t
    init(_ id: hid_t) { self.id = id }
    deinit { _ = H5Aclose(id) }
}

final class H5PropertyList {
    let id: hid_t
    init(_ id: hid_t) { self.id = id }
    deinit { _ = H5Pclose(id) }

    /// Link creation that makes missing intermediate groups, as h5py does for names with "/".
    static func intermediateGroups() throws -> H5PropertyList {
        let lcpl = H5PropertyList(try h5check(H5Pcreate(dctl_h5p_link_create()), "cannot create a property list"))
        try h5check(H5Pset_create_intermediate_group(lcpl.id, 1), "cannot set intermediate-group creation")
        return lcpl
    }
}

final class H5File {
    let id: hid_t
    /// The path error messages name (the target, also while writing to a temporary file).
    let displayPath: String
    /// Bytes on disk when opened: the bound for plausible declared sizes.
    let byteCount: Int
    private var isOpen = true

    private init(id: hid_t, displayPath: String, byteCount: Int) {
        self.id = id
        self.displayPath = displayPath
        self.byteCount = byteCount
    }
    deinit { if isOpen { _ = H5Fclose(id) } }

    /// `displayPath` names the file in messages (e.g. an entry of a `.keras` archive that was
    /// extracted to a temporary file).
    static func open(_ path: String, displayPath: String? = nil) throws -> H5File {
        let shown = displayPath ?? path
        let size = try checkHDF5Signature(path, displayPath: shown)
        let id = try h5check(H5Fopen(path, dctl_h5f_acc_rdonly(), dctl_h5p_default()),
                             "\(shown): cannot open as HDF5")
        return H5File(id: id, displayPath: shown, byteCount: size)
    }

    /// A new file with HDF5's default (earliest) format, as h5py writes: superblock 0, old-style groups.
    static func create(_ path: String, displayPath: String) throws -> H5File {
        let fapl = H5PropertyList(try h5check(H5Pcreate(dctl_h5p_file_access()), "cannot create a property list"))
        // SEMI: close() fails while a handle is still open, instead of keeping the file open
        // behind our back (the caller renames the file right after closing it).
        try h5check(H5Pset_fclose_degree(fapl.id, H5F_CLOSE_SEMI), "cannot set the file close degree")
        let id = try h5check(H5Fcreate(path, dctl_h5f_acc_trunc(), dctl_h5p_default(), fapl.id),
                             "\(displayPath): cannot create HDF5 file")
        return H5File(id: id, displayPath: displayPath, byteCount: Int.max)
    }

    /// Flushes and closes; a failure (disk full, handle leak) is reported, unlike in deinit.
    func close() throws {
        guard isOpen else { return }
        isOpen = false
        try h5check(H5Fclose(id), "\(displayPath): cannot close HDF5 file")
    }

    func root() throws -> H5Group {
        let gid = try h5check(H5Gopen2(id, "/", dctl_h5p_default()), "\(displayPath): cannot open the root group")
        return H5Group(id: gid, file: self, path: "/")
    }
}

/// Checks a file before HDF5 sees it, so each failure gets its own message: missing, not a regular
/// file, empty, or no HDF5 signature (at offset 0 or a user-block offset 512, 1024, 2048, ...).
/// Returns the file size.
private func checkHDF5Signature(_ actualPath: String, displayPath path: String) throws -> Int {
    var info = stat()
    guard stat(actualPath, &info) == 0 else {
        throw H5ModelError("\(path): cannot open: \(String(cString: strerror(errno)))")
    }
    guard info.st_mode & S_IFMT == S_IFREG else { throw H5ModelError("\(path): not a regular file") }
    let size = Int(info.st_size)
    guard size > 0 else { throw H5ModelError("\(path): empty file (0 bytes), not an HDF5 file") }
    guard let handle = FileHandle(forReadingAtPath: actualPath) else {
        throw H5ModelError("\(path): cannot open: \(String(cString: strerror(errno)))")
    }
    defer { try? handle.close() }
    let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]   // "\x89HDF\r\n\x1a\n"
    var offset = 0
    while offset + signature.count <= size {
        try? handle.seek(toOffset: UInt64(offset))
        if let bytes = try? handle.read(upToCount: signature.count), Array(bytes) == signature { return size }
        offset = offset == 0 ? 512 : offset * 2
    }
    throw H5ModelError("\(path): not an HDF5 file (no HDF5 signature in its \(size) bytes)")
}

// MARK: - Objects, paths and groups

/// A group or dataset: something at a path that carries attributes.
protocol H5Object: AnyObject {
    var id: hid_t { get }
    var file: H5File { get }
    /// Absolute path in the file, for messages.
    var path: String { get }
}

extension H5Object {
    /// `what` prefixed by the file, the form of every message.
    func context(_ what: String) -> String { "\(file.displayPath): \(what)" }
    func childPath(_ relative: String) -> String { path == "/" ? "/" + relative : path + "/" + relative }
}

final class H5Group: H5Object {
    let id: hid_t
    let file: H5File   // strong: the file id must outlive its objects
    let path: String
    init(id: hid_t, file: H5File, path: String) { self.id = id; self.file = file; self.path = path }
    deinit { _ = H5Gclose(id) }
}

final class H5Dataset: H5Object {
    let id: hid_t
    let file: H5File
    let path: String
    init(id: hid_t, file: H5File, path: String) { self.id = id; self.file = file; self.path = path }
    deinit { _ = H5Dclose(id) }
}

enum H5Child {
    case group(H5Group)
    case dataset(H5Dataset)
}

extension H5Group {
    /// Splits a Keras name into HDF5 path segments. Empty segments are refused: a leading "/"
    /// would silently jump to the file root, "a//b" would alias "a/b".
    func segments(_ relative: String) throws -> [Substring] {
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
        guard !parts.contains(where: \.isEmpty) else {
            throw H5ModelError(context("invalid name '\(relative)' in '\(path)' (empty path segment)"))
        }
        return parts
    }

    /// The object at `relative` (a name that may contain "/", resolved inside this group), or nil
    /// when some part of that path is missing or not a group.
    func child(_ relative: String) throws -> H5Child? {
        let parts = try segments(relative)
        for end in 1...parts.count {
            let prefix = parts[..<end].joined(separator: "/")
            let what = context("cannot look up '\(childPath(prefix))'")
            guard try h5check(H5Lexists(id, prefix, dctl_h5p_default()), what) > 0 else { return nil }
            if end < parts.count {
                var info = H5O_info_t()
                try h5check(H5Oget_info_by_name2(id, prefix, &info, UInt32(H5O_INFO_BASIC), dctl_h5p_default()), what)
                guard info.type == H5O_TYPE_GROUP else { return nil }
            }
        }
        let oid = try h5check(H5Oopen(id, relative, dctl_h5p_default()), context("cannot open '\(childPath(relative))'"))
        switch H5Iget_type(oid) {
        case H5I_GROUP: return .group(H5Group(id: oid, file: file, path: childPath(relative)))
        case H5I_DATASET: return .dataset(H5Dataset(id: oid, file: file, path: childPath(relative)))
        default: _ = H5Oclose(oid); return nil   // a named datatype: not what anyone asked for
        }
    }

    func group(_ relative: String) throws -> H5Group? {
        if case .group(let g)? = try child(relative) { return g }
        return nil
    }

    func dataset(_ relative: String) throws -> H5Dataset? {
        if case .dataset(let d)? = try child(relative) { return d }
        return nil
    }

    /// Names of the links directly in this group, in name order.
    func childNames() throws -> [String] {
        var names: [String] = []
        try withUnsafeMutablePointer(to: &names) { slot in
            _ = try h5check(H5Literate(id, H5_INDEX_NAME, H5_ITER_INC, nil, { _, name, _, slot in
                if let name { slot?.assumingMemoryBound(to: [String].self).pointee.append(String(cString: name)) }
                return 0
            }, slot), context("cannot list group '\(path)'"))
        }
        return names
    }

    /// Creates `relative` and any missing intermediate groups (h5py's `create_group`).
    func createGroup(_ relative: String) throws -> H5Group {
        _ = try segments(relative)
        let lcpl = try H5PropertyList.intermediateGroups()
        let gid = try h5check(H5Gcreate2(id, relative, lcpl.id, dctl_h5p_default(), dctl_h5p_default()),
                              context("cannot create group '\(childPath(relative))'"))
        return H5Group(id: gid, file: file, path: childPath(relative))
    }

    /// Creates a dataset (contiguous, unfiltered, intermediate groups as needed) and returns it unwritten.
    func createDataset(_ relative: String, type: H5Type, space: H5Space,
                       creation: H5PropertyList? = nil) throws -> H5Dataset {
        _ = try segments(relative)
        let lcpl = try H5PropertyList.intermediateGroups()
        let did = try h5check(H5Dcreate2(id, relative, type.id, space.id, lcpl.id,
                                         creation?.id ?? dctl_h5p_default(), dctl_h5p_default()),
                              context("cannot create dataset '\(childPath(relative))'"))
        return H5Dataset(id: did, file: file, path: childPath(relative))
    }
}
