// Feature distillation against Keras 3's own distiller (fixtures/make_distiller_parity_fixture.py:
// keras.distillation.Distiller with LogitsDistillation and FeatureDistillation, one step's loss
// and student gradients), the teacher-map resize against keras.ops.image.resize, and each feature
// loss's gradient (pooling and adaptor included) against central differences.
import Foundation
import XCTest
import TestSupport
@testable import Runtime
import Graph

final class FeatureDistillationTests: XCTestCase {
    func testOneStepMatchesKeras3Distiller() throws {
        let fixture = try loadTrainingFixture("distiller_parity")
        let dir = fixturesDirectory.appendingPathComponent("training/distiller_parity")
        let teacher = try LoadedModel.load(path: dir.appendingPathComponent("teacher.keras").path)
        let student = try LoadedModel.load(path: dir.appendingPathComponent("student.keras").path)
        let x = Tensor(shape: ints(fixture["x_shape"]), data: floats(fixture["x"]))
        let labels = floats(fixture["labels"])
        let cases = fixture["cases"] as! [[String: Any]]
        XCTAssertEqual(cases.count, 5)
        var seen = Set<String>()
        for c in cases {
            let name = c["name"] as! String
            var config = DistillConfig()
            config.alpha = double(c["alpha"])!
            config.temperature = double(c["temperature"])!
            config.features = (c["features"] as! [[String: Any]]).map {
                FeaturePair(teacherLayer: $0["teacher"] as! String, studentLayer: $0["student"] as! String,
                            loss: FeatureLoss(rawValue: $0["loss"] as! String)!, weight: double($0["weight"])!)
            }
            seen.formUnion(config.features.map(\.loss.rawValue))
            let distiller = try Distiller(student: student, teacher: teacher, optimizer: SGD(), config: config)
            XCTAssertTrue(distiller.featureAdaptorState.isEmpty, "\(name): same shapes need no adaptor")
            let result = try distiller.step(x, labels: labels, index: 0)
            assertRelative([result.total], [Float(double(c["total"])!)], rel: 2e-6, "\(name) loss")
            let expected = c["gradients"] as! [String: Any]
            var compared = 0
            for e in distiller.params.entries {
                guard let g = e.gradient, let want = expected[e.layerKey + "/" + e.spec.name] else { continue }
                assertRelative(Array(UnsafeBufferPointer(start: g, count: e.count)), floats(want), rel: 1e-4, floor: 1e-3,
                               "\(name) d loss / d \(e.layerKey)/\(e.spec.name)")
                compared += 1
            }
            XCTAssertEqual(compared, expected.count, "\(name): every Keras gradient compared")
        }
        XCTAssertEqual(seen, ["mse", "cosine", "mae", "at"])
    }

    func testTeacherMapResizeMatchesKeras() throws {
        let resizes = try loadTrainingFixture("distiller_parity")["resizes"] as! [[String: Any]]
        XCTAssertEqual(resizes.count, 3)
        for r in resizes {
            let s = ints(r["shape"]), size = ints(r["size"])
            let out = FeatureLosses.resizeBilinear(floats(r["input"]), images: s[0], height: s[1], width: s[2], channels: s[3],
                                                   outHeight: size[0], outWidth: size[1])
            assertRelative(out, floats(r["output"]), rel: 1e-6, floor: 1, "resize \(s) to \(size)")
        }
    }

    /// Each loss's gradient (weight included) against central differences of its Double value,
    /// maps laid out [images, positions, channels]; `normalizerImages` above the images present
    /// (a data-parallel share) scales value and gradient alike.
    func testLossGradientsMatchFiniteDifferences() throws {
        var rng = SeededRandom(5)
        let images = 2, positions = 6, c = 4
        for kind in FeatureLoss.allCases {
            let ct = kind == .at ? 3 : c
            let s = (0..<images * positions * c).map { _ in rng.uniform(-2, 2) }
            let t = (0..<images * positions * ct).map { _ in rng.uniform(-2, 2) }
            func value(_ v: [Float], _ g: UnsafeMutablePointer<Float>? = nil) -> Double {
                v.withUnsafeBufferPointer { sp in
                    t.withUnsafeBufferPointer { tp in
                        FeatureLosses.value(kind, student: sp.baseAddress!, teacher: tp.baseAddress!, images: images,
                                            positions: positions, studentChannels: c, teacherChannels: ct,
                                            normalizerImages: 3, weight: 0.7, gradient: g)
                    }
                }
            }
            var g = [Float](repeating: 0, count: s.count)
            _ = g.withUnsafeMutableBufferPointer { value(s, $0.baseAddress!) }
            var numeric = [Float](repeating: 0, count: s.count)
            for i in s.indices {
                var up = s, down = s
                up[i] += 1e-3
                down[i] -= 1e-3
                numeric[i] = Float(0.7 * (value(up) - value(down)) / Double(up[i] - down[i]))
            }
            assertRelative(g, numeric, rel: 2e-2, floor: 1e-2, "\(kind) gradient")
            XCTAssertGreaterThan(g.map { abs($0) }.max()!, 1e-3, "\(kind): a gradient to compare")
        }
    }

    /// Through a whole distiller on the bundled example (adaptor 16 -> 32 channels, and a 28x28
    /// student map pooled to the teacher's 14x14): the feature term's gradient with respect to an
    /// adaptor weight and a student weight against central differences of the step's loss.
    func testAdaptorAndPoolingGradientsMatchFiniteDifferences() throws {
        let example = fixturesDirectory.deletingLastPathComponent().appendingPathComponent("example")
        let teacher = try LoadedModel.load(path: example.appendingPathComponent("teacher.h5").path)
        let student = try LoadedModel.load(path: example.appendingPathComponent("student.h5").path)
        var rng = SeededRandom(9)
        let x = Tensor(shape: [2, 28, 28, 1], data: (0..<2 * 784).map { _ in rng.uniform(0, 255) })
        var config = DistillConfig()
        config.alpha = 1
        config.features = [FeaturePair(teacherLayer: "block2_relu", studentLayer: "block1_relu", loss: .mse, weight: 3)]
        let distiller = try Distiller(student: student, teacher: teacher, optimizer: SGD(learningRate: .constant(0)), config: config)
        XCTAssertEqual(distiller.featureAdaptorState.map(\.name), ["feature_adaptor_0/kernel", "feature_adaptor_0/bias"])
        XCTAssertEqual(distiller.featureAdaptorState[0].values.count, 16 * 64)
        // Unlabelled images and alpha 1: no cross-entropy, no soft term; the feature term alone.
        let labels = [Float](repeating: 0, count: 20)
        func loss() throws -> Double { Double(try distiller.step(x, labels: labels, index: 0).total) }
        _ = try loss()
        let adaptor = distiller.features!.adaptors[0]
        let conv = distiller.params.entries.first { $0.layerKey == "block1_conv" }!
        for (what, values, gradient, i) in [("adaptor kernel", adaptor.kernel, UnsafePointer(adaptor.dKernel), 37),
                                            ("adaptor bias", adaptor.bias, UnsafePointer(adaptor.dBias), 5),
                                            ("block1_conv kernel", conv.values, UnsafePointer(conv.gradient!), 11)] {
            _ = try loss()
            let analytic = Double(gradient[i])
            let h: Float = 1e-2
            let saved = values[i]
            values[i] = saved + h
            let up = try loss()
            values[i] = saved - h
            let down = try loss()
            values[i] = saved
            let numeric = (up - down) / Double(2 * h)
            XCTAssertEqual(analytic, numeric, accuracy: max(1e-3, 0.03 * abs(numeric)), what)
            XCTAssertGreaterThan(abs(analytic), 1e-6, "\(what): a gradient to compare")
        }
    }

    /// Layers inside nested models, named by path or by their own name (as --output-layer takes
    /// them): the pair resolves, and its term enters the step's loss.
    func testNestedLayerNamesResolve() throws {
        let model = try LoadedModel.load(path: fixturesDirectory.appendingPathComponent("cases/k3_nested_sequential/model.h5").path)
        var rng = SeededRandom(3)
        let x = Tensor(shape: [4, 6, 6, 3], data: (0..<4 * 108).map { _ in rng.uniform(-1, 1) })
        var labels = [Float](repeating: 0, count: 12)
        for r in 0..<4 { labels[r * 3 + r % 3] = 1 }
        var losses: [Float] = []
        for pairs in [[], [FeaturePair(teacherLayer: "inner_functional/add", studentLayer: "conv", loss: .cosine, weight: 2)]] {
            var config = DistillConfig()
            config.features = pairs
            let distiller = try Distiller(student: model, teacher: model, optimizer: SGD(), config: config)
            losses.append(try distiller.step(x, labels: labels, index: 0).total)
        }
        // -2 <= 2 * cosine term <= 2, and the maps (a conv's output and the block's sum) differ.
        XCTAssertGreaterThan(abs(losses[1] - losses[0]), 1e-3)
        XCTAssertLessThanOrEqual(abs(losses[1] - losses[0]), 2 + 1e-5)
    }

    func testPairsParseAndResolveOrRefuseByName() throws {
        XCTAssertEqual(try FeaturePair(parsing: "a:b"), FeaturePair(teacherLayer: "a", studentLayer: "b"))
        XCTAssertEqual(try FeaturePair(parsing: "base/x:y:AT:0.5"), FeaturePair(teacherLayer: "base/x", studentLayer: "y", loss: .at, weight: 0.5))
        for bad in ["a", "a:", "a:b:huber", "a:b:mse:-1", "a:b:mse:x", "a:b:mse:1:2"] {
            XCTAssertThrowsError(try FeaturePair(parsing: bad), bad)
        }
    }
}
