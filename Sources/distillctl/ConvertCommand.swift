import ArgumentParser
import Foundation
import Graph
import Runtime

extension KerasTarget: ExpressibleByArgument {}

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Write a model as a Keras file: legacy .h5 (tf-keras and Keras 3), Keras 3 .keras or .weights.h5.",
        discussion: """
        The output's name picks the format:
        - OUT.keras: Keras 3's archive (config.json, metadata.json, model.weights.h5), as model.save("x.keras") and R keras3's save_model() write it. Load with keras.saving.load_model() in Python or load_model() in R keras3.
        - OUT.weights.h5: Keras 3's save_weights layout (implies --weights-only), plus the architecture JSON (by default OUT with .weights.h5 replaced by .json). Rebuild with keras.models.model_from_json() (R: load_model_config()), then load_weights().
        - any other name (OUT.h5): the legacy HDF5 layout. Full model (default): `model_config` and `model_weights` as model.save("x.h5") writes them; load with keras.models.load_model() in Python or load_model_hdf5() in R. --weights-only: the model.save_weights("x.h5") layout plus the architecture JSON (at --arch-output; by default OUT with the extension .json); rebuild with model_from_json(), then load_weights() in Python or load_model_weights_hdf5() in R. Keras loads such weights by position, in the order the JSON's trainable flags imply; the file is written in that order.

        MODEL may be in any of these formats (told by content, not by name), so convert moves a model between them: a Keras 2 .h5 to a Keras 3 .keras and back.

        For .h5 (--keras both, its default) the config uses the schema both tf-keras 2.21 and Keras 3 load. What that schema cannot express for both is refused with the reason: a nested model called inside a Functional model (the versions number its calls differently), hard_sigmoid (its formula differs between versions), Keras 3-only activations. --keras 2 or --keras 3 then writes the model for that version only. The .keras and .weights.h5 formats are Keras 3's: they are written for Keras 3 (--keras 3) unless --keras both asks for a config tf-keras can read too; --keras 2 refuses them. The written model is uncompiled (no optimizer state).
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "The file to write: OUT.keras, OUT.weights.h5 or OUT.h5 (replaced atomically; never one of the inputs).")
    var output: String

    @Flag(help: "Write weights only (save_weights layout) plus the architecture JSON; implied by a .weights.h5 name.")
    var weightsOnly = false

    @Option(help: "Where to write the architecture JSON (default with --weights-only: OUT with extension .json).")
    var archOutput: String?

    @Flag(help: "Replace an existing architecture JSON named after --output (kept by default: it may be the user's own).")
    var overwrite = false

    @Option(help: "Which Keras must load the file: both, 2 (tf-keras / R keras) or 3 (Keras 3 / R keras3). Default: both for .h5, 3 for .keras and .weights.h5 (Keras 3's own formats).")
    var keras: KerasTarget?

    func run() throws {
        CommandWords.choosesKerasVersion = true
        try reportingErrors {
            let format = KerasFileFormat.forOutput(path: output)
            let weightsOnly = weightsOnly || format == .keras3Weights
            let archPath = archOutput ?? (weightsOnly ? jsonPath(for: output) : nil)
            // Checked before reading: a refused path must not cost a model load.
            var files = modelOptions.filePlan()
            files.output("--output", output)
            if let archPath {
                if archOutput != nil { files.output("--arch-output", archPath) } else { files.sideFiles.append(("the architecture JSON named after --output", archPath)) }
            }
            files.overwrite = overwrite
            try files.check()
            if format == .kerasArchive && weightsOnly {
                throw ValidationError("a .keras archive holds the whole model; for weights only name the output OUT.weights.h5")
            }
            let model = try modelOptions.load()
            warnNonFinite(model, path: modelOptions.model)
            try files.checkSpace([(output, estimatedFileBytes(model))] + (archPath.map { [($0, model.configJSON.utf8.count * 2)] } ?? []))
            let written = try model.writeKerasFile(to: output, weightsOnly: weightsOnly,
                                                   target: keras ?? model.graph.defaultTarget(for: format, weightsOnly: weightsOnly),
                                                   architecturePath: archPath)
            let what = weightsOnly ? "weights only" : "full model"
            print("wrote \(output) (\(written.format), \(what), \(written.layerCount) layers, \(written.weightCount) weights, "
                  + "for \(written.target))")
            if let archPath { print("wrote \(archPath) (architecture JSON)") }
            for note in written.notes { print("note: \(note)") }
        }
    }

    /// `weights.h5` -> `weights.json`, `student.weights.h5` -> `student.json`; a name without an
    /// extension gets `.json` appended.
    private func jsonPath(for path: String) -> String {
        if path.lowercased().hasSuffix(".weights.h5") { return String(path.dropLast(".weights.h5".count)) + ".json" }
        let url = URL(fileURLWithPath: path)
        guard !url.pathExtension.isEmpty else { return path + ".json" }
        let base = String(path.dropLast(url.pathExtension.count + 1))
        return base + ".json"
    }
}
