import Foundation
import H5Model
import TestSupport

/// Broken Keras 3 files for BadInputTests, made from the Keras-made k3n_ fixtures.
enum Keras3BadFiles {
    /// The fixture's `.keras` bytes with `edit` applied.
    static func archive(_ c: FixtureCase, _ edit: (inout Data) throws -> Void) throws -> Data {
        var data = try Data(contentsOf: URL(fileURLWithPath: c.path(c.model)!))
        try edit(&data)
        return data
    }

    /// Renames every occurrence of an entry name (local header and central directory) to
    /// another of the same length: a valid zip without that entry.
    static func renameEntry(_ data: inout Data, from: String, to: String) {
        precondition(from.utf8.count == to.utf8.count)
        let old = Data(from.utf8), new = Data(to.utf8)
        var start = data.startIndex
        while let range = data.range(of: old, in: start..<data.endIndex) {
            data.replaceSubrange(range, with: new)
            start = range.upperBound
        }
    }

    /// The fixture's `.weights.h5` without the variables of the group at `path`, written to `to`.
    static func weightsWithout(_ c: FixtureCase, path: String, to: String) throws {
        var file = try Keras3Weights.read(path: c.path(c.weights)!)
        file.entries.removeAll { $0.path == path }
        try file.write(to: to)
    }
}
