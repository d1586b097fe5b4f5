import Foundation

/// Writes Foundation JSON objects (as `JSONSerialization` returns them) the way Python's
/// `json.dumps` does, so a config Keras wrote comes back looking like Keras's own:
/// - numbers keep their kind and value: numbers read by `JSONReader` are written as they were
///   read; new floats in Swift's shortest round-trip form (Foundation's writer turns `2.0` into
///   `2`, so Keras would get an int where it had a float); integers and booleans as such;
/// - separators `", "` and `": "`, non-ASCII escaped as `\uXXXX` (the text is pure ASCII, as the
///   `model_config` attribute's ASCII string type requires);
/// - keys in a fixed order (Keras's usual ones first, then alphabetical), so output is deterministic.
enum JSONText {
    /// The text is built as bytes: appending one `String` per character (the old way) made writing
    /// EfficientNetB0's 200 KB config take most of a second.
    static func string(_ value: Any) throws -> String {
        var out: [UInt8] = []
        out.reserveCapacity(1 << 16)
        try write(value, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Keys Keras writes first, in this order; all others follow alphabetically.
    private static let leadingKeys = ["module", "class_name", "config", "registered_name", "name", "trainable", "dtype",
                                      "layers", "input_layers", "output_layers", "inbound_nodes",
                                      "keras_version", "backend"]

    private static func keyOrder(_ a: String, _ b: String) -> Bool {
        let ia = leadingKeys.firstIndex(of: a) ?? Int.max, ib = leadingKeys.firstIndex(of: b) ?? Int.max
        return ia != ib ? ia < ib : a < b
    }

    /// Text already written by `string`, emitted as it is (one sub-object shared by two documents).
    struct Written {
        var text: String
    }

    // The most frequent kinds are tried first: each failed cast of an `Any` costs a runtime call.
    // Lists and objects go before NSNumber: casting a Swift dictionary or array to NSNumber
    // first bridges the whole container (recursively) to Foundation's classes, which made
    // writing EfficientNetB0's config most of the time of writing the trained student.
    private static func write(_ value: Any, into out: inout [UInt8]) throws {
        switch value {
        case let s as String:
            writeString(s, into: &out)
        case let d as JSONDecimal:
            out += d.text.utf8            // exactly as it was read
        case let w as Written:
            out += w.text.utf8
        case let list as [Any]:
            out.append(UInt8(ascii: "["))
            for (i, item) in list.enumerated() {
                if i > 0 { out += ", ".utf8 }
                try write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let dict as [String: Any]:
            out.append(UInt8(ascii: "{"))
            for (i, key) in dict.keys.sorted(by: keyOrder).enumerated() {
                if i > 0 { out += ", ".utf8 }
                writeString(key, into: &out)
                out += ": ".utf8
                try write(dict[key]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case let n as NSNumber:
            try writeNumber(n, into: &out)
        case is NSNull:
            out += "null".utf8
        default:
            throw GraphError("cannot write a JSON value of type \(type(of: value))")
        }
    }

    private static func writeNumber(_ n: NSNumber, into out: inout [UInt8]) throws {
        if isJSONBool(n) {
            out += (n.boolValue ? "true" : "false").utf8
            return
        }
        switch String(cString: n.objCType) {
        case "f", "d":
            let d = n.doubleValue
            guard d.isFinite else { throw GraphError("cannot write the non-finite number \(d) in a Keras config") }
            out += d.description.utf8     // shortest form that parses back to the same double
        default:
            out += n.stringValue.utf8     // integers, exactly
        }
    }

    private static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\"".utf8
            case 0x5C: out += "\\\\".utf8
            case 0x0A: out += "\\n".utf8
            case 0x0D: out += "\\r".utf8
            case 0x09: out += "\\t".utf8
            case 0x20..<0x7F: out.append(UInt8(unit))
            default:                       // control and non-ASCII (UTF-16, as Python)
                let hex = Array("0123456789abcdef".utf8)
                out += "\\u".utf8
                for shift in stride(from: 12, through: 0, by: -4) { out.append(hex[Int(unit >> UInt16(shift)) & 15]) }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
