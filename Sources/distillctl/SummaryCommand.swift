import ArgumentParser
import Graph

struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary", abstract: "Print a Keras-style summary: layers, output shapes, parameter counts.")

    @OptionGroup var modelOptions: ModelOptions

    func run() throws {
        try reportingErrors {
            let model = try modelOptions.load()
            print(model.graph.summary())
        }
    }
}
