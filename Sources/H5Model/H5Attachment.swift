// Data of distillctl's own (a training checkpoint's optimizer state, say) kept inside a Keras
// file, in a root group that no Keras loader looks at: the file stays a model that Keras loads,
// and the model and its attachment are written (and renamed into place) as one file.
import Foundation

public struct H5Attachment: Equatable, Sendable {
    /// The root group's name; it must not be one Keras uses (`model_weights`, `optimizer_weights`).
    public var group: String
    /// Variable-length UTF-8 string attributes of the group (e.g. a JSON document).
    public var text: [String: String]
    /// Datasets under the group, by relative path.
    public var arrays: [String: H5Array]

    public init(group: String, text: [String: String] = [:], arrays: [String: H5Array] = [:]) {
        self.group = group
        self.text = text
        self.arrays = arrays
    }

    func write(into root: H5Group) throws {
        guard !["model_weights", "optimizer_weights"].contains(group), !group.contains("/"), !group.isEmpty else {
            throw H5ModelError("cannot attach data as group '\(group)': the name is Keras's or not a plain name")
        }
        let g = try root.createGroup(group)
        for key in text.keys.sorted() { try g.writeVariableStrings(key, [text[key]!], utf8: true, scalar: true) }
        for key in arrays.keys.sorted() {
            let a = arrays[key]!
            try g.writeDataset(key, shape: a.shape, values: a.values)
        }
    }

    /// The attachment `group` of the file at `path`, or nil when the file has none.
    public static func read(path: String, group: String) throws -> H5Attachment? {
        try withHDF5 {
            let file = try H5File.open(path)
            guard let g = try file.root().group(group) else { return nil }
            var out = H5Attachment(group: group)
            for name in try g.attributeNames() {
                if case .strings(let s) = try g.readAttribute(name), s.count == 1 { out.text[name] = s[0] }
            }
            try H5Arrays.walk(g, prefix: "") { name, dataset in
                let (shape, values) = try dataset.read()
                out.arrays[name] = H5Array(shape: shape, values: values)
            }
            return out
        }
    }
}
