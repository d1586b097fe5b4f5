import H5Model

/// A layer's weight with its values, matched to the layer's `WeightSpec`.
public struct BoundWeight: Equatable, Sendable {
    public var spec: WeightSpec
    /// The name it had in the file (`stem_conv/kernel:0`), kept for writing it back.
    public var fileName: String
    public var values: WeightValues

    public var floats: [Float] { values.floats }
}

/// Weights of every layer, keyed by `GraphNode.layerKey`, each list in the order of the node's
/// `weights` specs.
public struct WeightStore: Sendable {
    public var byLayer: [String: [BoundWeight]] = [:]

    public init() {}

    public func weights(of node: GraphNode) -> [BoundWeight] { byLayer[node.layerKey] ?? [] }

    public func weight(_ name: String, of node: GraphNode) -> BoundWeight? {
        byLayer[node.layerKey]?.first { $0.spec.name == name }
    }
}

/// Splits a weight name into (layer path, short name): `sequential/dense/kernel:0` ->
/// ("sequential/dense", "kernel").
func splitWeightName(_ name: String) -> (prefix: String, short: String) {
    var base = Substring(name)
    if let colon = base.lastIndex(of: ":"), base[base.index(after: colon)...].allSatisfy(\.isNumber) {
        base = base[..<colon]
    }
    guard let slash = base.lastIndex(of: "/") else { return ("", String(base)) }
    return (String(base[..<slash]), String(base[base.index(after: slash)...]))
}

/// Keras 3 names a variable created without a name `variable`, then `variable_1`, `variable_2`...
/// by creation count in the process (ConvNeXt's LayerScale gammas in a legacy .h5); a spec that
/// accepts `variable` accepts these too, inside its own layer's prefix only.
private func isNumberedVariable(_ short: String) -> Bool {
    guard short.hasPrefix("variable_") else { return false }
    let digits = short.dropFirst("variable_".count)
    return !digits.isEmpty && digits.allSatisfy(\.isNumber)
}

extension ModelGraph {
    /// Binds weights from a Keras weights group by name, never by position: weight order in a
    /// group depends on what was frozen when the file was saved. `source` names the file in errors.
    public func bindWeights(from group: WeightsGroup, source: String) throws -> WeightStore {
        var store = WeightStore()
        var used: [String: Set<Int>] = [:]          // group name -> indices of weights taken
        let groups = Dictionary(group.layers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        // Each group's weight names split once: a nested model's group holds all its layers'
        // weights (EfficientNetB0's: 312), searched for every weight of every layer in it.
        var splitNames: [String: [(prefix: String, short: String)]] = [:]
        for node in uniqueLayers where !node.weights.isEmpty {
            let groupName = node.topLevelName
            guard let layerGroup = groups[groupName] else {
                throw GraphError("\(source): no weights for layer '\(groupName)' (the file's layers: \(group.layerNames.prefix(8).joined(separator: ", "))\(group.layerNames.count > 8 ? ", ..." : ""))")
            }
            if node.scope.isEmpty, let bound = try bindByPosition(node, layerGroup, used: used[groupName] ?? [], source: source) {
                used[groupName, default: []].formUnion(layerGroup.weights.indices)
                store.byLayer[node.layerKey] = bound
                continue
            }
            var bound: [BoundWeight] = []
            let split = splitNames[groupName] ?? layerGroup.weights.map { splitWeightName($0.name) }
            splitNames[groupName] = split
            for spec in node.weights {
                let names = [spec.name] + spec.aliases
                let candidate = layerGroup.weights.indices.first { i in
                    guard !(used[groupName]?.contains(i) ?? false) else { return false }
                    let (prefix, short) = split[i]
                    guard names.contains(short) || (names.contains("variable") && isNumberedVariable(short)) else { return false }
                    if prefix == node.name || prefix.hasSuffix("/" + node.name) { return true }
                    // Bare names (Keras 3.0-3.2, custom layers) identify a weight only in the layer's own group.
                    return prefix.isEmpty && node.scope.isEmpty
                }
                guard let index = candidate else {
                    throw GraphError("\(source): layer '\(node.layerKey)' needs weight '\(spec.name)' \(fmtShape(spec.shape)), not found in group '\(groupName)'")
                }
                let weight = layerGroup.weights[index]
                guard weight.shape == spec.shape || (weight.shape.reduce(1, *) == 1 && spec.shape.isEmpty) else {
                    throw GraphError("\(source): layer '\(node.layerKey)' weight '\(weight.name)' has shape \(fmtShape(weight.shape)), the model expects \(fmtShape(spec.shape))")
                }
                used[groupName, default: []].insert(index)
                bound.append(BoundWeight(spec: spec, fileName: weight.name, values: weight.values))
            }
            store.byLayer[node.layerKey] = bound
        }
        for layer in group.layers {
            let unused = layer.weights.indices.filter { !(used[layer.name]?.contains($0) ?? false) }
            if let first = unused.first {
                throw GraphError("\(source): weight '\(layer.weights[first].name)' in group '\(layer.name)' matches no layer of the model (\(unused.count) unmatched)")
            }
        }
        return store
    }
}

extension ModelGraph {
    /// Keras 2.0-era files may name a layer's weights under another prefix inside the layer's own
    /// group (`conv2d_1` holding `conv2d_1_1/kernel:0`, from TF's variable-scope renaming); Keras
    /// loads one layer's weights by position. When none of the group's weights carries this
    /// layer's name, they are taken in order: the same count and each shape as the layer's own,
    /// else refused naming both. Nil when names match (binding by name goes on).
    func bindByPosition(_ node: GraphNode, _ group: LayerWeights, used: Set<Int>, source: String) throws -> [BoundWeight]? {
        guard used.isEmpty else { return nil }
        let named = group.weights.contains { w in
            let (prefix, _) = splitWeightName(w.name)
            return prefix == node.name || prefix.hasSuffix("/" + node.name) || prefix.isEmpty
        }
        guard !named, !group.weights.isEmpty else { return nil }
        let expected = node.weights.map { "\($0.name) \(fmtShape($0.shape))" }.joined(separator: ", ")
        let found = group.weights.map { "\($0.name) \(fmtShape($0.shape))" }.joined(separator: ", ")
        guard group.weights.count == node.weights.count else {
            throw GraphError("\(source): layer '\(node.layerKey)' has \(node.weights.count) weights (\(expected)); its group "
                             + "'\(group.name)' holds \(group.weights.count) under other names (\(found))")
        }
        return try zip(node.weights, group.weights).map { spec, weight in
            guard weight.shape == spec.shape || (weight.shape.reduce(1, *) == 1 && spec.shape.isEmpty) else {
                throw GraphError("\(source): layer '\(node.layerKey)' weight '\(spec.name)' \(fmtShape(spec.shape)) would take "
                                 + "'\(weight.name)' \(fmtShape(weight.shape)) by position, which does not fit")
            }
            return BoundWeight(spec: spec, fileName: weight.name, values: weight.values)
        }
    }
}

func fmtShape(_ shape: [Int]) -> String { "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")") }
