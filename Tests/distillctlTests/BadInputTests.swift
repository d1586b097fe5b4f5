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
        // Each command names its own option for the architecture of the model at fault. (A
        // readable CSV: it is read before the teachers load, and a missing one would be refused first.)
        let weights = c.path(c.weights)!, full = c.path(c.model)!
        let csv = try trainingData(["a", "b"])
        for (args, flag) in [(["--student", weights, "--teacher", full], "--student-arch"),
                             (["--student", full, "--teacher", weights], "--teacher-arch")] {
            let r = try CLI.run(["distill"] + args + ["--train", csv, "--output", temp.appendingPathComponent("s.h5").path])
            assertCleanFailure(r, mentions: [weights, "pass \(flag) model.json"])
        }
    }

    /// Where only one Keras version can load a model, convert names its own option for it.
    func testConvertNamesTheKerasOptionItNeeds() throws {
        let c = try fixture("k2_activations")
        let out = temp.appendingPathComponent("a.keras").path
        assertCleanFailure(try CLI.run(["convert", c.path(c.model)!, "--output", out]),
                           mentions: ["'hard_sigmoid' is tf-keras's", "write it for Keras 2 only (--keras 2, a .h5 name)"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
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

// MARK: - Issue #6's bad-input table (branch fuzz-badinput): each row's exact kind of message

extension BadInputTests {
    // Model files

    func testZeroByteHDF5File() throws {
        let path = try write("empty.h5", Data())
        let r = try CLI.run(["summary", path])
        assertCleanFailure(r, mentions: [path, "empty file (0 bytes), not an HDF5 file"])
    }

    func testTruncatedHDF5FileSaysTruncated() throws {
        let c = try fixture("k2_bn_conv")
        let full = try Data(contentsOf: URL(fileURLWithPath: c.path(c.model)!))
        for keep in [full.count / 2, 600] {   // past the superblock, and inside the root's header
            let path = try write("cut\(keep).h5", full.prefix(keep))
            assertCleanFailure(try CLI.run(["summary", path]), mentions: [path + ": ", "truncated"])
        }
    }

    /// A real HDF5 file that is not a Keras model: a fixture's io.h5 (inputs and outputs only).
    func testHDF5FileWithoutKerasAttributes() throws {
        let c = try fixture("k2_dense_2d")
        let path = c.path(c.io)!
        assertCleanFailure(try CLI.run(["summary", path]),
                           mentions: [path + ": not a Keras model file", "no 'layer_names' attribute and no 'model_weights' group"])
    }

    /// The architecture has a layer the weights file lacks.
    func testWeightsMissingALayer() throws {
        let c = try fixture("k2_dense_2d")
        let arch = try editedArch(c) { layers in
            var extra = layers.last!
            var config = extra["config"] as! [String: Any]
            config["name"] = "extra_dense"
            extra["config"] = config
            layers.append(extra)
        }
        let weights = c.path(c.weights)!
        assertCleanFailure(try CLI.run(["summary", weights, "--arch", arch]),
                           mentions: [weights + ": no weights for layer 'extra_dense'"])
    }

    /// The weights file has a layer the architecture lacks: its weights match nothing.
    func testWeightsWithAnExtraLayer() throws {
        let c = try fixture("k2_dense_2d")
        var removed = ""
        let arch = try editedArch(c) { layers in
            let last = layers.removeLast()
            removed = (last["config"] as! [String: Any])["name"] as! String
        }
        let weights = c.path(c.weights)!
        assertCleanFailure(try CLI.run(["summary", weights, "--arch", arch]),
                           mentions: [weights + ": weight '\(removed)/", "in group '\(removed)' matches no layer of the model"])
    }

    /// A layer's weight count differs: the architecture says no bias, the file has one (and back).
    func testWeightsOfTheWrongCount() throws {
        let c = try fixture("k2_bn_dense")
        var name = ""
        let noBias = try editedArch(c) { layers in
            let i = layers.firstIndex { $0["class_name"] as? String == "Dense" && ($0["config"] as! [String: Any])["use_bias"] as? Bool == true }!
            var config = layers[i]["config"] as! [String: Any]
            name = config["name"] as! String
            config["use_bias"] = false
            layers[i]["config"] = config
        }
        let weights = c.path(c.weights)!
        assertCleanFailure(try CLI.run(["summary", weights, "--arch", noBias]),
                           mentions: [weights + ": weight '\(name)/bias:0' in group '\(name)' matches no layer"])
        // BatchNormalization told to have a centre (beta) its file does not hold.
        let withBeta = try editedArch(c) { layers in
            let i = layers.firstIndex { $0["class_name"] as? String == "BatchNormalization" && ($0["config"] as! [String: Any])["center"] as? Bool == false }!
            var config = layers[i]["config"] as! [String: Any]
            name = config["name"] as! String
            config["center"] = true
            config["scale"] = true
            layers[i]["config"] = config
        }
        let r = try CLI.run(["summary", weights, "--arch", withBeta])
        assertCleanFailure(r, mentions: [weights + ": layer '\(name)' needs weight '", "not found in group '\(name)'"])
    }

    /// Files the fuzzer made on which Debian's libhdf5 segfaults or loops for ever
    /// (fixtures/fuzz/README.md): one line, and the process that reports it lives.
    func testFilesThatCrashOrHangLibHDF5() throws {
        let segv = fixturesDirectory.appendingPathComponent("fuzz/regressions/libhdf5_H5HG_read_segv.h5").path
        assertCleanFailure(try CLI.run(["summary", segv]),
                           mentions: [segv + ": corrupt HDF5 file: libhdf5 crashed reading it (signal 11, Segmentation fault)"])
        let hang = fixturesDirectory.appendingPathComponent("fuzz/regressions/libhdf5_H5HG_hang.h5").path
        setenv("DISTILLCTL_HDF5_TIMEOUT", "2", 1)
        defer { unsetenv("DISTILLCTL_HDF5_TIMEOUT") }
        assertCleanFailure(try CLI.run(["summary", hang]),
                           mentions: [hang + ": corrupt HDF5 file: libhdf5 did not finish reading it within 2 s"])
    }

    func testArchitectureThatIsNotJSON() throws {
        let c = try fixture("k2_dense_2d")
        let arch = try write("arch.json", Data("{\"class_name\": \"Sequential\", \"config\": ".utf8))
        assertCleanFailure(try CLI.run(["summary", c.path(c.weights)!, "--arch", arch]), mentions: [arch + ": not valid JSON"])
        let missing = temp.appendingPathComponent("absent.json").path
        assertCleanFailure(try CLI.run(["summary", c.path(c.weights)!, "--arch", missing]),
                           mentions: [missing + ": cannot read the architecture file"])
    }

    func testArchitectureWithAnUnknownModelClass() throws {
        let c = try fixture("k2_dense_2d")
        let text = try String(contentsOfFile: c.path(c.arch)!, encoding: .utf8)
        let edited = text.replacingOccurrences(of: "\"class_name\": \"Sequential\"", with: "\"class_name\": \"MyModel\"")
        XCTAssertNotEqual(text, edited)
        let arch = try write("arch.json", Data(edited.utf8))
        assertCleanFailure(try CLI.run(["summary", c.path(c.weights)!, "--arch", arch]), mentions: ["'MyModel'"])
    }

    // Inputs

    func testNpyInputOfTheWrongShapeOrDtype() throws {
        let c = try fixture("k2_seed_mini")
        let out = temp.appendingPathComponent("y.npy").path
        let wrongShape = fixturesDirectory.appendingPathComponent("images/npy_reference_2x3x5.npy").path
        assertCleanFailure(try CLI.run(["predict", c.path(c.model)!, "--input", wrongShape, "--output", out]),
                           mentions: [wrongShape + ": shape (2, 3, 5)", "the model expects (batch, 32, 32, 3)"])
        let wrongType = fixturesDirectory.appendingPathComponent("images/npy_i8.npy").path
        assertCleanFailure(try CLI.run(["predict", c.path(c.model)!, "--input", wrongType, "--output", out]),
                           mentions: [wrongType, "dtype '<i8' not supported"])
        let truncated = fixturesDirectory.appendingPathComponent("images/npy_truncated.npy").path
        assertCleanFailure(try CLI.run(["predict", c.path(c.model)!, "--input", truncated, "--output", out]),
                           mentions: [truncated])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// Every corrupt or truncated JPEG/PNG fixture: one line naming the file (libjpeg's and
    /// libpng's error handlers return to us instead of exiting the process).
    func testCorruptAndTruncatedImagesThroughPredict() throws {
        let c = try fixture("k2_seed_mini")
        for name in ["corrupt.jpg", "truncated_header.jpg", "empty.jpg", "corrupt.png", "truncated.png", "not_an_image.png"] {
            let folder = temp.appendingPathComponent("one-\(name)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("images/\(name)"),
                                             to: folder.appendingPathComponent(name))
            let out = temp.appendingPathComponent("p.csv").path
            let r = try CLI.run(["predict", c.path(c.model)!, "--images", folder.path, "--output", out])
            assertCleanFailure(r, mentions: ["cannot load image '\(folder.appendingPathComponent(name).path)'"])
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), name)
        }
    }

    /// A grayscale JPEG or PNG given to an RGB model is converted as Keras's
    /// load_img(color_mode="rgb") does: the prediction equals the model run on Keras's own pixels
    /// (fixtures/images/expected.bin, written by make_image_fixtures.py with Keras 3 and PIL).
    /// seed_mini's weights do not depend on the image size (global pooling), so its input is set
    /// to the size Keras's fixture was resized to.
    func testGrayscaleImageForAnRGBModelIsConvertedAsKerasDoes() throws {
        let c = try fixture("k2_seed_mini")
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: fixturesDirectory.appendingPathComponent("images/expected.json"))) as! [String: Any]
        let blob = try Data(contentsOf: fixturesDirectory.appendingPathComponent("images/expected.bin"))
        for (file, size) in [("gray.jpg", [30, 45]), ("gray.png", [27, 42])] {
            let entry = try XCTUnwrap((manifest["cases"] as! [[String: Any]]).first {
                $0["file"] as? String == file && $0["color_mode"] as? String == "rgb" && $0["interpolation"] as? String == "nearest"
                    && $0["target"] as? [Int] == size && $0["pil_mode"] as? String == "L"
            })
            let offset = entry["offset"] as! Int, count = entry["count"] as! Int
            XCTAssertEqual(count, size[0] * size[1] * 3)
            let kerasPixels = blob[blob.startIndex + offset ..< blob.startIndex + offset + count].map { Float($0) }

            let text = try String(contentsOfFile: c.path(c.arch)!, encoding: .utf8)
            let resized = text.replacingOccurrences(of: "[null, 32, 32, 3]", with: "[null, \(size[0]), \(size[1]), 3]")
            XCTAssertNotEqual(text, resized)
            let arch = try write("arch-\(file).json", Data(resized.utf8))
            let folder = temp.appendingPathComponent("gray-\(file)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("images/\(file)"),
                                             to: folder.appendingPathComponent(file))
            let csv = temp.appendingPathComponent("p-\(file).csv").path
            let r = try CLI.run(["predict", c.path(c.weights)!, "--arch", arch, "--images", folder.path, "--output", csv])
            XCTAssertEqual(r.status, 0, r.stderr)
            let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(rows.count, 2)
            let got = rows[1].split(separator: ",").dropFirst().map { Float($0)! }

            let x = temp.appendingPathComponent("keras-\(file).npy").path, y = temp.appendingPathComponent("y-\(file).npy").path
            try writeTestNpy(x, shape: [1, size[0], size[1], 3], values: kerasPixels)
            let keras = try CLI.run(["predict", c.path(c.weights)!, "--arch", arch, "--input", x, "--output", y])
            XCTAssertEqual(keras.status, 0, keras.stderr)
            assertClose(got, try readNpyValues(y), tolerance: 1e-5, "\(file): distillctl's conversion vs Keras's pixels")
        }
    }

    // Training data: CSVs, images, the bad-image policy (train on a few of the example's images)

    /// A folder with `names` copied from the bundled example and a CSV in the example's layout.
    func trainingData(_ names: [String], csv rows: [String]? = nil, header: String? = nil) throws -> String {
        let example = fixturesDirectory.deletingLastPathComponent().appendingPathComponent("example/data")
        let folder = temp.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let lines = try String(contentsOf: example.appendingPathComponent("train.csv"), encoding: .utf8).split(separator: "\n")
        var out = [header ?? String(lines[0])]
        if let rows { out += rows } else {
            for line in lines.dropFirst().prefix(names.count) {
                let name = String(line.split(separator: ",")[0])
                try? FileManager.default.copyItem(at: example.appendingPathComponent("images/\(name)"), to: folder.appendingPathComponent(name))
                out.append(String(line))
            }
        }
        let path = folder.appendingPathComponent("train.csv").path
        try Data((out.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func train(_ csv: String, _ extra: [String] = []) throws -> (CLIResult, String) {
        let example = fixturesDirectory.deletingLastPathComponent().appendingPathComponent("example")
        let out = temp.appendingPathComponent("student.h5").path
        let r = try CLI.run(["train", "--student", example.appendingPathComponent("student.h5").path, "--train", csv,
                             "--output", out, "--epochs", "1", "--batch-size", "4"] + extra)
        return (r, out)
    }

    func testCSVWithoutTheNamedColumns() throws {
        let csv = try trainingData(Array(repeating: "", count: 6))
        let (noX, out) = try train(csv, ["--x-col", "filename"])
        assertCleanFailure(noX, mentions: [csv + ": no column 'filename' (columns: image_id, tshirt"])
        let (noY, _) = try train(csv, ["--y-cols", "tshirt,jacket"])
        assertCleanFailure(noY, mentions: [csv + ": no label column 'jacket'"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// A column beside the one-hot ones that holds no probability, with the label columns guessed:
    /// the library says to name them, the command line names its option for that.
    func testGuessedLabelColumnThatIsNoProbabilityNamesTheOption() throws {
        let onehot = try trainingData(Array(repeating: "", count: 3))
        let lines = try String(contentsOfFile: onehot, encoding: .utf8).split(separator: "\n")
        let widened = URL(fileURLWithPath: onehot).deletingLastPathComponent().appendingPathComponent("widened.csv").path
        let text = ([lines[0] + ",width"] + lines.dropFirst().map { $0 + ",32" }).joined(separator: "\n") + "\n"
        try text.write(toFile: widened, atomically: true, encoding: .utf8)
        let (r, out) = try train(widened, [])
        assertCleanFailure(r, mentions: [widened + " line 2", "column 'width' holds '32'", "name the label columns with --y-cols"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// Labels in a `label` column: the training split's classes are 0...9 (integer labels), a
    /// validation row naming anything else is the row at fault.
    func testCSVWithAnUnknownLabel() throws {
        let onehot = try trainingData(Array(repeating: "", count: 3))
        let folder = URL(fileURLWithPath: onehot).deletingLastPathComponent()
        let names = try String(contentsOfFile: onehot, encoding: .utf8).split(separator: "\n").dropFirst().map { String($0.split(separator: ",")[0]) }
        let labels = folder.appendingPathComponent("labels.csv").path
        try Data("image_id,label\n\(names[0]),9\n\(names[1]),0\n\(names[2]),4\n".utf8).write(to: URL(fileURLWithPath: labels))
        let val = folder.appendingPathComponent("val.csv").path
        try Data("image_id,label\n\(names[0]),3\n\(names[1]),pullover\n".utf8).write(to: URL(fileURLWithPath: val))
        let (r, out) = try train(labels, ["--val", val])
        assertCleanFailure(r, mentions: [val + " line 3 (\(names[1])): unknown label 'pullover'; classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 (or an index 0-9)"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testEmptySplit() throws {
        let csv = try trainingData([], csv: [])
        let (r, out) = try train(csv)
        assertCleanFailure(r, mentions: [csv + ": the CSV has no rows"])
        let good = try trainingData(Array(repeating: "", count: 4))
        let emptyVal = temp.appendingPathComponent("val.csv").path
        try Data("image_id,tshirt,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,boot\n".utf8).write(to: URL(fileURLWithPath: emptyVal))
        let (v, _) = try train(good, ["--val", emptyVal])
        assertCleanFailure(v, mentions: [emptyVal + ": the CSV has no rows"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testMissingImage() throws {
        let csv = try trainingData(Array(repeating: "", count: 4))
        let gone = URL(fileURLWithPath: csv).deletingLastPathComponent().appendingPathComponent("fmnist_train_00692.jpg")
        try FileManager.default.removeItem(at: gone)
        let (r, out) = try train(csv)
        assertCleanFailure(r, mentions: [csv + ": image file not found: " + gone.path])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// Bad images stop training before the first step, all of them listed; --skip-bad-images
    /// leaves them out and trains on the rest.
    func testBadImagesPolicy() throws {
        let csv = try trainingData(Array(repeating: "", count: 8))
        let folder = URL(fileURLWithPath: csv).deletingLastPathComponent()
        let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        let victims = lines.dropFirst().prefix(2).map { String($0.split(separator: ",")[0]) }
        try FileManager.default.removeItem(at: folder.appendingPathComponent(victims[0]))
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("images/truncated.png"),
                                         to: folder.appendingPathComponent(victims[0]))
        try FileManager.default.removeItem(at: folder.appendingPathComponent(victims[1]))
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("images/corrupt.jpg"),
                                         to: folder.appendingPathComponent(victims[1]))
        let (stop, out) = try train(csv)
        assertCleanFailure(stop, mentions: [csv + ": 2 images cannot be loaded: ", folder.appendingPathComponent(victims[0]).path,
                                            folder.appendingPathComponent(victims[1]).path, "--skip-bad-images"])
        XCTAssertFalse(stop.stdout.contains("epoch"), "no step before the check: \(stop.stdout)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))

        let (skip, _) = try train(csv, ["--skip-bad-images"])
        XCTAssertEqual(skip.status, 0, skip.stderr)
        XCTAssertTrue(skip.stdout.contains("left out 2 training images that cannot be loaded: "), skip.stdout)
        for v in victims { XCTAssertTrue(skip.stdout.contains(folder.appendingPathComponent(v).path), skip.stdout) }
        XCTAssertTrue(skip.stdout.contains("on 6 images"), skip.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out))
    }

    // Helpers

    /// The fixture's architecture JSON with `edit` applied to its layer list, written to a file.
    func editedArch(_ c: FixtureCase, _ edit: (inout [[String: Any]]) -> Void) throws -> String {
        var root = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: c.path(c.arch)!))) as! [String: Any]
        var config = root["config"] as! [String: Any]
        var layers = config["layers"] as! [[String: Any]]
        edit(&layers)
        config["layers"] = layers
        root["config"] = config
        let url = temp.appendingPathComponent("edited-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: root).write(to: url)
        return url.path
    }


    /// The float32 values of a .npy written by distillctl (header skipped by its stated length).
    func readNpyValues(_ path: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = Int(data[data.startIndex + 8]) | Int(data[data.startIndex + 9]) << 8
        let body = data.dropFirst(10 + headerLength)
        return body.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}
