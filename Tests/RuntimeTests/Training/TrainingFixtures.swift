// Reading fixtures/training/math/*.json (written by fixtures/make_training_math_fixtures.py with
// tf-keras 2.21 and Keras 3.15). Every float in them is the exact float32 value written as a
// double, so Double -> Float conversion is exact.
import Foundation
import Graph
import H5Model
import XCTest
import TestSupport
@testable import Runtime

/// Which Keras wrote a fixture file, and the flavor distillctl uses to match it.
let kerasFlavors: [(file: String, flavor: KerasFlavor)] = [("k2", .tfKeras2), ("k3", .keras3)]

func loadTrainingFixture(_ name: String) throws -> [String: Any] {
    let url = fixturesDirectory.appendingPathComponent("training/math/\(name).json")
    let data = try Data(contentsOf: url)
    guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw RuntimeError("\(name).json is not a JSON object")
    }
    return object
}

/// A nested JSON number list, flattened (row-major) to floats.
func floats(_ value: Any?) -> [Float] {
    switch value {
    case let n as NSNumber: return [Float(n.doubleValue)]
    case let list as [Any]: return list.flatMap { floats($0) }
    default: return []
    }
}

func ints(_ value: Any?) -> [Int] {
    (value as? [Any] ?? []).map { ($0 as! NSNumber).intValue }
}

func double(_ value: Any?) -> Double? { (value as? NSNumber)?.doubleValue }

/// Worst relative difference |a - e| / |e| (|e| floored at `floor`), and where it is.
func worstRelative(_ actual: [Float], _ expected: [Float], floor: Double = 1e-30) -> (rel: Double, index: Int) {
    var worst = 0.0, at = -1
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        let d = abs(Double(a) - Double(e)) / max(abs(Double(e)), floor)
        if d.isNaN || d > worst { worst = d.isNaN ? .infinity : d; at = i }
    }
    return (worst, at)
}

/// Fails unless every element is within `rel` relative (|e| floored at `floor`); returns the worst.
@discardableResult
func assertRelative(_ actual: [Float], _ expected: [Float], rel: Double, floor: Double = 1e-30, _ message: String,
                    file: StaticString = #filePath, line: UInt = #line) -> Double {
    guard actual.count == expected.count else {
        XCTFail("\(message): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return .infinity
    }
    let (worst, at) = worstRelative(actual, expected, floor: floor)
    if worst > rel {
        XCTFail("\(message): worst relative difference \(worst) > \(rel) at \(at): \(actual[at]) vs \(expected[at])",
                file: file, line: line)
    }
    return worst
}

/// Keeps the worst value seen per label and prints them, so test logs carry the measured numbers.
final class WorstDifferences {
    private var worst: [(String, Double)] = []
    func note(_ label: String, _ value: Double) {
        if let i = worst.firstIndex(where: { $0.0 == label }) { worst[i].1 = max(worst[i].1, value) }
        else { worst.append((label, value)) }
    }
    func report(_ title: String) {
        print("\(title):")
        for (label, value) in worst { print("  \(label): \(value)") }
    }
}

/// A fixture model (every weight trainable) after one training-mode forward pass of its stored
/// input, with a seeded random gradient in [-1, 1] for its logits: the start of the tests that
/// compare two ways of running the backward pass.
func fixtureAfterTrainingForward(_ name: String, gradientSeed: UInt64) throws
    -> (plan: TrainingPlan, params: ParameterStore, logitsGradient: [Float]) {
    let c = try XCTUnwrap(fixtureCases().first { $0.name == name })
    let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: c.path(c.arch)!)
    let io = try H5Arrays.read(path: c.path(c.io)!)
    let input = try XCTUnwrap(io["input"], name)
    let x = Tensor(shape: input.shape, data: input.floats)
    let params = ParameterStore(model: model) { _, spec in spec.trainableKind }
    let plan = try TrainingPlan(model: model, params: params, batch: x.batch)
    plan.forward([x], training: true, seed: 1, step: 0)
    var rng = SplitMix64(seed: gradientSeed)
    let g = (0..<plan.nodes[plan.split.logits].count).map { _ in Float(rng.next() % 2001) / 1000 - 1 }
    return (plan, params, g)
}

/// The seed's EfficientNetB0 fixture (base + head, 228x228).
func seedModel() throws -> LoadedModel {
    let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_effnetb0" })
    return try LoadedModel.load(path: c.path(c.model!)!, archPath: nil)
}

/// One step of `distiller` per entry of `rows`, each on its own batch of that many random
/// 228x228 images (0-255, drawn from `seed`) with labels cycling over the classes: the losses, and
/// every parameter after the steps.
func seedSteps(_ distiller: Distiller, rows: [Int], seed: UInt64) throws -> (losses: [Float], params: [[Float]]) {
    var rng = SeededRandom(seed)
    var losses: [Float] = []
    for (step, n) in rows.enumerated() {
        let x = Tensor(shape: [n, 228, 228, 3], data: rng.floats(n * 228 * 228 * 3, 0, 255))
        var labels = [Float](repeating: 0, count: n * distiller.classes)
        for r in 0..<n { labels[r * distiller.classes + (r + step) % distiller.classes] = 1 }
        losses.append(try distiller.step(x, labels: labels, index: step).total)
    }
    return (losses, distiller.params.entries.map { Array(UnsafeBufferPointer(start: $0.values, count: $0.count)) })
}
