import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

/// Whole-model gradients of the training plan against finite differences of the training-mode
/// loss: for each trainable tensor, the directional derivative along a random direction.
final class ModelGradientTests: XCTestCase {
    func loss(_ plan: TrainingPlan, _ x: Tensor, _ labels: [Float], classes: Int) -> Double {
        plan.forward([x], training: true, seed: 1, step: 0)
        let node = plan.split.logits
        let s = UnsafeBufferPointer(start: plan.values[node], count: plan.nodes[node].count)
        return Double(Losses.crossentropy(logits: s, targets: .distribution(labels), classes: classes))
    }

    /// `smooth`: relu replaced by swish in the architecture (the weights still bind by name), so
    /// finite differences do not straddle relu's kink at every normalised activation near zero.
    func check(_ caseName: String, trainable: TrainableSelection, smooth: Bool = false,
               file: StaticString = #filePath, line: UInt = #line) throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == caseName })
        var arch = c.path(c.arch)!
        if smooth {
            let text = try String(contentsOfFile: arch, encoding: .utf8)
                .replacingOccurrences(of: "\"activation\": \"relu\"", with: "\"activation\": \"swish\"")
            arch = FileManager.default.temporaryDirectory.appendingPathComponent("\(caseName)-smooth-\(UUID().uuidString).json").path
            try text.write(toFile: arch, atomically: true, encoding: .utf8)
        }
        let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: arch)
        let io = try H5Arrays.read(path: c.path(c.io)!)
        let x = Tensor(shape: io["input"]!.shape, data: io["input"]!.floats)
        let classes = model.graph.nodes[model.graph.outputs[0]].outputShape.last!
        var labels = [Float](repeating: 0, count: x.batch * classes)
        for r in 0..<x.batch { labels[r * classes + (r * 3 + 1) % classes] = 1 }
        var decisions: [String: Bool] = [:]
        for node in model.graph.uniqueLayers { decisions[node.layerKey] = try trainable.isTrainable(node, in: model.graph, frozen: []) }
        let params = ParameterStore(model: model) { node, spec in spec.trainableKind && decisions[node.layerKey]! }
        let plan = try TrainingPlan(model: model, params: params, batch: x.batch)
        _ = loss(plan, x, labels, classes: classes)
        let node = plan.split.logits
        let s = UnsafeBufferPointer(start: plan.values[node], count: plan.nodes[node].count)
        var g = [Float](repeating: 0, count: s.count)
        _ = g.withUnsafeMutableBufferPointer { Losses.crossentropy(logits: s, targets: .distribution(labels), classes: classes, gradient: $0) }
        params.zeroGradients()
        g.withUnsafeBufferPointer { plan.backward(logitsGradient: $0.baseAddress!) }
        var checked = 0
        var rng = SplitMix64(seed: 7)
        for e in params.entries where e.trainable {
            let direction = (0..<e.count).map { _ in Float(rng.next() % 2001) / 1000 - 1 }
            let analytic = (0..<e.count).reduce(0.0) { $0 + Double(e.gradient![$1]) * Double(direction[$1]) }
            let original = Array(UnsafeBufferPointer(start: e.values, count: e.count))
            let h: Float = smooth ? 2e-4 : 1e-3
            for i in 0..<e.count { e.values[i] = original[i] + h * direction[i] }
            let plus = loss(plan, x, labels, classes: classes)
            for i in 0..<e.count { e.values[i] = original[i] - h * direction[i] }
            let minus = loss(plan, x, labels, classes: classes)
            for i in 0..<e.count { e.values[i] = original[i] }
            let numeric = (plus - minus) / (2 * Double(h))
            // float32 losses are quantised: one unit in the last place of the loss over 2h is the
            // noise floor of the difference quotient.
            let floor = 4 * Double(Float(plus).ulp) / (2 * Double(h))
            XCTAssertLessThanOrEqual(abs(numeric - analytic), 2e-2 * max(abs(numeric), abs(analytic)) + floor,
                              "\(caseName) \(e.layerKey)/\(e.spec.name): analytic \(analytic) numeric \(numeric)", file: file, line: line)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 3, file: file, line: line)
        print("\(caseName): \(checked) trainable tensors checked against finite differences")
    }

    func testEfficientNetBlockAllTrainable() throws { try check("k2_effnet_block", trainable: .asConfigured) }
    func testSeedMiniPartlyFrozen() throws { try check("k2_seed_mini", trainable: .asConfigured) }
    func testResNetBlockSmooth() throws { try check("k2_resnet_block", trainable: .asConfigured, smooth: true) }
    func testBatchNormOnDenseFeatures() throws { try check("k2_bn_dense", trainable: .asConfigured) }
    /// LayerNormalization (last axis, in nested Sequentials too), LayerScale, StochasticDepth in
    /// training (drop-path masks fixed by the seed), the 7x7 grouped convolution as depthwise.
    func testConvNeXtAllTrainable() throws { try check("k2_convnext_tiny", trainable: .asConfigured) }
    func testLayerNormalizationOverOtherAxes() throws { try check("k2_layer_norm_axes", trainable: .asConfigured) }
    func testCustomScaleLayerSmooth() throws { try check("k2_custom_scale_layer", trainable: .asConfigured, smooth: true) }
    /// tf-keras's operation layers after the first convolution, all in the trainable part: sqrt,
    /// square, rsqrt, log, reduce_sum, tf.image.resize (bilinear and nearest) and subscripts.
    func testOperationLayersTrain() throws { try check("k2_tensor_ops_math", trainable: .asConfigured) }
    /// Resizing bicubic (with crop to the aspect ratio) and area after trainable convolutions.
    func testBicubicAndAreaResizesTrain() throws { try check("k2_resizing_methods", trainable: .asConfigured) }

    /// A trainable `log_softmax` head (the seed's mini model with its final softmax activation
    /// spelled log_softmax): the forward equals log of Keras's probabilities, and the gradient of a
    /// loss that is not shift-invariant along the classes (a weighted sum of the log-probabilities,
    /// so the backward's sum term is exercised, which cross-entropy on them would cancel) matches
    /// finite differences for every trainable tensor.
    func testLogSoftmaxHeadTrains() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_mini" })
        let text = try String(contentsOfFile: c.path(c.arch)!, encoding: .utf8)
        XCTAssertEqual(text.components(separatedBy: "\"activation\": \"softmax\"").count, 2)
        let arch = FileManager.default.temporaryDirectory.appendingPathComponent("k2_seed_mini-log-\(UUID().uuidString).json").path
        try text.replacingOccurrences(of: "\"activation\": \"softmax\"", with: "\"activation\": \"log_softmax\"")
            .write(toFile: arch, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: arch) }
        let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: arch)
        let io = try H5Arrays.read(path: c.path(c.io)!)
        let x = Tensor(shape: io["input"]!.shape, data: io["input"]!.floats)
        var decisions: [String: Bool] = [:]
        for node in model.graph.uniqueLayers {
            decisions[node.layerKey] = try TrainableSelection.asConfigured.isTrainable(node, in: model.graph, frozen: [])
        }
        let params = ParameterStore(model: model) { node, spec in spec.trainableKind && decisions[node.layerKey]! }
        let plan = try TrainingPlan(model: model, params: params, batch: x.batch)
        let out = plan.split.output
        guard case .softmax(_, true) = plan.nodes[out].op else { return XCTFail("output is \(plan.nodes[out].op)") }
        XCTAssertEqual(plan.split.logits, out, "a log_softmax is not peeled off as a softmax is")
        plan.forward([x], training: false, seed: 1, step: 0)
        let keras = io["output"]!.floats
        let ours = Array(UnsafeBufferPointer(start: plan.values[out], count: plan.nodes[out].count))
        XCTAssertEqual(ours.count, keras.count)
        for (a, p) in zip(ours, keras) { XCTAssertEqual(a, Foundation.log(p), accuracy: 1e-4) }

        var rng = SplitMix64(seed: 11)
        let w = (0..<ours.count).map { _ in Float(rng.next() % 2001) / 1000 - 1 }
        func loss() -> Double {
            plan.forward([x], training: true, seed: 1, step: 0)
            return (0..<w.count).reduce(0.0) { $0 + Double(plan.values[out][$1]) * Double(w[$1]) }
        }
        _ = loss()
        params.zeroGradients()
        w.withUnsafeBufferPointer { plan.backward(logitsGradient: $0.baseAddress!) }
        var checked = 0
        // The head (after the base's global max pooling): a step of h in the base's weights can
        // move a channel's maximum to another pixel, a kink finite differences straddle; the
        // base's backward is checked without that by the tests above.
        for e in params.entries where e.trainable && !e.layerKey.hasPrefix("efficientnet_mini/") {
            let direction = (0..<e.count).map { _ in Float(rng.next() % 2001) / 1000 - 1 }
            let analytic = (0..<e.count).reduce(0.0) { $0 + Double(e.gradient![$1]) * Double(direction[$1]) }
            let original = Array(UnsafeBufferPointer(start: e.values, count: e.count))
            let h: Float = 1e-3
            for i in 0..<e.count { e.values[i] = original[i] + h * direction[i] }
            let plus = loss()
            for i in 0..<e.count { e.values[i] = original[i] - h * direction[i] }
            let minus = loss()
            for i in 0..<e.count { e.values[i] = original[i] }
            let numeric = (plus - minus) / (2 * Double(h))
            XCTAssertLessThanOrEqual(abs(numeric - analytic), 2e-2 * max(abs(numeric), abs(analytic)) + 1e-3,
                                     "\(e.layerKey)/\(e.spec.name): analytic \(analytic) numeric \(numeric)")
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 4, "the Dense kernel and bias, BatchNormalization's gamma and beta")
    }

    /// A Dropout rate tf.nn.dropout would refuse in training (here 1.0, hand-edited into the
    /// config) is refused when the training plan is built, naming the layer, instead of reaching
    /// the dropout kernel's precondition at the first step.
    func testDropoutRateOneRefusedAtPlanTime() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_dropout_noise" })
        let text = try String(contentsOfFile: c.path(c.arch)!, encoding: .utf8)
        XCTAssertTrue(text.contains("\"name\": \"dropout_2\", \"trainable\": true, \"dtype\": \"float32\", \"rate\": 0.4"))
        let arch = FileManager.default.temporaryDirectory.appendingPathComponent("k2_dropout_one-\(UUID().uuidString).json").path
        try text.replacingOccurrences(of: "\"name\": \"dropout_2\", \"trainable\": true, \"dtype\": \"float32\", \"rate\": 0.4",
                                      with: "\"name\": \"dropout_2\", \"trainable\": true, \"dtype\": \"float32\", \"rate\": 1.0")
            .write(toFile: arch, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: arch) }
        var model = try LoadedModel.load(path: c.path(c.weights)!, archPath: arch)
        // The fixture's noise layers, refused for training before anything else, called with training=False.
        for i in model.graph.nodes.indices where model.graph.nodes[i].trainingOnlyKeys.contains(GraphNode.trainingNoise) {
            model.graph.nodes[i].inferenceOnly = true
        }
        let params = ParameterStore(model: model) { _, spec in spec.trainableKind }
        XCTAssertThrowsError(try TrainingPlan(model: model, params: params, batch: 2)) { error in
            XCTAssertTrue("\(error)".contains("layer 'dropout_2'") && "\(error)".contains("dropout rate 1.0"), "\(error)")
        }
    }

    /// tf-keras's `encoder(x, training=False)`: the encoder's batch norm stays in inference mode while
    /// the rest trains; its gamma/beta training through moving statistics is refused, not folded away.
    func testTrainingFalseCallKeepsBatchNormInInferenceMode() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_nested_functional" })
        var root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: c.path(c.arch)!))) as? [String: Any])
        var config = try XCTUnwrap(root["config"] as? [String: Any])
        var layers = try XCTUnwrap(config["layers"] as? [[String: Any]])
        let i = try XCTUnwrap(layers.firstIndex { $0["class_name"] as? String == "Functional" })
        let calls = try XCTUnwrap(layers[i]["inbound_nodes"] as? [[[Any]]])
        layers[i]["inbound_nodes"] = calls.map { call in call.map { Array($0.prefix(3)) + [["training": false] as [String: Any]] } }
        config["layers"] = layers
        root["config"] = config
        let arch = FileManager.default.temporaryDirectory.appendingPathComponent("training-false-\(UUID().uuidString).json").path
        try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: arch))
        defer { try? FileManager.default.removeItem(atPath: arch) }
        let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: arch)
        let bn = try XCTUnwrap(model.graph.nodes.first { $0.name == "enc_bn" })
        XCTAssertTrue(bn.inferenceOnly)
        let all = ParameterStore(model: model) { _, spec in spec.trainableKind }
        XCTAssertThrowsError(try TrainingPlan(model: model, params: all, batch: 2)) { error in
            XCTAssertTrue("\(error)".contains("enc_bn") && "\(error)".contains("training=False"), "\(error)")
        }
        let bnFrozen = ParameterStore(model: model) { node, spec in spec.trainableKind && node.name != "enc_bn" }
        let plan = try TrainingPlan(model: model, params: bnFrozen, batch: 2)
        XCTAssertFalse(plan.nodes.contains { if case .batchNorm = $0.op { return true } else { return false } },
                       "no batch-statistics batch norm in the plan")
    }
}
