import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

/// Fixture models run with bf16 products against Keras's float32 outputs.
final class BFloat16FixtureTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(KernelISA.bf16Available, "this CPU has no AVX512_BF16: bf16 is refused here (PrecisionCommandTests checks that)")
    }

    /// (largest |bf16 - Keras| over the outputs, largest |Keras| value, top-1 agreement per row).
    func compare(_ c: FixtureCase) throws -> (diff: Double, scale: Double, agree: Int, rows: Int) {
        let arrays = try H5Arrays.read(path: c.path(c.io)!)
        let form = c.forms[0]
        let model = try LoadedModel.load(path: form.model, archPath: form.arch)
        let fixtureOutputs = FixtureOutputTests(name: "numbered", testClosure: { _ in })
        let inputs = try fixtureOutputs.numbered(arrays, "input", model.graph.inputs.count, c)
        let expected = try fixtureOutputs.numbered(arrays, "output", model.graph.outputs.count, c)
        let outputs = try InferenceSession(model: model, precision: .bfloat16).run(inputs)
        var diff = 0.0, scale = 0.0, agree = 0, rows = 0
        for (got, want) in zip(outputs, expected) {
            XCTAssertEqual(got.shape, want.shape, c.name)
            for (a, b) in zip(got.data, want.data) { diff = max(diff, abs(Double(a) - Double(b))); scale = max(scale, abs(Double(b))) }
            let width = want.shape.last ?? 1
            if want.shape.count == 2 && width > 1 {
                for r in 0..<want.shape[0] {
                    let g = got.data[(r * width)..<((r + 1) * width)], w = want.data[(r * width)..<((r + 1) * width)]
                    rows += 1
                    if g.firstIndex(of: g.max()!) == w.firstIndex(of: w.max()!) { agree += 1 }
                }
            }
        }
        return (diff, scale, agree, rows)
    }

    /// The seed's EfficientNetB0 (228x228, random weights, Keras's softmax outputs): every
    /// probability within 0.05 of Keras's float32 (measured: 0.033) and the same top-1 for both
    /// images (Keras's margins between the top two are 0.32 and 0.43, far above the bound).
    func testSeedEfficientNetB0WithinBoundOfKeras() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_effnetb0" })
        let r = try compare(c)
        XCTAssertLessThanOrEqual(r.diff, 0.05, "largest probability difference")
        XCTAssertGreaterThan(r.diff, 1e-4, "bf16 products should differ from float32 more than the float32 parity")
        XCTAssertEqual(r.rows, 2)
        XCTAssertEqual(r.agree, r.rows, "top-1 as Keras")
        print("seed EfficientNetB0 in bf16: largest |diff| \(r.diff) from Keras's float32, top-1 \(r.agree)/\(r.rows)")
    }

    /// Models without pointwise convolutions or dense layers run entirely in float32 under a
    /// bf16 session, so they keep the float32 parity with Keras (1e-4).
    func testModelsWithoutProductsKeepFloat32Parity() throws {
        let names = ["k2_depthwise", "k2_pooling", "k2_reshape_ops", "k2_relu_softmax_layers", "k2_rescaling_normalization",
                     "k2_bn_conv", "k3_depthwise", "k3_pooling"]
        let cases = try fixtureCases().filter { names.contains($0.name) }
        XCTAssertEqual(cases.count, names.count)
        for c in cases {
            let r = try compare(c)
            XCTAssertLessThanOrEqual(r.diff, FixtureOutputTests.tolerance, c.name)
        }
    }
}
