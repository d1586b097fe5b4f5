// Datasets of HDF5 groups and their numeric element types. Part of the thin HDF5 layer (see
// HDF5.swift).
import CHDF5
import Foundation

// MARK: - Element types

/// The numeric element types H5Model stores. Files get little-endian IEEE/STD types (numpy's
/// `<f4`, `<i8`, ...); memory gets the native ones and HDF5 converts (byte order, int widths).
enum H5Element: Equatable {
    case float(bytes: Int)                  // 2 (IEEE half), 4, 8
    case integer(bytes: Int, signed: Bool)  // 1, 2, 4, 8

    /// The type in the file; big-endian only for tests of the reader.
    func fileType(bigEndian: Bool = false) throws -> H5Type {
        let type: H5Type
        switch self {
        case .float(2): type = try H5Element.half()
        case .float(4): type = try .copy(dctl_h5t_ieee_f32le())
        case .float(8): type = try .copy(dctl_h5t_ieee_f64le())
        case .integer(4, true): type = try .copy(dctl_h5t_std_i32le())
        case .integer(let bytes, let signed) where [1, 2, 4, 8].contains(bytes):
            type = try .copy(dctl_h5t_std_i64le())
            try h5check(H5Tset_size(type.id, bytes), "cannot make a \(bytes)-byte integer type")
            if !signed { try h5check(H5Tset_sign(type.id, H5T_SGN_NONE), "cannot make an unsigned type") }
        default: throw H5ModelError("unsupported element type \(self)")
        }
        if bigEndian { try h5check(H5Tset_order(type.id, H5T_ORDER_BE), "cannot make a big-endian type") }
        return type
    }

    /// The type of the Swift array holding the values: Float, Double, Int32, Int64 or half bits.
    func memoryType() throws -> H5Type {
        switch self {
        case .float(2): return try H5Element.half()   // little-endian, like this (x86/arm64) host
        case .float(4): return try .copy(dctl_h5t_native_float())
        case .float(8): return try .copy(dctl_h5t_native_double())
        case .integer(4, true): return try .copy(dctl_h5t_native_int32())
        case .integer(8, true): return try .copy(dctl_h5t_native_int64())
        default: throw H5ModelError("no memory type for \(self)")
        }
    }

    /// IEEE 754 binary16, little-endian (numpy's `<f2`); HDF5 1.10 predefines no half type.
    private static func half() throws -> H5Type {
        let type = try H5Type.copy(dctl_h5t_ieee_f32le())
        try h5check(H5Tset_fields(type.id, 15, 10, 5, 0, 10), "cannot make a half-float type")
        try h5check(H5Tset_size(type.id, 2), "cannot make a half-float type")
        try h5check(H5Tset_ebias(type.id, 15), "cannot make a half-float type")
        return type
    }
}

extension WeightValues {
    var element: H5Element {
        switch self {
        case .float16: return .float(bytes: 2)
        case .float32: return .float(bytes: 4)
        case .float64: return .float(bytes: 8)
        case .int32: return .integer(bytes: 4, signed: true)
        case .int64: return .integer(bytes: 8, signed: true)
        }
    }

    /// The values' bytes (a dangling-but-unused pointer for an empty array, never dereferenced).
    func withUnsafeRawPointer(_ body: (UnsafeRawPointer) throws -> Void) throws {
        func call<T>(_ v: [T]) throws { try v.withUnsafeBytes { try body($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!) } }
        switch self {
        case .float16(let v): return try call(v)
        case .float32(let v): return try call(v)
        case .float64(let v): return try call(v)
        case .int32(let v): return try call(v)
        case .int64(let v): return try call(v)
        }
    }
}

/// An array of `count` trivial values filled in place by `fill` (an H5Dread / H5Aread).
func filledArray<T>(_ count: Int, _ fill: (UnsafeMutableRawPointer) throws -> Void) throws -> [T] {
    try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
        if count > 0 { try fill(UnsafeMutableRawPointer(buffer.baseAddress!)) }
        initialized = count
    }
}

/// Multiplies dims, nil on overflow (a hostile header may declare anything).
func product(_ dims: [Int]) -> Int? {
    var total = 1
    for d in dims {
        let (p, overflow) = total.multipliedReportingOverflow(by: d)
        if overflow { return nil }
        total = p
    }
    return total
}

/// "(2, 3)", "()" — shapes in messages look like numpy's.
func shapeText(_ dims: [Int]) -> String {
    dims.count == 1 ? "(\(dims[0]),)" : "(" + dims.map(String.init).joined(separator: ", ") + ")"
}

// MARK: - Datasets

extension H5Group {
    /// Writes `values` as a dataset of `shape` ([] = scalar), contiguous and unfiltered as Keras
    /// writes. `storedAs` overrides the file type (tests: int64 values stored as int16).
    func writeDataset(_ relative: String, shape: [Int], values: WeightValues,
                      storedAs: H5Element? = nil, bigEndian: Bool = false) throws {
        let target = "dataset '\(childPath(relative))'"
        guard shape.allSatisfy({ $0 >= 0 }), let count = product(shape), count == values.count else {
            throw H5ModelError(context("\(target): shape \(shapeText(shape)) does not hold \(values.count) values"))
        }
        let space = try shape.isEmpty ? H5Space.scalar() : H5Space.simple(shape)
        let fileType = try (storedAs ?? values.element).fileType(bigEndian: bigEndian)
        let dataset = try createDataset(relative, type: fileType, space: space)
        guard count > 0 else { return }
        let memType = try values.element.memoryType()
        try values.withUnsafeRawPointer {
            try h5check(H5Dwrite(dataset.id, memType.id, dctl_h5s_all(), dctl_h5s_all(), dctl_h5p_default(), $0),
                        context("cannot write \(target)"))
        }
    }

    /// A dataset declared but never written, optionally chunked (tests: shapes a reader must refuse).
    func declareDataset(_ relative: String, shape: [Int], element: H5Element, chunks: [Int]? = nil) throws {
        var creation: H5PropertyList?
        if let chunks {
            let dcpl = H5PropertyList(try h5check(H5Pcreate(dctl_h5p_dataset_create()), "cannot create a property list"))
            try h5check(H5Pset_chunk(dcpl.id, Int32(chunks.count), chunks.map { hsize_t($0) }), "cannot set chunks")
            creation = dcpl
        }
        _ = try createDataset(relative, type: element.fileType(), space: .simple(shape), creation: creation)
    }
}

extension H5Dataset {
    /// Shape and values. HDF5 converts to the native form of the nearest WeightValues case: byte
    /// order always; 1- and 2-byte and unsigned 4-byte integers widen losslessly; unsigned 8-byte
    /// integers become int64 (HDF5 clamps values above Int64.max); odd-sized floats become float64.
    func read() throws -> (shape: [Int], values: WeightValues) {
        let what = "dataset '\(path)'"
        let type = H5Type(try h5check(H5Dget_type(id), context("cannot read the type of \(what)")))
        let space = H5Space(try h5check(H5Dget_space(id), context("cannot read the shape of \(what)")))
        guard let shape = try space.dims(context("cannot read the shape of \(what)")) else {
            throw H5ModelError(context("\(what) holds no data (NULL dataspace)"))
        }
        let element = try nativeElement(type, what)
        let count = try plausibleCount(shape: shape, elementSize: H5Tget_size(type.id), what)
        let memType = try element.memoryType()
        let readFailed = context("cannot read \(what)")
        let fill: (UnsafeMutableRawPointer) throws -> Void = { buffer in
            try h5check(H5Dread(self.id, memType.id, dctl_h5s_all(), dctl_h5s_all(), dctl_h5p_default(), buffer), readFailed)
        }
        switch element {
        case .float(2): return (shape, .float16(try filledArray(count, fill)))
        case .float(4): return (shape, .float32(try filledArray(count, fill)))
        case .float: return (shape, .float64(try filledArray(count, fill)))
        case .integer(4, _): return (shape, .int32(try filledArray(count, fill)))
        case .integer: return (shape, .int64(try filledArray(count, fill)))
        }
    }

    private func nativeElement(_ type: H5Type, _ what: String) throws -> H5Element {
        let size = H5Tget_size(type.id)
        switch H5Tget_class(type.id) {
        case H5T_FLOAT: return .float(bytes: size == 2 || size == 4 ? size : 8)
        case H5T_INTEGER:
            let signed = H5Tget_sign(type.id) == H5T_SGN_2
            return size < 4 || (size == 4 && signed) ? .integer(bytes: 4, signed: true) : .integer(bytes: 8, signed: true)
        case H5T_STRING: throw unsupported(what, "strings")
        case H5T_ENUM: throw unsupported(what, "enum (e.g. bool)")
        case H5T_COMPOUND: throw unsupported(what, "compound")
        default: throw unsupported(what, "neither float nor integer")
        }
    }

    private func unsupported(_ what: String, _ kind: String) -> H5ModelError {
        H5ModelError(context("\(what) has an unsupported element type (\(kind)); expected float16/32/64 or integers"))
    }

    /// The element count, once it is clear the file can hold that much: a contiguous or compact
    /// dataset's bytes are in the file; a chunked one may be compressed, but weights do not shrink
    /// 1024-fold. A header declaring 10^12 elements is refused here, before any allocation.
    private func plausibleCount(shape: [Int], elementSize: Int, _ what: String) throws -> Int {
        let dcpl = H5PropertyList(try h5check(H5Dget_create_plist(id), context("cannot read the layout of \(what)")))
        let chunked = H5Pget_layout(dcpl.id) == H5D_CHUNKED
        let (scaled, overflow) = file.byteCount.multipliedReportingOverflow(by: 1024)
        let limit = chunked ? (overflow ? Int.max : scaled) : file.byteCount
        guard let count = product(shape), let bytes = product([count, elementSize]), bytes <= limit else {
            throw H5ModelError(context("\(what) declares shape \(shapeText(shape)) of \(elementSize)-byte elements, "
                                       + "more than the file's \(file.byteCount) bytes can hold"))
        }
        return count
    }
}
