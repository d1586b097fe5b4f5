import Foundation
import H5Model
import TestSupport
import XCTest
@testable import Graph

/// The exporter's promises one by one: the seed's partly frozen weight order, trained (student)
/// weights, the config forms both Kerases read, and failures that leave nothing behind.
final class ExportTests: XCTestCase {
    func load(_ name: String, form: String = "full") throws -> LoadedModel {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == name })
        let f = try XCTUnwrap(c.forms.first { $0.label == form })
        return try LoadedModel.load(path: f.model, archPath: f.arch)
    }

    func exportedConfig(_ export: KerasExport) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(export.architectureJSON.utf8)) as? [String: Any])
    }

    /// The seed: EfficientNetB0 frozen up to block5a_expand_conv. Keras loads weights-only files
    /// by position, trainable weights first; fixtures/README.md: the group starts with the 107
    /// trainable weights from block5a on, then normalization/mean:0.
    func testSeedWeightsOnlyOrderIsKerasOrderForThePartlyFrozenBase() throws {
        let seed = try load("k2_seed_effnetb0", form: "weights+json")
        // A weights-only file holds exactly the user's model's weights: 312, Normalization's adapted
        // statistics included (they are what the user's own architecture has).
        let group = try XCTUnwrap(seed.exportFile(weightsOnly: true, target: .keras2).file.weights.layer(named: "efficientnetb0"))
        let names = group.weights.map(\.name)
        XCTAssertEqual(names.first, "block5a_expand_conv/kernel:0")
        XCTAssertEqual(names[106], "top_bn/beta:0")
        XCTAssertEqual(names[107], "normalization/mean:0")
        XCTAssertEqual(names.count, 312)
        XCTAssertFalse(names.contains { $0.hasPrefix("efficientnetb0/") }, "nested names carry no outer prefix")
        XCTAssertTrue(names.contains("block1a_dwconv/depthwise_kernel:0"))
        XCTAssertEqual(seed.graph.defaultTarget(for: .legacyH5, weightsOnly: true), .keras2)
        // Keras 3 would not finalize that Normalization after a legacy load: refused, naming its route.
        for target in [KerasTarget.both, .keras3] {
            XCTAssertThrowsError(try seed.exportFile(weightsOnly: true, target: target)) { error in
                XCTAssertTrue("\(error)".contains("OUT.weights.h5"), "\(error)")
            }
        }
        // The full model keeps moving them into the config for Keras 3 (the config travels with it).
        let full = try XCTUnwrap(seed.exportFile(target: .both).file.weights.layer(named: "efficientnetb0"))
        XCTAssertEqual(full.weights.count, 309)
    }

    /// A student's trained weights: new Float arrays in the WeightStore are what gets written,
    /// and unfreezing layers (as fine-tuning does) moves their weights to the trainable block
    /// and marks them trainable in the config.
    func testUpdatedWeightsAndTrainableFlagsAreWhatIsWritten() throws {
        var model = try load("k2_seed_mini")
        let dense = try XCTUnwrap(model.graph.nodes.first { $0.name == "dense" })
        let count = try XCTUnwrap(model.weights.weight("kernel", of: dense)).values.count
        let trained = (0..<count).map { Float($0) * 0.001 - 0.5 }
        let index = try XCTUnwrap(model.weights.byLayer[dense.layerKey]?.firstIndex { $0.spec.name == "kernel" })
        model.weights.byLayer[dense.layerKey]![index].values = .float32(trained)
        for i in model.graph.nodes.indices where model.graph.nodes[i].className != "InputLayer" {
            model.graph.nodes[i].trainable = true
        }
        let folder = try ExportFolder()
        let export = try model.exportFile(weightsOnly: true, target: .keras2)
        try export.write(to: folder.path("student.h5"), architecturePath: folder.path("student.json"))
        let back = try LoadedModel.load(path: folder.path("student.h5"), archPath: folder.path("student.json"))
        XCTAssertEqual(back.weights.weight("kernel", of: dense)?.floats, trained)
        XCTAssertTrue(back.graph.nodes.filter { !$0.weights.isEmpty }.allSatisfy(\.trainable))
        let names = try XCTUnwrap(back.file.weights.layer(named: "efficientnet_mini")).weights.map(\.name)
        XCTAssertEqual(names.first, "stem_conv/kernel:0")
        XCTAssertEqual(names.firstIndex { $0.contains("moving_mean") }, names.lastIndex { !$0.contains("moving_") }! + 1,
                       "every trainable weight, then every moving statistic")
    }

    func testMissingWeightValuesAreRefusedWithLayerAndWeight() throws {
        var model = try load("k2_dense_2d")
        let node = try XCTUnwrap(model.graph.uniqueLayers.first { !$0.weights.isEmpty })
        model.weights.byLayer[node.layerKey] = []
        let message = errorText { _ = try model.exportFile() }
        XCTAssertTrue(message?.contains("layer '\(node.layerKey)' has no value for its weight 'kernel'") ?? false, message ?? "")
        model = try load("k2_dense_2d")
        model.weights.byLayer[node.layerKey]![0].values = .float32([1, 2, 3])
        XCTAssertTrue(errorText { _ = try model.exportFile() }?.contains("has 3 values") ?? false)
    }

    /// Every layer entry of `model`'s config, nested models included.
    func entries(_ model: [String: Any]) -> [[String: Any]] {
        let layers = (model["config"] as? [String: Any])?["layers"] as? [[String: Any]] ?? []
        return layers.flatMap { entry in [entry] + ((entry["config"] as? [String: Any])?["layers"] != nil ? entries(entry) : []) }
    }

    /// The forms Keras 3 rejects in tf-keras's own configs are gone (reference §4.4), and Keras
    /// 3's own forms are turned into ones tf-keras reads.
    func testConfigUsesFormsBothKerasVersionsRead() throws {
        let seed = try exportedConfig(try load("k2_seed_effnetb0").exportFile())
        let all = entries(seed)
        XCTAssertEqual(all.count, 1 + 1 + 237 + 4, "input, base, its 237 layers, head")
        for entry in all {
            let name = (entry["config"] as? [String: Any])?["name"] as? String ?? "?"
            XCTAssertTrue(Set(entry.keys).isSubset(of: ["class_name", "config", "name", "inbound_nodes"]), name)
            let config = try XCTUnwrap(entry["config"] as? [String: Any])
            if entry["class_name"] as? String == "DepthwiseConv2D" { XCTAssertNil(config["groups"], name) }
            if entry["class_name"] as? String == "BatchNormalization" { XCTAssertTrue(config["axis"] is Int, name) }
        }
        let base = try XCTUnwrap(all.first { $0["class_name"] as? String == "Functional" }?["config"] as? [String: Any])
        XCTAssertEqual(base["output_layers"] as? [AnyHashable], ["top_activation", 0, 0], "a bare triple, not a list of one")

        let k3 = try JSONText.string(try exportedConfig(try load("k3_nested_functional").exportFile(target: .keras3)))
        XCTAssertFalse(k3.contains("__keras_tensor__") || k3.contains("DTypePolicy") || k3.contains("batch_shape"))
        XCTAssertTrue(k3.contains("\"inbound_nodes\": [[[\"a\", 0, 0, {}]], [[\"b\", 0, 0, {}]]]"), k3)
        XCTAssertTrue(k3.contains("[[\"encoder\", 0, 0, {}], [\"encoder\", 1, 0, {}]]"), "Keras 3 numbers calls from 0")
        let k2 = try JSONText.string(try exportedConfig(try load("k3_nested_functional").exportFile(target: .keras2)))
        XCTAssertTrue(k2.contains("[[\"encoder\", 1, 0, {}], [\"encoder\", 2, 0, {}]]"), "tf-keras numbers them from 1")
    }

    /// Keras 3 numbers a nested Functional's calls from 1 in `output_layers` (Keras 3.15 writes
    /// `[["enc", 1, 0], ["enc", 2, 0]]` for outputs `[enc(a), enc(b)]`) but from 0 in calls. The
    /// siamese fixture with its outputs replaced by the encoder's two calls: the outputs must be
    /// what `diff` subtracts, when read and after writing for either version.
    func testOutputsTakenStraightFromANestedFunctional() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k3_nested_functional" })
        var root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: c.path(c.arch)!))) as? [String: Any])
        var config = try XCTUnwrap(root["config"] as? [String: Any])
        config["output_layers"] = [["encoder", 1, 0], ["encoder", 2, 0]]
        root["config"] = config
        let folder = try ExportFolder()
        try JSONSerialization.data(withJSONObject: root).write(to: folder.url.appendingPathComponent("arch.json"))
        let model = try LoadedModel.load(path: c.path(c.model)!, archPath: folder.path("arch.json"))
        let diff = try XCTUnwrap(model.graph.nodes.first { $0.name == "diff" })
        XCTAssertEqual(model.graph.outputs, diff.inputs)
        XCTAssertEqual(diff.inputs.count, 2)
        for target in [KerasTarget.keras2, .keras3] {
            try model.exportFile(target: target).write(to: folder.path("out.h5"))
            assertSameModel(try LoadedModel.load(path: folder.path("out.h5")), model, "target \(target.rawValue)")
        }
    }

    /// Numbers are written back as Keras wrote them (Foundation's Linux parser would misround
    /// Rescaling's 1/255 = 0.00392156862745098).
    func testNumbersAreWrittenAsKerasWroteThem() throws {
        let export = try load("k2_seed_effnetb0").exportFile()
        XCTAssertTrue(try XCTUnwrap(export.file.modelConfig).contains("\"scale\": 0.00392156862745098"))
        XCTAssertTrue(export.architectureJSON.contains("\"epsilon\": 0.001"))
    }

    func testOutputOverAnInputIsRefused() throws {
        let folder = try ExportFolder()
        let input = folder.path("model.h5")
        _ = FileManager.default.createFile(atPath: input, contents: Data("x".utf8))
        try FileManager.default.createSymbolicLink(atPath: folder.path("link.h5"), withDestinationPath: input)
        for output in [input, folder.path("link.h5"), folder.url.path + "/./model.h5"] {
            let message = errorText { try OutputPaths.checkDistinct(outputs: [output], inputs: [input]) }
            XCTAssertTrue(message?.contains("refusing to write over the input file") ?? false, message ?? output)
        }
        XCTAssertNotNil(errorText { try OutputPaths.checkDistinct(outputs: [folder.path("a.h5"), folder.path("a.h5")], inputs: []) })
        XCTAssertNil(errorText { try OutputPaths.checkDistinct(outputs: [folder.path("new.h5")], inputs: [input]) })
    }

    /// A folder that cannot be written gives one line naming it, and neither file is left behind
    /// (also when only the JSON's folder is bad: the .h5 is not written then either).
    func testUnwritableFolderLeavesNothingBehind() throws {
        let folder = try ExportFolder()
        let export = try load("k2_dense_2d").exportFile(weightsOnly: true)
        _ = FileManager.default.createFile(atPath: folder.path("file"), contents: Data())
        let bad = folder.path("file") + "/sub"       // a folder below a regular file: never writable
        for (h5, json) in [(bad + "/w.h5", folder.path("w.json")), (folder.path("w.h5"), bad + "/w.json")] {
            let message = try XCTUnwrap(errorText { try export.write(to: h5, architecturePath: json) })
            XCTAssertFalse(message.contains("\n"), message)
            XCTAssertTrue(message.contains("sub"), message)
            XCTAssertEqual(folder.contents, ["file"], message)
        }
    }

    func testModelWithoutConfigCannotBeExported() throws {
        var model = try load("k2_dense_2d")
        model.configJSON = ""
        XCTAssertTrue(errorText { _ = try model.exportFile() }?.contains("no model config") ?? false)
    }
}
