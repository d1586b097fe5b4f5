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
    static func string(_ value: Any) throws -> String {
        var out = ""
        try write(value, into: &out)
        return out
    }

    /// Keys Keras writes first, in this order; all others follow alphabetically.
    private static let leadingKeys = ["module", "class_name", "config", "registered_name", "name", "trainable", "dtype",
                                      "layers", "input_layers", "output_layers", "inbound_nodes",
                                      "keras_version", "backend"]

    private static func keyOrder(_ a: String, _ b: String) -> Bool {
        let ia = leadingKeys.firstIndex(of: a) ?? Int.max, ib = leadingKeys.firstIndex(of: b) ?? Int.max
        return ia != ib ? ia < ib : a < b
    }

    private static func write(_ value: Any, into out: inout String) throws {
        switch value {
        case is NSNull:
            out += "null"
        case let s as String:
            writeString(s, into: &out)
        case let d as JSONDecimal:
            out += d.text                 // exactly as it was read
        case let n as NSNumber:
            try writeNumber(n, into: &out)
        case let list as [Any]:
            out += "["
            for (i, item) in list.enumerated() {
                if i > 0 { out += ", " }
                try write(item, into: &out)
            }
            out += "]"
        case let dict as [String: Any]:
            out += "{"
            for (i, key) in dict.keys.sorted(by: keyOrder).enumerated() {
                if i > 0 { out += ", " }
                writeString(key, into: &out)
                out += ": "
                try write(dict[key]!, into: &out)
            }
            out += "}"
        default:
            throw GraphError("cannot write a JSON value of type \(type(of: value))")
        }
    }

    private static func writeNumber(_ n: NSNumber, into out: inout String) throws {
        if isJSONBool(n) {
            out += n.boolValue ? "true" : "false"
            return
        }
        switch String(cString: n.objCType) {
        case "f", "d":
            let d = n.doubleValue
            guard d.isFinite else { throw GraphError("cannot write the non-finite number \(d) in a Keras config") }
            out += d.description          // shortest form that parses back to the same double
        default:
            out += n.stringValue          // integers, exactly
        }
    }

    private static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x20..<0x7F: out += String(UnicodeScalar(UInt8(unit)))
            default: out += String(format: "\\u%04x", unit)   // control and non-ASCII (UTF-16, as Python)
            }
        }
        out += "\""
    }
}
