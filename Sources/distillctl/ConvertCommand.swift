import ArgumentParser
import Foundation
import Graph

extension KerasTarget: ExpressibleByArgument {}

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Write a model as a Keras .h5 file that tf-keras (Keras 2) and Keras 3 both load.",
        discussion: """
        Full model (default): `model_config` and `model_weights` as model.save("x.h5") writes them. Load with keras.models.load_model() in Python or load_model_hdf5() in R.

        --weights-only: the model.save_weights("x.h5") layout, plus the architecture JSON (at --arch-output; by default OUT with the extension .json). Rebuild with model_from_json(), then load_weights() in Python or load_model_weights_hdf5() in R. Keras loads such weights by position, in the order the JSON's trainable flags imply; the file is written in that order.

        The config uses the schema both tf-keras 2.21 and Keras 3 load. What that schema cannot express for both is refused with the reason: a nested model called inside a Functional model (the versions number its calls differently), hard_sigmoid (its formula differs between versions), Keras 3-only activations. --keras 2 or --keras 3 then writes the model for that version only. The written model is uncompiled (no optimizer state).
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "The .h5 file to write (replaced atomically; never one of the inputs).")
    var output: String

    @Flag(help: "Write weights only (save_weights layout) plus the architecture JSON.")
    var weightsOnly = false

    @Option(help: "Where to write the architecture JSON (default with --weights-only: OUT with extension .json).")
    var archOutput: String?

    @Option(help: "Which Keras must load the file: both, 2 (tf-keras / R keras) or 3 (Keras 3 / R keras3).")
    var keras: KerasTarget = .both

    func run() throws {
        try reportingErrors {
            let archPath = archOutput ?? (weightsOnly ? jsonPath(for: output) : nil)
            let inputs = [modelOptions.model] + (modelOptions.arch.map { [$0] } ?? [])
            if archOutput == nil, let archPath, let input = inputs.first(where: { sameFile(archPath, $0) }) {
                throw ValidationError("the architecture JSON would go to '\(archPath)' (--output with .json), "
                                      + "which is the input '\(input)'; pass --arch-output")
            }
            // Checked before reading: a refused path must not cost a model load.
            try ensureDistinctOutputs([output] + (archPath.map { [$0] } ?? []), inputs: inputs)
            let model = try modelOptions.load()
            let export = try model.exportFile(weightsOnly: weightsOnly, target: keras)
            try export.write(to: output, architecturePath: archPath)
            let what = weightsOnly ? "weights only" : "full model"
            let weightCount = export.file.weights.layers.reduce(0) { $0 + $1.weights.count }
            print("wrote \(output) (\(what), \(export.file.weights.layerNames.count) layers, \(weightCount) weights, "
                  + "for \(export.target))")
            if let archPath { print("wrote \(archPath) (architecture JSON)") }
            for note in export.notes { print("note: \(note)") }
        }
    }

    /// `weights.h5` -> `weights.json`; a name without an extension gets `.json` appended.
    private func jsonPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        guard !url.pathExtension.isEmpty else { return path + ".json" }
        let base = String(path.dropLast(url.pathExtension.count + 1))
        return base + ".json"
    }
}
