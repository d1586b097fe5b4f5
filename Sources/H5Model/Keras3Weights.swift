// Keras 3's own weights layout: `model.weights.h5` inside a `.keras` archive, and what
// `model.save_weights("x.weights.h5")` writes (keras/src/saving/saving_lib.py, `_save_state` and
// `H5IOStore`). Each object with state gets a group `<path>/vars` holding datasets "0", "1", ...
// in the object's own variable order; the path is the walk of the layer tree:
//   layers/<snake_case class name>[_<n>]/vars           a model's layers (numbered per class)
//   layers/functional/layers/conv2d/vars               layers of a nested model
//   vars                                               the model's own variables (normally none)
//   optimizer/vars                                     a compiled model's optimizer state
// Keras >= 3.6 puts the object's name on each `vars` group (attribute `name`). No root attributes,
// no keras_version. Which path belongs to which layer is Graph's business; this file only knows
// the groups.
import Foundation

/// A weights file in Keras 3's layout.
public struct Keras3Weights: Equatable, Sendable {
    /// One `<path>/vars` group.
    public struct Entry: Equatable, Sendable {
        /// The object's path without `/vars` ("" for the root's own `vars`), e.g. `layers/dense_1`.
        public var path: String
        /// The `name` attribute of the `vars` group (the layer's name), when Keras wrote one.
        public var name: String?
        /// The datasets "0", "1", ... in index order; each `Weight.name` is its index.
        public var variables: [Weight]

        public init(path: String, name: String?, variables: [Weight]) {
            self.path = path
            self.name = name
            self.variables = variables
        }
    }

    /// Every `vars` group of the file, in path order.
    public var entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries }

    public func entry(at path: String) -> Entry? { entries.first { $0.path == path } }

    /// Whether `path` is an HDF5 file in this layout rather than the legacy one: its root has
    /// a `layers` or `vars` group and neither `layer_names` nor `model_weights`.
    public static func isKeras3Layout(path: String) throws -> Bool {
        try withHDF5 { try IsolatedRead.guarded(path: path) { try isKeras3LayoutInProcess(path: path) } }
    }

    /// `isKeras3Layout` itself; the caller holds the HDF5 lock (in the forked child).
    static func isKeras3LayoutInProcess(path: String) throws -> Bool {
        let root = try H5File.open(path).root()
        if try root.hasStringList("layer_names") || root.group("model_weights") != nil { return false }
        return try root.group("layers") != nil || root.group("vars") != nil
    }

    /// Reads every `vars` group. `displayPath` names the file in messages (the archive entry when
    /// the file was extracted from a `.keras`).
    public static func read(path: String, displayPath: String? = nil) throws -> Keras3Weights {
        // Read first in a forked child, as legacy files are (IsolatedRead): libhdf5 may crash on a corrupt file.
        try withHDF5 {
            try IsolatedRead.guarded(path: displayPath ?? path) {
                let file = try H5File.open(path, displayPath: displayPath ?? path)
                var entries: [Entry] = []
                try collect(try file.root(), path: "", into: &entries)
                return Keras3Weights(entries: entries)
            }
        }
    }

    private static func collect(_ group: H5Group, path: String, into entries: inout [Entry]) throws {
        for name in try group.childNames() {
            guard let child = try group.group(name) else { continue }
            let childPath = path.isEmpty ? name : path + "/" + name
            if name == "vars" {
                entries.append(Entry(path: path, name: try child.readString("name"), variables: try variables(of: child)))
            } else {
                try collect(child, path: childPath, into: &entries)
            }
        }
    }

    /// The datasets "0" ... "n-1" of a `vars` group, in index order.
    private static func variables(of group: H5Group) throws -> [Weight] {
        var byIndex: [Int: Weight] = [:]
        for name in try group.childNames() {
            guard let index = Int(name), index >= 0, String(index) == name else {
                throw H5ModelError(group.context("'\(group.childPath(name))' is not a numbered variable "
                                                 + "(Keras 3 names a layer's variables 0, 1, ...)"))
            }
            guard let dataset = try group.dataset(name) else {
                throw H5ModelError(group.context("'\(group.childPath(name))' is not a dataset"))
            }
            let (shape, values) = try dataset.read()
            byIndex[index] = Weight(name: name, shape: shape, values: values)
        }
        return try (0..<byIndex.count).map { i in
            guard let weight = byIndex[i] else {
                throw H5ModelError(group.context("'\(group.path)' has \(byIndex.count) variables but no '\(i)'"))
            }
            return weight
        }
    }

    /// Writes the layout as Keras 3.15 does: a `<path>/vars` group per entry (also for entries
    /// without variables) with its `name` attribute, datasets "0", "1", ... Atomic, as every
    /// writer here: a temporary file beside `path`, renamed over it.
    public func write(to path: String) throws {
        var seen = Set<String>()
        for entry in entries {
            guard seen.insert(entry.path).inserted else {
                throw H5ModelError("\(path): cannot write: two variable groups at '\(entry.path)/vars'")
            }
            for weight in entry.variables where product(weight.shape) != weight.values.count {
                throw H5ModelError("\(path): cannot write: variable \(weight.name) of '\(entry.path)' has shape "
                                   + "\(shapeText(weight.shape)) but \(weight.values.count) values")
            }
        }
        try withHDF5 {
            try replaceAtomically(path) { temporaryPath in
                let file = try H5File.create(temporaryPath, displayPath: path)
                try writeContents(try file.root())
                try file.close()
            }
        }
    }

    private func writeContents(_ root: H5Group) throws {
        for entry in entries.sorted(by: { $0.path.unicodeScalars.lexicographicallyPrecedes($1.path.unicodeScalars) }) {
            let vars = try root.createGroup(entry.path.isEmpty ? "vars" : entry.path + "/vars")
            if let name = entry.name {
                try vars.writeVariableStrings("name", [name], utf8: true, scalar: true)
            }
            for (index, weight) in entry.variables.enumerated() {
                try vars.writeDataset(String(index), shape: weight.shape, values: weight.values)
            }
        }
    }
}
