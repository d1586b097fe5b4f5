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

/// A layer entry's `inbound_nodes`: one element per call, each the list of input tensors.
/// Keras 2: `[[[name, node, tensor, kwargs], ...], ...]`. Keras 3: `[{"args": [...], "kwargs": {...}}]`
/// with tensors as `{"class_name": "__keras_tensor__", "config": {"keras_history": [name, node, tensor]}}`.
func inboundCalls(_ value: Any?, layer: String) throws -> [[TensorRef]] {
    guard let value, !(value is NSNull) else { return [] }
    guard let calls = value as? [Any] else { throw GraphError("layer '\(layer)': inbound_nodes is not a list") }
    return try calls.map { call in
        if let dict = call as? [String: Any] {
            var refs: [TensorRef] = []
            collectKerasTensors(dict["args"] ?? [], into: &refs)
            return refs
        }
        guard let inputs = call as? [Any] else { throw GraphError("layer '\(layer)': an inbound node is not a list") }
        return try inputs.map { input in
            guard let ref = triple(input) else { throw GraphError("layer '\(layer)': inbound tensor \(input) is not [name, node, tensor, kwargs]") }
            return ref
        }
    }
}

private func collectKerasTensors(_ value: Any, into refs: inout [TensorRef]) {
    if let dict = value as? [String: Any] {
        if dict["class_name"] as? String == "__keras_tensor__",
           let config = dict["config"] as? [String: Any], let history = config["keras_history"], let ref = triple(history) {
            refs.append(ref)
        }
        return
    }
    if let list = value as? [Any] { for item in list { collectKerasTensors(item, into: &refs) } }
}
