import ArgumentParser
import Foundation
import H5Model
import Runtime

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Run a fixture's stored inputs and compare with its stored outputs (made by Keras).",
        discussion: """
        FIXTURE.h5 holds datasets `input` (or `input_0`, `input_1`, ...) and `output` (or `output_0`, ...),
        as fixtures/make_fixtures.py writes them. Prints the largest absolute difference per output and
        exits non-zero when it exceeds --tolerance.
        """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "HDF5 file with the inputs and Keras's outputs.")
    var fixture: String

    @Option(help: "Largest absolute difference allowed.")
    var tolerance: Double = 1e-4

    func run() throws {
        try reportingErrors {
            let model = try modelOptions.load()
            warnNonFinite(model, path: modelOptions.model)
            let arrays = try H5Arrays.read(path: fixture)
            let inputs = try numbered(arrays, "input", count: model.graph.inputs.count)
            let expected = try numbered(arrays, "output", count: model.graph.outputs.count)
            let session = try InferenceSession(model: model)
            let outputs: [Tensor]
            do { outputs = try session.run(inputs) } catch { throw RuntimeError("\(fixture): \(error)") }
            var worst = 0.0
            for (i, (got, want)) in zip(outputs, expected).enumerated() {
                guard got.shape == want.shape else {
                    throw RuntimeError("\(fixture): output \(i) has shape \(got.shape), Keras's has \(want.shape)")
                }
                let diff = zip(got.data, want.data).map { abs(Double($0) - Double($1)) }.max() ?? 0
                let bad = zip(got.data, want.data).contains { $0.isNaN != $1.isNaN }
                worst = bad ? .infinity : max(worst, diff)
                print("output \(i) \(want.shape): max |difference| \(String(format: "%.3g", diff))")
            }
            if worst > tolerance {
                throw RuntimeError("\(fixture): max difference \(String(format: "%.3g", worst)) exceeds tolerance \(tolerance)")
            }
            print("ok: within \(tolerance)")
        }
    }

    /// `input` alone, or `input_0`, `input_1`, ... for several.
    private func numbered(_ arrays: [String: H5Array], _ base: String, count: Int) throws -> [Tensor] {
        if count == 1, let a = arrays[base] ?? arrays["\(base)_0"] { return [Tensor(shape: a.shape, data: a.floats)] }
        return try (0..<count).map { i in
            guard let a = arrays["\(base)_\(i)"] else {
                throw RuntimeError("\(fixture): no dataset '\(base)_\(i)' (the model has \(count) \(base)s)")
            }
            return Tensor(shape: a.shape, data: a.floats)
        }
    }
}
