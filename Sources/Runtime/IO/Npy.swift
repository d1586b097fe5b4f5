import Foundation
import ZIPFoundation

/// A `.npy` that cannot be read or written: which file and why, as one line.
public struct NpyError: Error, CustomStringConvertible, LocalizedError, Equatable {
    public let file: String
    public let reason: String

    public init(file: String, reason: String) {
        self.file = file
        self.reason = reason
    }

    public var description: String { "npy file '\(file)': \(reason)" }
    public var errorDescription: String? { description }
}

/// A float32 array in NumPy's `.npy` format (C order), e.g. a model's input or output batch.
///
/// Reading accepts format versions 1.0, 2.0 and 3.0 and dtype '<f4'; '<f8' is converted to
/// Float. Any other dtype, Fortran order, or a header that does not parse is an `NpyError`.
/// Writing produces exactly what `numpy.save` writes for a float32 C-order array: version 1.0
/// (2.0 only if the header needs it), the header padded with spaces to a 64-byte boundary.
public struct NpyArray: Sendable, Equatable {
    public var shape: [Int]
    public var values: [Float]

    public init(shape: [Int], values: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 } && shape.reduce(1, *) == values.count,
                     "shape \(shape) does not hold \(values.count) values")
        self.shape = shape
        self.values = values
    }

    public static func read(path: String) throws -> NpyArray {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            let exists = FileManager.default.fileExists(atPath: path)
            throw NpyError(file: path, reason: exists ? "unreadable (\((error as NSError).localizedDescription))" : "no such file")
        }
        return try read(data: data, name: path)
    }

    /// Parses `.npy` bytes; `name` appears in errors.
    public static func read(data: Data, name: String = "<memory>") throws -> NpyArray {
        do {
            return try data.withUnsafeBytes { try parse($0) }
        } catch let failure as DecodeFailure {
            throw NpyError(file: name, reason: failure.reason)
        }
    }

    /// Writes atomically: into a temporary file beside `path`, then renamed over it; a failure
    /// leaves neither a temporary file nor a changed `path`.
    public func write(path: String) throws {
        try writeAtomically(encoded(), to: path)
    }

    /// Writes several arrays as one `.npz`, as `numpy.savez` does: a zip archive, stored
    /// uncompressed, of one `NAME.npy` entry per array in the order given (`numpy.load` gives them
    /// back by name). Atomic like `write(path:)`. The names must be distinct and non-empty.
    public static func writeArchive(_ arrays: [(name: String, array: NpyArray)], path: String) throws {
        precondition(Set(arrays.map(\.name)).count == arrays.count && !arrays.contains { $0.name.isEmpty },
                     "the arrays' names are not distinct and non-empty")
        let archive: Archive
        do {
            archive = try Archive(data: Data(), accessMode: .create)
            for (name, array) in arrays {
                let bytes = array.encoded()
                try archive.addEntry(with: name + ".npy", type: .file, uncompressedSize: Int64(bytes.count),
                                     compressionMethod: .none) { position, size in
                    bytes.subdata(in: Int(position)..<Int(position) + size)
                }
            }
        } catch {
            throw NpyError(file: path, reason: "cannot build the zip archive (\(error))")
        }
        guard let bytes = archive.data else { throw NpyError(file: path, reason: "cannot build the zip archive (no data)") }
        try writeAtomically(bytes, to: path)
    }

    /// The arrays of a `.npz` (`numpy.savez` or `savez_compressed`), by entry name without `.npy`,
    /// in the archive's order.
    public static func readArchive(path: String) throws -> [(name: String, array: NpyArray)] {
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            let exists = FileManager.default.fileExists(atPath: path)
            throw NpyError(file: path, reason: exists ? "not a .npz (zip) archive" : "no such file")
        }
        var arrays: [(name: String, array: NpyArray)] = []
        for entry in archive where entry.type == .file {
            guard entry.path.hasSuffix(".npy") else { throw NpyError(file: path, reason: "entry '\(entry.path)' is not a .npy") }
            var data = Data()
            do {
                _ = try archive.extract(entry, skipCRC32: false) { data.append($0) }
            } catch {
                throw NpyError(file: path, reason: "entry '\(entry.path)' cannot be read (\(error))")
            }
            arrays.append((String(entry.path.dropLast(4)), try read(data: data, name: "\(path) ['\(entry.path)']")))
        }
        guard !arrays.isEmpty else { throw NpyError(file: path, reason: "holds no arrays") }
        return arrays
    }

    /// The file's bytes, as `numpy.save` lays them out.
    public func encoded() -> Data {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(Self.pythonTuple(shape)), }"
        // numpy leaves room to grow the first axis in place: 21 digits minus those used.
        if let first = shape.first { header += String(repeating: " ", count: max(0, 21 - String(first).count)) }
        let length = header.utf8.count + 1  // + "\n"
        // Version 1.0 stores the header length in 2 bytes; numpy moves to 2.0 (4 bytes) past that.
        var version: UInt8 = 1
        var padding = 64 - ((10 + length) % 64)
        if length + padding > 65535 {
            version = 2
            padding = 64 - ((12 + length) % 64)
        }
        var out = Data([0x93] + Array("NUMPY".utf8) + [version, 0])
        let headerLength = length + padding
        let lengthBytes = version == 1 ? 2 : 4
        for i in 0..<lengthBytes { out.append(UInt8((headerLength >> (8 * i)) & 0xFF)) }
        out.append(contentsOf: Array(header.utf8) + Array(repeating: UInt8(ascii: " "), count: padding) + [0x0A])
        values.withUnsafeBufferPointer { floats in
            out.reserveCapacity(out.count + floats.count * 4)
            for value in floats {
                let bits = value.bitPattern.littleEndian
                withUnsafeBytes(of: bits) { out.append(contentsOf: $0) }
            }
        }
        return out
    }

    static func pythonTuple(_ shape: [Int]) -> String {
        shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }

    // MARK: reading

    private static func parse(_ bytes: UnsafeRawBufferPointer) throws -> NpyArray {
        guard bytes.count >= 10, bytes.starts(with: [0x93] + Array("NUMPY".utf8)) else {
            throw DecodeFailure("not a .npy file (no \\x93NUMPY magic)")
        }
        let major = bytes[6], minor = bytes[7]
        let headerStart: Int, headerLength: Int
        switch major {
        case 1:
            headerStart = 10
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        case 2, 3:
            guard bytes.count >= 12 else { throw DecodeFailure("truncated header") }
            headerStart = 12
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
        default:
            throw DecodeFailure("unsupported format version \(major).\(minor)")
        }
        guard headerStart + headerLength <= bytes.count else {
            throw DecodeFailure("truncated header (\(headerLength) bytes announced, \(bytes.count - headerStart) present)")
        }
        let text = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        let header = try NpyHeader(parsing: text)
        guard !header.fortranOrder else {
            throw DecodeFailure("Fortran-order array (shape \(pythonTuple(header.shape))) not supported; save it C-contiguous")
        }
        let size: Int
        switch header.descr {
        case "<f4": size = 4
        case "<f8": size = 8
        default: throw DecodeFailure("dtype '\(header.descr)' not supported (expected '<f4', or '<f8' which is converted)")
        }
        var count = 1
        for dimension in header.shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw DecodeFailure("shape \(pythonTuple(header.shape)) is too large") }
            count = product
        }
        let start = headerStart + headerLength
        let available = bytes.count - start
        guard available == count * size else {
            let what = available < count * size ? "truncated" : "has trailing bytes"
            throw DecodeFailure("\(what): shape \(pythonTuple(header.shape)) of '\(header.descr)' needs \(count * size) bytes of data, file has \(available)")
        }
        let data = UnsafeRawBufferPointer(rebasing: bytes[start...])
        let values: [Float]
        if size == 4 {
            values = (0..<count).map { Float(bitPattern: UInt32(littleEndian: data.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        } else {
            values = (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: data.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))) }
        }
        return NpyArray(shape: header.shape, values: values)
    }
}

/// The header: a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, parsed (not evaluated) by a
/// small reader that knows strings, True/False, integers and tuples/lists of them.
private struct NpyHeader {
    var descr = ""
    var fortranOrder = false
    var shape: [Int] = []

    private enum Value {
        case string(String), bool(Bool), int(Int), sequence([Value], isTuple: Bool)
    }

    init(parsing text: String) throws {
        var reader = Reader(text: Array(text.utf8))
        let entries = try reader.dictionary()
        guard Set(entries.keys) == ["descr", "fortran_order", "shape"] else {
            throw DecodeFailure("header keys \(entries.keys.sorted()) are not descr, fortran_order, shape: \(Self.quoted(text))")
        }
        guard case .string(let descr)? = entries["descr"] else {
            throw DecodeFailure("header 'descr' is not a simple dtype string: \(Self.quoted(text))")
        }
        guard case .bool(let fortran)? = entries["fortran_order"] else {
            throw DecodeFailure("header 'fortran_order' is not True or False: \(Self.quoted(text))")
        }
        guard case .sequence(let items, true)? = entries["shape"] else {
            throw DecodeFailure("header 'shape' is not a tuple: \(Self.quoted(text))")
        }
        self.descr = descr
        self.fortranOrder = fortran
        self.shape = try items.map {
            guard case .int(let n) = $0, n >= 0 else { throw DecodeFailure("header 'shape' holds a non-integer: \(Self.quoted(text))") }
            return n
        }
    }

    static func quoted(_ text: String) -> String {
        text.trimmingCharacters(in: .whitespacesAndNewlines).debugDescription
    }

    private struct Reader {
        let text: [UInt8]
        var at = 0

        mutating func dictionary() throws -> [String: Value] {
            try expect("{")
            var entries: [String: Value] = [:]
            while !peek("}") {
                guard case .string(let key) = try value() else { throw failure("a string key") }
                try expect(":")
                entries[key] = try value()
                if !peek("}") { try expect(",") }
            }
            try expect("}")
            skipSpace()
            guard at == text.count else { throw failure("the end of the header") }
            return entries
        }

        private mutating func value() throws -> Value {
            skipSpace()
            guard at < text.count else { throw failure("a value") }
            switch text[at] {
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                let quote = text[at]
                at += 1
                let start = at
                while at < text.count && text[at] != quote { at += 1 }
                guard at < text.count else { throw failure("a closing quote") }
                defer { at += 1 }
                return .string(String(decoding: text[start..<at], as: UTF8.self))
            case UInt8(ascii: "("), UInt8(ascii: "["):
                let isTuple = text[at] == UInt8(ascii: "(")
                let close: Character = isTuple ? ")" : "]"
                at += 1
                var items: [Value] = []
                while !peek(close) {
                    items.append(try value())
                    if !peek(close) { try expect(",") }
                }
                try expect(close)
                return .sequence(items, isTuple: isTuple)
            default:
                let start = at
                while at < text.count, text[at] == UInt8(ascii: "_") || (text[at] >= 0x30 && text[at] <= 0x39)
                    || (text[at] | 0x20 >= 0x61 && text[at] | 0x20 <= 0x7A) || text[at] == UInt8(ascii: "-") { at += 1 }
                let word = String(decoding: text[start..<at], as: UTF8.self)
                switch word {
                case "True": return .bool(true)
                case "False": return .bool(false)
                default:
                    guard let n = Int(word) else { at = start; throw failure("a string, number, True/False or tuple") }
                    return .int(n)
                }
            }
        }

        private mutating func skipSpace() {
            while at < text.count, [0x20, 0x0A, 0x0D, 0x09].contains(text[at]) { at += 1 }
        }

        private mutating func peek(_ c: Character) -> Bool {
            skipSpace()
            return at < text.count && text[at] == c.asciiValue!
        }

        private mutating func expect(_ c: Character) throws {
            guard peek(c) else { throw failure("'\(c)'") }
            at += 1
        }

        private func failure(_ expected: String) -> DecodeFailure {
            let header = String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return DecodeFailure("header does not parse (expected \(expected) at offset \(at)): \(header.debugDescription)")
        }
    }
}
