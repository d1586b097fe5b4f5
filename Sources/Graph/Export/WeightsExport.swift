import H5Model

/// Builds the weights group (`model.save_weights` layout, reference §1.2-1.3) for an exported
/// config. Keras loads it by position, so the order is what the loading model will have:
/// - `layer_names`: the model's layers in config order (a Sequential's implicit InputLayer
///   excluded, a Functional's InputLayers included);
/// - in each top-level layer's group: `trainable_weights + non_trainable_weights` of that layer.
///   For a nested model that is every effectively trainable weight of its layers (depth first,
///   config order), then the rest in the same order (a frozen layer's trainable-kind weights
///   before its moving statistics). This depends on the `trainable` flags the config carries,
///   which is why the exported config holds every layer's effective flag.
/// Weight names are tf-keras's: `<layer>/<weight>:0`, nested layers without the outer model's
/// name (`stem_conv/kernel:0`), DepthwiseConv2D's `depthwise_kernel`.
struct WeightsGroupBuilder {
    let graph: ModelGraph
    let store: WeightStore
    /// Layers whose weights are written into the config instead (folded Normalization).
    let omitted: Set<String>
    private let nodesByKey: [String: GraphNode]

    init(graph: ModelGraph, store: WeightStore, omitted: Set<String>) {
        self.graph = graph
        self.store = store
        self.omitted = omitted
        nodesByKey = Dictionary(graph.nodes.map { ($0.layerKey, $0) }, uniquingKeysWith: { first, _ in first })
    }

    private struct Leaf {
        var scope: [String]       // enclosing models below the root
        var node: GraphNode
    }

    func build(exportedRoot root: [String: Any], kerasVersion: String, backend: String) throws -> WeightsGroup {
        let isSequential = root["class_name"] as? String == "Sequential"
        var names: [String] = []
        var layers: [LayerWeights] = []
        for entry in entries(of: root) {
            let className = entry["class_name"] as? String ?? ""
            if isSequential && className == "InputLayer" { continue }
            let name = entryName(entry)
            var leaves: [Leaf] = []
            var seen = Set<String>()
            collectLeaves(entry, scope: [], into: &leaves, seen: &seen)
            names.append(name)
            layers.append(LayerWeights(name: name, weights: try groupWeights(leaves, group: name)))
        }
        return WeightsGroup(layerNames: names, layers: layers, kerasVersion: kerasVersion, backend: backend)
    }

    private func entries(of model: [String: Any]) -> [[String: Any]] {
        let config = model["config"]
        let layers = (config as? [String: Any])?["layers"] as? [Any] ?? config as? [Any] ?? []
        return layers.compactMap { $0 as? [String: Any] }
    }

    private func entryName(_ entry: [String: Any]) -> String {
        entry["name"] as? String ?? (entry["config"] as? [String: Any])?["name"] as? String ?? "?"
    }

    /// The layers holding weights under `entry`, depth first in config order; each layer once.
    private func collectLeaves(_ entry: [String: Any], scope: [String], into leaves: inout [Leaf], seen: inout Set<String>) {
        let className = entry["class_name"] as? String ?? ""
        let name = entryName(entry)
        if modelClassNames.contains(className) {
            for inner in entries(of: entry) { collectLeaves(inner, scope: scope + [name], into: &leaves, seen: &seen) }
            return
        }
        let key = (scope + [name]).joined(separator: "/")
        guard className != "InputLayer", !omitted.contains(key), seen.insert(key).inserted,
              let node = nodesByKey[key], !node.weights.isEmpty else { return }
        leaves.append(Leaf(scope: scope, node: node))
    }

    /// A top-level layer's group: trainable weights of all its layers, then the non-trainable ones.
    private func groupWeights(_ leaves: [Leaf], group: String) throws -> [Weight] {
        var trainable: [Weight] = [], frozen: [Weight] = []
        var usedNames = Set<String>()
        for leaf in leaves {
            // A layer's own order is its trainable-kind weights, then the others (gamma, beta,
            // moving_mean, moving_variance), whether or not it is frozen.
            let specs = leaf.node.weights.filter(\.trainableKind) + leaf.node.weights.filter { !$0.trainableKind }
            for spec in specs {
                let weight = try makeWeight(spec, of: leaf, usedNames: &usedNames, group: group)
                if leaf.node.trainable && spec.trainableKind { trainable.append(weight) } else { frozen.append(weight) }
            }
        }
        return trainable + frozen
    }

    private func makeWeight(_ spec: WeightSpec, of leaf: Leaf, usedNames: inout Set<String>, group: String) throws -> Weight {
        let node = leaf.node
        guard let bound = store.weight(spec.name, of: node) else {
            throw GraphError("layer '\(node.layerKey)' has no value for its weight '\(spec.name)' \(fmtShape(spec.shape))")
        }
        guard bound.values.count == spec.count else {
            throw GraphError("layer '\(node.layerKey)' weight '\(spec.name)' has \(bound.values.count) values, "
                             + "its shape \(fmtShape(spec.shape)) needs \(spec.count)")
        }
        // Layer names are unique within their model; two nested models may still share one, and
        // then the inner path keeps the dataset names apart (loading is by position anyway).
        var name = "\(node.name)/\(spec.name):0"
        if usedNames.contains(name) { name = (leaf.scope.dropFirst() + [node.name, spec.name]).joined(separator: "/") + ":0" }
        guard usedNames.insert(name).inserted else {
            throw GraphError("group '\(group)': two weights would both be named '\(name)'")
        }
        return Weight(name: name, shape: spec.shape, values: bound.values)
    }
}
