import H5Model

extension ModelGraph {
    /// Binds weights from Keras 3's own layout (`.keras`, `.weights.h5`). Each layer's variables
    /// are at the path Keras 3 gives it (`Keras3Paths`, computed from the model config `config`),
    /// in Keras 3's variable order. Where the file names its layers (Keras >= 3.6 writes `name` on
    /// each `vars` group) and the name at that path is another layer's, the group carrying this
    /// layer's name in the same model is taken instead; tf-keras 2.13-2.15 archives keep layers
    /// under `_layer_checkpoint_dependencies` instead of `layers` (Keras 3's loader falls back to
    /// it the same way). `source` names the file in errors.
    public func bindKeras3Weights(from file: Keras3Weights, config: [String: Any], source: String) throws -> WeightStore {
        let paths = Keras3Paths.paths(config: config)
        let resolver = Keras3Resolver(file: file)
        var store = WeightStore()
        var owner: [String: String] = [:]     // entry path -> layer key bound to it
        for node in uniqueLayers where !node.weights.isEmpty {
            guard let expected = paths[node.layerKey] else {
                throw GraphError("\(source): layer '\(node.layerKey)' has no place in the model config's layers")
            }
            guard let entry = resolver.entry(for: node.scope + [node.name], expected: expected) else {
                throw GraphError("\(source): no variables for layer '\(node.layerKey)' (Keras 3 keeps them at '\(expected)/vars')")
            }
            let place = "\(entry.path.isEmpty ? "" : entry.path + "/")vars"
            if let other = owner[entry.path] {
                throw GraphError("\(source): layers '\(other)' and '\(node.layerKey)' both map to '\(place)'")
            }
            owner[entry.path] = node.layerKey
            let order = Keras3Paths.variableOrder(node.weights)
            guard entry.variables.count == order.count else {
                throw GraphError("\(source): layer '\(node.layerKey)' has \(entry.variables.count) variables at '\(place)', "
                                 + "the model expects \(order.count) (\(order.map(\.name).joined(separator: ", ")))")
            }
            var bound: [String: BoundWeight] = [:]
            for (index, (spec, variable)) in zip(order, entry.variables).enumerated() {
                guard variable.shape == spec.shape || (variable.shape.reduce(1, *) == 1 && spec.shape.isEmpty) else {
                    throw GraphError("\(source): layer '\(node.layerKey)' variable '\(place)/\(index)' (\(spec.name)) has shape "
                                     + "\(fmtShape(variable.shape)), the model expects \(fmtShape(spec.shape))")
                }
                bound[spec.name] = BoundWeight(spec: spec, fileName: "\(place)/\(index)", values: variable.values)
            }
            store.byLayer[node.layerKey] = node.weights.map { bound[$0.name]! }
        }
        // Variables of a layer the model does not have mean a wrong architecture. Other state
        // (`optimizer/vars`, metrics, the model's own `vars`) is not the model's weights.
        let layerRoots = ["layers/", "_layer_checkpoint_dependencies/"]
        for entry in file.entries where !entry.variables.isEmpty && owner[entry.path] == nil
            && layerRoots.contains(where: { entry.path.hasPrefix($0) }) {
            let unmatched = file.entries.filter { !$0.variables.isEmpty && owner[$0.path] == nil
                && layerRoots.contains(where: $0.path.hasPrefix) }.count
            throw GraphError("\(source): variables at '\(entry.path)/vars'\(entry.name.map { " (layer '\($0)')" } ?? "") "
                             + "match no layer of the model (\(unmatched) unmatched)")
        }
        return store
    }
}

/// Finds a layer's `vars` group: by the Keras 3 path, checked against the group's `name`
/// attribute when the file has one; by name within the same model otherwise.
struct Keras3Resolver {
    let file: Keras3Weights
    private var byPath: [String: Keras3Weights.Entry] = [:]

    init(file: Keras3Weights) {
        self.file = file
        for entry in file.entries { byPath[entry.path] = entry }
    }

    /// `names`: the enclosing models below the root, then the layer's own name.
    func entry(for names: [String], expected: String) -> Keras3Weights.Entry? {
        if let entry = lookUp(expected), entry.name == nil || entry.name == names.last { return entry }
        if let path = pathByName(names), let entry = byPath[path] { return entry }
        return lookUp(expected)
    }

    private func lookUp(_ path: String) -> Keras3Weights.Entry? {
        byPath[path] ?? byPath[path.replacingOccurrences(of: "layers/", with: "_layer_checkpoint_dependencies/")]
    }

    /// Walks the models by the `name` attributes of their groups: `names[0]` among the root's
    /// layers, `names[1]` among that model's layers, ...
    private func pathByName(_ names: [String]) -> String? {
        var container = ""
        for name in names {
            let prefix = container + "layers/"
            let matches = file.entries.filter { entry in
                entry.name == name && entry.path.hasPrefix(prefix) && !entry.path.dropFirst(prefix.count).contains("/")
            }
            guard matches.count == 1 else { return nil }
            container = matches[0].path + "/"
        }
        return String(container.dropLast())
    }
}
