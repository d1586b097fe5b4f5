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
        process's peak resident memory. --profile adds the time per kind of operation (with --train:
        per phase of a step).
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Images per batch.")
    var batchSize: Int = 1

    @Option(help: "Timed batches after the warm-up.")
    var iterations: Int = 20

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    @Option(help: "Number format of the pointwise convolutions and dense layers: f32, or bf16 (needs AVX512_BF16). With --train: the teacher's.")
    var precision: Precision = .float32

    @Flag(help: "Print where the time goes, per kind of operation.")
    var profile = false

    @Flag(help: "Time distillation steps instead (MODEL teaches a copy of itself: teacher forward, student forward and backward, Adam).")
    var train = false

    @Option(help: "With --train: train only from this layer on (default: the model's trainable flags).")
    var unfreezeFrom: String?

    @Flag(help: "With --train: train only the layers outside nested models (the head on a frozen base).")
    var headOnly = false

    func validate() throws {
        if headOnly && unfreezeFrom != nil { throw ValidationError("--head-only and --unfreeze-from exclude each other") }
        if (headOnly || unfreezeFrom != nil) && !train { throw ValidationError("--head-only and --unfreeze-from need --train") }
    }

    func run() throws {
        try reportingErrors {
            guard batchSize > 0, iterations > 0 else { throw CommandLineError("--batch-size and --iterations must be positive") }
            try checkPrecision(precision, flag: "--precision")
            try setThreads(threads)
            let model = try modelOptions.load()
            warnNonFinite(model, path: modelOptions.model)
            let what = "bench --batch-size \(batchSize)" + (threads.map { " --threads \($0)" } ?? "")
            let estimate = try InferenceSession(model: model).estimatedBytes(items: batchSize, batchSize: batchSize)
            // A training step keeps the student's activations for the backward pass and adds the
            // teacher's forward, the gradients and the optimizer's slots: about four times as much.
            try checkMemory(what: what, bytes: train ? (estimate > Int.max / 4 ? Int.max : estimate * 4) : estimate)
            if train {
                var config = DistillConfig()
                if let unfreezeFrom { config.trainable = .unfreezeFrom(unfreezeFrom) }
                if headOnly { config.trainable = .headOnly }
                config.teacherPrecision = precision
                let result = try Benchmark.distillation(teacher: model, student: model, config: config,
                                                        batchSize: batchSize, iterations: iterations, profile: profile)
                print(result.report.replacingOccurrences(of: "img/s", with: "img/s in distillation steps"))
                print(String(format: "%.3f s per step", result.percentile(0.5)))
                print("trainable parameters \(result.trainableParameters ?? 0)")
                if let phases = result.phaseReport { print(phases) }
                return
            }
            let session = try InferenceSession(model: model, precision: precision)
            let result = try Benchmark.inference(session: session, batchSize: batchSize, iterations: iterations)
            print(result.report)
            if profile { print(try Benchmark.profile(session: session, batchSize: batchSize)) }
        }
    }
}
