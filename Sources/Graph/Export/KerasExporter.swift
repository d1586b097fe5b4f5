import Foundation
import H5Model

/// A model ready to be written as Keras files: the `.h5` contents and the architecture JSON.
public struct KerasExport: Sendable {
    /// A full-model file (`model_config` + `model_weights`), or a weights-only file.
    public var file: KerasH5File
    /// What `model.to_json()` gives, for `model_from_json` (Python) / `model_from_json()` (R).
    public var architectureJSON: String
    public var target: KerasTarget
    /// Changes beyond the schema that a user should know about (one sentence each).
    public var notes: [String]

    public var isWeightsOnly: Bool { !file.isFullModel }

    /// Writes the `.h5` file and, when `architecturePath` is given, the JSON. Both appear
    /// complete or not at all: the JSON is staged beside its target before the `.h5` is written
    /// (atomically, by H5Model) and renamed into place after; any failure leaves neither behind.
    public func write(to path: String, architecturePath: String? = nil) throws {
        try writeStaged(path, architecturePath: architecturePath, architectureJSON: architectureJSON) {
            try file.write(to: path)
        }
    }
}

/// Turns a loaded (or trained) model back into Keras files.
public enum KerasExporter {
    /// `config`: the model config JSON the graph was parsed from (`model_config` or `to_json()`
    /// text, either Keras schema). `weights`: the values to write, e.g. a student's trained
    /// weights; every weight of every layer of `graph` must be present.
    public static func export(config: String, graph: ModelGraph, weights: WeightStore, weightsOnly: Bool,
                              target: KerasTarget = .both, backend: String = "tensorflow") throws -> KerasExport {
        guard let root = try JSONReader.parse(config, source: "model config") as? [String: Any] else {
            throw GraphError("model config: not a Keras model config (not a JSON object)")
        }
        // A weights-only file is loaded by position into the user's own model: it must hold
        // exactly that model's weights, so Normalization statistics stay weights. Keras 3 would
        // then normalize with mean 0, variance 1 in a nested Normalization (it finalizes only
        // top-level ones after a legacy load): its route is the .weights.h5 layout.
        if weightsOnly, target.loadsInKeras3, let n = graph.nestedAdaptedNormalization {
            throw GraphError("layer '\(n.layerKey)' (Normalization): a legacy weights-only .h5 cannot give Keras 3 a nested "
                             + "Normalization's statistics (it would normalize with mean 0, variance 1); for Keras 3 write "
                             + "OUT.weights.h5", remedy: .kerasVersion(.keras2))
        }
        var configs = ConfigExporter(graph: graph, weights: weights, target: target, keras3Format: false,
                                     weightsOnly: weightsOnly)
        let exported = try configs.export(root: root)
        let version = target.fileKerasVersion
        let group = try WeightsGroupBuilder(graph: graph, store: weights, omitted: configs.foldedNormalizations)
            .build(exportedRoot: exported, kerasVersion: version, backend: backend)
        // The model's "config" object is most of both texts (EfficientNetB0's: 200 KB): written once.
        var shared = exported
        if let config = exported["config"] { shared["config"] = JSONText.Written(text: try JSONText.string(config)) }
        let file = KerasH5File(modelConfig: weightsOnly ? nil : try JSONText.string(shared), trainingConfig: nil,
                               kerasVersion: weightsOnly ? nil : version, backend: weightsOnly ? nil : backend,
                               weights: group)
        return KerasExport(file: file, architectureJSON: try architectureJSON(shared, version: version, backend: backend),
                           target: target, notes: configs.notes)
    }

    /// `to_json()`'s shape. `module: "keras"` is what lets Keras 3's `model_from_json` (which
    /// resolves classes through the public API) find the class; `keras.Functional` is not public
    /// there, `keras.Model` is, and both versions build a Functional from a `Model` config.
    static func architectureJSON(_ exported: [String: Any], version: String, backend: String) throws -> String {
        let className = exported["class_name"] as? String == "Sequential" ? "Sequential" : "Model"
        return try JSONText.string(["module": "keras", "class_name": className, "config": exported["config"] ?? [String: Any](),
                                    "keras_version": version, "backend": backend])
    }
}

extension LoadedModel {
    /// This model (with its current weights) as Keras files for `target`.
    public func exportFile(weightsOnly: Bool = false, target: KerasTarget = .both) throws -> KerasExport {
        guard !configJSON.isEmpty else {
            throw GraphError("model '\(graph.name)': no model config to write (the model was not loaded from a file)")
        }
        return try KerasExporter.export(config: configJSON, graph: graph, weights: weights,
                                        weightsOnly: weightsOnly, target: target)
    }
}
