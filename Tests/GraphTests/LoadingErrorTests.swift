import Foundation
import H5Model
import TestSupport
import XCTest
@testable import Graph

/// Bad architectures and mismatched weights give one clear line naming the layer and weight.
final class LoadingErrorTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("graph-errors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    func fixture(_ name: String) throws -> FixtureCase {
        try XCTUnwrap(fixtureCases().first { $0.name == name })
    }

    /// Loads the case's JSON, lets `edit` change the first layer of `className`, writes it out.
    func editedArch(_ c: FixtureCase, className: String, _ edit: (inout [String: Any]) -> Void) throws -> String {
        let data = try Data(contentsOf: URL(fileURLWithPath: c.path(c.arch)!))
        var root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        var config = try XCTUnwrap(root["config"] as? [String: Any])
        var layers = try XCTUnwrap(config["layers"] as? [[String: Any]])
        let i = try XCTUnwrap(layers.firstIndex { $0["class_name"] as? String == className })
        edit(&layers[i])
        config["layers"] = layers
        root["config"] = config
        let out = temp.appendingPathComponent("arch.json")
        try JSONSerialization.data(withJSONObject: root).write(to: out)
        return out.path
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return String(describing: error) }
    }

    /// The library asks for the architecture in its own words and leaves the option's name to its
    /// caller: the remedy is typed.
    func testWeightsOnlyFileWithoutArchAsksForArch() throws {
        let c = try fixture("k2_dense_2d")
        let path = c.path(c.weights)!
        XCTAssertThrowsError(try LoadedModel.load(path: path)) { error in
            let e = error as? GraphError
            XCTAssertEqual(e?.remedy, .architectureFile(path: path))
            XCTAssertTrue(e?.description.contains("give its architecture JSON") ?? false, "\(error)")
            XCTAssertFalse(e?.description.contains("--") ?? true, "\(error)")
            XCTAssertTrue(e?.description.contains(path) ?? false, "\(error)")
        }
    }

    func testUnsupportedLayerClassIsNamed() throws {
        let c = try fixture("k2_dense_2d")
        let arch = try editedArch(c, className: "Dense") { $0["class_name"] = "Bogus" }
        let text = message { _ = try LoadedModel.load(path: c.path(c.weights)!, archPath: arch) }
        XCTAssertEqual(text, "unsupported layer 'dense' of class 'Bogus'")
    }

    func testWrongShapeNamesLayerWeightAndBothShapes() throws {
        let c = try fixture("k2_dense_2d")
        var units = 0
        let arch = try editedArch(c, className: "Dense") { layer in
            var config = layer["config"] as! [String: Any]
            units = (config["units"] as! Int) + 1
            config["units"] = units
            layer["config"] = config
        }
        let text = message { _ = try LoadedModel.load(path: c.path(c.weights)!, archPath: arch) }
        XCTAssertTrue(text.contains("layer 'dense'"), text)
        XCTAssertTrue(text.contains("dense/kernel:0"), text)
        XCTAssertTrue(text.contains(", \(units))"), text)
        XCTAssertTrue(text.contains(", \(units - 1))"), text)
    }

    func testLayerMissingFromWeightsIsNamed() throws {
        let c = try fixture("k2_dense_2d")
        let data = try Data(contentsOf: URL(fileURLWithPath: c.path(c.arch)!))
        var root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        var config = try XCTUnwrap(root["config"] as? [String: Any])
        var layers = try XCTUnwrap(config["layers"] as? [[String: Any]])
        var extra = try XCTUnwrap(layers.last)
        var extraConfig = try XCTUnwrap(extra["config"] as? [String: Any])
        extraConfig["name"] = "extra_dense"
        extra["config"] = extraConfig
        layers.append(extra)
        config["layers"] = layers
        root["config"] = config
        let arch = temp.appendingPathComponent("extra.json")
        try JSONSerialization.data(withJSONObject: root).write(to: arch)
        let text = message { _ = try LoadedModel.load(path: c.path(c.weights)!, archPath: arch.path) }
        XCTAssertTrue(text.hasPrefix(c.path(c.weights)! + ": no weights for layer 'extra_dense'"), text)
    }

    func testWeightsOfAnotherModelAreRefused() throws {
        let arch = try fixture("k2_bn_dense")
        let weights = try fixture("k2_dense_2d")
        let text = message { _ = try LoadedModel.load(path: weights.path(weights.weights)!, archPath: arch.path(arch.arch)!) }
        XCTAssertTrue(text.hasPrefix(weights.path(weights.weights)! + ": "), text)
        XCTAssertTrue(text.contains("layer 'dense'"), text)
    }

    func testArchitectureThatIsNotJSON() throws {
        let c = try fixture("k2_dense_2d")
        let bad = temp.appendingPathComponent("bad.json")
        try Data("{\"class_name\": \"Sequential\", ".utf8).write(to: bad)
        let text = message { _ = try LoadedModel.load(path: c.path(c.weights)!, archPath: bad.path) }
        XCTAssertTrue(text.hasPrefix(bad.path + ": not valid JSON"), text)
    }

    /// Keras 2.0-era weight names under another prefix bind by position; a count that does not
    /// fit is refused naming what the layer has and what the group holds.
    func testRenamedWeightsBindByPositionOrNameBothSides() throws {
        let c = try fixture("emu_keras20_renamed_weights")
        let model = try LoadedModel.load(path: c.path(c.model)!)
        let conv = try XCTUnwrap(model.graph.nodes.first { $0.name == "conv1_conv" })
        XCTAssertEqual(model.weights.weights(of: conv).map(\.fileName), ["conv1_conv_1/kernel:0", "conv1_conv_1/bias:0"])
        var file = try KerasH5File.read(path: c.path(c.model)!)
        let i = try XCTUnwrap(file.weights.layers.firstIndex { $0.name == "conv1_bn" })
        file.weights.layers[i].weights.removeLast()
        let line = message { _ = try model.graph.bindWeights(from: file.weights, source: "f.h5") }
        XCTAssertTrue(line.contains("layer 'conv1_bn' has 4 weights") && line.contains("holds 3 under other names"), line)
    }
}
