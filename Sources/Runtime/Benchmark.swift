import Foundation
import Graph

/// Timing of a model, as `distillctl bench` reports it. A measurement, never an assertion.
public struct BenchmarkResult: Sendable {
    public var batchSize: Int
    public var latencies: [Double]      // seconds per batch
    public var peakBytes: Int
    /// Trainable parameters of a timed distillation step (nil for inference).
    public var trainableParameters: Int? = nil
    /// Where a distillation step's time goes (`distillation(..., profile: true)`).
    public var phaseReport: String? = nil

    public var imagesPerSecond: Double { Double(batchSize * latencies.count) / latencies.reduce(0, +) }
    public func percentile(_ p: Double) -> Double {
        let sorted = latencies.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p + 0.5))]
    }

    public var report: String {
        String(format: "%.1f img/s (batch %d, %d iterations, %d threads)\nlatency median %.2f ms, p90 %.2f ms\npeak memory %.0f MiB",
               imagesPerSecond, batchSize, latencies.count, RuntimeThreads.count,
               percentile(0.5) * 1000, percentile(0.9) * 1000, Double(peakBytes) / 1_048_576)
    }
}

public enum Benchmark {
    /// Random inputs of the model's shape (unknown sizes become 224), values 0-255.
    static func inputs(for session: InferenceSession, batchSize: Int) -> [Tensor] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return session.inputShapes.map { shape in
            let dims = [batchSize] + shape.map { $0 < 0 ? 224 : $0 }
            let count = dims.reduce(1, *)
            let data = (0..<count).map { _ -> Float in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(state >> 40) / Float(1 << 24) * 255
            }
            return Tensor(shape: dims, data: data)
        }
    }

    public static func inference(session: InferenceSession, batchSize: Int, iterations: Int,
                                 warmup: Int = 3) throws -> BenchmarkResult {
        let x = inputs(for: session, batchSize: batchSize)
        for _ in 0..<warmup { _ = try session.run(x, batchSize: batchSize) }
        var latencies: [Double] = []
        for _ in 0..<max(1, iterations) {
            let start = DispatchTimeNanos.now()
            _ = try session.run(x, batchSize: batchSize)
            latencies.append(Double(DispatchTimeNanos.now() - start) / 1e9)
        }
        return BenchmarkResult(batchSize: batchSize, latencies: latencies, peakBytes: peakResidentBytes())
    }

    /// Time per kind of plan operation over a few runs, largest first, then the `top` slowest
    /// operations by the Keras layer they come from.
    public static func profile(session: InferenceSession, batchSize: Int, runs: Int = 5, top: Int = 12) throws -> String {
        let x = inputs(for: session, batchSize: batchSize)
        let plan = try session.plan(for: x.map(\.shape))
        var byKind: [String: Double] = [:]
        var byNode: [String: Double] = [:]
        for _ in 0..<runs {
            plan.runProfiled(x) { node, seconds in
                byKind[node.kindName, default: 0] += seconds / Double(runs)
                byNode["\(node.layer) (\(node.kindName) \(node.shape.dropFirst().map(String.init).joined(separator: "x")))",
                       default: 0] += seconds / Double(runs)
            }
        }
        let total = byKind.values.reduce(0, +)
        func lines(_ table: [String: Double], limit: Int) -> [String] {
            table.sorted { $0.value > $1.value }.prefix(limit).map {
                "  " + $0.key.padding(toLength: max(18, $0.key.count), withPad: " ", startingAt: 0)
                    + String(format: " %8.3f ms  %5.1f%%", $0.value * 1000, 100 * $0.value / total)
            }
        }
        return (["time per batch by operation (\(String(format: "%.2f", total * 1000)) ms in all):"]
                + lines(byKind, limit: byKind.count)
                + ["slowest operations, by layer:"] + lines(byNode, limit: top)).joined(separator: "\n")
    }

    /// Peak resident set size of this process (Linux reports kilobytes).
    public static func peakResidentBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
    }
}

extension Benchmark {
    /// Times distillation steps of `student` taught by `teacher` (teacher forward in inference
    /// mode, student forward and backward in training mode, Adam) on random batches.
    /// With `profile`, the result's `phases` has the time per phase of a step, averaged.
    public static func distillation(teacher: LoadedModel, student: LoadedModel, config: DistillConfig,
                                    batchSize: Int, iterations: Int, warmup: Int = 2,
                                    profile: Bool = false) throws -> BenchmarkResult {
        let distiller = try Distiller(student: student, teacher: teacher, optimizer: Adam(), config: config)
        let session = try InferenceSession(model: student)
        let x = inputs(for: session, batchSize: batchSize)[0]
        var labels = [Float](repeating: 0, count: batchSize * distiller.classes)
        for r in 0..<batchSize { labels[r * distiller.classes + r % distiller.classes] = 1 }
        for i in 0..<warmup { _ = try distiller.step(x, labels: labels, index: i) }
        if profile {
            distiller.phases = PhaseTimes()
            try distiller.plan(batch: batchSize).nodeTimes = [:]
        }
        var latencies: [Double] = []
        for i in 0..<max(1, iterations) {
            let start = DispatchTimeNanos.now()
            _ = try distiller.step(x, labels: labels, index: warmup + i)
            latencies.append(Double(DispatchTimeNanos.now() - start) / 1e9)
        }
        var result = BenchmarkResult(batchSize: batchSize, latencies: latencies, peakBytes: peakResidentBytes(),
                                     trainableParameters: distiller.params.trainableCount)
        if let p = distiller.phases {
            let n = Double(latencies.count), total = latencies.reduce(0, +) / n
            // One line: a name, its seconds over all the steps as ms per step, its share of a step.
            func line(_ name: String, _ seconds: Double) -> String {
                "  " + name.padding(toLength: 28, withPad: " ", startingAt: 0)
                    + String(format: "%7.1f ms  %5.1f%%", seconds / n * 1000, 100 * seconds / n / total)
            }
            let nodes = try distiller.plan(batch: batchSize).nodeTimes ?? [:]
            result.phaseReport = (["time per step by phase (\(String(format: "%.1f", total * 1000)) ms in all):"]
                + p.order.map { line($0, p.seconds[$0]!) }
                + ["trainable part by kind of operation:"]
                + nodes.sorted { $0.value > $1.value }.map { line($0.key, $0.value) }).joined(separator: "\n")
        }
        return result
    }
}
