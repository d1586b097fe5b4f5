import Foundation

/// Builds a `ModelGraph` from a Keras model config: `{"class_name": ..., "config": ...}` as in a
/// full-model file's `model_config` or `model.to_json()`. Handles the Keras 2 schemas (including
/// the early bare-list Sequential) and the Keras 3 schema, with models nested at any depth.
public enum ModelConfigParser {
    public static func parse(json: String, source: String, kerasMajor: Int? = nil) throws -> ModelGraph {
        let root = try parseJSON(json, source: source)
        guard let dict = root as? [String: Any], let className = dict["class_name"] as? String else {
            throw GraphError("\(source): not a Keras model config (no class_name)")
        }
        let major = kerasMajor ?? detectKerasMajor(dict)
        var builder = GraphBuilder(kerasMajor: major)
        let model = try builder.instantiateModel(dict, scope: [], parentTrainable: true, inputs: nil, isRoot: true)
        let name = modelName(dict) ?? "model"
        return ModelGraph(name: name, className: className, kerasMajor: major, nodes: builder.nodes,
                          inputs: model.inputs, outputs: model.outputs, topLevel: builder.topLevel)
    }

    /// Keras 3 configs carry `module` keys, dict-valued dtype policies and dict-style inbound nodes;
    /// a `keras_version` key (from to_json) settles it.
    static func detectKerasMajor(_ dict: [String: Any]) -> Int {
        if let v = dict["keras_version"] as? String, let major = Int(v.prefix { $0.isNumber }) { return major }
        let text = (try? JSONSerialization.data(withJSONObject: dict)).flatMap { String(data: $0, encoding: .utf8) } ?? ""
        return text.contains("\"__keras_tensor__\"") || text.contains("\"DTypePolicy\"") ? 3 : 2
    }
}

func modelName(_ dict: [String: Any]) -> String? {
    if let config = dict["config"] as? [String: Any], let name = config["name"] as? String { return name }
    return dict["name"] as? String
}

let modelClassNames: Set<String> = ["Sequential", "Functional", "Model"]

struct InstantiatedModel {
    var inputs: [Int]
    var outputs: [Int]
}

struct GraphBuilder {
    let kerasMajor: Int
    var nodes: [GraphNode] = []
    var topLevel: [TopLevelLayer] = []

    init(kerasMajor: Int) { self.kerasMajor = kerasMajor }

    /// Instantiates a model config. `inputs` nil creates input nodes (the root model); otherwise
    /// the model is being called on those producer nodes and its InputLayers are bound to them.
    mutating func instantiateModel(_ dict: [String: Any], scope: [String], parentTrainable: Bool,
                                   inputs: [Int]?, isRoot: Bool) throws -> InstantiatedModel {
        let className = dict["class_name"] as? String ?? "?"
        let name = modelName(dict) ?? "?"
        let config = dict["config"]
        let trainable = parentTrainable && ((config as? [String: Any])?["trainable"] as? Bool ?? true)
        switch className {
        case "Sequential":
            let layers: [Any]
            if let list = config as? [Any] {
                layers = list                       // Keras 2.0-era: config is the bare layer list
            } else if let c = config as? [String: Any], let list = c["layers"] as? [Any] {
                layers = list
            } else {
                throw GraphError("model '\(name)' (Sequential): config has no layers")
            }
            return try instantiateSequential(name: name, layers: layers, config: config as? [String: Any],
                                             scope: scope, trainable: trainable, inputs: inputs, isRoot: isRoot)
        case "Functional", "Model":
            guard let c = config as? [String: Any] else {
                throw GraphError("model '\(name)' (\(className)): config is not an object")
            }
            return try instantiateFunctional(name: name, config: c, scope: scope, trainable: trainable,
                                             inputs: inputs, isRoot: isRoot)
        default:
            throw GraphError("model '\(name)': unsupported model class '\(className)'")
        }
    }

    // MARK: Sequential

    mutating func instantiateSequential(name: String, layers: [Any], config: [String: Any]?, scope: [String],
                                        trainable: Bool, inputs: [Int]?, isRoot: Bool) throws -> InstantiatedModel {
        var current: Int? = inputs.map { ins in
            precondition(!ins.isEmpty)
            return ins[0]
        }
        if let ins = inputs, ins.count != 1 {
            throw GraphError("Sequential model '\(name)' called on \(ins.count) inputs")
        }
        var modelInputs = inputs ?? []
        for (index, item) in layers.enumerated() {
            guard let entry = item as? [String: Any], let cls = entry["class_name"] as? String else {
                throw GraphError("Sequential model '\(name)': layer #\(index) has no class_name")
            }
            let layerConfig = entry["config"] as? [String: Any] ?? [:]
            let layerName = (layerConfig["name"] as? String) ?? (entry["name"] as? String) ?? "\(cls.lowercased())_\(index)"
            if cls == "InputLayer" {
                if current == nil {
                    let shape = try inputShape(layerConfig, layer: layerName) ?? []
                    let id = addNode(name: layerName, className: cls, scope: scope, op: .input, inputs: [],
                                     shape: shape, weights: [], trainable: false)
                    if isRoot { recordTopLevel(name: layerName, className: cls, from: id, outputs: [id]) }
                    modelInputs = [id]
                    current = id
                }
                continue
            }
            if current == nil, modelClassNames.contains(cls) {
                // A nested model first in a Sequential without an InputLayer brings its own inputs.
                let start = nodes.count
                let model = try instantiateModel(entry, scope: scope + [layerName], parentTrainable: trainable,
                                                 inputs: nil, isRoot: false)
                guard model.outputs.count == 1 else {
                    throw GraphError("Sequential model '\(name)': layer '\(layerName)' has \(model.outputs.count) outputs")
                }
                if isRoot { recordTopLevel(name: layerName, className: cls, from: start, outputs: model.outputs) }
                modelInputs = model.inputs
                current = model.outputs[0]
                continue
            }
            if current == nil {
                // Older files: the first layer carries batch_input_shape; else build_input_shape.
                var shape = try inputShape(layerConfig, layer: layerName)
                if shape == nil, let build = config?["build_input_shape"] as? [Any] {
                    shape = Array(try shapeList(build, layer: name).dropFirst())
                }
                guard let s = shape else {
                    throw GraphError("Sequential model '\(name)': no input shape (no InputLayer, batch_input_shape or build_input_shape)")
                }
                let inputName = "\(layerName)_input"
                let id = addNode(name: inputName, className: "InputLayer", scope: scope, op: .input, inputs: [],
                                 shape: s, weights: [], trainable: false)
                modelInputs = [id]
                current = id
            }
            let start = nodes.count
            let outs = try applyLayer(entry, className: cls, name: layerName, scope: scope, trainable: trainable,
                                      inputs: [current!])
            guard outs.count == 1 else {
                throw GraphError("Sequential model '\(name)': layer '\(layerName)' has \(outs.count) outputs")
            }
            if isRoot { recordTopLevel(name: layerName, className: cls, from: start, outputs: outs) }
            current = outs[0]
        }
        guard let out = current else { throw GraphError("Sequential model '\(name)' has no layers") }
        return InstantiatedModel(inputs: modelInputs, outputs: [out])
    }

    // MARK: Functional

    mutating func instantiateFunctional(name: String, config: [String: Any], scope: [String], trainable: Bool,
                                        inputs: [Int]?, isRoot: Bool) throws -> InstantiatedModel {
        guard let layers = config["layers"] as? [Any] else {
            throw GraphError("model '\(name)' (Functional): config has no layers")
        }
        let inputRefs = try tensorRefs(config["input_layers"], what: "input_layers of model '\(name)'")
        let outputRefs = try tensorRefs(config["output_layers"], what: "output_layers of model '\(name)'")
        if let ins = inputs, ins.count != inputRefs.count {
            throw GraphError("model '\(name)' has \(inputRefs.count) inputs but is called on \(ins.count)")
        }
        // (layer name, node index) -> producer node ids (one per output tensor)
        var values: [String: [Int]] = [:]
        // A nested model built on its own Input already has node 0 (its creation); Keras numbers
        // the calls made in this model from 1 for it.
        var nodeOffset: [String: Int] = [:]
        func key(_ layer: String, _ node: Int) -> String { "\(layer)#\(node - (nodeOffset[layer] ?? 0))" }

        var entries: [(name: String, cls: String, dict: [String: Any], calls: [LayerCall])] = []
        for (index, item) in layers.enumerated() {
            guard let entry = item as? [String: Any], let cls = entry["class_name"] as? String else {
                throw GraphError("model '\(name)': layer #\(index) has no class_name")
            }
            let layerConfig = entry["config"] as? [String: Any] ?? [:]
            guard let layerName = (entry["name"] as? String) ?? (layerConfig["name"] as? String) else {
                throw GraphError("model '\(name)': layer #\(index) (\(cls)) has no name")
            }
            let calls = try inboundCalls(entry["inbound_nodes"], layer: layerName)
            entries.append((layerName, cls, entry, calls))
            if skipsFirstNode(entry, className: cls) { nodeOffset[layerName] = 1 }
        }
        var modelInputs: [Int] = []
        for (i, ref) in inputRefs.enumerated() {
            guard let entry = entries.first(where: { $0.name == ref.layer }) else {
                throw GraphError("model '\(name)': input layer '\(ref.layer)' is not among its layers")
            }
            let id: Int
            if let ins = inputs {
                id = ins[i]
            } else {
                let layerConfig = entry.dict["config"] as? [String: Any] ?? [:]
                let shape = try inputShape(layerConfig, layer: ref.layer) ?? []
                id = addNode(name: ref.layer, className: "InputLayer", scope: scope, op: .input, inputs: [],
                             shape: shape, weights: [], trainable: false)
                if isRoot { recordTopLevel(name: ref.layer, className: "InputLayer", from: id, outputs: [id]) }
            }
            values[key(ref.layer, 0)] = [id]
            modelInputs.append(id)
        }
        // Create calls as their inputs become available (the config's order is not always topological).
        var done = Array(repeating: 0, count: entries.count)
        var progress = true
        while progress {
            progress = false
            for (i, e) in entries.enumerated() where done[i] < e.calls.count {
                let call = e.calls[done[i]]
                var ins: [Int] = []
                var ready = true
                for ref in call.tensors {
                    guard let produced = values[key(ref.layer, ref.node)] else { ready = false; break }
                    guard produced.indices.contains(ref.tensor) else {
                        throw GraphError("model '\(name)': layer '\(e.name)' uses output \(ref.tensor) of '\(ref.layer)', which has \(produced.count)")
                    }
                    ins.append(produced[ref.tensor])
                }
                guard ready else { continue }
                let start = nodes.count
                let outs = try applyLayer(e.dict, className: e.cls, name: e.name, scope: scope, trainable: trainable,
                                          inputs: ins, call: call)
                if isRoot { recordTopLevel(name: e.name, className: e.cls, from: start, outputs: outs) }
                values[key(e.name, done[i] + (nodeOffset[e.name] ?? 0))] = outs
                done[i] += 1
                progress = true
            }
        }
        if let (i, e) = entries.enumerated().first(where: { done[$0.offset] < $0.element.calls.count }).map({ ($0.offset, $0.element) }) {
            let missing = e.calls[done[i]].tensors.map(\.layer).filter { l in !values.keys.contains { $0.hasPrefix(l + "#") } }
            throw GraphError("model '\(name)': layer '\(e.name)' waits for '\(missing.first ?? "?")', which is never computed")
        }
        // Keras 3 numbers a nested Functional's calls from 1 in input_layers/output_layers (its
        // get_config counts a built-in node there; `get_tensor` subtracts it), from 0 in calls.
        let functionalNames = Set(entries.filter { $0.cls == "Functional" || $0.cls == "Model" }.map(\.name))
        func modelIONode(_ ref: TensorRef) -> Int {
            kerasMajor >= 3 && functionalNames.contains(ref.layer) ? ref.node - 1 : ref.node
        }
        var outputs: [Int] = []
        for ref in outputRefs {
            guard let produced = values[key(ref.layer, modelIONode(ref))], produced.indices.contains(ref.tensor) else {
                throw GraphError("model '\(name)': output layer '\(ref.layer)' is never computed")
            }
            outputs.append(produced[ref.tensor])
        }
        return InstantiatedModel(inputs: modelInputs, outputs: outputs)
    }

    /// Keras 2's `_should_skip_first_node`: a Functional model (also a Sequential, which is a
    /// Functional there) whose first layer is an InputLayer. Keras 3 numbers calls from 0.
    func skipsFirstNode(_ entry: [String: Any], className: String) -> Bool {
        guard modelClassNames.contains(className), kerasMajor < 3 else { return false }
        let config = entry["config"]
        let layers = (config as? [String: Any])?["layers"] as? [Any] ?? config as? [Any] ?? []
        return (layers.first as? [String: Any])?["class_name"] as? String == "InputLayer"
    }

    // MARK: Layers

    /// Applies a layer entry (primitive or nested model) to producer nodes; returns its outputs.
    /// `call` is the inbound node (nil in a Sequential, whose layers take the previous output);
    /// `inputs` are the producers of its tensors, in `call.tensors` order.
    mutating func applyLayer(_ entry: [String: Any], className: String, name: String, scope: [String],
                             trainable: Bool, inputs: [Int], call: LayerCall? = nil) throws -> [Int] {
        let layerConfig = entry["config"] as? [String: Any] ?? [:]
        let config = LayerConfig(dict: layerConfig, layerName: name, className: className)
        if let call, isOpLayer(entry, className: className) {
            let tfOp = isTFOpLayer(className)
            let function = tfOp ? try config.string("function") : className
            if tfOp { _ = try ConfigAudit.check(config) }
            let shapes = inputs.map { nodes[$0].outputShape }
            let parsed = try OpLayerParser(config: config, call: call, shapes: shapes).parse(function: function)
            let id = try addLayerNode(parsed.op, config: config, scope: scope, trainable: trainable,
                                      inputs: parsed.inputs.map { inputs[$0] })
            nodes[id].kerasOp = tfOp ? 2 : 3
            return [id]
        }
        let inference = try call.map { try auditCall($0, config) } ?? false
        let start = nodes.count
        defer { if inference { for i in start..<nodes.count { nodes[i].inferenceOnly = true } } }
        if modelClassNames.contains(className) {
            let model = try instantiateModel(entry, scope: scope + [name], parentTrainable: trainable,
                                             inputs: inputs, isRoot: false)
            return model.outputs
        }
        guard let parser = layerParsers[className] else {
            if className == "Lambda" {
                throw config.fail("a Lambda layer holds Python code, which cannot run outside Python; rebuild the model "
                                  + "with Keras layers or operations in its place")
            }
            if isOpLayer(entry, className: className) {
                throw config.fail("an operation outside a Functional model is not supported")
            }
            throw GraphError("unsupported layer '\(name)' of class '\(className)'")
        }
        if className == "InputLayer" { return inputs }     // an InputLayer listed inside a called model
        let op = try parser(config, ParseContext(kerasMajor: kerasMajor))
        var trainingOnly = try ConfigAudit.check(config)
        if ConfigAudit.noiseLayers.contains(className) { trainingOnly.append(GraphNode.trainingNoise) }
        let id = try addLayerNode(op, config: config, scope: scope, trainable: trainable, inputs: inputs)
        nodes[id].trainingOnlyKeys = trainingOnly
        return [id]
    }

    private mutating func addLayerNode(_ op: LayerOp, config: LayerConfig, scope: [String], trainable: Bool,
                                       inputs: [Int]) throws -> Int {
        let shapes = inputs.map { nodes[$0].outputShape }
        let sig = try signature(of: op, inputs: shapes, fail: { config.fail($0) })
        try checkPlausible(sig, fail: { config.fail($0) })
        let ownTrainable = try config.bool("trainable", default: true)
        // A layer called again reuses its weights: the node shares the layer key.
        return addNode(name: config.layerName, className: config.className, scope: scope, op: op, inputs: inputs,
                       shape: sig.output, weights: sig.weights, trainable: trainable && ownTrainable)
    }

    /// What an ordinary layer's call may carry besides its input tensors: `mask` left null, and
    /// `training`. Returns whether the call fixes the layer in inference mode: in tf-keras an
    /// explicit `training=False` (`base_model(x, training=False)`) wins over the model's own flag;
    /// Keras 3's Functional passes the model's `training` (which fit and predict always give)
    /// over the recorded one, so there a recorded value changes nothing. Anything else is refused:
    /// a constant operand or a keyword this reader ignored would change what the layer computes.
    private func auditCall(_ call: LayerCall, _ config: LayerConfig) throws -> Bool {
        for (i, arg) in call.args.enumerated() {
            guard i == 0, arg.isTensorInput else {
                throw config.fail("call argument \(i + 1) (\(briefJSON(arg.constantValue ?? "tensors"))) is not understood")
            }
        }
        var inference = false
        for key in call.setKeywords {
            let value = call.kwargs[key]!
            switch key {
            case "training":
                guard let flag = value.constantValue as? NSNumber, isJSONBool(flag) else {
                    throw config.fail("call keyword 'training' is \(briefJSON(value.constantValue ?? "a tensor")), expected true or false")
                }
                if kerasMajor >= 3 { continue }
                guard !flag.boolValue else { throw config.fail("a call with training=True (always in training mode) is not supported") }
                inference = true
            default:
                throw config.fail("call keyword '\(key)' (\(briefJSON(value.constantValue ?? "a tensor"))) is not understood")
            }
        }
        return inference
    }

    mutating func addNode(name: String, className: String, scope: [String], op: LayerOp, inputs: [Int],
                          shape: [Int], weights: [WeightSpec], trainable: Bool) -> Int {
        let id = nodes.count
        nodes.append(GraphNode(id: id, name: name, className: className, scope: scope, op: op, inputs: inputs,
                               outputShape: shape, weights: weights, trainable: trainable))
        return id
    }

    mutating func recordTopLevel(name: String, className: String, from start: Int, outputs: [Int]) {
        let ids = Array(start..<max(start, nodes.count))
        if let i = topLevel.firstIndex(where: { $0.name == name }) {
            topLevel[i].nodeIDs += ids
            topLevel[i].outputNodeIDs = outputs
        } else {
            topLevel.append(TopLevelLayer(name: name, className: className, nodeIDs: ids, outputNodeIDs: outputs))
        }
    }

    /// Input shape (batch excluded) from an InputLayer or first-layer config, Keras 2 or 3 keys.
    func inputShape(_ config: [String: Any], layer: String) throws -> [Int]? {
        for key in ["batch_input_shape", "batch_shape"] {
            if let list = config[key] as? [Any] { return try Array(shapeList(list, layer: layer).dropFirst()) }
        }
        if let list = config["input_shape"] as? [Any] { return try shapeList(list, layer: layer) }
        return nil
    }

    func shapeList(_ list: [Any], layer: String) throws -> [Int] {
        try list.map { item in
            if item is NSNull { return -1 }
            guard let n = number(item).flatMap(integral), n >= 0 else {
                throw GraphError("layer '\(layer)': input shape \(list) is not a list of sizes (integers >= 0 or null)")
            }
            return n
        }
    }
}
