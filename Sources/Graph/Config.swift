import Foundation

/// Every failure of Graph: one line naming the layer (and class, key or weight) at fault.
/// Where the remedy is a choice of the caller's (an architecture file, the Keras version to write
/// for), `remedy` says which, so that a command line can name its own option for it.
public struct GraphError: Error, CustomStringConvertible, Sendable {
    public enum Remedy: Sendable, Equatable {
        /// The model file at this path has no architecture: the caller must give its JSON.
        case architectureFile(path: String)
        /// Only this Keras version can load what is written (`.both`: choose one).
        case kerasVersion(KerasTarget)
    }
    public var message: String
    public var remedy: Remedy?
    public init(_ message: String, remedy: Remedy? = nil) {
        self.message = message
        self.remedy = remedy
    }
    public var description: String {
        switch remedy {
        case nil: return message
        case .architectureFile: return message + "; give its architecture JSON (from model.to_json() or R's model_to_json())"
        case .kerasVersion(.both): return message + "; write it for one Keras version"
        case .kerasVersion(let k): return message + "; write it for Keras \(k.rawValue) only"
        }
    }
}

/// Parses JSON text with Foundation; the error names where the text came from.
func parseJSON(_ text: String, source: String) throws -> Any {
    guard let data = text.data(using: .utf8) else { throw GraphError("\(source): not UTF-8 text") }
    do {
        return try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
    } catch {
        throw GraphError("\(source): not valid JSON (\(shortJSONReason(error)))")
    }
}

private func shortJSONReason(_ error: Error) -> String {
    let ns = error as NSError
    if let detail = ns.userInfo[NSDebugDescriptionErrorKey] as? String { return detail }
    return ns.localizedDescription
}

/// Typed, error-reporting access to one layer's `config` dictionary. Every key a parser asks
/// about is remembered, so that what no parser asked about can be refused (`unreadKeys`).
struct LayerConfig {
    let dict: [String: Any]
    let layerName: String
    let className: String
    private let asked = AskedKeys()

    init(dict: [String: Any], layerName: String, className: String) {
        self.dict = dict
        self.layerName = layerName
        self.className = className
    }

    var context: String { "layer '\(layerName)' of class '\(className)'" }

    func has(_ key: String) -> Bool {
        asked.keys.insert(key)
        if let v = dict[key], !(v is NSNull) { return true }
        return false
    }

    /// The config's keys that no parser asked about.
    var unreadKeys: [String] { dict.keys.filter { !asked.keys.contains($0) }.sorted() }

    func fail(_ what: String) -> GraphError { GraphError("\(context): \(what)") }

    func int(_ key: String, default def: Int? = nil) throws -> Int {
        guard has(key) else {
            if let def { return def }
            throw fail("config has no '\(key)'")
        }
        if let n = number(dict[key]!).flatMap(integral) { return n }
        if let list = dict[key] as? [Any], list.count == 1, let n = number(list[0]).flatMap(integral) { return n }
        throw fail("'\(key)' is not an integer (or is beyond \(configIntegerLimit))")
    }

    func double(_ key: String, default def: Double? = nil) throws -> Double {
        guard has(key) else {
            if let def { return def }
            throw fail("config has no '\(key)'")
        }
        if let n = number(dict[key]!) { return n }
        throw fail("'\(key)' is not a number")
    }

    func optionalDouble(_ key: String) throws -> Double? {
        guard has(key) else { return nil }
        return try double(key)
    }

    func bool(_ key: String, default def: Bool) throws -> Bool {
        guard has(key) else { return def }
        if let n = dict[key] as? NSNumber { return n.boolValue }
        throw fail("'\(key)' is not a boolean")
    }

    func string(_ key: String, default def: String? = nil) throws -> String {
        guard has(key) else {
            if let def { return def }
            throw fail("config has no '\(key)'")
        }
        if let s = dict[key] as? String { return s }
        // Keras 3 serialises some values (e.g. activations) as {"class_name": ..., "config": ...}.
        if let d = dict[key] as? [String: Any], let name = d["config"] as? String ?? d["class_name"] as? String {
            return name
        }
        throw fail("'\(key)' is not a string")
    }

    /// An integer or a list of `count` integers (Keras accepts both for kernel_size, strides, ...).
    func ints(_ key: String, count: Int, default def: [Int]? = nil) throws -> [Int] {
        guard has(key) else {
            if let def { return def }
            throw fail("config has no '\(key)'")
        }
        let value = dict[key]!
        if let n = number(value).flatMap(integral) { return Array(repeating: n, count: count) }
        if let list = value as? [Any] {
            let values = list.compactMap { number($0).flatMap(integral) }
            if values.count == list.count {
                if values.count == count { return values }
                if values.count == 1 { return Array(repeating: values[0], count: count) }
            }
        }
        throw fail("'\(key)' should be an integer or a list of \(count) integers")
    }

    /// A list of integers of any length (null entries become -1).
    func intList(_ key: String) throws -> [Int] {
        asked.keys.insert(key)
        guard let list = dict[key] as? [Any] else { throw fail("'\(key)' is not a list") }
        return try list.map { item in
            if item is NSNull { return -1 }
            guard let n = number(item).flatMap(integral) else { throw fail("'\(key)' has a non-integer entry") }
            return n
        }
    }

    /// A size (filters, units, kernel_size, strides, ...): a positive integer.
    func size(_ key: String, default def: Int? = nil) throws -> Int {
        let n = try int(key, default: def)
        guard n >= 1 else { throw fail("'\(key)' is \(n), expected a positive integer") }
        return n
    }

    /// `ints` whose entries must all be positive (kernel sizes, strides, dilation, pool sizes).
    func sizes(_ key: String, count: Int, default def: [Int]? = nil) throws -> [Int] {
        let values = try ints(key, count: count, default: def)
        guard values.allSatisfy({ $0 >= 1 }) else { throw fail("'\(key)' is \(values), expected positive integers") }
        return values
    }

    /// A number or a list of numbers.
    func doubles(_ key: String) throws -> [Double] {
        guard has(key) else { throw fail("config has no '\(key)'") }
        let value = dict[key]!
        if let n = number(value) { return [n] }
        if let list = value as? [Any] {
            let values = list.compactMap(number)
            if values.count == list.count { return values }
        }
        throw fail("'\(key)' should be a number or a list of numbers")
    }
}

private final class AskedKeys {
    var keys: Set<String> = []
}

/// JSON numbers arrive as NSNumber, and so do booleans; on Linux `1 is Bool` is true, so booleans
/// are told apart by their Objective-C type code ("c").
func isJSONBool(_ value: Any) -> Bool {
    guard let n = value as? NSNumber else { return false }
    return String(cString: n.objCType) == "c"
}

/// The largest integer a config may hold: far beyond any real layer size, and small enough that
/// shape arithmetic on a few such numbers cannot overflow (a fuzzed 1e300 must be an error, not a trap).
let configIntegerLimit = 1 << 31

/// An integral JSON number within +-configIntegerLimit, else nil.
func integral(_ value: Double) -> Int? {
    guard value.isFinite, value == value.rounded(), abs(value) <= Double(configIntegerLimit) else { return nil }
    return Int(value)
}

func number(_ value: Any) -> Double? {
    if isJSONBool(value) { return nil }
    if let n = value as? NSNumber { return n.doubleValue }
    if let d = value as? Double { return d }
    if let i = value as? Int { return Double(i) }
    return nil
}
