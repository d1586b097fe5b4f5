import Foundation
import H5Model

/// The Keras file formats distillctl reads and writes.
public enum KerasFileFormat: String, Sendable, CustomStringConvertible {
    /// The legacy HDF5 layout: `model.save("x.h5")` (full model) or Keras 2's `save_weights("x.h5")`.
    case legacyH5
    /// Keras 3's `.keras` zip archive (`model.save("x.keras")`, R keras3's `save_model()`).
    case kerasArchive
    /// Keras 3's weights layout (`model.save_weights("x.weights.h5")`), weights only.
    case keras3Weights

    /// What a file is, by its content (zip signature; HDF5 root layout), not by its name.
    public static func detect(path: String) throws -> KerasFileFormat {
        if KerasArchive.isZip(path: path) { return .kerasArchive }
        return try Keras3Weights.isKeras3Layout(path: path) ? .keras3Weights : .legacyH5
    }

    /// What an output name asks for: `.keras` an archive, `.weights.h5` Keras 3's weights
    /// layout, anything else the legacy HDF5 layout.
    public static func forOutput(path: String) -> KerasFileFormat {
        let name = path.lowercased()
        if name.hasSuffix(".keras") { return .kerasArchive }
        if name.hasSuffix(".weights.h5") { return .keras3Weights }
        return .legacyH5
    }

    /// Which Keras a file of this format is written for unless told otherwise: the legacy layout
    /// for both (the point of writing it), Keras 3's own formats for Keras 3.
    public var defaultTarget: KerasTarget { self == .legacyH5 ? .both : .keras3 }

    public var description: String {
        switch self {
        case .legacyH5: return "legacy .h5"
        case .kerasArchive: return ".keras archive"
        case .keras3Weights: return "Keras 3 .weights.h5"
        }
    }
}

extension ModelGraph {
    /// The Keras a file of `format` is written for unless told otherwise: the format's default,
    /// or the only Keras that reads the model's operation layers (tf-keras's TFOpLambda, Keras 3's
    /// ops), which no other version knows.
    public func defaultTarget(for format: KerasFileFormat, weightsOnly: Bool = false) -> KerasTarget {
        if format == .legacyH5, nodes.contains(where: { $0.kerasOp == 2 }) { return .keras2 }
        // Keras 3 cannot take a nested Normalization's statistics from a legacy weights-only file.
        if format == .legacyH5, weightsOnly, nestedAdaptedNormalization != nil { return .keras2 }
        if nodes.contains(where: { $0.kerasOp == 3 }) { return .keras3 }
        return format.defaultTarget
    }

    /// A Normalization inside a nested model whose statistics are weights (adapted, not given in
    /// its config).
    public var nestedAdaptedNormalization: GraphNode? {
        nodes.first { node in
            if case .normalization(nil, _, _) = node.op { return !node.scope.isEmpty }
            return false
        }
    }
}

/// A model ready to run or train: its graph and its weights.
public struct LoadedModel: Sendable {
    public var graph: ModelGraph
    public var weights: WeightStore
    /// The legacy file it came from, as read; for the Keras 3 formats, only the config and the
    /// Keras version (no weights group).
    public var file: KerasH5File
    /// The model config JSON `graph` was parsed from (the file's `model_config` or `config.json`,
    /// or the `--arch` text), kept so the model can be written back (`exportFile`).
    public var configJSON: String = ""
    public var format: KerasFileFormat = .legacyH5

    /// Reads `path`: a full model (legacy `.h5` or `.keras` archive), or weights only (legacy
    /// `.h5` or Keras 3 `.weights.h5`) with `archPath`, the JSON written by `model.to_json()` /
    /// R's `model_to_json()`. The format is told by content. An `archPath` also overrides a full
    /// file's config.
    public static func load(path: String, archPath: String? = nil) throws -> LoadedModel {
        // An HDF5 file's layout is told and a legacy one read in one forked child (not one each).
        let format: KerasFileFormat, legacy: KerasH5File?
        if KerasArchive.isZip(path: path) {
            (format, legacy) = (.kerasArchive, nil)
        } else {
            legacy = try KerasH5File.readUnlessKeras3Layout(path: path)
            format = legacy == nil ? .keras3Weights : .legacyH5
        }
        switch format {
        case .legacyH5: return try loadLegacy(legacy!, path: path, archPath: archPath)
        case .kerasArchive:
            let archive = try KerasArchive.read(path: path)
            let (graph, config, source) = try parseConfig(archPath: archPath, fileConfig: archive.config,
                                                          fileConfigSource: "\(path) (config.json)",
                                                          // tf-keras >= 2.13 writes .keras archives too.
                                                          major: archive.kerasVersion.flatMap(majorVersion) ?? 3, path: path)
            return try bindKeras3(archive.weights, graph: graph, config: config, configSource: source, path: path,
                                  kerasVersion: archive.kerasVersion, format: .kerasArchive)
        case .keras3Weights:
            let weights = try Keras3Weights.read(path: path)
            let (graph, config, source) = try parseConfig(archPath: archPath, fileConfig: nil, fileConfigSource: "",
                                                          major: nil, path: path)
            return try bindKeras3(weights, graph: graph, config: config, configSource: source, path: path,
                                  kerasVersion: nil, format: .keras3Weights)
        }
    }

    private static func loadLegacy(_ file: KerasH5File, path: String, archPath: String?) throws -> LoadedModel {
        let major = file.kerasVersion.flatMap(majorVersion) ?? file.weights.kerasVersion.flatMap(majorVersion)
        let (graph, config, _) = try parseConfig(archPath: archPath, fileConfig: file.modelConfig,
                                                 fileConfigSource: "\(path) (model_config)", major: major, path: path)
        let weights = try graph.bindWeights(from: file.weights, source: path)
        return LoadedModel(graph: graph, weights: weights, file: file, configJSON: config)
    }

    /// The graph from `--arch` when given, else from the file's own config.
    private static func parseConfig(archPath: String?, fileConfig: String?, fileConfigSource: String, major: Int?,
                                    path: String) throws -> (ModelGraph, String, String) {
        if let archPath {
            let text: String
            do { text = try String(contentsOfFile: archPath, encoding: .utf8) } catch {
                throw GraphError("\(archPath): cannot read the architecture file (\(error.localizedDescription))")
            }
            return (try ModelConfigParser.parse(json: text, source: archPath), text, archPath)
        }
        guard let fileConfig else {
            throw GraphError("\(path): a weights-only file has no architecture", remedy: .architectureFile(path: path))
        }
        return (try ModelConfigParser.parse(json: fileConfig, source: fileConfigSource, kerasMajor: major),
                fileConfig, fileConfigSource)
    }

    private static func bindKeras3(_ weights: Keras3Weights, graph: ModelGraph, config: String, configSource: String,
                                   path: String, kerasVersion: String?, format: KerasFileFormat) throws -> LoadedModel {
        guard let root = try JSONReader.parse(config, source: configSource) as? [String: Any] else {
            throw GraphError("\(configSource): not a Keras model config (not a JSON object)")
        }
        let store = try graph.bindKeras3Weights(from: weights, config: root, source: path)
        let file = KerasH5File(modelConfig: format == .kerasArchive ? config : nil, trainingConfig: nil,
                               kerasVersion: kerasVersion, backend: nil,
                               weights: WeightsGroup(layerNames: [], layers: [], kerasVersion: nil, backend: nil))
        return LoadedModel(graph: graph, weights: store, file: file, configJSON: config, format: format)
    }
}

func majorVersion(_ version: String) -> Int? { Int(version.prefix { $0.isNumber }) }
