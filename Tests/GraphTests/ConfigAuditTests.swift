import Foundation
import TestSupport
import XCTest
@testable import Graph

/// Nothing in a config is ignored: every fixture's architecture, with one layer's config or call
/// changed in a way that would change what Keras computes (an extra positional constant, an
/// unknown call keyword, an unknown config key), must be refused naming that layer, never parsed.
final class ConfigAuditTests: XCTestCase {
    enum Mutation: CaseIterable { case configKey, callKeyword, positionalConstant }

    /// Applies `mutation` to layer entry `entry`; false when it does not apply (a Sequential's
    /// layers have no recorded calls).
    func mutate(_ entry: inout [String: Any], _ mutation: Mutation) -> Bool {
        switch mutation {
        case .configKey:
            var config = entry["config"] as? [String: Any] ?? [:]
            config["frobnicate"] = 3
            entry["config"] = config
            return true
        case .callKeyword, .positionalConstant:
            guard var calls = entry["inbound_nodes"] as? [Any], let first = calls.first else { return false }
            if var call = first as? [String: Any] {
                if mutation == .callKeyword {
                    var kwargs = call["kwargs"] as? [String: Any] ?? [:]
                    kwargs["frobnicate"] = 3
                    call["kwargs"] = kwargs
                } else {
                    call["args"] = (call["args"] as? [Any] ?? []) + [3.0]
                }
                calls[0] = call
            } else if var tensors = first as? [Any] {
                // tf-keras: a node is a list of [name, node, tensor, kwargs] (an op layer's single
                // tensor may be the entry itself).
                if tensors.first is String { tensors = [tensors] }
                if mutation == .callKeyword {
                    tensors = tensors.map { t in
                        guard var list = t as? [Any] else { return t }
                        var kwargs = list.count > 3 ? list[3] as? [String: Any] ?? [:] : [:]
                        kwargs["frobnicate"] = 3
                        if list.count > 3 { list[3] = kwargs } else { list.append(kwargs) }
                        return list
                    }
                } else {
                    tensors.append([tfKerasConstantMarker, -1, 3.0, [String: Any]()])
                }
                calls[0] = tensors
            } else {
                return false
            }
            entry["inbound_nodes"] = calls
            return true
        }
    }

    func testEveryMutationOfEveryFixtureIsRefusedNamingTheLayer() throws {
        var refused = 0
        for c in try fixtureCases() {
            guard let arch = c.path(c.arch), !c.name.contains("seed_effnetb0") else { continue }
            let text = try String(contentsOfFile: arch, encoding: .utf8)
            XCTAssertNoThrow(try ModelConfigParser.parse(json: text, source: "\(c.name)"), c.name)
            var root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            var config = try XCTUnwrap(root["config"] as? [String: Any], c.name)
            guard let layers = config["layers"] as? [[String: Any]] else { continue }
            // Up to 12 layers spread over the model, InputLayers and nested models aside.
            let candidates = layers.indices.filter {
                let cls = layers[$0]["class_name"] as? String ?? ""
                return cls != "InputLayer" && !modelClassNames.contains(cls)
            }
            let step = max(1, candidates.count / 12)
            for i in stride(from: 0, to: candidates.count, by: step).map({ candidates[$0] }) {
                let name = layers[i]["name"] as? String ?? (layers[i]["config"] as? [String: Any])?["name"] as? String ?? "?"
                for mutation in Mutation.allCases {
                    var edited = layers
                    guard mutate(&edited[i], mutation) else { continue }
                    config["layers"] = edited
                    root["config"] = config
                    let json = String(decoding: try JSONSerialization.data(withJSONObject: root), as: UTF8.self)
                    do {
                        _ = try ModelConfigParser.parse(json: json, source: c.name)
                        XCTFail("\(c.name): layer '\(name)' with \(mutation) was parsed instead of refused")
                    } catch {
                        let line = String(describing: error)
                        XCTAssertTrue(line.contains("'\(name)'"), "\(c.name) \(mutation): \(line)")
                        XCTAssertFalse(line.contains("\n"), "\(c.name) \(mutation): one line, got \(line)")
                        refused += 1
                    }
                }
            }
        }
        print("config audit: \(refused) mutated configs refused")
        XCTAssertGreaterThan(refused, 500)
    }

    /// tf-keras: an explicit training=False in the call wins over the model's flag, for a nested
    /// model's layers too. Keras 3's Functional passes the model's own flag over the recorded one.
    func testCallWithTrainingFalseKeepsTheLayerInInferenceModeInTfKerasOnly() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k3_mobilenetv3small" })
        let graph = try ModelConfigParser.parse(json: String(contentsOfFile: c.path(c.arch)!, encoding: .utf8), source: c.name)
        // Keras 3's MobileNetV3 records training=False on its Dropout; fit overrides it.
        let dropout = try XCTUnwrap(graph.nodes.first { $0.className == "Dropout" })
        XCTAssertFalse(dropout.inferenceOnly)

        let k2 = try XCTUnwrap(fixtureCases().first { $0.name == "k2_nested_functional" })
        var root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: k2.path(k2.arch)!))) as? [String: Any])
        var config = try XCTUnwrap(root["config"] as? [String: Any])
        var layers = try XCTUnwrap(config["layers"] as? [[String: Any]])
        let i = try XCTUnwrap(layers.firstIndex { modelClassNames.contains($0["class_name"] as? String ?? "") })
        let nested = layers[i]["name"] as? String ?? ""
        var calls = try XCTUnwrap(layers[i]["inbound_nodes"] as? [[[Any]]])
        calls = calls.map { call in call.map { t in Array(t.prefix(3)) + [["training": false] as [String: Any]] } }
        layers[i]["inbound_nodes"] = calls
        config["layers"] = layers
        root["config"] = config
        let json = String(decoding: try JSONSerialization.data(withJSONObject: root), as: UTF8.self)
        let graph2 = try ModelConfigParser.parse(json: json, source: "edited")
        let inside = graph2.nodes.filter { $0.scope.first == nested }
        XCTAssertFalse(inside.isEmpty)
        XCTAssertTrue(inside.allSatisfy(\.inferenceOnly), "every layer of the nested model runs in inference mode")
        XCTAssertTrue(graph2.nodes.filter { $0.scope.isEmpty && $0.className != "InputLayer" }.allSatisfy { !$0.inferenceOnly })
    }

    func testRegularizersAndNoiseAreKeptForTheTrainer() throws {
        let json = """
        {"class_name": "Sequential", "config": {"name": "s", "layers": [
          {"class_name": "InputLayer", "config": {"batch_input_shape": [null, 4], "dtype": "float32", "name": "in"}},
          {"class_name": "GaussianNoise", "config": {"name": "noise", "stddev": 0.1, "seed": null}},
          {"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "linear", "use_bias": true,
            "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01}}, "bias_regularizer": null,
            "kernel_constraint": null, "kernel_initializer": {"class_name": "Zeros", "config": {}}}}]}}
        """
        let graph = try ModelConfigParser.parse(json: json, source: "inline")
        XCTAssertEqual(graph.nodes.first { $0.name == "d" }?.trainingOnlyKeys, ["kernel_regularizer"])
        XCTAssertEqual(graph.nodes.first { $0.name == "noise" }?.trainingOnlyKeys, [GraphNode.trainingNoise])
    }
}
