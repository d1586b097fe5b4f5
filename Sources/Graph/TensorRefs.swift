import Foundation

/// A reference to a tensor in a Functional config: output `tensor` of call `node` of `layer`.
struct TensorRef: Equatable {
    var layer: String
    var node: Int
    var tensor: Int
}

/// `input_layers` / `output_layers`: Keras 2 writes a list of triples; Keras 3 a bare triple for a
/// single tensor, or a (possibly nested) list of triples.
func tensorRefs(_ value: Any?, what: String) throws -> [TensorRef] {
    guard let value else { throw GraphError("\(what): missing") }
    if let ref = triple(value) { return [ref] }
    guard let list = value as? [Any] else { throw GraphError("\(what): not a list of [name, node, tensor]") }
    var refs: [TensorRef] = []
    for item in list {
        if let ref = triple(item) { refs.append(ref) } else { refs += try tensorRefs(item, what: what) }
    }
    return refs
}

private func triple(_ value: Any) -> TensorRef? {
    guard let list = value as? [Any], list.count >= 3, let name = list[0] as? String,
          let node = number(list[1]).flatMap(integral), let tensor = number(list[2]).flatMap(integral) else { return nil }
    return TensorRef(layer: name, node: node, tensor: tensor)
}

/// One argument of a recorded call: a tensor, a list of arguments, or a constant (a number, a
/// string, null, a boolean, a nested list of numbers, a serialised array).
indirect enum CallValue {
    case tensor(TensorRef)
    case list([CallValue])
    case constant(Any)

    /// Every tensor inside, in order.
    var tensors: [TensorRef] {
        switch self {
        case .tensor(let ref): return [ref]
        case .list(let items): return items.flatMap(\.tensors)
        case .constant: return []
        }
    }

    /// The value as plain JSON when it holds no tensor.
    var constantValue: Any? {
        switch self {
        case .tensor: return nil
        case .constant(let value): return value
        case .list(let items):
            var out: [Any] = []
            for item in items {
                guard let value = item.constantValue else { return nil }
                out.append(value)
            }
            return out
        }
    }

    var isNull: Bool { if case .constant(let v) = self { return v is NSNull } else { return false } }

    /// A tensor, or a list of tensors (a merge layer's input): what an ordinary layer's first
    /// argument may be.
    var isTensorInput: Bool {
        switch self {
        case .tensor: return true
        case .list(let items): return items.allSatisfy { if case .tensor = $0 { return true } else { return false } }
        case .constant: return false
        }
    }
}

/// One call of a layer as its inbound node records it: positional arguments and keywords.
/// Keras 2 writes `[[name, node, tensor, kwargs], ...]` (the first argument's tensors, each with
/// the same keywords; tf-keras puts an op's other arguments among the keywords, tensors there as
/// `[name, node, tensor]`); Keras 3 writes `{"args": [...], "kwargs": {...}}` with tensors as
/// `{"class_name": "__keras_tensor__", "config": {"keras_history": [name, node, tensor]}}`.
struct LayerCall {
    let args: [CallValue]
    let kwargs: [String: CallValue]
    /// Every tensor of the call: the positional arguments', then the keywords' in key order.
    /// The builder resolves them to producer nodes in this order.
    let tensors: [TensorRef]

    init(args: [CallValue], kwargs: [String: CallValue]) {
        self.args = args
        self.kwargs = kwargs
        tensors = args.flatMap(\.tensors) + kwargs.keys.sorted().flatMap { kwargs[$0]!.tensors }
    }

    /// Keywords whose value is not null (null is every keyword's default here).
    var setKeywords: [String] { kwargs.filter { !$0.value.isNull }.keys.sorted() }
}

/// A layer entry's `inbound_nodes`: one call per element.
func inboundCalls(_ value: Any?, layer: String) throws -> [LayerCall] {
    guard let value, !(value is NSNull) else { return [] }
    guard let calls = value as? [Any] else { throw GraphError("layer '\(layer)': inbound_nodes is not a list") }
    return try calls.map { call in
        if let dict = call as? [String: Any] {
            let args = dict["args"] as? [Any] ?? []
            let kwargs = dict["kwargs"] as? [String: Any] ?? [:]
            return LayerCall(args: args.map(keras3Value), kwargs: kwargs.mapValues(keras3Value))
        }
        guard var inputs = call as? [Any] else { throw GraphError("layer '\(layer)': an inbound node is not a list") }
        // tf-keras keeps an op layer's first argument as it was: one tensor is the entry itself.
        if inputs.first is String { inputs = [inputs] }
        var refs: [CallValue] = []
        var kwargs: [String: Any]? = nil
        for input in inputs {
            guard let list = input as? [Any], list.count >= 3, list.count <= 4 else {
                throw GraphError("layer '\(layer)': inbound tensor \(briefJSON(input)) is not [name, node, tensor, kwargs]")
            }
            if list[0] as? String == tfKerasConstantMarker, number(list[1]) == -1 {
                // tf-keras's op layers record a constant first argument (`3.0 - x`) in its place.
                refs.append(.constant(list[2]))
            } else if let ref = triple(list) {
                refs.append(.tensor(ref))
            } else {
                throw GraphError("layer '\(layer)': inbound tensor \(briefJSON(input)) is not [name, node, tensor, kwargs]")
            }
            let own = list.count == 4 ? list[3] : [String: Any]()
            guard let ownDict = own as? [String: Any] else {
                throw GraphError("layer '\(layer)': the call arguments \(briefJSON(own)) are not a dictionary")
            }
            if let first = kwargs, briefJSON(first) != briefJSON(ownDict) {
                throw GraphError("layer '\(layer)': its input tensors carry different call arguments")
            }
            kwargs = ownDict
        }
        let args: [CallValue] = refs.count == 1 ? refs : [.list(refs)]
        return LayerCall(args: args, kwargs: (kwargs ?? [:]).mapValues(keras2Value))
    }
}

/// The layer name tf-keras writes for a constant in an op layer's first argument.
let tfKerasConstantMarker = "_CONSTANT_VALUE"

private func keras3Value(_ value: Any) -> CallValue {
    if let dict = value as? [String: Any], dict["class_name"] as? String == "__keras_tensor__" {
        if let config = dict["config"] as? [String: Any], let history = config["keras_history"], let ref = triple(history) {
            return .tensor(ref)
        }
        return .constant(value)
    }
    if let list = value as? [Any] { return .list(list.map(keras3Value)) }
    return .constant(value)
}

/// tf-keras writes a tensor among the keywords as `[name, node, tensor]` (its loader takes any
/// list that starts with a string and two integers for one).
private func keras2Value(_ value: Any) -> CallValue {
    if let list = value as? [Any] {
        if (list.count == 3 || list.count == 4), let ref = triple(list) { return .tensor(ref) }
        return .list(list.map(keras2Value))
    }
    return .constant(value)
}

/// A short JSON rendering of a config value for error messages (at most 80 characters).
func briefJSON(_ value: Any) -> String {
    let text: String
    if let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]),
       let s = String(data: data, encoding: .utf8) {
        text = s
    } else {
        text = "\(value)"
    }
    return text.count > 80 ? String(text.prefix(77)) + "..." : text
}
