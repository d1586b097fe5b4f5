import Foundation
import H5Model

/// Writes through a temporary file in the target's folder, renamed over the target when complete,
/// so a reader never sees a half-written file and a failure (a full disk) leaves the previous file
/// as it was and no temporary file behind.
public func writeAtomically(_ data: Data, to path: String) throws {
    try replaceAtomically(path) { temporary in try writeWhole(data, to: temporary, displayPath: path) }
}

public func writeAtomically(_ text: String, to path: String) throws {
    try writeAtomically(Data(text.utf8), to: path)
}
