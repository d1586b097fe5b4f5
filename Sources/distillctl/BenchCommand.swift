import ArgumentParser
import Foundation
import Runtime

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time inference: images per second, latency median and p90, peak memory.",
        discussion: """
        Runs a warm-up, then --iterations batches of --batch-size random inputs (0-255, as images
        reach Keras's applications) and prints `<images per second> img/s` with the latency and the
        process's peak resident memory. --profile adds the time per kind of operation.
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Images per batch.")
    var batchSize: Int = 1

    @Option(help: "Timed batches after the warm-up.")
    var iterations: Int = 20

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Print where the time goes, per kind of operation.")
    var profile = false

    func run() throws {
        try reportingErrors {
            if let threads { RuntimeThreads.set(threads) }
            let model = try modelOptions.load()
            let session = try InferenceSession(model: model)
            let result = try Benchmark.inference(session: session, batchSize: batchSize, iterations: iterations)
            print(result.report)
            if profile { print(try Benchmark.profile(session: session, batchSize: batchSize)) }
        }
    }
}
