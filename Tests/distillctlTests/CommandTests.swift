import Foundation
import H5Model
import Runtime
import Graph
import TestSupport
import XCTest

final class CommandTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: temp) }

    func fixture(_ name: String) throws -> FixtureCase { try XCTUnwrap(fixtureCases().first { $0.name == name }) }

    func testSummaryOfTheSeedTeacherGivesKerasTotals() throws {
        let c = try fixture("k2_seed_effnetb0")
        let attrs = try H5Arrays.attributes(path: c.path(c.io)!)
        guard case .integer(let total)? = attrs["total_params"], case .integer(let trainable)? = attrs["trainable_params"],
              case .integer(let frozen)? = attrs["non_trainable_params"] else { return XCTFail("io.h5 lacks Keras's counts") }
        for args in [[c.path(c.model)!], [c.path(c.weights)!, "--arch", c.path(c.arch)!]] {
            let r = try CLI.run(["summary"] + args)
            XCTAssertEqual(r.status, 0, r.stderr)
            let f = NumberFormatter()
            f.numberStyle = .decimal
            f.groupingSeparator = ","
            XCTAssertTrue(r.stdout.contains("Total params: \(f.string(from: NSNumber(value: total))!)"), r.stdout)
            XCTAssertTrue(r.stdout.contains("Trainable params: \(f.string(from: NSNumber(value: trainable))!)"), r.stdout)
            XCTAssertTrue(r.stdout.contains("Non-trainable params: \(f.string(from: NSNumber(value: frozen))!)"), r.stdout)
        }
    }

    func testPredictNpyReproducesKeras() throws {
        let c = try fixture("k2_effnet_block")
        let io = try H5Arrays.read(path: c.path(c.io)!)
        let x = try XCTUnwrap(io["input"]), y = try XCTUnwrap(io["output"])
        let input = temp.appendingPathComponent("x.npy").path, output = temp.appendingPathComponent("y.npy").path
        try NpyArray(shape: x.shape, values: x.floats).write(path: input)
        let r = try CLI.run(["predict", c.path(c.weights)!, "--arch", c.path(c.arch)!, "--input", input, "--output", output,
                             "--batch-size", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let got = try NpyArray.read(path: output)
        XCTAssertEqual(got.shape, y.shape)
        assertClose(got.values, y.floats, tolerance: 1e-4, "predict vs Keras")
    }

    func testPredictOutputLayerGivesKerasIntermediate() throws {
        let c = try fixture("k2_seed_mini")
        let io = try H5Arrays.read(path: c.path(c.io)!)
        guard let key = io.keys.sorted().first(where: { $0.hasPrefix("layers/") }) else { return XCTFail("no intermediate") }
        let x = try XCTUnwrap(io["input"])
        let input = temp.appendingPathComponent("x.npy").path, output = temp.appendingPathComponent("y.npy").path
        try NpyArray(shape: x.shape, values: x.floats).write(path: input)
        let layer = String(key.dropFirst("layers/".count))
        let r = try CLI.run(["predict", c.path(c.model)!, "--input", input, "--output", output, "--output-layer", layer])
        XCTAssertEqual(r.status, 0, r.stderr)
        let got = try NpyArray.read(path: output)
        XCTAssertEqual(got.shape, io[key]!.shape)
        assertClose(got.values, io[key]!.floats, tolerance: 1e-4, "layer \(layer)")
    }

    /// A model with several inputs and outputs: `--input X.npz` (numpy.savez, by Input layer name or
    /// arr_0, arr_1, ...) and `--output Y.npz` give Keras's outputs under Keras's output names.
    func testPredictNpzTakesEveryInputAndWritesEveryOutputByKerasName() throws {
        for name in ["k2_multi_io", "k3_multi_io", "k2_separable"] {
            let c = try fixture(name)
            let attrs = try H5Arrays.attributes(path: c.path(c.io)!)
            let io = try H5Arrays.read(path: c.path(c.io)!)
            func names(_ key: String) throws -> [String] {
                guard case .string(let json)? = attrs[key] else { XCTFail("\(name): io.h5 lacks \(key)"); return [] }
                return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String])
            }
            let inputNames = try names("input_names"), outputNames = try names("output_names")
            XCTAssertGreaterThan(outputNames.count, 1, name)
            let xs = try inputNames.indices.map { k in try XCTUnwrap(io[inputNames.count == 1 ? "input" : "input_\(k)"]) }
            for (label, keys) in [("by name", inputNames), ("by position", inputNames.indices.map { "arr_\($0)" })] {
                let input = temp.appendingPathComponent("\(name)-x.npz").path, output = temp.appendingPathComponent("\(name)-y.npz").path
                try NpyArray.writeArchive(zip(keys, xs).map { ($0, NpyArray(shape: $1.shape, values: $1.floats)) }, path: input)
                let r = try CLI.run(["predict", c.path(c.model)!, "--input", input, "--output", output])
                XCTAssertEqual(r.status, 0, "\(name) \(label): \(r.stderr)")
                let got = try NpyArray.readArchive(path: output)
                XCTAssertEqual(got.map(\.name), outputNames, "\(name) \(label)")
                for (k, entry) in got.enumerated() {
                    let y = try XCTUnwrap(io["output_\(k)"])
                    XCTAssertEqual(entry.array.shape, y.shape, "\(name) \(entry.name)")
                    assertClose(entry.array.values, y.floats, tolerance: 1e-4, "\(name) \(label) \(entry.name)")
                }
            }
            // One .npy cannot hold several outputs: refused before the model runs, nothing written.
            let npy = temp.appendingPathComponent("\(name)-y.npy").path
            let single = temp.appendingPathComponent("\(name)-x.npy").path
            try NpyArray(shape: xs[0].shape, values: xs[0].floats).write(path: single)
            assertCleanFailure(try CLI.run(["predict", c.path(c.model)!, "--input", single, "--output", npy]),
                               mentions: ["--output", "\(outputNames.count) outputs", "--output-layer"] + outputNames)
            XCTAssertFalse(FileManager.default.fileExists(atPath: npy))
            // Nor one .npy several inputs.
            if inputNames.count > 1 {
                let npz = temp.appendingPathComponent("\(name)-y2.npz").path
                assertCleanFailure(try CLI.run(["predict", c.path(c.model)!, "--input", single, "--output", npz]),
                                   mentions: [single, ".npz"] + inputNames)
                XCTAssertFalse(FileManager.default.fileExists(atPath: npz))
            }
        }
    }

    /// A .npz whose arrays do not name the model's inputs is refused, naming what it holds.
    func testPredictNpzWithOtherNamesIsRefused() throws {
        let c = try fixture("k2_multi_io")
        let io = try H5Arrays.read(path: c.path(c.io)!)
        let x0 = try XCTUnwrap(io["input_0"]), x1 = try XCTUnwrap(io["input_1"])
        let input = temp.appendingPathComponent("x.npz").path, output = temp.appendingPathComponent("y.npz").path
        try NpyArray.writeArchive([("image", NpyArray(shape: x0.shape, values: x0.floats)),
                                   ("metadata", NpyArray(shape: x1.shape, values: x1.floats))], path: input)
        assertCleanFailure(try CLI.run(["predict", c.path(c.model)!, "--input", input, "--output", output]),
                           mentions: [input, "metadata", "meta"])
        try NpyArray.writeArchive([("image", NpyArray(shape: x0.shape, values: x0.floats)),
                                   ("meta", NpyArray(shape: [1] + x1.shape.dropFirst(), values: Array(x1.floats.prefix(x1.shape[1]))))], path: input)
        assertCleanFailure(try CLI.run(["predict", c.path(c.model)!, "--input", input, "--output", output]),
                           mentions: [input, "batch sizes"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: output))
    }

    /// Images through the command equal images loaded and run through the library.
    func testPredictImagesFolderWritesOneRowPerImage() throws {
        let c = try fixture("k2_seed_mini")
        let images = temp.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        let names = ["rgb420.jpg", "rgb.png", "gray.jpg"]
        for n in names {
            try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("images/\(n)"),
                                             to: images.appendingPathComponent(n))
        }
        let csv = temp.appendingPathComponent("p.csv").path
        let r = try CLI.run(["predict", c.path(c.model)!, "--images", images.path, "--output", csv, "--batch-size", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.count, names.count + 1)
        XCTAssertEqual(rows[0], "image,class_0,class_1,class_2,class_3,class_4")

        let model = try LoadedModel.load(path: c.path(c.model)!)
        let session = try InferenceSession(model: model)
        for row in rows.dropFirst() {
            let fields = row.split(separator: ",")
            let file = String(fields[0])
            let pixels = try loadImage(path: images.appendingPathComponent(file).path, channels: 3, targetHeight: 32, targetWidth: 32)
            let want = try session.run([Tensor(shape: [1, 32, 32, 3], data: pixels.values)])[0].data
            assertClose(fields.dropFirst().map { Float($0)! }, want, tolerance: 1e-6, file)
        }
    }

    func testVerifyPassesOnAFixtureAndFailsPastTolerance() throws {
        let c = try fixture("k2_bn_conv")
        let ok = try CLI.run(["verify", c.path(c.model)!, "--fixture", c.path(c.io)!])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("max |difference|"), ok.stdout)
        // Another model's fixture: shapes or values cannot agree.
        let other = try fixture("k2_dense_3d")
        let bad = try CLI.run(["verify", c.path(c.model)!, "--fixture", other.path(other.io)!])
        assertCleanFailure(bad, mentions: [other.path(other.io)!])
    }

    /// `bench` runs (its figures are measurements, not checked here): inference and --train.
    func testBenchRunsForInferenceAndTraining() throws {
        let c = try fixture("k2_seed_mini")
        let inference = try CLI.run(["bench", c.path(c.model)!, "--batch-size", "2", "--iterations", "2"])
        XCTAssertEqual(inference.status, 0, inference.stderr)
        XCTAssertTrue(inference.stdout.contains(" img/s (batch 2"), inference.stdout)
        let train = try CLI.run(["bench", c.path(c.model)!, "--train", "--batch-size", "2", "--iterations", "2",
                                 "--unfreeze-from", "block2b_expand_conv"])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stdout.contains("s per step"), train.stdout)
        let head = try CLI.run(["bench", c.path(c.model)!, "--train", "--batch-size", "2", "--iterations", "1",
                                "--head-only"])
        XCTAssertEqual(head.status, 0, head.stderr)
        // The head trains fewer parameters than the model unfrozen from block2b.
        func trainable(_ out: String) -> Int? {
            out.split(separator: "\n").first { $0.hasPrefix("trainable parameters ") }
                .flatMap { Int($0.dropFirst("trainable parameters ".count)) }
        }
        let headCount = try XCTUnwrap(trainable(head.stdout), head.stdout)
        let unfrozenCount = try XCTUnwrap(trainable(train.stdout), train.stdout)
        XCTAssertGreaterThan(headCount, 0)
        XCTAssertLessThan(headCount, unfrozenCount)
        let bad = try CLI.run(["bench", c.path(c.model)!, "--train", "--unfreeze-from", "no_such_layer"])
        assertCleanFailure(bad, mentions: ["no_such_layer"])
        let both = try CLI.run(["bench", c.path(c.model)!, "--train", "--head-only", "--unfreeze-from", "block2b_expand_conv"])
        XCTAssertNotEqual(both.status, 0)
    }

    /// The bundled example, one epoch: --unlabeled adds a folder of images that have no label, the
    /// student is written and its test accuracy printed; `train` refuses unlabelled images.
    func testDistillWithUnlabelledImagesWritesAStudent() throws {
        let example = fixturesDirectory.deletingLastPathComponent().appendingPathComponent("example")
        let extra = temp.appendingPathComponent("unlabelled")
        try FileManager.default.createDirectory(at: extra, withIntermediateDirectories: true)
        let names = try String(contentsOf: example.appendingPathComponent("data/unlabelled.csv"), encoding: .utf8)
            .split(separator: "\n").dropFirst().prefix(50).map { String($0.split(separator: ",")[0]) }
        for n in names {
            try FileManager.default.copyItem(at: example.appendingPathComponent("data/images/\(n)"), to: extra.appendingPathComponent(n))
        }
        let out = temp.appendingPathComponent("student.h5").path
        let common = ["--student", example.appendingPathComponent("student.h5").path,
                      "--train", example.appendingPathComponent("data/train.csv").path,
                      "--test", example.appendingPathComponent("data/test.csv").path,
                      "--images", example.appendingPathComponent("data/images").path, "--unlabeled", extra.path,
                      "--output", out, "--epochs", "1", "--batch-size", "64"]
        let r = try CLI.run(["distill", "--teacher", example.appendingPathComponent("teacher.h5").path] + common)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("on 3050 images"), r.stdout)
        XCTAssertTrue(r.stdout.contains("student test accuracy"), r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out))
        let s = try CLI.run(["summary", out])
        XCTAssertEqual(s.status, 0, s.stderr)
        try FileManager.default.removeItem(atPath: out)
        let t = try CLI.run(["train"] + common)
        assertCleanFailure(t, mentions: ["--unlabeled needs a teacher"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// Keras 3's formats through every command that reads or writes a model: the example's teacher
    /// as .keras, its student as .weights.h5 + JSON, distilled into a .keras student.
    func testDistillReadsAndWritesKeras3Formats() throws {
        let example = fixturesDirectory.deletingLastPathComponent().appendingPathComponent("example")
        let teacher = temp.appendingPathComponent("teacher.keras").path
        let student = temp.appendingPathComponent("student.weights.h5").path
        let c1 = try CLI.run(["convert", example.appendingPathComponent("teacher.h5").path, "--output", teacher])
        XCTAssertEqual(c1.status, 0, c1.stderr)
        XCTAssertTrue(c1.stdout.hasPrefix("wrote \(teacher) (.keras archive, full model"), c1.stdout)
        let c2 = try CLI.run(["convert", example.appendingPathComponent("student.h5").path, "--output", student])
        XCTAssertEqual(c2.status, 0, c2.stderr)
        XCTAssertTrue(c2.stdout.contains("(Keras 3 .weights.h5, weights only"), c2.stdout)
        let arch = temp.appendingPathComponent("student.json").path
        XCTAssertTrue(c2.stdout.contains("wrote \(arch) (architecture JSON)"), c2.stdout)
        // The same model in either format: the same summary.
        let a = try CLI.run(["summary", example.appendingPathComponent("teacher.h5").path])
        let b = try CLI.run(["summary", teacher])
        XCTAssertEqual(a.stdout, b.stdout)
        let out = temp.appendingPathComponent("distilled.keras").path
        let r = try CLI.run(["distill", "--teacher", teacher, "--student", student, "--student-arch", arch,
                             "--train", example.appendingPathComponent("data/train.csv").path,
                             "--images", example.appendingPathComponent("data/images").path,
                             "--output", out, "--epochs", "1", "--batch-size", "64"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let s = try CLI.run(["summary", out])
        let original = try CLI.run(["summary", student, "--arch", arch])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertEqual(s.stdout.split(separator: "\n").suffix(4), original.stdout.split(separator: "\n").suffix(4),
                       "the written student has the student's parameter counts")
    }

    /// The loss convention (alpha weights the hard-label term; soft term on logits, times T^2) is
    /// stated where users look: distill --help.
    func testDistillHelpStatesTheLossConvention() throws {
        let r = try CLI.run(["distill", "--help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let text = r.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(text.contains("alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))"), text)
        XCTAssertTrue(text.contains("alpha weights the HARD-label loss"), text)
        XCTAssertTrue(text.contains("--checkpoint-dir") && text.contains("--teacher-cache"), text)
    }
}
