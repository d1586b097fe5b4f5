import ArgumentParser
import Graph
import Runtime

struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary", abstract: "Print a Keras-style summary: layers, output shapes, parameter counts.")

    @OptionGroup var modelOptions: ModelOptions

    func run() throws {
        try reportingErrors {
            let model = try modelOptions.load()
            warnNonFinite(model, path: modelOptions.model)
            print(model.graph.summary())
        }
    }
}
