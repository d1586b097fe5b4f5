import Foundation
import Graph
import TestSupport
import XCTest
@testable import Runtime

/// MobileNetV3's hard-sigmoid (relu6(x + 3) * (1/6)) and tf-keras's hard-swish (Multiply of x and
/// its hard-sigmoid), written as separate operations, cost no pass of their own in the fused plan:
/// every hard-swish is a kernel's hard_silu epilogue, the `* (1/6)` is folded into the ReLU(6)'s
/// producer. Outputs stay Keras's (FixtureOutputTests checks the same cases within 1e-4).
final class HardSwishFusionTests: XCTestCase {
    func plan(_ name: String) throws -> [PlanNode] {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == name })
        let form = try XCTUnwrap(c.forms.first)
        let model = try LoadedModel.load(path: form.model, archPath: form.arch)
        let session = try InferenceSession(model: model)
        return try session.planNodes(inputShapes: [[1, 32, 32, 3]]).nodes
    }

    func count(_ nodes: [PlanNode], _ match: (PlanOp) -> Bool) -> Int { nodes.filter { match($0.op) }.count }

    func act(_ op: PlanOp) -> ActivationSpec? {
        switch op {
        case .conv(_, _, _, let a), .depthwise(_, _, _, _, let a), .dense(_, _, _, _, let a), .affine(_, _, let a),
             .scaledPointwise(_, _, _, let a):
            return a
        case .expandDepthwise(let f): return f.act
        default: return nil
        }
    }

    func testTfKerasHardSwishBecomesOneEpilogue() throws {
        let nodes = try plan("k2_mobilenetv3small")
        // MobileNetV3Small has 19 hard-swish activations (tf-keras: 19 Multiply layers). The multiplies
        // left are squeeze-and-excitation's gates where the map is 1x1 (32 px input), not hard-swish.
        let multiplies = nodes.filter { if case .merge(.multiply) = $0.op { return true } else { return false } }
        XCTAssertEqual(multiplies.map(\.layer), ["expanded_conv_8/squeeze_excite/Mul", "expanded_conv_9/squeeze_excite/Mul",
                                                  "expanded_conv_10/squeeze_excite/Mul"])
        let hardSilu = count(nodes) { self.act($0)?.kind == .hardSilu }
        XCTAssertEqual(hardSilu + nodes.filter { if case .expandDepthwise(let f) = $0.op { return f.expandAct.kind == .hardSilu } else { return false } }.count, 19)
        // Only the input Rescaling is left as an affine pass (it cannot fold across the padding).
        XCTAssertEqual(count(nodes) { if case .affine = $0 { return true } else { return false } }, 1)
    }

    func testKeras3HardSigmoidScaleFolds() throws {
        let nodes = try plan("k3_mobilenetv3small")
        XCTAssertEqual(count(nodes) { if case .affine = $0 { return true } else { return false } }, 1)
        // The squeeze-and-excitation gates: ReLU clipped at 6 * (1/6) = 1 in the second 1x1 convolution.
        XCTAssertGreaterThan(count(nodes) { a in self.act(a).map { $0.kind == .relu && abs(($0.maxValue ?? 0) - 1) < 1e-6 } ?? false }, 0)
    }
}
