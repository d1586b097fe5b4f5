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
            let (plan, params, g) = try fixtureAfterTrainingForward(name, gradientSeed: 5)
            XCTAssertFalse(plan.squeezeExcite.isEmpty, "\(name) has squeeze-and-excitation")
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
