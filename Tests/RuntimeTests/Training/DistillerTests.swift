import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

final class DistillerTests: XCTestCase {
    func load(_ name: String) throws -> (LoadedModel, Tensor) {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == name })
        let model = try LoadedModel.load(path: c.forms[0].model, archPath: c.forms[0].arch)
        let io = try H5Arrays.read(path: c.path(c.io)!)
        return (model, Tensor(shape: io["input"]!.shape, data: io["input"]!.floats))
    }

    /// Steps on one batch lower the loss; frozen weights stay bit-identical; trainable
    /// BatchNormalization's moving statistics move, frozen ones do not.
    func testDistillationStepsLearnAndRespectFrozenWeights() throws {
        let (student, x) = try load("k2_seed_mini")
        let (teacher, _) = try load("k2_effnet_block")
        XCTAssertEqual(teacher.graph.nodes[teacher.graph.inputs[0]].outputShape.last, 3)
        // The teacher takes 27x27 images; give it its own batch of the same images cropped.
        let distiller = try Distiller(student: student, teacher: nil, optimizer: Adam(learningRate: .constant(1e-3)),
                                      config: DistillConfig())
        let classes = distiller.classes
        var labels = [Float](repeating: 0, count: x.batch * classes)
        for r in 0..<x.batch { labels[r * classes + r % classes] = 1 }
        let before = distiller.params.entries.map { Array(UnsafeBufferPointer(start: $0.values, count: $0.count)) }
        var losses: [Float] = []
        for step in 0..<10 { losses.append(try distiller.step(x, labels: labels, index: step).total) }
        XCTAssertLessThan(losses.last!, losses.first! * 0.9, "losses \(losses)")
        var frozenChecked = 0, trainableMoved = 0, statsMoved = 0
        for (e, old) in zip(distiller.params.entries, before) {
            let now = Array(UnsafeBufferPointer(start: e.values, count: e.count))
            let node = student.graph.uniqueLayers.first { $0.layerKey == e.layerKey }!
            if e.trainable {
                if now != old { trainableMoved += 1 }
            } else if e.spec.name.hasPrefix("moving_") && node.trainable {
                if now != old { statsMoved += 1 }
            } else {
                XCTAssertEqual(now, old, "\(e.layerKey)/\(e.spec.name) is frozen and must not change")
                frozenChecked += 1
            }
        }
        XCTAssertGreaterThan(frozenChecked, 10)
        XCTAssertGreaterThan(trainableMoved, 3)
        XCTAssertGreaterThan(statsMoved, 1)
    }

    /// The Keras 3 ConvNeXt (StochasticDepth rates up to 0.3, drawn in training: whole samples of
    /// a residual branch dropped) distilled from the tf-keras one: the loss falls, and the same seed
    /// gives the same steps, so the drop-path masks are seeded like Dropout's.
    func testConvNeXtStudentWithStochasticDepthLearnsReproducibly() throws {
        let (student, x) = try load("k3_convnext_tiny")
        let (teacher, _) = try load("k2_convnext_tiny")
        XCTAssertTrue(student.graph.nodes.contains { if case .stochasticDepth(let r) = $0.op { return r > 0 } else { return false } })
        func run() throws -> (losses: [Float], weights: [[Float]]) {
            var config = DistillConfig()
            config.seed = 5
            let distiller = try Distiller(student: student, teacher: teacher, optimizer: Adam(learningRate: .constant(1e-3)),
                                          config: config)
            var labels = [Float](repeating: 0, count: x.batch * distiller.classes)
            for r in 0..<x.batch { labels[r * distiller.classes + (3 * r + 1) % distiller.classes] = 1 }
            let losses = try (0..<8).map { try distiller.step(x, labels: labels, index: $0).total }
            return (losses, distiller.params.entries.map { Array(UnsafeBufferPointer(start: $0.values, count: $0.count)) })
        }
        let first = try run(), second = try run()
        XCTAssertTrue(first.losses.allSatisfy(\.isFinite), "losses \(first.losses)")
        XCTAssertLessThan(first.losses.last!, first.losses.first!, "losses \(first.losses)")
        XCTAssertEqual(first.losses, second.losses)
        XCTAssertEqual(first.weights, second.weights)
    }

    /// RandomCrop in training: tf-keras crops to (height, width) as it resizes to at inference, so the
    /// student trains; Keras 3 crops in training but passes the 20x24 images through at inference,
    /// two shapes one model cannot have here: refused, naming the layer.
    func testRandomCropInTheStudent() throws {
        let (k2, x) = try load("k2_random_crop")
        let trains = try Distiller(student: k2, teacher: nil, optimizer: SGD(learningRate: .constant(0.01)), config: DistillConfig())
        var labels = [Float](repeating: 0, count: x.batch * trains.classes)
        for r in 0..<x.batch { labels[r * trains.classes + r] = 1 }
        XCTAssertTrue(try trains.step(x, labels: labels, index: 0).total.isFinite)
        let (k3, _) = try load("k3_random_crop")
        let refused = try Distiller(student: k3, teacher: nil, optimizer: SGD(learningRate: .constant(0.01)), config: DistillConfig())
        XCTAssertThrowsError(try refused.plan(batch: x.batch)) { error in
            XCTAssertTrue(String(describing: error).contains("'random_crop'"), String(describing: error))
        }
    }

    /// Keras runs a frozen part's Dropout layers in training mode (only a frozen BatchNormalization
    /// switches to inference): the frozen prefix, run as a fused plan, keeps them. Masks are
    /// reproducible per (seed, step), new every step, and off when evaluating.
    func testFrozenPrefixKeepsDropoutInTrainingMode() throws {
        var (model, x) = try load("k2_dropout_noise")
        var config = DistillConfig()
        config.frozen = ["conv2d"]
        config.seed = 3
        // Its noise layers draw noise in training in Keras, which this trainer does not: refused,
        // naming the layer. Called with training=False (tf-keras), they are the identity.
        let refused = try Distiller(student: model, teacher: nil, optimizer: SGD(learningRate: .constant(0.01)), config: config)
        XCTAssertThrowsError(try refused.plan(batch: x.batch)) { error in
            XCTAssertTrue("\(error)".contains("(GaussianNoise)") || "\(error)".contains("Dropout)"), "\(error)")
        }
        for i in model.graph.nodes.indices where model.graph.nodes[i].trainingOnlyKeys.contains(GraphNode.trainingNoise) {
            model.graph.nodes[i].inferenceOnly = true
        }
        let distiller = try Distiller(student: model, teacher: nil, optimizer: SGD(learningRate: .constant(0.01)), config: config)
        let plan = try distiller.plan(batch: x.batch)
        XCTAssertNotNil(plan.prefix, "conv2d and the dropouts after it are the frozen prefix")
        let boundary = try XCTUnwrap(plan.nodes.indices.first { if case .external = plan.nodes[$0].op { return true } else { return false } })
        func values(training: Bool, step: Int) -> [Float] {
            plan.forward([x], training: training, seed: 3, step: step)
            return Array(UnsafeBufferPointer(start: plan.values[boundary], count: plan.nodes[boundary].count))
        }
        let inference = values(training: false, step: 0)
        let first = values(training: true, step: 0)
        XCTAssertEqual(first, values(training: true, step: 0), "the same mask for the same step")
        XCTAssertNotEqual(first, values(training: true, step: 1), "a new mask every step")
        XCTAssertEqual(inference, values(training: false, step: 5), "no dropout when evaluating")
        var dropped = 0, kept = 0
        for (t, i) in zip(first, inference) where i != 0 {
            if t == 0 { dropped += 1 } else {
                kept += 1
                XCTAssertGreaterThanOrEqual(abs(t), abs(i) * 0.999, "kept values are scaled up by 1 / (1 - rate)")
            }
        }
        // Dropout(0.5) then Dropout(0.2) over [N, 1, 1, C] (and SpatialDropout2D(0.3)): most values dropped.
        XCTAssertGreaterThan(dropped, kept, "dropped \(dropped), kept \(kept)")
        XCTAssertGreaterThan(kept, 0)
    }

    func testUnfreezeFromTrainsOnlyFromThatLayer() throws {
        let (student, _) = try load("k2_seed_mini")
        var config = DistillConfig()
        config.trainable = .unfreezeFrom("block2b_expand_conv")
        let distiller = try Distiller(student: student, teacher: nil, optimizer: Adam(), config: config)
        let start = try student.graph.findLayer("block2b_expand_conv")
        for e in distiller.params.entries {
            let node = student.graph.uniqueLayers.first { $0.layerKey == e.layerKey }!
            XCTAssertEqual(e.trainable, node.id >= start && e.spec.trainableKind, "\(e.layerKey)/\(e.spec.name)")
        }
    }

    func testTeacherAndStudentMustAgreeOnClasses() throws {
        let (student, x) = try load("k2_seed_mini")
        let (teacher, _) = try load("k2_mobilenetv2")
        let distiller = try Distiller(student: student, teacher: teacher, optimizer: Adam(), config: DistillConfig())
        let labels = [Float](repeating: 0, count: x.batch * distiller.classes)
        XCTAssertThrowsError(try distiller.step(x, labels: labels, index: 0)) { error in
            XCTAssertTrue(String(describing: error).contains("teacher"), "\(error)")
        }
    }
}
