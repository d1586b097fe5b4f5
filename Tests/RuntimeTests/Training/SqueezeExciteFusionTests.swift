import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

/// Squeeze-and-excitation's tensor gets its gradient in one pass from the pool's backward (the
/// excite's part and the pool's together): the same gradients, bit for bit, as the unfused
/// backward (the excite's write, then the pool's add), on every model here that has the pattern.
final class SqueezeExciteFusionTests: XCTestCase {
    func testFusedBackwardMatchesUnfused() throws {
        for name in ["k2_effnet_block", "k2_mobilenetv3small", "k2_regnety002"] {
            let c = try XCTUnwrap(fixtureCases().first { $0.name == name })
            let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: c.path(c.arch)!)
            let io = try H5Arrays.read(path: c.path(c.io)!)
            let input = try XCTUnwrap(io["input"], name)
            let x = Tensor(shape: input.shape, data: input.floats)
            let params = ParameterStore(model: model) { _, spec in spec.trainableKind }
            let plan = try TrainingPlan(model: model, params: params, batch: x.batch)
            XCTAssertFalse(plan.squeezeExcite.isEmpty, "\(name) has squeeze-and-excitation")
            plan.forward([x], training: true, seed: 1, step: 0)
            let node = plan.split.logits
            var rng = SplitMix64(seed: 5)
            let g = (0..<plan.nodes[node].count).map { _ in Float(rng.next() % 2001) / 1000 - 1 }
            func gradients(fused: Bool) -> [[Float]?] {
                plan.fuseSqueezeExcite = fused
                params.zeroGradients()
                g.withUnsafeBufferPointer { _ = plan.backward(logitsGradient: $0.baseAddress!) }
                return params.entries.map { e in e.gradient.map { Array(UnsafeBufferPointer(start: $0, count: e.count)) } }
            }
            let plain = gradients(fused: false), fused = gradients(fused: true)
            XCTAssertTrue(plain.contains { $0?.contains { $0 != 0 } ?? false }, name)
            for (k, (a, b)) in zip(fused, plain).enumerated() {
                guard let a, let b else { continue }
                assertClose(a, b, tolerance: 0, "\(name) entry \(k)")
            }
        }
    }
}
