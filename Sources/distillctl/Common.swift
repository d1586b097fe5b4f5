import ArgumentParser
import Foundation
import Graph
import Runtime

/// The model arguments every command takes: a full-model file, or weights + `--arch`.
struct ModelOptions: ParsableArguments {
    @Argument(help: "A Keras file: a full model (.h5/.hdf5, Keras 3 .keras), or weights only (.h5, Keras 3 .weights.h5) together with --arch. The format is told by content.")
    var model: String

    @Option(name: .long, help: "Architecture JSON from model.to_json() (Python) or model_to_json() (R).")
    var arch: String?

    func load() throws -> LoadedModel {
        try LoadedModel.load(path: model, archPath: arch)
    }
}

/// Runs a command body; any error becomes one line on stderr and exit code 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        let text = String(describing: error).split(separator: "\n").joined(separator: " ")
        FileHandle.standardError.write(Data("distillctl: error: \(text)\n".utf8))
        throw ExitCode(1)
    }
}
