import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

/// Resizing's bicubic and area (TensorFlow's ResizeBicubic with half-pixel centres and ResizeArea)
/// layer by layer against the intermediates real Keras stored (both Kerases; up and down, with
/// crop_to_aspect_ratio, on 3 and 5 channels): within 1e-4 of the largest value (pixels 0..255).
final class ResizeMethodFixtureTests: XCTestCase {
    func testEveryResizeLayerMatchesKeras() throws {
        var checked = 0
        for name in ["k2_resizing_methods", "k3_resizing_methods"] {
            let c = try XCTUnwrap(fixtureCases().first { $0.name == name })
            let io = try H5Arrays.read(path: c.path(c.io)!)
            let form = try XCTUnwrap(c.forms.first)
            let model = try LoadedModel.load(path: form.model, archPath: form.arch)
            let x = try XCTUnwrap(io["input"])
            for layer in ["bicubic_up", "area_down", "bicubic_down_crop", "area_up"] {
                let want = try XCTUnwrap(io["layers/\(layer)"], "\(name): no layers/\(layer)")
                for isa in kernelISAs {
                    let got = try KernelISA.with(avx512: isa) {
                        try InferenceSession(model: model, outputLayers: [layer]).run([Tensor(shape: x.shape, data: x.floats)])[0]
                    }
                    XCTAssertEqual(got.shape, want.shape, "\(name) \(layer)")
                    let scale = max(1, want.floats.map { abs(Double($0)) }.max() ?? 0)
                    assertClose(got.data, want.floats, tolerance: 1e-4 * scale, "\(name) \(layer)")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 8)
    }
}
