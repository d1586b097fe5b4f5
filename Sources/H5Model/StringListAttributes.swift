// String-list attributes as Keras reads and writes them (`layer_names`, `weight_names`): split into
// `name0`, `name1`, ... when one attribute would pass HDF5's object-header limit, an empty list
// stored as numpy's `[]` (float64, shape (0,)).

/// Keras's splitting rule (`save_attributes_to_hdf5_group`, reference §1.5), as pure arithmetic.
enum AttributeChunking {
    /// Keras's `HDF5_OBJECT_HEADER_LIMIT`: the most data bytes it puts in one attribute (HDF5's
    /// header message limit is 64 KiB; Keras keeps 1 KiB for the message's own fields).
    static let limit = 64512

    /// Keras stores the list as a numpy `S<n>` array, n = the longest item's UTF-8 length (at least
    /// 1, as numpy makes `S1` for empty strings); every piece keeps that item size.
    static func itemSize(_ values: [String]) -> Int {
        max(1, values.map(\.utf8.count).max() ?? 1)
    }

    /// The smallest N for which every piece of `np.array_split(array, N)` has at most `limit`
    /// bytes. The largest piece holds ceil(count / N) items, so N = ceil(count / itemsPerPiece).
    static func pieceCount(count: Int, itemSize: Int) -> Int {
        let itemsPerPiece = max(1, limit / itemSize)
        return max(1, (count + itemsPerPiece - 1) / itemsPerPiece)
    }

    /// `np.array_split`'s pieces: N contiguous runs, the first `count % N` one item longer.
    static func split<T>(_ values: [T], into pieces: Int) -> [ArraySlice<T>] {
        let base = values.count / pieces, longer = values.count % pieces
        var start = 0
        return (0..<pieces).map { i in
            let end = start + base + (i < longer ? 1 : 0)
            defer { start = end }
            return values[start..<end]
        }
    }
}

extension H5Object {
    /// Writes `values` the way Keras does, as fixed-length NULLPAD ASCII strings (which every Keras
    /// and h5py version reads back as bytes; TF <= 2.4 needs that): one attribute `name`, or pieces
    /// `name0` ... `name{N-1}` when the list passes the header limit; an empty list as float64 `[]`.
    func writeStringList(_ name: String, _ values: [String]) throws {
        guard !values.isEmpty else { return try writeFloat64s(name, []) }
        let size = AttributeChunking.itemSize(values)
        guard size <= AttributeChunking.limit else {
            throw H5ModelError(context("cannot write attribute '\(name)' of '\(path)': an item is \(size) bytes, "
                                       + "more than the \(AttributeChunking.limit) bytes one HDF5 attribute can hold"))
        }
        let count = AttributeChunking.pieceCount(count: values.count, itemSize: size)
        if count == 1 { return try writeFixedStrings(name, values, itemSize: size) }
        for (i, piece) in AttributeChunking.split(values, into: count).enumerated() {
            try writeFixedStrings("\(name)\(i)", Array(piece), itemSize: size)
        }
    }

    /// A string list as Keras's `load_attributes_from_hdf5_group` reads it: `name` if present, else
    /// `name0`, `name1`, ... joined until one is missing; nil when neither exists.
    func readStringList(_ name: String) throws -> [String]? {
        if try hasAttribute(name) { return try strings(name) }
        var joined: [String] = []
        var index = 0
        while try hasAttribute("\(name)\(index)") {
            joined += try strings("\(name)\(index)")
            index += 1
        }
        return index == 0 ? nil : joined
    }

    func hasStringList(_ name: String) throws -> Bool {
        try hasAttribute(name) || hasAttribute("\(name)0")
    }

    /// A single string (scalar, or a one-element array); nil when the attribute is absent.
    func readString(_ name: String) throws -> String? {
        guard try hasAttribute(name) else { return nil }
        let values = try strings(name)
        guard values.count == 1 else {
            throw H5ModelError(context("attribute '\(name)' of '\(path)' holds \(values.count) strings, expected one"))
        }
        return values[0]
    }

    /// The strings of an attribute; an empty numeric array (numpy's `[]`) is an empty list.
    private func strings(_ name: String) throws -> [String] {
        switch try readAttribute(name) {
        case .strings(let values): return values
        case .floats(let values) where values.isEmpty: return []
        case .integers(let values) where values.isEmpty: return []
        default: throw H5ModelError(context("attribute '\(name)' of '\(path)' is numeric, expected strings"))
        }
    }
}
