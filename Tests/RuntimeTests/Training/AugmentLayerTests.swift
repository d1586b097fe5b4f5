import Foundation
import H5Model
import TestSupport
import XCTest
@testable import Graph
@testable import Runtime

/// Keras's augmentation layers in training mode: the transformations against real Keras
/// (fixtures/make_augment_layer_fixtures.py, degenerate ranges so that Keras's draw is fixed), the
/// draws' ranges and reproducibility, and the tutorial-style model trained as a student.
final class AugmentLayerTests: XCTestCase {
    struct KerasCase { var name: String; var className: String; var config: [String: Any]; var output: [Float]; var factor: Double? }

    func kerasCases(_ kind: String) throws -> (input: [Float], shape: [Int], major: Int, cases: [KerasCase]) {
        let url = fixturesDirectory.appendingPathComponent("augment_layers/\(kind).json")
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        func flat(_ v: Any, _ shape: inout [Int], depth: Int = 0) -> [Float] {
            if let list = v as? [Any] {
                if shape.count == depth { shape.append(list.count) }
                return list.flatMap { flat($0, &shape, depth: depth + 1) }
            }
            return [Float((v as! NSNumber).doubleValue)]
        }
        var shape: [Int] = []
        let input = flat(root["input"]!, &shape)
        let cases = try (root["cases"] as! [[String: Any]]).map { c -> KerasCase in
            var s: [Int] = []
            return KerasCase(name: c["name"] as! String, className: c["class_name"] as! String,
                             config: try XCTUnwrap(c["config"] as? [String: Any]), output: flat(c["output"]!, &s),
                             factor: (c["factor"] as? NSNumber)?.doubleValue)
        }
        return (input, shape, kind == "k2" ? 2 : 3, cases)
    }

    /// The layer's spec as the model reader parses its config.
    func spec(_ className: String, _ config: [String: Any], major: Int) throws -> AugmentSpec {
        let parser = try XCTUnwrap(layerParsers[className])
        let c = LayerConfig(dict: config, layerName: config["name"] as? String ?? className, className: className)
        let op = try parser(c, ParseContext(kerasMajor: major))
        XCTAssertEqual(try ConfigAudit.check(c), [], "every key of \(className)'s config is read")
        guard case .augment(let s) = op else { throw XCTSkip("not an augmentation layer: \(op)") }
        return s
    }

    func apply(_ s: AugmentSpec, _ draw: AugmentDraw, _ x: [Float], _ shape: [Int]) -> [Float] {
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        var y = [Float](repeating: .nan, count: x.count)
        x.withUnsafeBufferPointer { src in y.withUnsafeMutableBufferPointer { dst in
            for b in 0..<n {
                applyAugment(s, draw, src.baseAddress! + b * h * w * c, height: h, width: w, channels: c,
                             into: dst.baseAddress! + b * h * w * c, outHeight: h, outWidth: w,
                             inference: { _, _ in XCTFail("no inference form here") })
            }
        }}
        return y
    }

    /// Every layer, fill mode and interpolation, both Kerases: within 1e-5 of Keras relative to
    /// the largest output.
    func testTransformsMatchKeras() throws {
        for kind in ["k2", "k3"] {
            let (x, shape, major, cases) = try kerasCases(kind)
            XCTAssertGreaterThanOrEqual(cases.count, 50)
            for k in cases {
                let s = try spec(k.className, k.config, major: major)
                var rng = SplitMix64(seed: 1)
                var draw = s.draw(&rng, height: shape[1], width: shape[2])
                if let factor = k.factor { draw = .contrast(Float(factor)) }   // tf-keras's drawn contrast
                if k.factor == nil, case .contrast = s.kind {
                    XCTAssertEqual(draw, .contrast(1 + Float(abs((k.config["factor"] as! [NSNumber])[0].doubleValue))), k.name)
                }
                let y = apply(s, draw, x, shape)
                let scale = max(1, Double(k.output.map { abs($0) }.max()!))
                assertClose(y, k.output, tolerance: 1e-5 * scale, "\(kind) \(k.name)")
            }
        }
    }

    func image(_ shape: [Int], seed: UInt64 = 3) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<shape.reduce(1, *)).map { _ in Float(rng.uniform(0, 255)) }
    }

    /// RandomFlip: over many images both outcomes happen, about half each, and every output is the
    /// image or its numpy flip; Keras 3's horizontal_and_vertical flips both axes or neither.
    func testFlipOutcomes() throws {
        let shape = [1, 5, 7, 2]
        let x = image(shape)
        func numpyFlip(_ h: Bool, _ v: Bool) -> [Float] {
            var y = x
            for r in 0..<5 { for q in 0..<7 { for c in 0..<2 {
                y[(r * 7 + q) * 2 + c] = x[((v ? 4 - r : r) * 7 + (h ? 6 - q : q)) * 2 + c]
            }}}
            return y
        }
        for (mode, major) in [("horizontal", 2), ("vertical", 3), ("horizontal_and_vertical", 2), ("horizontal_and_vertical", 3)] {
            let s = try spec("RandomFlip", ["name": "f", "mode": mode, "seed": 1], major: major)
            var seen: [String: Int] = [:]
            for row in 0..<400 {
                var rng = AugmentSpec.stream(seed: 9, key: 4, step: 2, row: row)
                let y = apply(s, s.draw(&rng, height: 5, width: 7), x, shape)
                let outcome = [(false, false), (true, false), (false, true), (true, true)].first { numpyFlip($0.0, $0.1) == y }
                let o = try XCTUnwrap(outcome, "\(mode): row \(row) is no flip of the image")
                seen["\(o.0)\(o.1)", default: 0] += 1
            }
            let expected = mode == "horizontal_and_vertical" && major == 2 ? 4 : 2
            XCTAssertEqual(seen.count, expected, "\(mode) k\(major): outcomes \(seen)")
            for (o, count) in seen { XCTAssertGreaterThan(count, 400 / expected / 2, "\(mode) k\(major) \(o): \(seen)") }
        }
    }

    /// The drawn parameters stay in their bounds and average near the middle of the range.
    func testDrawnParametersFollowTheirRanges() throws {
        func draws(_ className: String, _ config: [String: Any], major: Int,
                   _ value: (AugmentDraw) -> Double) throws -> [Double] {
            let s = try spec(className, config.merging(["name": "l"]) { a, _ in a }, major: major)
            return (0..<4000).map { row in
                var rng = AugmentSpec.stream(seed: 1, key: 2, step: 3, row: row)
                return value(s.draw(&rng, height: 10, width: 20))
            }
        }
        func check(_ v: [Double], _ lo: Double, _ hi: Double, _ what: String) {
            XCTAssertGreaterThanOrEqual(v.min()!, lo - 1e-5 * max(1, abs(lo)), what)
            XCTAssertLessThanOrEqual(v.max()!, hi + 1e-5 * max(1, abs(hi)), what)
            XCTAssertLessThan(v.min()!, lo + 0.02 * (hi - lo), "\(what): reaches its lower end")
            XCTAssertGreaterThan(v.max()!, hi - 0.02 * (hi - lo), "\(what): reaches its upper end")
            let mean = v.reduce(0, +) / Double(v.count)
            XCTAssertEqual(mean, (lo + hi) / 2, accuracy: 0.03 * (hi - lo), "\(what): mean")
        }
        func matrix(_ d: AugmentDraw) -> ProjectiveMatrix { if case .transform(let m) = d { return m }; return .identity }
        for major in [2, 3] {
            check(try draws("RandomRotation", ["factor": 0.1], major: major) { Double(atan2(matrix($0).b0, matrix($0).a0)) },
                  -0.2 * .pi, 0.2 * .pi, "rotation k\(major)")
            check(try draws("RandomZoom", ["height_factor": [-0.3, 0.1], "width_factor": 0.2], major: major) { Double(matrix($0).b1) },
                  0.7, 1.1, "zoom height k\(major)")
            check(try draws("RandomZoom", ["height_factor": [-0.3, 0.1], "width_factor": 0.2], major: major) { Double(matrix($0).a0) },
                  0.8, 1.2, "zoom width k\(major)")
            check(try draws("RandomTranslation", ["height_factor": 0.1, "width_factor": [-0.2, 0.3]], major: major) {
                Double(-matrix($0).a2) / 20 }, -0.2, 0.3, "translation width k\(major)")
            check(try draws("RandomTranslation", ["height_factor": 0.1, "width_factor": [-0.2, 0.3]], major: major) {
                Double(-matrix($0).b2) / 10 }, -0.1, 0.1, "translation height k\(major)")
            check(try draws("RandomBrightness", ["factor": 0.2, "value_range": [0, 1]], major: major) {
                if case .brightness(let d) = $0 { return Double(d) }; return .nan }, -0.2, 0.2, "brightness k\(major)")
        }
        // Keras 3 reads a contrast factor f as [1, 1 + f]; tf-keras as [1 - f, 1 + f].
        let factor: (AugmentDraw) -> Double = { if case .contrast(let f) = $0 { return Double(f) }; return .nan }
        check(try draws("RandomContrast", ["factor": 0.2], major: 3, factor), 1, 1.2, "contrast k3")
        let k2 = try spec("RandomContrast", ["name": "c", "factor": 0.2], major: 2)
        let perCall = (0..<2000).map { step -> Double in
            var rng = AugmentSpec.stream(seed: 1, key: 2, step: step, row: nil)
            return factor(k2.draw(&rng, height: 4, width: 4))
        }
        check(perCall, 0.8, 1.2, "contrast k2 (one per call)")
    }

    /// A batch at once equals its images one by one (the draws follow the global row); the same
    /// (seed, step, row) gives the same image, another step another one.
    func testDrawsFollowSeedStepAndRow() throws {
        let shape = [4, 9, 11, 3]
        let x = image(shape)
        let s = try spec("RandomRotation", ["name": "r", "factor": 0.2, "fill_mode": "constant"], major: 3)
        func run(_ x: [Float], shape: [Int], seed: UInt64, step: Int, rowOffset: Int) -> [Float] {
            var y = [Float](repeating: .nan, count: x.count)
            x.withUnsafeBufferPointer { src in y.withUnsafeMutableBufferPointer { dst in
                augmentBatch(s, key: 7, seed: seed, step: step, rowOffset: rowOffset, src.baseAddress!, shape: shape,
                             into: dst.baseAddress!, outShape: shape, inference: { _, _ in })
            }}
            return y
        }
        let batch = run(x, shape: shape, seed: 5, step: 3, rowOffset: 10)
        let per = 9 * 11 * 3
        for b in 0..<4 {
            let one = run(Array(x[(b * per)..<((b + 1) * per)]), shape: [1, 9, 11, 3], seed: 5, step: 3, rowOffset: 10 + b)
            XCTAssertEqual(one, Array(batch[(b * per)..<((b + 1) * per)]), "image \(b) alone")
        }
        XCTAssertEqual(batch, run(x, shape: shape, seed: 5, step: 3, rowOffset: 10))
        XCTAssertNotEqual(batch, run(x, shape: shape, seed: 5, step: 4, rowOffset: 10), "another step")
        XCTAssertNotEqual(batch, run(x, shape: shape, seed: 6, step: 3, rowOffset: 10), "another seed")
        XCTAssertNotEqual(Array(batch[0..<per]), Array(batch[per..<(2 * per)]), "two images, two rotations")
    }

    /// tf-keras's RandomCrop in training: one crop of the call, a window of each image.
    func testRandomCropTakesOneWindowPerCall() throws {
        let shape = [3, 8, 10, 2]
        let x = image(shape)
        let s = try spec("RandomCrop", ["name": "c", "height": 5, "width": 6], major: 2)
        var starts = Set<[Int]>()
        for step in 0..<60 {
            var y = [Float](repeating: .nan, count: 3 * 5 * 6 * 2)
            x.withUnsafeBufferPointer { src in y.withUnsafeMutableBufferPointer { dst in
                augmentBatch(s, key: 1, seed: 2, step: step, rowOffset: 0, src.baseAddress!, shape: shape,
                             into: dst.baseAddress!, outShape: [3, 5, 6, 2], inference: { _, _ in XCTFail("crop") })
            }}
            /// Whether every image of the output is its input's window at (top, left).
            func isWindow(_ top: Int, _ left: Int) -> Bool {
                for b in 0..<3 { for r in 0..<5 { for q in 0..<6 { for c in 0..<2 {
                    let got: Float = y[((b * 5 + r) * 6 + q) * 2 + c]
                    let want: Float = x[((b * 8 + r + top) * 10 + q + left) * 2 + c]
                    if got != want { return false }
                }}}}
                return true
            }
            var found: [[Int]] = []
            for top in 0...3 { for left in 0...4 where isWindow(top, left) { found.append([top, left]) } }
            XCTAssertEqual(found.count, 1, "step \(step): one window for the whole batch")
            starts.formUnion(found)
        }
        XCTAssertGreaterThan(starts.count, 8, "windows \(starts)")
    }

    /// The tutorial-style model as the student (both Kerases): its augmentation layers sit in the
    /// frozen prefix and draw in training (the student's inputs change: the losses differ from a
    /// run with the layers as the identity), the same seed gives the same run, another seed another
    /// one, and evaluation sees the images unaugmented.
    func testTutorialModelTrainsAsStudentWithItsAugmentation() throws {
        for name in ["k2_augmentation_layers", "k3_augmentation_layers"] {
            let c = try XCTUnwrap(fixtureCases().first { $0.name == name })
            let model = try LoadedModel.load(path: c.forms[0].model, archPath: c.forms[0].arch)
            XCTAssertEqual(model.graph.nodes.filter { if case .augment = $0.op { return true } else { return false } }.count, 6)
            let io = try H5Arrays.read(path: c.path(c.io)!)
            let x = Tensor(shape: io["input"]!.shape, data: io["input"]!.floats)
            func distiller(_ model: LoadedModel, seed: UInt64) throws -> Distiller {
                var config = DistillConfig()
                config.seed = seed
                return try Distiller(student: model, teacher: nil, optimizer: SGD(learningRate: .constant(0.01)), config: config)
            }
            func losses(_ model: LoadedModel, seed: UInt64) throws -> [Float] {
                let d = try distiller(model, seed: seed)
                var labels = [Float](repeating: 0, count: x.batch * d.classes)
                for r in 0..<x.batch { labels[r * d.classes + (2 * r + 1) % d.classes] = 1 }
                return try (0..<3).map { try d.step(x, labels: labels, index: $0).total }
            }
            let first = try losses(model, seed: 4)
            XCTAssertTrue(first.allSatisfy(\.isFinite), "\(name): \(first)")
            XCTAssertEqual(first, try losses(model, seed: 4), "\(name): the same seed, the same run")
            XCTAssertNotEqual(first, try losses(model, seed: 5), "\(name): another seed, other augmentations")
            var identity = model
            for i in identity.graph.nodes.indices {
                if case .augment = identity.graph.nodes[i].op { identity.graph.nodes[i].inferenceOnly = true }
            }
            let plain = try losses(identity, seed: 4)
            XCTAssertEqual(plain, try losses(identity, seed: 5), "\(name): without augmentation the seed changes nothing")
            XCTAssertNotEqual(first, plain, "\(name): the augmentation changed the student's inputs")
            // The prefix (augmentation, Rescaling) in training and in evaluation.
            let plan = try distiller(model, seed: 4).plan(batch: x.batch)
            let boundary = try XCTUnwrap(plan.nodes.indices.first { if case .external = plan.nodes[$0].op { return true } else { return false } })
            func prefix(training: Bool, step: Int) -> [Float] {
                plan.forward([x], training: training, seed: 4, step: step)
                return Array(UnsafeBufferPointer(start: plan.values[boundary], count: plan.nodes[boundary].count))
            }
            assertClose(prefix(training: false, step: 0), x.data.map { $0 / 255 }, tolerance: 1e-6, "\(name): evaluation")
            XCTAssertNotEqual(prefix(training: true, step: 0), prefix(training: true, step: 1), name)
            XCTAssertEqual(prefix(training: true, step: 2), prefix(training: true, step: 2), name)
        }
    }

    /// An augmentation layer after a trainable layer has no backward here: refused in one line
    /// naming it.
    func testAugmentationInTheTrainableRegionIsRefused() throws {
        // The training lowering of the fixture's RandomFlip, as if a trainable layer fed it.
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_augmentation_layers" })
        let model = try LoadedModel.load(path: c.forms[0].model, archPath: c.forms[0].arch)
        let flip = try XCTUnwrap(model.graph.nodes.first { $0.className == "RandomFlip" })
        let params = ParameterStore(model: model) { _, spec in spec.trainableKind }
        var target = TrainTarget(params: params)
        target.nodes.append(TrainNode(op: .external(slot: 0), inputs: [], shape: [2, 16, 16, 3], layer: "conv"))
        XCTAssertThrowsError(try LayerLowering.lower(flip, inputs: [0], into: &target)) { error in
            XCTAssertTrue("\(error)".contains("layer 'random_flip' (RandomFlip)") && "\(error)".contains("no backward"), "\(error)")
        }
    }
}
