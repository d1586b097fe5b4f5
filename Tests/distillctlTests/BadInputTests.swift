import Foundation
import TestSupport
import XCTest

/// Every bad input ends in one clear line on stderr, a non-zero exit, and no HDF5 error stack.
final class BadInputTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("cli-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    func fixture(_ name: String) throws -> FixtureCase { try XCTUnwrap(fixtureCases().first { $0.name == name }) }

    func write(_ name: String, _ data: Data) throws -> String {
        let url = temp.appendingPathComponent(name)
        try data.write(to: url)
        return url.path
    }

    func testNotAnHDF5File() throws {
        let path = try write("model.h5", Data("this is not HDF5\n".utf8))
        assertCleanFailure(try CLI.run(["summary", path]), mentions: [path, "not an HDF5 file"])
    }

    func testTruncatedHDF5File() throws {
        let c = try fixture("k2_bn_conv")
        let full = try Data(contentsOf: URL(fileURLWithPath: c.path(c.model)!))
        let path = try write("truncated.h5", full.prefix(full.count / 2))
        assertCleanFailure(try CLI.run(["summary", path]), mentions: [path])
    }

    func testWeightsOnlyFileWithoutArch() throws {
        let c = try fixture("k2_bn_conv")
        assertCleanFailure(try CLI.run(["summary", c.path(c.weights)!]), mentions: [c.path(c.weights)!, "--arch"])
    }

    func testWrongShapeNamesLayerWeightAndShapes() throws {
        // k2_dense_2d's weights against k2_bn_dense's architecture: the first Dense differs in size.
        let weights = try fixture("k2_dense_2d"), arch = try fixture("k2_bn_dense")
        let r = try CLI.run(["summary", weights.path(weights.weights)!, "--arch", arch.path(arch.arch)!])
        assertCleanFailure(r, mentions: ["layer 'dense'", "dense/kernel:0", "has shape (", "expects ("])
    }

    func testUnsupportedLayerClass() throws {
        let c = try fixture("k2_dense_2d")
        let text = try String(contentsOfFile: c.path(c.arch)!, encoding: .utf8)
        let edited = text.replacingOccurrences(of: "\"class_name\": \"Dense\"", with: "\"class_name\": \"Bogus\"")
        XCTAssertNotEqual(text, edited)
        let arch = try write("arch.json", Data(edited.utf8))
        let r = try CLI.run(["summary", c.path(c.weights)!, "--arch", arch])
        assertCleanFailure(r, mentions: ["unsupported layer 'dense' of class 'Bogus'"])
    }

    func testUnreadableImage() throws {
        let c = try fixture("k2_seed_mini")
        let images = temp.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("images/corrupt.jpg"),
                                         to: images.appendingPathComponent("corrupt.jpg"))
        let out = temp.appendingPathComponent("p.csv").path
        let r = try CLI.run(["predict", c.path(c.model)!, "--images", images.path, "--output", out])
        assertCleanFailure(r, mentions: ["corrupt.jpg"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing may be written on failure")
    }

    func testInputOfTheWrongShape() throws {
        let c = try fixture("k2_seed_mini")
        let x = temp.appendingPathComponent("x.npy").path
        // A (1, 4) array for a (batch, 32, 32, 3) model, written by the library's own writer.
        let r0 = try CLI.run(["predict", c.path(c.model)!, "--input", fixturesDirectory.appendingPathComponent("images/npy_reference_2x3x5.npy").path,
                              "--output", x])
        assertCleanFailure(r0, mentions: ["shape"])
        let r1 = try CLI.run(["predict", c.path(c.model)!, "--input", fixturesDirectory.appendingPathComponent("images/npy_i8.npy").path,
                              "--output", x])
        assertCleanFailure(r1, mentions: ["npy_i8.npy"])
    }

    // MARK: Keras 3 formats (.keras, .weights.h5)

    func testKerasArchiveWithoutConfigNamesTheEntry() throws {
        let c = try fixture("k3n_cnn")
        let path = try write("model.keras", Keras3BadFiles.archive(c) { Keras3BadFiles.renameEntry(&$0, from: "config.json", to: "config.jsox") })
        assertCleanFailure(try CLI.run(["summary", path]), mentions: [path, "no 'config.json' entry", "config.jsox"])
    }

    func testTruncatedKerasArchive() throws {
        let c = try fixture("k3n_cnn")
        let path = try write("model.keras", Keras3BadFiles.archive(c) { $0 = $0.prefix($0.count / 2) })
        assertCleanFailure(try CLI.run(["summary", path]), mentions: [path, "corrupt or truncated zip"])
    }

    func testCorruptEntryInKerasArchive() throws {
        // One byte of config.json's stored text changed: its CRC-32 no longer matches.
        let c = try fixture("k3n_cnn")
        let path = try write("model.keras", Keras3BadFiles.archive(c) { data in
            let at = try XCTUnwrap(data.range(of: Data("\"class_name\": \"Sequential\"".utf8)))
            data[at.lowerBound + 1] = UInt8(ascii: "k")
        })
        assertCleanFailure(try CLI.run(["summary", path]), mentions: [path, "entry 'config.json'", "corrupt"])
    }

    func testKeras3WeightsMissingALayerNamesLayerAndGroup() throws {
        let c = try fixture("k3n_cnn")
        let path = temp.appendingPathComponent("model.weights.h5").path
        try Keras3BadFiles.weightsWithout(c, path: "layers/dense_1", to: path)
        let r = try CLI.run(["summary", path, "--arch", c.path(c.arch)!])
        assertCleanFailure(r, mentions: [path, "no variables for layer 'probs'", "layers/dense_1/vars"])
    }

    func testKeras3WeightsOfTheWrongShapeNameLayerAndVariable() throws {
        // k3n_cnn's weights against its architecture with 5 classes instead of 4.
        let c = try fixture("k3n_cnn")
        let text = try String(contentsOfFile: c.path(c.arch)!, encoding: .utf8)
        let edited = text.replacingOccurrences(of: "\"units\": 4", with: "\"units\": 5")
        XCTAssertNotEqual(text, edited)
        let arch = try write("arch.json", Data(edited.utf8))
        let r = try CLI.run(["summary", c.path(c.weights)!, "--arch", arch])
        assertCleanFailure(r, mentions: [c.path(c.weights)!, "layer 'probs'", "'layers/dense_1/vars/0' (kernel)",
                                         "has shape (16, 4)", "expects (16, 5)"])
    }

    func testConvertToKerasOverAnUnwritableFolderLeavesNothing() throws {
        let c = try fixture("k3n_cnn")
        let out = temp.appendingPathComponent("missing/student.keras").path
        let r = try CLI.run(["convert", c.path(c.model)!, "--output", out])
        assertCleanFailure(r, mentions: [out, "does not exist"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: temp.path), [])
    }
}
