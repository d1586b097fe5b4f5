// Plain HDF5 arrays files: the fixtures' inputs and outputs (`io.h5`), and other numeric data that
// is not a Keras model. Datasets are addressed by their path below the root ("input",
// "layers/efficientnetb0").

/// One dataset: its shape and stored values.
public struct H5Array: Equatable, Sendable {
    public var shape: [Int]
    public var values: WeightValues
    public var floats: [Float] { values.floats }

    public init(shape: [Int], values: WeightValues) {
        self.shape = shape
        self.values = values
    }
}

/// A root attribute of an arrays file.
public enum H5Scalar: Equatable, Sendable {
    case string(String)
    case number(Double)
    case integer(Int64)
}

public enum H5Arrays {
    /// Every dataset in the file, by path (groups walked recursively). Read first in a forked
    /// child, as model files are (`verify --fixture` reads a user's file here).
    public static func read(path: String) throws -> [String: H5Array] {
        try withHDF5 { try IsolatedRead.guarded(path: path) { try readInProcess(path: path) } }
    }

    static func readInProcess(path: String) throws -> [String: H5Array] {
        let root = try H5File.open(path).root()
        var out: [String: H5Array] = [:]
        try walk(root, prefix: "") { name, dataset in
            let (shape, values) = try dataset.read()
            out[name] = H5Array(shape: shape, values: values)
        }
        return out
    }

    /// The root attributes that hold one value (strings, numbers).
    public static func attributes(path: String) throws -> [String: H5Scalar] {
        try withHDF5 { try scalars(of: H5File.open(path).root()) }
    }

    /// The one-value attributes of every dataset, by dataset path.
    public static func datasetAttributes(path: String) throws -> [String: [String: H5Scalar]] {
        try withHDF5 {
            var out: [String: [String: H5Scalar]] = [:]
            try walk(H5File.open(path).root(), prefix: "") { name, dataset in out[name] = try scalars(of: dataset) }
            return out
        }
    }

    private static func scalars(of object: H5Object) throws -> [String: H5Scalar] {
        var out: [String: H5Scalar] = [:]
        for name in try object.attributeNames() {
            switch try object.readAttribute(name) {
            case .strings(let s) where s.count == 1: out[name] = .string(s[0])
            case .floats(let f) where f.count == 1: out[name] = .number(f[0])
            case .integers(let i) where i.count == 1: out[name] = .integer(i[0])
            default: continue
            }
        }
        return out
    }

    static func walk(_ group: H5Group, prefix: String, _ visit: (String, H5Dataset) throws -> Void) throws {
        for name in try group.childNames() {
            switch try group.child(name) {
            case .group(let g)?: try walk(g, prefix: prefix + name + "/", visit)
            case .dataset(let d)?: try visit(prefix + name, d)
            case nil: continue
            }
        }
    }

    /// Writes datasets (paths may contain "/": groups are created) atomically.
    public static func write(_ arrays: [String: H5Array], to path: String) throws {
        try withHDF5 {
            try replaceAtomically(path) { temporaryPath in
                let file = try H5File.create(temporaryPath, displayPath: path)
                let root = try file.root()
                for name in arrays.keys.sorted() {
                    let a = arrays[name]!
                    try root.writeDataset(name, shape: a.shape, values: a.values)
                }
                try file.close()
            }
        }
    }

}
