import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

/// A ZeroPadding2D read only by a convolution is folded into that convolution's geometry in the
/// training plan: the same outputs and gradients as the plan that pads explicitly, with no
/// padding node read or computed. The kernels skip the taps over the padding instead of multiplying zeros,
/// so the sums may differ in the last bit; the bound is float32 rounding.
final class PaddingFoldTests: XCTestCase {
    func testFoldedPaddingMatchesExplicitPadding() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_effnet_block" })
        let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: c.path(c.arch)!)
        let io = try H5Arrays.read(path: c.path(c.io)!)
        let input = try XCTUnwrap(io["input"])
        let x = Tensor(shape: input.shape, data: input.floats)
        func run(fold: Bool) throws -> (plan: TrainingPlan, output: [Float], grads: [[Float]]) {
            let params = ParameterStore(model: model) { _, spec in spec.trainableKind }
            let plan = try TrainingPlan(model: model, params: params, batch: x.batch, foldPadding: fold)
            plan.forward([x], training: true, seed: 1, step: 0)
            var rng = SplitMix64(seed: 9)
            let g = (0..<plan.nodes[plan.split.logits].count).map { _ in Float(rng.next() % 2001) / 1000 - 1 }
            params.zeroGradients()
            g.withUnsafeBufferPointer { _ = plan.backward(logitsGradient: $0.baseAddress!) }
            let out = Array(UnsafeBufferPointer(start: plan.values[plan.split.output], count: plan.nodes[plan.split.output].count))
            let grads = params.entries.compactMap { e in e.gradient.map { Array(UnsafeBufferPointer(start: $0, count: e.count)) } }
            return (plan, out, grads)
        }
        func pads(_ plan: TrainingPlan) -> Set<Int> {
            Set(plan.nodes.indices.filter { i in
                if case .move(.pad) = plan.nodes[i].op { return plan.nodes.contains { $0.inputs.contains(i) } }
                return false
            })
        }
        let explicit = try run(fold: false), folded = try run(fold: true)
        XCTAssertGreaterThan(pads(explicit.plan).count, 0, "the fixture pads explicitly")
        XCTAssertTrue(explicit.plan.folded.isEmpty)
        XCTAssertEqual(pads(folded.plan), [], "no padding node is read")
        XCTAssertEqual(folded.plan.folded, pads(explicit.plan))
        assertRelative(folded.output, explicit.output, rel: 1e-5, floor: 1e-3, "output")
        XCTAssertEqual(folded.grads.count, explicit.grads.count)
        XCTAssertTrue(explicit.grads.contains { $0.contains { $0 != 0 } })
        for (k, (a, b)) in zip(folded.grads, explicit.grads).enumerated() {
            let scale = Double(b.map { abs($0) }.max() ?? 0)
            assertRelative(a, b, rel: 1e-4, floor: max(1e-6, scale * 1e-3), "gradient \(k)")
        }
    }
}
