/// How a Functional config numbers the calls of a model nested in it — the one thing for which
/// tf-keras and Keras 3 want different configs:
/// - tf-keras (`tf_keras/src/engine/functional.py`, `reconstruct_from_config`): a nested model
///   for which `_should_skip_first_node` holds (a Functional; a Sequential starting with an
///   InputLayer) has its first call numbered 1, in `inbound_nodes` and in `input_layers` /
///   `output_layers` alike. A reference to node 0 is never resolved and the loader loops forever.
/// - Keras 3 (`keras/src/models/functional.py`): `inbound_nodes` index `_inbound_nodes`
///   directly, so the first call is 0 (node 1 of a once-called model: "disconnected nodes");
///   but `input_layers` / `output_layers` number a nested Functional's calls from 1 (`get_config`
///   counts a built-in node, `get_tensor` subtracts it), a nested Sequential's from 0.
/// So a Functional whose layers call a nested model cannot be written for both; its outputs may
/// (both number a nested Functional's calls from 1 there).
struct NestedNumbering {
    enum Use { case call, modelIO }

    private struct Nested {
        var sourceOffset: Int     // what the source config adds to the call ordinal (Keras 2)
        var keras2Offset: Int
        var isFunctional: Bool    // as exported (Functional or Model, not Sequential)
        var sourceIsFunctional: Bool
    }

    let model: String
    let target: KerasTarget
    let sourceMajor: Int
    private var nested: [String: Nested] = [:]

    init(model: String, target: KerasTarget, sourceMajor: Int) {
        self.model = model
        self.target = target
        self.sourceMajor = sourceMajor
    }

    /// `source` is the entry as read (numbered as GraphBuilder reads it), `exported` as written.
    mutating func addNestedModel(_ name: String, source: [String: Any], exported: [String: Any]) {
        let isFunctional = exported["class_name"] as? String != "Sequential"
        nested[name] = Nested(
            sourceOffset: sourceMajor < 3 && startsWithInputLayer(source) ? 1 : 0,
            // A Functional's first tracked layer is always an InputLayer (the deepest layer).
            keras2Offset: isFunctional || startsWithInputLayer(exported) ? 1 : 0,
            isFunctional: isFunctional,
            sourceIsFunctional: source["class_name"] as? String != "Sequential")
    }

    /// The reference renumbered for the target; references to other layers are unchanged.
    func exported(_ ref: TensorRef, use: Use, by user: String) throws -> TensorRef {
        guard let info = nested[ref.layer] else { return ref }
        // As GraphBuilder reads the source: Keras 2 per `sourceOffset`, Keras 3 by use.
        let call = ref.node - (sourceMajor < 3 ? info.sourceOffset : (use == .modelIO && info.sourceIsFunctional ? 1 : 0))
        guard call >= 0 else {
            throw GraphError("model '\(model)': \(user) refers to node \(ref.node) of nested model '\(ref.layer)', which is not one of its calls")
        }
        let keras2 = call + info.keras2Offset
        let keras3 = call + (use == .modelIO && info.isFunctional ? 1 : 0)
        var out = ref
        switch target {
        case .keras2: out.node = keras2
        case .keras3: out.node = keras3
        case .both:
            guard keras2 == keras3 else {
                throw GraphError("cannot write one config that both Keras 2 and Keras 3 load: in model '\(model)', "
                                 + "\(user) uses a call of the nested model '\(ref.layer)', which tf-keras numbers from 1 "
                                 + "and Keras 3 from 0 (each fails on the other's numbering)", remedy: .kerasVersion(.both))
            }
            out.node = keras2
        }
        return out
    }
}

/// Whether a model entry's layer list starts with an InputLayer (Keras 2's skip-first-node test
/// on a config, as GraphBuilder applies it).
func startsWithInputLayer(_ entry: [String: Any]) -> Bool {
    let config = entry["config"]
    let layers = (config as? [String: Any])?["layers"] as? [Any] ?? config as? [Any] ?? []
    return (layers.first as? [String: Any])?["class_name"] as? String == "InputLayer"
}
