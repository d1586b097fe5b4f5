import Foundation
import H5Model

/// A model ready to run or train: its graph and its weights.
public struct LoadedModel: Sendable {
    public var graph: ModelGraph
    public var weights: WeightStore
    /// The file it came from, as read (kept so a writer can preserve metadata).
    public var file: KerasH5File
    /// The model config JSON `graph` was parsed from (the file's `model_config`, or the `--arch`
    /// text), kept so the model can be written back (`exportFile`).
    public var configJSON: String = ""

    /// Reads `path` (a full-model file, or a weights-only file with `archPath`, the JSON written by
    /// `model.to_json()` / R's `model_to_json()`). An `archPath` also overrides a full file's config.
    public static func load(path: String, archPath: String? = nil) throws -> LoadedModel {
        let file = try KerasH5File.read(path: path)
        let major = file.kerasVersion.flatMap(majorVersion) ?? file.weights.kerasVersion.flatMap(majorVersion)
        let graph: ModelGraph
        let configJSON: String
        if let archPath {
            let text: String
            do { text = try String(contentsOfFile: archPath, encoding: .utf8) } catch {
                throw GraphError("\(archPath): cannot read the architecture file (\(error.localizedDescription))")
            }
            graph = try ModelConfigParser.parse(json: text, source: archPath)
            configJSON = text
        } else if let config = file.modelConfig {
            graph = try ModelConfigParser.parse(json: config, source: "\(path) (model_config)", kerasMajor: major)
            configJSON = config
        } else {
            throw GraphError("\(path): a weights-only file has no architecture; pass --arch model.json (from model.to_json() or R's model_to_json())")
        }
        let weights = try graph.bindWeights(from: file.weights, source: path)
        return LoadedModel(graph: graph, weights: weights, file: file, configJSON: configJSON)
    }
}

func majorVersion(_ version: String) -> Int? { Int(version.prefix { $0.isNumber }) }
