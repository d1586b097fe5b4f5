import Foundation

/// A JSON number with a fraction or exponent, kept as the text it was written with.
/// Foundation's JSON parser on Linux does not round correctly (it reads Keras's
/// `0.00392156862745098` as 0.0039215686274509795), so a config read with it and written back
/// would change numbers; keeping the text writes them back exactly as Keras wrote them.
struct JSONDecimal: CustomStringConvertible {
    var text: String
    var value: Double { Double(text) ?? .nan }   // Swift's conversion is correctly rounded
    var description: String { text }
}

/// Parses JSON into the same containers `JSONSerialization` gives (dictionaries, arrays,
/// String, NSNumber for integers and booleans, NSNull), except that non-integer numbers become
/// `JSONDecimal`. Used where a config is rewritten rather than interpreted.
struct JSONReader {
    private let bytes: [UInt8]
    private var i = 0

    static func parse(_ text: String, source: String) throws -> Any {
        var reader = JSONReader(bytes: Array(text.utf8))
        do {
            let value = try reader.value()
            reader.skipSpace()
            guard reader.i == reader.bytes.count else { throw reader.fail("text after the JSON value") }
            return value
        } catch let error as GraphError {
            throw GraphError("\(source): not valid JSON (\(error.message))")
        }
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private func fail(_ what: String) -> GraphError { GraphError("\(what) at byte \(i)") }

    private mutating func skipSpace() {
        while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
    }

    private mutating func expect(_ literal: String) throws {
        let b = Array(literal.utf8)
        guard bytes.count - i >= b.count, Array(bytes[i..<i + b.count]) == b else { throw fail("expected '\(literal)'") }
        i += b.count
    }

    private mutating func value() throws -> Any {
        skipSpace()
        guard i < bytes.count else { throw fail("unexpected end") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return try string()
        case UInt8(ascii: "t"): try expect("true"); return NSNumber(value: true)
        case UInt8(ascii: "f"): try expect("false"); return NSNumber(value: false)
        case UInt8(ascii: "n"): try expect("null"); return NSNull()
        // Python's json writes these for non-finite floats; keep them as text.
        case UInt8(ascii: "N"): try expect("NaN"); return JSONDecimal(text: "NaN")
        case UInt8(ascii: "I"): try expect("Infinity"); return JSONDecimal(text: "Infinity")
        default: return try number()
        }
    }

    private mutating func object() throws -> [String: Any] {
        i += 1
        var out: [String: Any] = [:]
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return out }
        while true {
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a key") }
            let key = try string()
            skipSpace()
            try expect(":")
            out[key] = try value()
            skipSpace()
            guard i < bytes.count else { throw fail("unexpected end in an object") }
            i += 1
            if bytes[i - 1] == UInt8(ascii: "}") { return out }
            guard bytes[i - 1] == UInt8(ascii: ",") else { throw fail("expected ',' or '}'") }
        }
    }

    private mutating func array() throws -> [Any] {
        i += 1
        var out: [Any] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return out }
        while true {
            out.append(try value())
            skipSpace()
            guard i < bytes.count else { throw fail("unexpected end in an array") }
            i += 1
            if bytes[i - 1] == UInt8(ascii: "]") { return out }
            guard bytes[i - 1] == UInt8(ascii: ",") else { throw fail("expected ',' or ']'") }
        }
    }

    private mutating func string() throws -> String {
        i += 1
        var units: [UInt16] = []
        while i < bytes.count {
            let b = bytes[i]
            i += 1
            switch b {
            case UInt8(ascii: "\""):
                return String(decoding: units, as: UTF16.self)
            case UInt8(ascii: "\\"):
                guard i < bytes.count else { break }
                let e = bytes[i]
                i += 1
                let simple: [UInt8: UInt16] = [0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 0x08, 0x66: 0x0C,
                                               0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09]
                if let unit = simple[e] {
                    units.append(unit)
                } else if e == UInt8(ascii: "u"), bytes.count - i >= 4,
                          let unit = UInt16(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16) {
                    units.append(unit)
                    i += 4
                } else {
                    throw fail("bad escape in a string")
                }
            default:
                // Copy a whole UTF-8 sequence as UTF-16.
                var end = i
                while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
                units += Array(String(decoding: bytes[(i - 1)..<end], as: UTF8.self).utf16)
                i = end
            }
        }
        throw fail("unterminated string")
    }

    private mutating func number() throws -> Any {
        let start = i
        while i < bytes.count, "+-0123456789.eE".utf8.contains(bytes[i]) { i += 1 }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        guard !text.isEmpty, Double(text) != nil else { throw fail("unexpected character") }
        if !text.contains(where: { ".eE".contains($0) }), let n = Int64(text), text != "-0" {
            return NSNumber(value: n)
        }
        return JSONDecimal(text: text)
    }
}
