import Foundation
import Graph
import TestSupport
import XCTest
@testable import Runtime

/// EfficientNet reads each block's projection through its drop-connect Dropout (an identity view
/// at inference) before the residual Add. The plan sees through such views, so every residual Add
/// is the projection's epilogue (no pass of its own); under both instruction sets. Outputs stay
/// Keras's (FixtureOutputTests checks the seed within 1e-4).
final class ResidualFoldTests: XCTestCase {
    func testSeedResidualAddsRideInTheProjections() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_effnetb0" })
        let model = try LoadedModel.load(path: c.path(c.model!)!, archPath: nil)
        for isa in kernelISAs {
            let nodes = try KernelISA.with(avx512: isa) {
                try InferenceSession(model: model).plan(for: [[1, 228, 228, 3]]).nodes
            }
            let label = isa ? "AVX-512" : "AVX2"
            let merges = nodes.filter { if case .merge = $0.op { return true } else { return false } }
            XCTAssertEqual(merges.map(\.layer), [], label)
            // EfficientNetB0 has nine residual Adds (blocks 2b, 3b, 4b-c, 5b-c, 6b-d).
            let folded = nodes.filter { node in
                guard node.layer.hasSuffix("_add") else { return false }
                if case .scaledPointwise(let p, _, _, _) = node.op { return p.residual }
                return false
            }
            XCTAssertEqual(folded.count, 9, label)
            // The Dropout views no longer appear as steps.
            XCTAssertFalse(nodes.contains { $0.layer.hasSuffix("_drop") }, label)
        }
    }
}
