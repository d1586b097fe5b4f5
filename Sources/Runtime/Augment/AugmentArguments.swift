// `AugmentConfig` from the arguments a user would give image_data_generator() in R or
// ImageDataGenerator() in Python, e.g. the seed's
//   rotation_range = 40, width_shift_range = 0.2, height_shift_range = 0.2, shear_range = 0.2,
//   zoom_range = 0.5, horizontal_flip = TRUE, fill_mode = "reflect"

extension AugmentConfig {
    public static let argumentNames = [
        "rotation_range", "width_shift_range", "height_shift_range", "shear_range", "zoom_range",
        "channel_shift_range", "horizontal_flip", "vertical_flip", "brightness_range", "fill_mode", "cval",
    ]

    /// Parses `name = value` pairs separated by commas. Values: numbers; TRUE/FALSE (any case);
    /// strings, quoted or not; lists as `[a, b]`, `(a, b)` or R's `c(a, b)`. A shift range written
    /// as an R integer (`2L`) takes Keras's int form (whole pixels from choice(n)); a plain number
    /// is a float, as R passes it (a fraction of the size below 1, pixels from 1 on).
    public static func parse(_ text: String) throws -> AugmentConfig {
        var c = AugmentConfig()
        for item in splitTopLevel(text) where !item.isEmpty {
            guard let eq = item.firstIndex(of: "=") else {
                throw RuntimeError("augmentation: '\(item)' is not name = value")
            }
            let name = item[..<eq].trimmingCharacters(in: .whitespacesAndNewlines)
            let value = item[item.index(after: eq)...].trimmingCharacters(in: .whitespacesAndNewlines)
            let bad = { (want: String) in RuntimeError("augmentation: \(name) = \(value): expected \(want)") }
            func require<T>(_ v: T?, _ want: String) throws -> T {
                guard let v else { throw bad(want) }
                return v
            }
            switch name {
            case "rotation_range": c.rotationRange = try require(number(value), "degrees")
            case "shear_range": c.shearRange = try require(number(value), "degrees")
            case "channel_shift_range": c.channelShiftRange = try require(number(value), "a number")
            case "cval": c.cval = try require(number(value), "a number")
            case "width_shift_range": c.widthShiftRange = try require(shift(value), "a number or a list")
            case "height_shift_range": c.heightShiftRange = try require(shift(value), "a number or a list")
            case "horizontal_flip": c.horizontalFlip = try require(flag(value), "TRUE or FALSE")
            case "vertical_flip": c.verticalFlip = try require(flag(value), "TRUE or FALSE")
            case "zoom_range":
                if let z = try number(value) {
                    c.setZoom(z)
                } else if let pair = try list(value), pair.count == 2 {
                    (c.zoomLower, c.zoomUpper) = (pair[0], pair[1])
                } else {
                    throw bad("a number or [lower, upper]")
                }
            case "brightness_range":
                guard let pair = try list(value), pair.count == 2, pair[0] <= pair[1] else {
                    throw bad("[lower, upper]")
                }
                c.brightnessRange = pair[0]...pair[1]
            case "fill_mode":
                guard let mode = FillMode(rawValue: unquoted(value)) else {
                    throw bad("one of \(FillMode.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                c.fillMode = mode
            default:
                throw RuntimeError("augmentation: unknown argument '\(name)' (known: \(argumentNames.joined(separator: ", ")))")
            }
        }
        return c
    }

    /// Splits on commas outside brackets and quotes.
    static func splitTopLevel(_ text: String) -> [String] {
        var parts: [String] = [], current = "", depth = 0
        var quote: Character? = nil
        for ch in text {
            if let q = quote {
                if ch == q { quote = nil }
            } else if ch == "\"" || ch == "'" {
                quote = ch
            } else if "([".contains(ch) {
                depth += 1
            } else if ")]".contains(ch) {
                depth -= 1
            } else if ch == "," && depth == 0 {
                parts.append(current.trimmingCharacters(in: .whitespacesAndNewlines))
                current = ""
                continue
            }
            current.append(ch)
        }
        parts.append(current.trimmingCharacters(in: .whitespacesAndNewlines))
        return parts
    }

    static func unquoted(_ s: String) -> String {
        var t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        if t.count >= 2, let f = t.first, let l = t.last, f == l, f == "\"" || f == "'" {
            t = String(t.dropFirst().dropLast())
        }
        return t
    }

    static func number(_ s: String) throws -> Double? {
        let t = s.hasSuffix("L") ? String(s.dropLast()) : s
        guard let v = Double(t) else { return nil }
        guard v.isFinite else { throw RuntimeError("augmentation: \(s) is not a finite number") }
        return v
    }

    static func flag(_ s: String) throws -> Bool? {
        switch s.lowercased() {
        case "true", "t", "1": return true
        case "false", "f", "0": return false
        default: return nil
        }
    }

    static func list(_ s: String) throws -> [Double]? {
        var t = s
        if t.hasPrefix("c(") { t.removeFirst() }
        guard let f = t.first, let l = t.last, (f == "[" && l == "]") || (f == "(" && l == ")") else { return nil }
        let inner = t.dropFirst().dropLast()
        var out: [Double] = []
        for part in inner.split(separator: ",") {
            guard let v = try number(part.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
            out.append(v)
        }
        return out
    }

    static func shift(_ s: String) throws -> ShiftRange? {
        if s.hasSuffix("L"), let n = Int(s.dropLast()) { return n == 0 ? ShiftRange.none : .integer(n) }
        if let v = try number(s) { return v == 0 ? ShiftRange.none : .uniform(v) }
        if let values = try list(s) { return .values(values) }
        return nil
    }
}
