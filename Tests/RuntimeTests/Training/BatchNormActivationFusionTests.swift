import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

/// A training-mode batch norm and the activation after it run fused (one pass each way); a plan
/// that keeps every value (so fuses nothing) is the reference: the same forward values bit for
/// bit, and the same gradients up to float32 rounding (the fused backward recomputes the
/// normalised value from x).
final class BatchNormActivationFusionTests: XCTestCase {
    func testFusedPlanMatchesUnfusedOnEfficientNetBlock() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_effnet_block" })
        let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: c.path(c.arch)!)
        let io = try H5Arrays.read(path: c.path(c.io)!)
        let x = Tensor(shape: io["input"]!.shape, data: io["input"]!.floats)
        let classes = model.graph.nodes[model.graph.outputs[0]].outputShape.last!
        var labels = [Float](repeating: 0, count: x.batch * classes)
        for r in 0..<x.batch { labels[r * classes + (r * 3 + 1) % classes] = 1 }

        func run(keepingAll: Bool) throws -> (plan: TrainingPlan, logits: [Float], grads: [[Float]]) {
            let params = ParameterStore(model: model) { _, spec in spec.trainableKind }
            let keep = keepingAll ? Set(model.graph.nodes.map(\.id)) : []
            let plan = try TrainingPlan(model: model, params: params, batch: x.batch, keepValues: keep)
            plan.forward([x], training: true, seed: 1, step: 0)
            let node = plan.split.logits
            let s = UnsafeBufferPointer(start: plan.values[node], count: plan.nodes[node].count)
            var g = [Float](repeating: 0, count: s.count)
            _ = g.withUnsafeMutableBufferPointer {
                Losses.crossentropy(logits: s, targets: .distribution(labels), classes: classes, gradient: $0)
            }
            params.zeroGradients()
            g.withUnsafeBufferPointer { plan.backward(logitsGradient: $0.baseAddress!) }
            let grads = params.entries.filter(\.trainable).map { Array(UnsafeBufferPointer(start: $0.gradient!, count: $0.count)) }
            return (plan, Array(s), grads)
        }
        let fused = try run(keepingAll: false), plain = try run(keepingAll: true)
        XCTAssertFalse(fused.plan.activationAfter.isEmpty, "the block's bn -> swish pairs fuse")
        XCTAssertTrue(plain.plan.activationAfter.isEmpty, "kept values are never fused away")
        assertClose(fused.logits, plain.logits, tolerance: 0, "logits")
        XCTAssertEqual(fused.grads.count, plain.grads.count)
        for (k, (a, b)) in zip(fused.grads, plain.grads).enumerated() {
            let scale = b.map { Double(abs($0)) }.max() ?? 0
            // The floor: a bias just before a batch norm has a true gradient of 0 and gets float
            // noise of about 1e-8 either way.
            assertClose(a, b, tolerance: 1e-4 * scale + 1e-7, "trainable tensor \(k)")
        }
    }
}

/// The step no longer zeroes every gradient before the backward pass, only those it did not write
/// afterwards: with every gradient poisoned first, that must give the gradients of a pass after a
/// full zeroing, exactly, on models with branches, shared inputs and batch norms.
final class GradientZeroingTests: XCTestCase {
    func testUnwrittenGradientsAreZeroedAndWrittenOnesOverwritten() throws {
        for name in ["k2_effnet_block", "k2_resnet_block", "k2_mobilenetv3small", "k2_seed_mini", "k2_bn_dense"] {
            let (plan, params, g) = try fixtureAfterTrainingForward(name, gradientSeed: 3)
            params.zeroGradients()
            g.withUnsafeBufferPointer { _ = plan.backward(logitsGradient: $0.baseAddress!) }
            let reference = params.entries.map { e in e.gradient.map { Array(UnsafeBufferPointer(start: $0, count: e.count)) } }
            for e in params.entries { e.gradient?.update(repeating: 1e9, count: e.count) }
            let written = g.withUnsafeBufferPointer { plan.backward(logitsGradient: $0.baseAddress!) }
            params.zeroGradients(except: written)
            XCTAssertFalse(written.isEmpty, name)
            for (k, e) in params.entries.enumerated() {
                guard let r = reference[k], let p = e.gradient else { continue }
                assertClose(Array(UnsafeBufferPointer(start: p, count: e.count)), r, tolerance: 0, "\(name) entry \(k)")
            }
        }
    }
}
