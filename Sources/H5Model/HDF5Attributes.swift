// Attributes of HDF5 groups and datasets: reading every string flavour Keras files contain, and
// writing the exact flavours the Keras writer needs. Part of the thin HDF5 layer (see HDF5.swift).
import CHDF5
import Foundation

// MARK: - Attributes

enum H5AttributeValue: Equatable {
    case strings([String])
    case floats([Double])
    case integers([Int64])
}

enum H5StringPadding: Equatable {
    case nullTerminated, nullPadded, spacePadded
    fileprivate var hdf5: H5T_str_t {
        switch self {
        case .nullTerminated: return H5T_STR_NULLTERM
        case .nullPadded: return H5T_STR_NULLPAD
        case .spacePadded: return H5T_STR_SPACEPAD
        }
    }
}

extension H5Type {
    /// A string type: fixed-length of `size` bytes, or variable-length when `size` is nil.
    static func string(size: Int?, padding: H5StringPadding, utf8: Bool) throws -> H5Type {
        let type = try H5Type.copy(dctl_h5t_c_s1())
        let what = "cannot make a string type"
        try h5check(H5Tset_size(type.id, size ?? dctl_h5t_variable()), what)
        try h5check(H5Tset_strpad(type.id, padding.hdf5), what)
        try h5check(H5Tset_cset(type.id, utf8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII), what)
        return type
    }
}

/// How an attribute is stored, for tests that pin the writer's exact on-disk layout.
struct H5AttributeInfo: Equatable {
    enum Kind: Equatable {
        case fixedString(size: Int, padding: H5StringPadding, utf8: Bool)
        case variableString(utf8: Bool)
        case float(bytes: Int)
        case integer(bytes: Int)
        case other
    }
    var kind: Kind
    var dims: [Int]?   // nil: NULL dataspace; []: scalar
}

extension H5Object {
    private func attributeText(_ name: String) -> String { "attribute '\(name)' of '\(path)'" }

    func hasAttribute(_ name: String) throws -> Bool {
        try h5check(H5Aexists(id, name), context("cannot look up \(attributeText(name))")) > 0
    }

    func attributeNames() throws -> [String] {
        var info = H5O_info_t()
        try h5check(H5Oget_info2(id, &info, UInt32(H5O_INFO_NUM_ATTRS)), context("cannot list the attributes of '\(path)'"))
        return try (0..<info.num_attrs).map { index in
            let what = context("cannot read attribute names of '\(path)'")
            let length = try h5check(H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, dctl_h5p_default()), what)
            var name = [CChar](repeating: 0, count: length + 1)
            try h5check(H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, index, &name, length + 1, dctl_h5p_default()), what)
            return String(cString: name)
        }
    }

    private func openAttribute(_ name: String) throws -> (H5Attribute, H5Type, H5Space) {
        let what = attributeText(name)
        let attr = H5Attribute(try h5check(H5Aopen(id, name, dctl_h5p_default()), context("cannot open \(what)")))
        let type = H5Type(try h5check(H5Aget_type(attr.id), context("cannot read the type of \(what)")))
        let space = H5Space(try h5check(H5Aget_space(attr.id), context("cannot read the shape of \(what)")))
        return (attr, type, space)
    }

    func attributeInfo(_ name: String) throws -> H5AttributeInfo {
        let (_, type, space) = try openAttribute(name)
        let dims = try space.dims(context("cannot read the shape of \(attributeText(name))"))
        let size = H5Tget_size(type.id)
        let kind: H5AttributeInfo.Kind
        switch H5Tget_class(type.id) {
        case H5T_STRING:
            let utf8 = H5Tget_cset(type.id) == H5T_CSET_UTF8
            if H5Tis_variable_str(type.id) > 0 {
                kind = .variableString(utf8: utf8)
            } else {
                let pad = H5Tget_strpad(type.id)
                let padding: H5StringPadding = pad == H5T_STR_NULLTERM ? .nullTerminated
                    : pad == H5T_STR_SPACEPAD ? .spacePadded : .nullPadded
                kind = .fixedString(size: size, padding: padding, utf8: utf8)
            }
        case H5T_FLOAT: kind = .float(bytes: size)
        case H5T_INTEGER: kind = .integer(bytes: size)
        default: kind = .other
        }
        return H5AttributeInfo(kind: kind, dims: dims)
    }

    /// Strings (fixed-length with any padding, or variable-length; ASCII or UTF-8), floats or
    /// integers, flattened. A NULL dataspace reads as empty.
    func readAttribute(_ name: String) throws -> H5AttributeValue {
        let what = attributeText(name)
        let (attr, type, space) = try openAttribute(name)
        let count = Int(try h5check(H5Sget_simple_extent_npoints(space.id), context("cannot read the shape of \(what)")))
        let size = H5Tget_size(type.id)
        // An attribute's data sits in the object header, so it cannot exceed the file (vlen items
        // are 16-byte references); checked before allocating for a hostile declared count.
        guard size > 0, let bytes = product([count, size]), bytes <= file.byteCount else {
            throw H5ModelError(context("\(what) declares \(count) elements of \(size) bytes, more than the file holds"))
        }
        let readFailed = context("cannot read \(what)")
        switch H5Tget_class(type.id) {
        case H5T_STRING where H5Tis_variable_str(type.id) > 0:
            let memType = try H5Type.copy(dctl_h5t_c_s1())
            try h5check(H5Tset_size(memType.id, dctl_h5t_variable()), readFailed)
            try h5check(H5Tset_cset(memType.id, H5Tget_cset(type.id)), readFailed)
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            if count > 0 { try h5check(H5Aread(attr.id, memType.id, &pointers), readFailed) }
            defer { if count > 0 { _ = H5Dvlen_reclaim(memType.id, space.id, dctl_h5p_default(), &pointers) } }
            return .strings(pointers.map { $0.map { String(cString: $0) } ?? "" })
        case H5T_STRING:
            let memType = H5Type(try h5check(H5Tcopy(type.id), readFailed))   // identical: no conversion
            var bytes = [UInt8](repeating: 0, count: count * size)
            if count > 0 { try h5check(H5Aread(attr.id, memType.id, &bytes), readFailed) }
            let pad = H5Tget_strpad(type.id)
            return .strings((0..<count).map { decodeFixed(bytes[$0 * size ..< ($0 + 1) * size], pad) })
        case H5T_FLOAT:
            let memType = try H5Type.copy(dctl_h5t_native_double())
            return .floats(try filledArray(count) { try h5check(H5Aread(attr.id, memType.id, $0), readFailed) })
        case H5T_INTEGER:
            let memType = try H5Type.copy(dctl_h5t_native_int64())
            return .integers(try filledArray(count) { try h5check(H5Aread(attr.id, memType.id, $0), readFailed) })
        default:
            throw H5ModelError(context("\(what) has an unsupported type (neither string nor number)"))
        }
    }

    /// One fixed-length item: NULLTERM ends at the first NUL (C); NULLPAD and SPACEPAD drop the
    /// trailing padding (what numpy's `S` dtype and h5py return).
    private func decodeFixed(_ item: ArraySlice<UInt8>, _ pad: H5T_str_t) -> String {
        var bytes = item
        if pad == H5T_STR_NULLTERM, let nul = bytes.firstIndex(of: 0) { bytes = bytes[..<nul] }
        let padByte: UInt8 = pad == H5T_STR_SPACEPAD ? 0x20 : 0
        while let last = bytes.last, last == padByte || last == 0 { bytes = bytes.dropLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func createAttribute(_ name: String, fileType: H5Type, memoryType: H5Type, space: H5Space,
                                 data: UnsafeRawPointer?) throws {
        let what = attributeText(name)
        let attr = H5Attribute(try h5check(H5Acreate2(id, name, fileType.id, space.id, dctl_h5p_default(), dctl_h5p_default()),
                                           context("cannot create \(what)")))
        if let data { try h5check(H5Awrite(attr.id, memoryType.id, data), context("cannot write \(what)")) }
    }

    /// Fixed-length strings (UTF-8 bytes, as numpy's `S` dtype holds them), 1-D or scalar.
    /// `itemSize` defaults to the longest item (at least 1, like numpy).
    func writeFixedStrings(_ name: String, _ values: [String], itemSize: Int? = nil,
                           padding: H5StringPadding = .nullPadded, utf8: Bool = false, scalar: Bool = false) throws {
        let encoded = values.map { Array($0.utf8) }
        let size = itemSize ?? max(1, encoded.map(\.count).max() ?? 1)
        guard encoded.allSatisfy({ $0.count <= size }), !scalar || values.count == 1 else {
            throw H5ModelError(context("cannot write attribute '\(name)' of '\(path)': items do not fit"))
        }
        var buffer = [UInt8](repeating: padding == .spacePadded ? 0x20 : 0, count: size * encoded.count)
        for (i, item) in encoded.enumerated() { buffer.replaceSubrange(i * size ..< i * size + item.count, with: item) }
        let type = try H5Type.string(size: size, padding: padding, utf8: utf8)
        let space = try scalar ? H5Space.scalar() : H5Space.simple([values.count])
        try buffer.withUnsafeBytes {
            try createAttribute(name, fileType: type, memoryType: type, space: space, data: values.isEmpty ? nil : $0.baseAddress)
        }
    }

    /// Variable-length strings, 1-D or scalar (how h5py stores Python `str`/`bytes`).
    func writeVariableStrings(_ name: String, _ values: [String], utf8: Bool, scalar: Bool = false) throws {
        let type = try H5Type.string(size: nil, padding: .nullTerminated, utf8: utf8)
        let space = try scalar ? H5Space.scalar() : H5Space.simple([values.count])
        let cStrings = values.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        try cStrings.withUnsafeBytes {
            try createAttribute(name, fileType: type, memoryType: type, space: space, data: values.isEmpty ? nil : $0.baseAddress)
        }
    }

    /// A 1-D float64 attribute; empty gives numpy's `[]`, the weightless layer's `weight_names`.
    func writeFloat64s(_ name: String, _ values: [Double]) throws {
        try values.withUnsafeBytes {
            try createAttribute(name, fileType: try .copy(dctl_h5t_ieee_f64le()), memoryType: try .copy(dctl_h5t_native_double()),
                                space: try .simple([values.count]), data: values.isEmpty ? nil : $0.baseAddress)
        }
    }

    func writeInt64s(_ name: String, _ values: [Int64]) throws {
        try values.withUnsafeBytes {
            try createAttribute(name, fileType: try .copy(dctl_h5t_std_i64le()), memoryType: try .copy(dctl_h5t_native_int64()),
                                space: try .simple([values.count]), data: values.isEmpty ? nil : $0.baseAddress)
        }
    }
}
