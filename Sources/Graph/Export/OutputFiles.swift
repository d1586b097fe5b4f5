import Foundation
import H5Model

/// A file written to a temporary name beside its target (`.<name>.tmp-<pid>`), renamed over the
/// target by `commit()`, removed by `discard()`.
struct StagedFile {
    let path: String
    let temporary: String

    init(contents: Data, for path: String) throws {
        self.path = path
        temporary = OutputPaths.temporaryPath(for: path)
        try OutputPaths.checkLocation(path)
        do { try writeWhole(contents, to: temporary, displayPath: path) } catch {
            unlink(temporary)
            throw error
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
