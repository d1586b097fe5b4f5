import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

/// Squeeze-and-excitation's tensor gets its gradient in one pass from the pool's backward (the
/// excite's part and the pool's together): the same gradients, bit for bit, as the unfused
/// backward (the excite's write, then the pool's add), on every model here that has the pattern;
/// and the same again when a batch norm's backward makes that gradient in its first pass.
final class SqueezeExciteFusionTests: XCTestCase {
    func testFusedBackwardMatchesUnfused() throws {
        for name in ["k2_effnet_block", "k2_mobilenetv3small", "k2_regnety002"] {
            let (plan, params, g) = try fixtureAfterTrainingForward(name, gradientSeed: 5)
            XCTAssertFalse(plan.squeezeExcite.isEmpty, "\(name) has squeeze-and-excitation")
            func gradients(fused: Bool, intoBatchNorm: Bool) -> [[Float]?] {
                plan.fuseSqueezeExcite = fused
                plan.fuseExciteIntoBatchNorm = intoBatchNorm
                params.zeroGradients()
                g.withUnsafeBufferPointer { _ = plan.backward(logitsGradient: $0.baseAddress!) }
                return params.entries.map { e in e.gradient.map { Array(UnsafeBufferPointer(start: $0, count: e.count)) } }
            }
            let plain = gradients(fused: false, intoBatchNorm: false)
            let fused = gradients(fused: true, intoBatchNorm: false)
            XCTAssertEqual(plan.excitesMadeByBatchNorm, 0, name)
            let intoBatchNorm = gradients(fused: true, intoBatchNorm: true)
            if name == "k2_effnet_block" {
                // bn -> swish -> squeeze-and-excitation: the batch norm's pass makes the gradient
                // where the 16-lane swish kernel runs.
                XCTAssertEqual(plan.excitesMadeByBatchNorm > 0, KernelISA.avx512, name)
            }
            XCTAssertTrue(plain.contains { $0?.contains { $0 != 0 } ?? false }, name)
            for (k, (a, b)) in zip(fused, plain).enumerated() {
                guard let a, let b else { continue }
                assertClose(a, b, tolerance: 0, "\(name) entry \(k)")
            }
            for (k, (a, b)) in zip(intoBatchNorm, plain).enumerated() {
                guard let a, let b else { continue }
                assertClose(a, b, tolerance: 0, "\(name) entry \(k), made in the batch norm's pass")
            }
        }
    }
}
