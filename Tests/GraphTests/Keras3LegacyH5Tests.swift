import Foundation
import TestSupport
import XCTest
@testable import Graph

/// Keras 3 writes a legacy `.h5` of a model with operation layers (`model.save("legacy.h5")`) that
/// it cannot load back itself. Its config has no `module` keys, so an operation (`x / 255.0`,
/// ConvNeXt's residual `Add` of two tensors) is told from the layer of the same class by its
/// config, and ConvNeXt's unnamed LayerScale gammas are stored as `variable`, `variable_1`, ...
/// Read, such a file is the model of the `.keras` Keras wrote from the same model (whose outputs
/// the fixture tests check against Keras's); written in Keras 3's format, each operation gets the
/// `module` and `registered_name` that Keras's own `to_json()` gives it.
final class Keras3LegacyH5Tests: XCTestCase {
    func entries(_ json: String, _ source: String) throws -> [String: [String: Any]] {
        let root = try XCTUnwrap(JSONReader.parse(json, source: source) as? [String: Any])
        let layers = try XCTUnwrap((root["config"] as? [String: Any])?["layers"] as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: layers.map { ($0["name"] as? String ?? "?", $0) })
    }

    func testLegacyH5WithOperationsIsTheModelKerasWroteAsKeras() throws {
        let folder = try ExportFolder()
        for name in ["k3_tensor_ops", "k3_convnext_tiny"] {
            let c = try XCTUnwrap(fixtureCases().first { $0.name == name }, name)
            let legacy = try XCTUnwrap(c.path("cases/\(name)/legacy.h5"))
            let native = try LoadedModel.load(path: c.path(c.model)!)
            let model = try LoadedModel.load(path: legacy)
            assertSameModel(model, native, "\(name) legacy.h5")
            let operations = model.graph.nodes.filter { $0.kerasOp == 3 }
            XCTAssertEqual(operations.count, native.graph.nodes.filter { $0.kerasOp == 3 }.count, name)
            XCTAssertGreaterThan(operations.count, 1, name)

            let weights = folder.path("\(name).weights.h5"), json = folder.path("\(name).json")
            try model.writeKerasFile(to: weights, weightsOnly: true, architecturePath: json)
            assertSameModel(try LoadedModel.load(path: weights, archPath: json), native, "\(name) legacy.h5 -> .weights.h5")
            let written = try entries(String(contentsOfFile: json, encoding: .utf8), json)
            let keras = try entries(String(contentsOfFile: c.path(c.arch)!, encoding: .utf8), c.arch!)
            for node in operations {
                let ours = try XCTUnwrap(written[node.name], node.name), theirs = try XCTUnwrap(keras[node.name], node.name)
                XCTAssertEqual(ours["module"] as? String, theirs["module"] as? String, "\(name) '\(node.name)' module")
                XCTAssertEqual(ours["registered_name"] as? String, theirs["registered_name"] as? String,
                               "\(name) '\(node.name)' registered_name")
            }
        }
    }

    /// A layer whose config carries `trainable` and `dtype` stays a layer, with or without `module`:
    /// the merge layer `Add` of a list of tensors is not taken for the operation.
    func testLayersWithTheClassNameOfAnOperationStayLayers() throws {
        let node: [String: Any] = ["args": [[["class_name": "__keras_tensor__"]]], "kwargs": [String: Any]()]
        let layer: [String: Any] = ["class_name": "Add", "config": ["name": "add", "trainable": true, "dtype": "float32"],
                                    "inbound_nodes": [node]]
        XCTAssertFalse(isOpLayer(layer, className: "Add"))
        var operation = layer
        operation["config"] = ["name": "add"]
        XCTAssertTrue(isOpLayer(operation, className: "Add"))
        operation["module"] = "keras.layers"
        XCTAssertFalse(isOpLayer(operation, className: "Add"), "an explicit module decides")
        operation["module"] = nil
        operation["inbound_nodes"] = [[["input_1", 0, 0, [String: Any]()]]]
        XCTAssertFalse(isOpLayer(operation, className: "Add"), "tf-keras's call form: not a Keras 3 operation")
    }
}
