import Foundation

/// Rewrites a model config of either Keras schema (as `ModelConfigParser` reads it) into the
/// legacy-h5 schema the target Keras loads (reference §3, §4.4; what each loader accepts was
/// checked with fixtures/check_export.py):
/// - entries are `{"class_name", "config"}` plus `name`/`inbound_nodes` inside a Functional; no
///   `module`/`registered_name`/`build_config`, so Keras 3 takes its legacy path, which is the one
///   that also reads Keras 2 forms (tf-keras 2.21 puts `module` on nested-Functional entries,
///   which sends Keras 3 down its strict path and fails on `axis: [3]`);
/// - calls are Keras 2 lists `[[layer, node, tensor, kwargs], ...]` (Keras 3's `args`/`kwargs`
///   dicts are tf-keras-unreadable); a single model input/output is a bare triple (a one-element
///   list makes Keras 3 return a list, which the next layer of a Sequential cannot take);
/// - a Sequential whose first layer carries `batch_input_shape` gets the InputLayer Keras 2
///   would add (Keras 3 turns that key into an `input_shape` that still holds the batch axis);
/// - calls of a nested model are numbered for the target (see `NestedNumbering`).
struct ConfigExporter {
    let graph: ModelGraph
    let weights: WeightStore
    let target: KerasTarget
    private let nodesByKey: [String: GraphNode]
    /// Layer keys of Normalization layers whose statistics moved from weights into the config.
    private(set) var foldedNormalizations: Set<String> = []
    private(set) var notes: [String] = []

    /// Whether nested Normalization statistics move into the config (for Keras 3 loading a
    /// legacy .h5). The Keras 3 formats load them as variables and finalize them, so they stay.
    let foldsNormalizations: Bool

    /// Whether the config goes into Keras 3's own formats (`.keras`, the JSON beside a
    /// `.weights.h5`), which Keras 3 deserializes natively, rather than a legacy .h5.
    let keras3Format: Bool

    init(graph: ModelGraph, weights: WeightStore, target: KerasTarget, keras3Format: Bool = false, weightsOnly: Bool = false) {
        self.graph = graph
        self.weights = weights
        self.target = target
        self.keras3Format = keras3Format
        self.foldsNormalizations = !keras3Format && !weightsOnly
        nodesByKey = Dictionary(graph.nodes.map { ($0.layerKey, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// `root` is `{"class_name", "config", ...}` as in `model_config` or `model.to_json()`.
    mutating func export(root: [String: Any]) throws -> [String: Any] {
        // An operation layer decides which Keras can load the model at all: say so before any
        // other layer's version question.
        if let op = graph.nodes.first(where: { $0.kerasOp != nil }) {
            try checkOperationTarget(tfKeras: op.kerasOp == 2, className: op.className, name: op.name)
        }
        return try exportModel(root, scope: [])
    }

    private mutating func exportModel(_ entry: [String: Any], scope: [String]) throws -> [String: Any] {
        let className = entry["class_name"] as? String ?? "?"
        let name = modelName(entry) ?? (className == "Sequential" ? "sequential" : "model")
        let source = entry["config"]
        var config: [String: Any] = ["name": name]
        if let trainable = (source as? [String: Any])?["trainable"] as? NSNumber, isJSONBool(trainable) {
            // A frozen model freezes all its layers in Keras; if some layer inside was unfrozen
            // since (e.g. by fine-tuning), the model must be written trainable for that to hold.
            let unfrozen = graph.nodes.contains { $0.trainable && $0.scope.starts(with: scope) }
            config["trainable"] = NSNumber(value: trainable.boolValue || unfrozen)
        }
        switch className {
        case "Sequential":
            // Keras 2.0 wrote a Sequential's config as the bare list of its layers.
            let layers = source as? [Any] ?? (source as? [String: Any])?["layers"] as? [Any] ?? []
            config["layers"] = try exportSequentialLayers(layers, model: name, scope: scope)
            if let shape = (source as? [String: Any])?["build_input_shape"], !(shape is NSNull) {
                config["build_input_shape"] = shape
            }
        case "Functional", "Model":
            guard let c = source as? [String: Any] else {
                throw GraphError("model '\(name)' (\(className)): config is not an object")
            }
            try exportFunctional(c, model: name, scope: scope, into: &config)
        default:
            throw GraphError("model '\(name)': unsupported model class '\(className)'")
        }
        return ["class_name": className, "config": config]
    }

    private mutating func exportSequentialLayers(_ layers: [Any], model: String, scope: [String]) throws -> [Any] {
        var out: [Any] = []
        for (index, item) in layers.enumerated() {
            guard let entry = item as? [String: Any], let className = entry["class_name"] as? String else {
                throw GraphError("Sequential model '\(model)': layer #\(index) has no class_name")
            }
            if index == 0, className != "InputLayer", !modelClassNames.contains(className),
               let input = syntheticInputLayer(entry) {
                out.append(input)
            }
            out.append(try exportEntry(entry, className: className, scope: scope))
        }
        return out
    }

    /// The InputLayer Keras 2's `Sequential.add` creates for a first layer with
    /// `batch_input_shape` (named `<layer>_input`, as GraphBuilder names it too).
    private func syntheticInputLayer(_ entry: [String: Any]) -> [String: Any]? {
        guard let config = entry["config"] as? [String: Any], let shape = config["batch_input_shape"] as? [Any],
              let name = config["name"] as? String else { return nil }
        return ["class_name": "InputLayer",
                "config": ["batch_input_shape": shape, "dtype": dtypeName(config["dtype"]) ?? "float32",
                           "sparse": NSNumber(value: false), "ragged": NSNumber(value: false),
                           "name": name + "_input"] as [String: Any]]
    }

    private mutating func exportFunctional(_ c: [String: Any], model: String, scope: [String],
                                           into config: inout [String: Any]) throws {
        guard let layers = c["layers"] as? [Any] else {
            throw GraphError("model '\(model)' (Functional): config has no layers")
        }
        var exported: [[String: Any]] = []
        var sources: [(name: String, entry: [String: Any])] = []
        var numbering = NestedNumbering(model: model, target: target, sourceMajor: graph.kerasMajor)
        for (index, item) in layers.enumerated() {
            guard let entry = item as? [String: Any], let className = entry["class_name"] as? String else {
                throw GraphError("model '\(model)': layer #\(index) has no class_name")
            }
            let layerConfig = entry["config"] as? [String: Any] ?? [:]
            guard let name = entry["name"] as? String ?? layerConfig["name"] as? String else {
                throw GraphError("model '\(model)': layer #\(index) (\(className)) has no name")
            }
            let out = isOpLayer(entry, className: className)
                ? try exportOpEntry(entry, className: className, name: name)
                : try exportEntry(entry, className: className, scope: scope)
            if modelClassNames.contains(className) { numbering.addNestedModel(name, source: entry, exported: out) }
            exported.append(out)
            sources.append((name, entry))
        }
        // Calls can only be numbered once every nested model of this Functional is known.
        for i in exported.indices {
            exported[i]["name"] = sources[i].name
            let entry = sources[i].entry
            exported[i]["inbound_nodes"] = isOpLayer(entry, className: entry["class_name"] as? String ?? "")
                ? try exportOpCalls(entry, layer: sources[i].name, numbering: numbering)
                : try exportCalls(entry["inbound_nodes"], layer: sources[i].name, numbering: numbering)
        }
        config["layers"] = exported
        let inputs = try tensorRefs(c["input_layers"], what: "input_layers of model '\(model)'")
        let outputs = try tensorRefs(c["output_layers"], what: "output_layers of model '\(model)'")
        config["input_layers"] = try refList(inputs.map { try numbering.exported($0, use: .modelIO, by: "its inputs") })
        config["output_layers"] = try refList(outputs.map { try numbering.exported($0, use: .modelIO, by: "its outputs") })
    }

    private mutating func exportEntry(_ entry: [String: Any], className: String, scope: [String]) throws -> [String: Any] {
        let source = entry["config"] as? [String: Any] ?? [:]
        let name = entry["name"] as? String ?? source["name"] as? String ?? "?"
        if modelClassNames.contains(className) { return try exportModel(entry, scope: scope + [name]) }
        let key = (scope + [name]).joined(separator: "/")
        let layer = LayerConfigExporter(className: className, name: name, node: nodesByKey[key], target: target,
                                        sourceMajor: graph.kerasMajor, nested: !scope.isEmpty, weights: weights,
                                        foldsNormalization: foldsNormalizations)
        let (config, folded) = try layer.export(source)
        if folded {
            foldedNormalizations.insert(key)
            notes.append("Normalization '\(key)': its mean and variance are written into its config instead of as "
                         + "weights, because Keras 3 does not finalize a Normalization inside a nested model after "
                         + "loading .h5 weights (it would normalize with mean 0, variance 1)")
        }
        var out: [String: Any] = ["class_name": layer.exportedClassName, "config": config]
        if let module = layer.nativeModule(config) { out["module"] = module; out["registered_name"] = NSNull() }
        return out
    }

    /// `inbound_nodes` as Keras 2 lists; Keras 3's `{"args", "kwargs"}` calls are converted.
    private func exportCalls(_ value: Any?, layer: String, numbering: NestedNumbering) throws -> [Any] {
        try inboundCalls(value, layer: layer).map { call -> [Any] in
            let kwargs = try callKwargs(call, layer: layer)
            return try call.args.flatMap { arg -> [TensorRef] in
                // Input tensors only: one tensor, or one list of tensors (merge layers).
                guard arg.isTensorInput else {
                    throw GraphError("layer '\(layer)': a call argument is not an input tensor, which this writer does not convert")
                }
                return arg.tensors
            }.map { ref -> [Any] in
                let out = try numbering.exported(ref, use: .call, by: "layer '\(layer)'")
                return [out.layer, NSNumber(value: out.node), NSNumber(value: out.tensor), kwargs]
            }
        }
    }

    /// Call keyword arguments, minus null ones (`{"mask": null}` from Keras 3 is the default, and
    /// tf-keras layers without masking do not take `mask`).
    private func callKwargs(_ call: LayerCall, layer: String) throws -> [String: Any] {
        var out: [String: Any] = [:]
        for key in call.setKeywords {
            // Keras 3 passes the model's own training flag over a recorded one; written for
            // tf-keras, where a recorded flag wins, it would fix the layer's mode.
            if key == "training", graph.kerasMajor >= 3 { continue }
            guard let value = call.kwargs[key]!.constantValue else {
                throw GraphError("layer '\(layer)': a tensor passed as keyword argument '\(key)' is not supported")
            }
            out[key] = value
        }
        return out
    }
}

// MARK: Operation layers

/// Where Keras 3 (3.15) defines each operation class that a config may record as a layer.
private let keras3OperationModules: [String: String] = {
    var modules: [String: String] = [:]
    for name in ["Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Negative", "Exp", "Tanh",
                 "Mean", "Max", "Sum", "Concatenate", "Reshape", "Transpose", "Sqrt", "Square", "Log", "GetItem"] {
        modules[name] = "keras.src.ops.numpy"
    }
    for name in ["Relu", "Relu6", "Sigmoid", "Silu", "Softplus", "Softsign", "Elu", "Selu", "HardSigmoid", "HardSilu",
                 "Gelu", "Softmax", "LogSoftmax"] {
        modules[name] = "keras.src.ops.nn"
    }
    modules["Rsqrt"] = "keras.src.ops.math"
    modules["Resize"] = "keras.src.ops.image"
    return modules
}()

extension ConfigExporter {
    /// An operation layer as the Keras that wrote it reads it back: tf-keras's TFOpLambda in a
    /// legacy config, a Keras 3 op with its `module` (without it Keras 3 would build the merge
    /// layer of the same class name and refuse the constant operand) in Keras 3's own formats.
    fileprivate func exportOpEntry(_ entry: [String: Any], className: String, name: String) throws -> [String: Any] {
        let source = entry["config"] as? [String: Any] ?? [:]
        let tfKeras = isTFOpLayer(className)
        try checkOperationTarget(tfKeras: tfKeras, className: className, name: name)
        if tfKeras {
            var config = source
            if let dtype = dtypeName(source["dtype"]) { config["dtype"] = dtype }
            return ["class_name": className, "config": config]
        }
        var out: [String: Any] = ["class_name": className, "config": source]
        for key in ["module", "registered_name"] { out[key] = entry[key] }
        if out["module"] == nil {   // read from Keras 3's legacy .h5, whose config drops it
            guard let module = keras3OperationModules[className] else {
                throw GraphError("layer '\(name)': Keras 3 operation '\(className)' has no known module to write")
            }
            out["module"] = module
            out["registered_name"] = className
        }
        return out
    }

    /// tf-keras's operation layers load in tf-keras only; Keras 3's only from Keras 3's own formats.
    fileprivate func checkOperationTarget(tfKeras: Bool, className: String, name: String) throws {
        if tfKeras, target != .keras2 {
            throw GraphError("layer '\(name)' (\(className)): tf-keras's operation layers load in tf-keras only (from a .h5 file)",
                             remedy: .kerasVersion(.keras2))
        }
        if !tfKeras, target != .keras3 || !keras3Format {
            throw GraphError("layer '\(name)' (\(className)): Keras 3's operation layers load only from Keras 3's own "
                             + "formats (Keras 3 cannot load them back from a legacy .h5); write a .keras name")
        }
    }

    /// An operation layer's calls in the form its Keras writes them, tensors renumbered for the target.
    fileprivate func exportOpCalls(_ entry: [String: Any], layer: String, numbering: NestedNumbering) throws -> [Any] {
        let calls = try inboundCalls(entry["inbound_nodes"], layer: layer)
        func ref(_ r: TensorRef) throws -> TensorRef { try numbering.exported(r, use: .call, by: "layer '\(layer)'") }
        if isTFOpLayer(entry["class_name"] as? String ?? "") {
            return try calls.map { call -> Any in
                func keyword(_ value: CallValue) throws -> Any {
                    switch value {
                    case .tensor(let r):
                        let out = try ref(r)
                        return [out.layer, NSNumber(value: out.node), NSNumber(value: out.tensor)] as [Any]
                    case .list(let items): return try items.map(keyword)
                    case .constant(let v): return v
                    }
                }
                let kwargs = try call.kwargs.mapValues(keyword)
                func first(_ value: CallValue) throws -> Any {
                    switch value {
                    case .tensor(let r):
                        let out = try ref(r)
                        return [out.layer, NSNumber(value: out.node), NSNumber(value: out.tensor), kwargs] as [Any]
                    case .list(let items): return try items.map(first)
                    case .constant(let v): return [tfKerasConstantMarker, NSNumber(value: -1), v, kwargs] as [Any]
                    }
                }
                guard call.args.count == 1 else { throw GraphError("layer '\(layer)': a call with \(call.args.count) positional arguments") }
                return try first(call.args[0])
            }
        }
        // Keras 3: the source's own {"args", "kwargs"} with each tensor's history renumbered.
        guard let sources = entry["inbound_nodes"] as? [Any] else { return [] }
        func renumber(_ value: Any) throws -> Any {
            if let dict = value as? [String: Any] {
                if dict["class_name"] as? String == "__keras_tensor__", var config = dict["config"] as? [String: Any],
                   let history = config["keras_history"], let r = try tensorRefs(history, what: "layer '\(layer)'").first {
                    let out = try ref(r)
                    config["keras_history"] = [out.layer, NSNumber(value: out.node), NSNumber(value: out.tensor)] as [Any]
                    var copy = dict
                    copy["config"] = config
                    return copy
                }
                return try dict.mapValues(renumber)
            }
            if let list = value as? [Any] { return try list.map(renumber) }
            return value
        }
        return try sources.map(renumber)
    }
}

/// A single input/output as a bare triple, several as a list of triples.
private func refList(_ refs: [TensorRef]) throws -> Any {
    let triples: [Any] = refs.map { [$0.layer, NSNumber(value: $0.node), NSNumber(value: $0.tensor)] as [Any] }
    return triples.count == 1 ? triples[0] : triples
}

/// `dtype` as a plain name: Keras 3 writes a DTypePolicy object, tf-keras reads names.
func dtypeName(_ value: Any?) -> String? {
    if let name = value as? String { return name }
    if let dict = value as? [String: Any], let config = dict["config"] as? [String: Any] {
        return config["name"] as? String
    }
    return nil
}
