import Foundation
import H5Model
import TestSupport
import XCTest
@testable import Graph

/// Keras 3's own formats (`.keras`, `.weights.h5`): the paths Keras 3 gives each layer, reading
/// them back by path and by name, and writing them (bit-identical round trips). Whether Keras 3
/// loads what we write is fixtures/check_keras3_native.py's job.
final class Keras3FormatTests: XCTestCase {
    /// The k3n_ fixtures were saved by Keras 3 in these formats.
    func keras3Fixtures() throws -> [FixtureCase] {
        let cases = try fixtureCases().filter { $0.name.hasPrefix("k3n_") }
        XCTAssertEqual(cases.count, 3)
        return cases
    }

    func config(_ c: FixtureCase) throws -> [String: Any] {
        let text = try String(contentsOfFile: c.path(c.arch)!, encoding: .utf8)
        return try XCTUnwrap(JSONReader.parse(text, source: c.arch!) as? [String: Any])
    }

    /// Our path for every layer and nested model is where Keras 3 put it, and the group there
    /// carries that layer's name (the file is Keras's word, not ours).
    func testPathsAreWhereKeras3PutEachLayer() throws {
        var checked = 0
        for c in try keras3Fixtures() {
            let file = try Keras3Weights.read(path: c.path(c.weights)!)
            let paths = Keras3Paths.paths(config: try config(c))
            for (key, path) in paths {
                // A Sequential's own InputLayer is not among Keras's `layers`: no group for it.
                guard let entry = file.entry(at: path) else {
                    XCTAssertTrue(path.split(separator: "/").last!.hasPrefix("input_layer"), "\(c.name): no group for '\(key)' at \(path)")
                    continue
                }
                XCTAssertEqual(entry.name, String(key.split(separator: "/").last!), "\(c.name): \(path)")
                checked += 1
            }
            // Every group of a layer with variables is somebody's.
            for entry in file.entries where !entry.variables.isEmpty {
                XCTAssertTrue(paths.values.contains(entry.path), "\(c.name): nobody's variables at \(entry.path)")
            }
        }
        XCTAssertGreaterThan(checked, 60)
    }

    /// The same weights bind when the file has no layer names (Keras 3.0-3.5 wrote none).
    func testBindingByPathAloneGivesTheSameWeights() throws {
        for c in try keras3Fixtures() {
            let model = try LoadedModel.load(path: c.path(c.model)!)
            var file = try Keras3Weights.read(path: c.path(c.weights)!)
            for i in file.entries.indices { file.entries[i].name = nil }
            let store = try model.graph.bindKeras3Weights(from: file, config: try config(c), source: "unnamed")
            assertSameWeights(store, model.weights, model.graph, c.name)
        }
    }

    /// Where the layer at a path is another one (by the file's names), the group carrying this
    /// layer's name in the same model is taken: two Dense groups swapped still bind right.
    func testNamesSettleGroupsThatMovedPaths() throws {
        let c = try XCTUnwrap(keras3Fixtures().first { $0.name == "k3n_nested_functional" })
        let model = try LoadedModel.load(path: c.path(c.model)!)
        var file = try Keras3Weights.read(path: c.path(c.weights)!)
        let a = try XCTUnwrap(file.entries.firstIndex { $0.path == "layers/dense" })
        let b = try XCTUnwrap(file.entries.firstIndex { $0.path == "layers/dense_1" })
        (file.entries[a].path, file.entries[b].path) = (file.entries[b].path, file.entries[a].path)
        let store = try model.graph.bindKeras3Weights(from: file, config: try config(c), source: "swapped")
        assertSameWeights(store, model.weights, model.graph, "swapped groups")
        // Without names, the swap is a shape error naming the layer and the group.
        for i in file.entries.indices { file.entries[i].name = nil }
        let message = errorText { _ = try model.graph.bindKeras3Weights(from: file, config: try self.config(c), source: "x.weights.h5") }
        XCTAssertEqual(message, "x.weights.h5: layer 'z_first' variable 'layers/dense/vars/0' (kernel) has shape (6, 2), "
                       + "the model expects (6, 6)")
    }

    /// The .keras and the .weights.h5 + JSON that Keras 3 wrote give the same model and weights.
    func testArchiveAndWeightsFileAgree() throws {
        for c in try keras3Fixtures() {
            let archive = try LoadedModel.load(path: c.path(c.model)!)
            let weights = try LoadedModel.load(path: c.path(c.weights)!, archPath: c.path(c.arch))
            XCTAssertEqual(archive.format, .kerasArchive)
            XCTAssertEqual(weights.format, .keras3Weights)
            XCTAssertEqual(archive.file.kerasVersion, "3.15.1")
            assertSameModel(weights, archive, c.name)
        }
    }

    /// Chosen by content: a .keras named .h5 and a .weights.h5 named .bin load the same.
    func testFormatIsToldByContentNotName() throws {
        let folder = try ExportFolder()
        let c = try XCTUnwrap(keras3Fixtures().first)
        try FileManager.default.copyItem(atPath: c.path(c.model)!, toPath: folder.path("model.h5"))
        try FileManager.default.copyItem(atPath: c.path(c.weights)!, toPath: folder.path("weights.bin"))
        let original = try LoadedModel.load(path: c.path(c.model)!)
        assertSameModel(try LoadedModel.load(path: folder.path("model.h5")), original, "renamed .keras")
        assertSameModel(try LoadedModel.load(path: folder.path("weights.bin"), archPath: c.path(c.arch)), original,
                        "renamed .weights.h5")
    }

    /// Every fixture, in every form, written as .keras and as .weights.h5 + JSON and read back:
    /// the same model, every weight bit for bit (Normalization statistics stay weights here).
    /// Legacy files also go .h5 -> .keras -> .h5 and must equal the .h5 written directly.
    func testEveryFixtureRoundTripsThroughTheKeras3Formats() throws {
        let folder = try ExportFolder()
        var checked = 0, refused = 0, legacyTrips = 0
        for c in try fixtureCases() {
            for form in c.forms {
                let original = try LoadedModel.load(path: form.model, archPath: form.arch)
                let label = "\(c.name) (\(form.label))"
                let archive = folder.path("m.keras"), weights = folder.path("m.weights.h5"), json = folder.path("m.json")
                if tfOpCases.contains(c.name) {
                    let message = errorText { try original.writeKerasFile(to: archive) }
                    XCTAssertTrue(message?.contains("load in tf-keras only") ?? false, "\(label): \(message ?? "no error")")
                    refused += 1
                    continue
                }
                // tf-keras's hard_sigmoid has no Keras 3 equivalent; its RandomCrop resizes at
                // inference where Keras 3's passes images through.
                if let reason = ["k2_activations": "'hard_sigmoid' is tf-keras's",
                                 "k2_random_crop": "at inference tf-keras resizes"][c.name] {
                    let message = errorText { try original.writeKerasFile(to: archive) }
                    XCTAssertTrue(message?.contains(reason) ?? false, "\(label): \(message ?? "no error")")
                    refused += 1
                    continue
                }
                try original.writeKerasFile(to: archive)
                try original.writeKerasFile(to: weights, weightsOnly: true, architecturePath: json)
                for written in [try LoadedModel.load(path: archive),
                                try LoadedModel.load(path: weights, archPath: json)] {
                    XCTAssertTrue(assertSameModel(written, original, "\(label) -> \(written.format)").isEmpty, label)
                    checked += 1
                }
                guard original.format == .legacyH5, form.label == "full" else { continue }
                // .h5 -> .keras -> .h5, for the target the direct .h5 can be written for.
                let target: KerasTarget = errorText { _ = try original.exportFile(target: .both) } == nil ? .both : .keras3
                let back = try LoadedModel.load(path: archive).exportFile(target: target).file
                let direct = try original.exportFile(target: target).file
                XCTAssertEqual(back.weights.layerNames, direct.weights.layerNames, label)
                for (x, y) in zip(back.weights.layers, direct.weights.layers) {
                    XCTAssertEqual(x.weights.map(\.name), y.weights.map(\.name), "\(label) group \(x.name)")
                    XCTAssertEqual(x.weights.map { bits($0.values) }, y.weights.map { bits($0.values) }, "\(label) group \(x.name)")
                }
                legacyTrips += 1
            }
        }
        XCTAssertEqual(refused, 2 * 2 + tfOpCases.count * 2)
        XCTAssertGreaterThan(checked, 100)
        XCTAssertGreaterThan(legacyTrips, 40)
        XCTAssertEqual(folder.contents, ["m.json", "m.keras", "m.weights.h5"], "no temporary files left behind")
    }

    /// The format follows the name; a .keras cannot be weights only, a .weights.h5 cannot be a
    /// full model, and Keras 3's formats are not for tf-keras.
    func testOutputNameChoosesTheFormat() throws {
        let folder = try ExportFolder()
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_bn_conv" })
        let model = try LoadedModel.load(path: c.path(c.model)!)
        XCTAssertEqual(try model.writeKerasFile(to: folder.path("a.keras")).format, .kerasArchive)
        XCTAssertEqual(try model.writeKerasFile(to: folder.path("a.weights.h5"), weightsOnly: true).format, .keras3Weights)
        XCTAssertEqual(try model.writeKerasFile(to: folder.path("a.h5")).format, .legacyH5)
        XCTAssertEqual(try KerasFileFormat.detect(path: folder.path("a.keras")), .kerasArchive)
        XCTAssertEqual(try KerasFileFormat.detect(path: folder.path("a.weights.h5")), .keras3Weights)
        XCTAssertEqual(try KerasFileFormat.detect(path: folder.path("a.h5")), .legacyH5)
        XCTAssertEqual(errorText { try model.writeKerasFile(to: folder.path("b.keras"), weightsOnly: true) },
                       "\(folder.path("b.keras")): a .keras archive holds the whole model; for weights only write a .weights.h5 name")
        XCTAssertEqual(errorText { try model.writeKerasFile(to: folder.path("b.weights.h5")) },
                       "\(folder.path("b.weights.h5")): a .weights.h5 file holds weights only (Keras 3's save_weights layout); "
                       + "for the whole model write a .keras or .h5 name")
        XCTAssertTrue(errorText { try model.writeKerasFile(to: folder.path("b.keras"), target: .keras2) }?
            .contains("for tf-keras write a .h5 name") ?? false)
        XCTAssertEqual(folder.contents, ["a.h5", "a.keras", "a.weights.h5"], "a refused write leaves nothing")
    }

    func assertSameWeights(_ got: WeightStore, _ want: WeightStore, _ graph: ModelGraph, _ label: String,
                           file: StaticString = #filePath, line: UInt = #line) {
        var compared = 0
        for node in graph.uniqueLayers {
            for spec in node.weights {
                XCTAssertEqual(got.weight(spec.name, of: node).map { bits($0.values) },
                               want.weight(spec.name, of: node).map { bits($0.values) },
                               "\(label): \(node.layerKey)/\(spec.name)", file: file, line: line)
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 0, label, file: file, line: line)
    }
}
