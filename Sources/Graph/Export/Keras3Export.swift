import Foundation
import H5Model

/// What `LoadedModel.writeKerasFile` wrote.
public struct KerasWriteResult: Sendable {
    public var format: KerasFileFormat
    public var weightsOnly: Bool
    /// Entries of the root model's `layers` (layer groups of the file).
    public var layerCount: Int
    /// Weight arrays written.
    public var weightCount: Int
    public var target: KerasTarget
    public var notes: [String]
}

extension KerasExporter {
    /// The model in Keras 3's own formats: the architecture (`to_json()` form, which is also what
    /// a `.keras` archive's `config.json` holds: Keras 3 deserializes both with
    /// `deserialize_keras_object`) and the weights in Keras 3's layout, each layer's variables at
    /// the path Keras 3 will give it when it rebuilds the model from that very config.
    /// Normalization statistics stay variables (Keras 3 finalizes them when loading these formats).
    static func exportKeras3(config: String, graph: ModelGraph, weights: WeightStore, target: KerasTarget,
                             backend: String = "tensorflow") throws -> (architectureJSON: String, weights: Keras3Weights, notes: [String]) {
        guard target.loadsInKeras3 else {
            throw GraphError("Keras 3's formats (.keras, .weights.h5) are for Keras 3; for tf-keras write a .h5 name")
        }
        guard let root = try JSONReader.parse(config, source: "model config") as? [String: Any] else {
            throw GraphError("model config: not a Keras model config (not a JSON object)")
        }
        var configs = ConfigExporter(graph: graph, weights: weights, target: target, keras3Format: true)
        let exported = try configs.export(root: root)
        let json = try architectureJSON(exported, version: target.fileKerasVersion, backend: backend)
        let nodesByKey = Dictionary(graph.nodes.map { ($0.layerKey, $0) }, uniquingKeysWith: { first, _ in first })
        var entries = [Keras3Weights.Entry(path: "", name: modelName(exported) ?? graph.name, variables: [])]
        for (key, path) in Keras3Paths.paths(config: exported).sorted(by: { $0.value < $1.value }) {
            let name = String(key.split(separator: "/").last ?? Substring(key))
            guard let node = nodesByKey[key], !node.weights.isEmpty else {
                entries.append(.init(path: path, name: name, variables: []))
                continue
            }
            let variables = try Keras3Paths.variableOrder(node.weights).enumerated().map { index, spec -> Weight in
                guard let bound = weights.weight(spec.name, of: node) else {
                    throw GraphError("layer '\(key)' has no value for its weight '\(spec.name)' \(fmtShape(spec.shape))")
                }
                guard bound.values.count == spec.count else {
                    throw GraphError("layer '\(key)' weight '\(spec.name)' has \(bound.values.count) values, "
                                     + "its shape \(fmtShape(spec.shape)) needs \(spec.count)")
                }
                return Weight(name: String(index), shape: spec.shape, values: bound.values)
            }
            entries.append(.init(path: path, name: name, variables: variables))
        }
        return (json, Keras3Weights(entries: entries), configs.notes)
    }
}

extension LoadedModel {
    /// Writes this model (with its current weights) to `path` in the format the name asks for
    /// (`KerasFileFormat.forOutput`): `.keras` a Keras 3 archive (full model), `.weights.h5`
    /// Keras 3's weights layout (weights only), anything else the legacy HDF5 layout as
    /// `exportFile` makes it. `architecturePath`, when given, also receives the `to_json()`
    /// architecture. `target` defaults to the format's (`KerasFileFormat.defaultTarget`: both
    /// Kerases for .h5, Keras 3 for its own formats). Every file appears complete or not at all.
    @discardableResult
    public func writeKerasFile(to path: String, weightsOnly: Bool = false, target: KerasTarget? = nil,
                               architecturePath: String? = nil) throws -> KerasWriteResult {
        let format = KerasFileFormat.forOutput(path: path)
        let target = target ?? graph.defaultTarget(for: format, weightsOnly: weightsOnly)
        switch format {
        case .legacyH5:
            let export = try exportFile(weightsOnly: weightsOnly, target: target)
            try export.write(to: path, architecturePath: architecturePath)
            return KerasWriteResult(format: format, weightsOnly: weightsOnly, layerCount: export.file.weights.layerNames.count,
                                    weightCount: export.file.weights.layers.reduce(0) { $0 + $1.weights.count },
                                    target: export.target, notes: export.notes)
        case .kerasArchive where weightsOnly:
            throw GraphError("\(path): a .keras archive holds the whole model; for weights only write a .weights.h5 name")
        case .keras3Weights where !weightsOnly:
            throw GraphError("\(path): a .weights.h5 file holds weights only (Keras 3's save_weights layout); "
                             + "for the whole model write a .keras or .h5 name")
        case .kerasArchive, .keras3Weights:
            guard !configJSON.isEmpty else {
                throw GraphError("model '\(graph.name)': no model config to write (the model was not loaded from a file)")
            }
            let (json, keras3, notes) = try KerasExporter.exportKeras3(config: configJSON, graph: graph, weights: weights,
                                                                        target: target)
            try writeStaged(path, architecturePath: architecturePath, architectureJSON: json) {
                if format == .kerasArchive {
                    let metadata = KerasArchive.metadataJSON(kerasVersion: KerasTarget.keras3.fileKerasVersion)
                    try KerasArchive(config: json, metadata: metadata, weights: keras3).write(to: path)
                } else {
                    try keras3.write(to: path)
                }
            }
            return KerasWriteResult(format: format, weightsOnly: weightsOnly,
                                    layerCount: keras3.entries.filter { $0.path.hasPrefix("layers/") && !$0.path.dropFirst(7).contains("/") }.count,
                                    weightCount: keras3.entries.reduce(0) { $0 + $1.variables.count },
                                    target: target, notes: notes)
        }
    }
}

/// Writes the main file through `write` and, when `architecturePath` is given, the JSON beside
/// it: the JSON is staged first and renamed into place only after the main file was written;
/// any failure leaves neither behind.
func writeStaged(_ path: String, architecturePath: String?, architectureJSON: String, _ write: () throws -> Void) throws {
    guard let architecturePath else { return try write() }
    try OutputPaths.checkDistinct(outputs: [path, architecturePath], inputs: [])
    let staged = try StagedFile(contents: Data((architectureJSON + "\n").utf8), for: architecturePath)
    do {
        try write()
    } catch {
        staged.discard()
        throw error
    }
    try staged.commit()
}
