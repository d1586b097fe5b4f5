import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

/// Whole-model gradients of the training plan against finite differences of the training-mode
/// loss: for each trainable tensor, the directional derivative along a random direction.
final class ModelGradientTests: XCTestCase {
    func loss(_ plan: TrainingPlan, _ x: Tensor, _ labels: [Float], classes: Int) -> Double {
        plan.forward([x], training: true, seed: 1, step: 0)
        let node = plan.split.logits
        let s = UnsafeBufferPointer(start: plan.values[node], count: plan.nodes[node].count)
        return Double(Losses.crossentropy(logits: s, targets: .distribution(labels), classes: classes))
    }

    /// `smooth`: relu replaced by swish in the architecture (the weights still bind by name), so
    /// finite differences do not straddle relu's kink at every normalised activation near zero.
    func check(_ caseName: String, trainable: TrainableSelection, smooth: Bool = false,
               file: StaticString = #filePath, line: UInt = #line) throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == caseName })
        var arch = c.path(c.arch)!
        if smooth {
            let text = try String(contentsOfFile: arch, encoding: .utf8)
                .replacingOccurrences(of: "\"activation\": \"relu\"", with: "\"activation\": \"swish\"")
            arch = FileManager.default.temporaryDirectory.appendingPathComponent("\(caseName)-smooth-\(UUID().uuidString).json").path
            try text.write(toFile: arch, atomically: true, encoding: .utf8)
        }
        let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: arch)
        let io = try H5Arrays.read(path: c.path(c.io)!)
        let x = Tensor(shape: io["input"]!.shape, data: io["input"]!.floats)
        let classes = model.graph.nodes[model.graph.outputs[0]].outputShape.last!
        var labels = [Float](repeating: 0, count: x.batch * classes)
        for r in 0..<x.batch { labels[r * classes + (r * 3 + 1) % classes] = 1 }
        var decisions: [String: Bool] = [:]
        for node in model.graph.uniqueLayers { decisions[node.layerKey] = try trainable.isTrainable(node, in: model.graph, frozen: []) }
        let params = ParameterStore(model: model) { node, spec in spec.trainableKind && decisions[node.layerKey]! }
        let plan = try TrainingPlan(model: model, params: params, batch: x.batch)
        _ = loss(plan, x, labels, classes: classes)
        let node = plan.split.logits
        let s = UnsafeBufferPointer(start: plan.values[node], count: plan.nodes[node].count)
        var g = [Float](repeating: 0, count: s.count)
        _ = g.withUnsafeMutableBufferPointer { Losses.crossentropy(logits: s, targets: .distribution(labels), classes: classes, gradient: $0) }
        params.zeroGradients()
        g.withUnsafeBufferPointer { plan.backward(logitsGradient: $0.baseAddress!) }
        var checked = 0
        var rng = SplitMix64(seed: 7)
        for e in params.entries where e.trainable {
            let direction = (0..<e.count).map { _ in Float(rng.next() % 2001) / 1000 - 1 }
            let analytic = (0..<e.count).reduce(0.0) { $0 + Double(e.gradient![$1]) * Double(direction[$1]) }
            let original = Array(UnsafeBufferPointer(start: e.values, count: e.count))
            let h: Float = smooth ? 2e-4 : 1e-3
            for i in 0..<e.count { e.values[i] = original[i] + h * direction[i] }
            let plus = loss(plan, x, labels, classes: classes)
            for i in 0..<e.count { e.values[i] = original[i] - h * direction[i] }
            let minus = loss(plan, x, labels, classes: classes)
            for i in 0..<e.count { e.values[i] = original[i] }
            let numeric = (plus - minus) / (2 * Double(h))
            // float32 losses are quantised: one unit in the last place of the loss over 2h is the
            // noise floor of the difference quotient.
            let floor = 4 * Double(Float(plus).ulp) / (2 * Double(h))
            XCTAssertLessThanOrEqual(abs(numeric - analytic), 2e-2 * max(abs(numeric), abs(analytic)) + floor,
                              "\(caseName) \(e.layerKey)/\(e.spec.name): analytic \(analytic) numeric \(numeric)", file: file, line: line)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 3, file: file, line: line)
        print("\(caseName): \(checked) trainable tensors checked against finite differences")
    }

    func testEfficientNetBlockAllTrainable() throws { try check("k2_effnet_block", trainable: .asConfigured) }
    func testSeedMiniPartlyFrozen() throws { try check("k2_seed_mini", trainable: .asConfigured) }
    func testResNetBlockSmooth() throws { try check("k2_resnet_block", trainable: .asConfigured, smooth: true) }
    func testBatchNormOnDenseFeatures() throws { try check("k2_bn_dense", trainable: .asConfigured) }
}
