// --feature through the command line on 200 images of the bundled example: the written student
// has exactly its own layers and weights (no adaptor), two identical teachers give the student one
// gives, a run resumed from a checkpoint ends with the weights of a run never stopped (adaptor and
// its optimizer slots restored), and misuse fails in one line naming what is wrong.
import Foundation
import Graph
import Runtime
import TestSupport
import XCTest

final class FeatureCommandTests: ExampleCommandCase {
    /// The example's first 200 training images.
    var train: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        train = try subsetCSV(200)
    }

    func distill(_ extra: [String], output: String, epochs: Int = 2) -> [String] {
        ["distill", "--teacher", teacher, "--student", student, "--train", train,
         "--images", example.appendingPathComponent("data/images").path, "--epochs", String(epochs),
         "--batch-size", "16", "--seed", "3", "--output", path(output)] + extra
    }

    /// One pair with an adaptor (16 -> 32 channels) and one attention-transfer pair.
    let pairs = ["--feature", "block1_relu:block1_relu", "--feature", "block2_relu:block2_relu:at:50"]

    func testAdaptorIsNotInTheWrittenStudentAndTwoIdenticalTeachersGiveTheSameStudent() throws {
        let run = try CLI.run(distill(pairs, output: "f.h5"))
        XCTAssertEqual(run.status, 0, run.stderr)
        let written = try kerasWeights(path("f.h5")), original = try kerasWeights(student)
        XCTAssertEqual(Set(written.keys), Set(original.keys), "the written student's weights are the student's own")
        for (name, w) in original { XCTAssertEqual(written[name]?.count, w.count, name) }
        XCTAssertNotEqual(written, original, "the student trained")
        let layers = try LoadedModel.load(path: path("f.h5")).graph.uniqueLayers.map(\.layerKey)
        XCTAssertEqual(layers, try LoadedModel.load(path: student).graph.uniqueLayers.map(\.layerKey))
        XCTAssertFalse(layers.contains { $0.contains("adaptor") })
        // Without the pairs the student comes out otherwise: the features did act.
        let plain = try CLI.run(distill([], output: "p.h5"))
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertNotEqual(try kerasWeights(path("p.h5")), written)
        // Features come from the first teacher; two identical teachers average to the same logits.
        let two = try CLI.run(distill(pairs + ["--teacher", teacher], output: "two.h5"))
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertEqual(try kerasWeights(path("two.h5")), written, "two identical teachers with --feature")
    }

    func testResumeWithFeaturesContinuesExactly() throws {
        let reference = try CLI.run(distill(pairs + ["--checkpoint-dir", path("A")], output: "a.h5", epochs: 3))
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let first = try CLI.run(distill(pairs + ["--checkpoint-dir", path("B")], output: "b1.h5", epochs: 1))
        XCTAssertEqual(first.status, 0, first.stderr)
        let saved = try TrainingCheckpoint.read(path: path("B/last.h5"))
        XCTAssertEqual(saved.adaptors.map(\.name), ["feature_adaptor_0/kernel", "feature_adaptor_0/bias"])
        XCTAssertEqual(saved.adaptors[0].values.count, 16 * 32)
        XCTAssertEqual(saved.state.identity.features, "block1_relu:block1_relu:mse:1.0, block2_relu:block2_relu:at:50.0")
        // The adaptor trained in epoch 1: a resume that started it afresh would end elsewhere.
        var config = DistillConfig()
        config.seed = 3
        config.features = try pairs.filter { !$0.hasPrefix("--") }.map { try FeaturePair(parsing: $0) }
        let fresh = try Distiller(student: LoadedModel.load(path: student), teacher: LoadedModel.load(path: teacher),
                                  optimizer: Adam(), config: config)
        XCTAssertEqual(fresh.featureAdaptorState.map(\.name), saved.adaptors.map(\.name))
        XCTAssertNotEqual(fresh.featureAdaptorState[0].values, saved.adaptors[0].values)
        let resumed = try CLI.run(distill(pairs + ["--checkpoint-dir", path("B"), "--resume"], output: "b.h5", epochs: 3))
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from"), resumed.stdout)
        XCTAssertEqual(try kerasWeights(path("b.h5")), try kerasWeights(path("a.h5")), "resumed with --feature")
        // Other pairs, or none, are refused naming the checkpoint's.
        let other = try CLI.run(distill(["--feature", "block1_relu:block1_relu:cosine", "--checkpoint-dir", path("B"), "--resume"],
                                        output: "c.h5", epochs: 3))
        assertCleanFailure(other, mentions: ["cannot resume", "--feature was block1_relu:block1_relu:mse:1.0"])
        let none = try CLI.run(distill(["--checkpoint-dir", path("B"), "--resume"], output: "c.h5", epochs: 3))
        assertCleanFailure(none, mentions: ["cannot resume", "--feature was block1_relu"])
    }

    func testMisusedFeaturesFailInOneLine() throws {
        func refuse(_ extra: [String], _ mentions: [String]) throws {
            assertCleanFailure(try CLI.run(distill(extra, output: "x.h5")), mentions: mentions)
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("x.h5")))
        }
        try refuse(["--feature", "nope:block1_relu"], ["nope:block1_relu", "teacher", "no layer named 'nope'"])
        try refuse(["--feature", "block1_relu:nope"], ["block1_relu:nope", "student", "no layer named 'nope'"])
        try refuse(["--feature", "block1_relu:block1_relu", "--unfreeze-from", "block2_conv"],
                   ["student layer 'block1_relu' is in the frozen part"])
        try refuse(["--feature", "logits:probs"], ["student layer 'probs' comes after the logits"])
        try refuse(["--feature", "fc:fc:at"], ["layer 'fc' gives [", "at needs a feature map"])
        try refuse(["--feature", "block1_relu:block1_relu:huber"], ["--feature", "unknown loss 'huber'"])
        try refuse(["--feature", "block1_relu:block1_relu:mse:-2"], ["--feature", "weight '-2'"])
        try refuse(["--feature", "block1_relu"], ["--feature 'block1_relu' is not TEACHER_LAYER:STUDENT_LAYER"])
        let cache = try CLI.run(["teacher-cache", "--teacher", teacher, "--train", train, "--images",
                                 example.appendingPathComponent("data/images").path, "--output", path("c.h5")])
        XCTAssertEqual(cache.status, 0, cache.stderr)
        assertCleanFailure(try CLI.run(["distill", "--teacher-cache", path("c.h5"), "--student", student, "--train", train,
                                        "--images", example.appendingPathComponent("data/images").path, "--output", path("x.h5"),
                                        "--feature", "block1_relu:block1_relu"]),
                           mentions: ["--feature", "--teacher-cache"])
    }
}
