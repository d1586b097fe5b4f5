// --loss and several --teacher through the command line, on 200 images of the bundled example:
// two identical teachers give exactly the student one gives (live and from a teacher cache), a
// resume with another loss is refused naming it, and misused flags fail in one line.
import Foundation
import Runtime
import TestSupport
import XCTest

final class LossAndTeachersCommandTests: ExampleCommandCase {
    /// The example's first 200 training images.
    var train: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        train = try subsetCSV(200)
    }

    func distill(_ extra: [String], output: String, epochs: Int = 2) -> [String] {
        ["distill", "--student", example.appendingPathComponent("student.h5").path, "--train", train,
         "--images", example.appendingPathComponent("data/images").path, "--epochs", String(epochs),
         "--batch-size", "16", "--seed", "3", "--output", path(output)] + extra
    }

    /// A teacher with two outputs (tf-keras and Keras 3 files): distill, teacher-cache and report
    /// refuse it in one line naming the file and both outputs, before any image is decoded, and
    /// write nothing; it is not taught from its first output.
    func testATeacherWithTwoOutputsIsRefused() throws {
        for name in ["k2_two_heads", "k3_two_heads"] {
            let c = try XCTUnwrap(fixtureCases().first { $0.name == name })
            let model = try XCTUnwrap(c.path(c.model))
            let mentions = [model, "2 outputs", "fine", "coarse"]
            assertCleanFailure(try CLI.run(distill(["--teacher", model], output: "\(name).h5")), mentions: mentions)
            assertCleanFailure(try CLI.run(distill(["--teacher", teacher, "--teacher", model], output: "\(name).h5")), mentions: mentions)
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("\(name).h5")))
            assertCleanFailure(try CLI.run(["teacher-cache", "--teacher", model, "--train", train, "--images",
                                            example.appendingPathComponent("data/images").path, "--output", path("\(name)-cache.h5")]),
                               mentions: mentions)
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("\(name)-cache.h5")))
            assertCleanFailure(try CLI.run(["report", "--teacher", model, "--student", example.appendingPathComponent("student.h5").path,
                                            "--test", train, "--images", example.appendingPathComponent("data/images").path,
                                            "--output", path("\(name).html")]),
                               mentions: mentions)
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("\(name).html")))
        }
    }

    func testTwoIdenticalTeachersGiveTheSameStudentAsOne() throws {
        let one = try CLI.run(distill(["--teacher", teacher], output: "one.h5"))
        XCTAssertEqual(one.status, 0, one.stderr)
        let two = try CLI.run(distill(["--teacher", teacher, "--teacher", teacher], output: "two.h5"))
        XCTAssertEqual(two.status, 0, two.stderr)
        let weighted = try CLI.run(distill(["--teacher", teacher, "--teacher", teacher, "--teacher-weights", "3,1"], output: "w.h5"))
        XCTAssertEqual(weighted.status, 0, weighted.stderr)
        let expected = try kerasWeights(path("one.h5"))
        XCTAssertEqual(try kerasWeights(path("two.h5")), expected, "two identical teachers, equal weights")
        for (name, w) in try kerasWeights(path("w.h5")) {
            assertClose(w, expected[name]!, tolerance: 1e-7, "two identical teachers weighted 3:1, \(name)")
        }
        // The same through a teacher cache holding both teachers, with DIST (which couples the rows).
        let cacheOne = try CLI.run(["teacher-cache", "--teacher", teacher, "--train", train, "--images",
                                    example.appendingPathComponent("data/images").path, "--output", path("c1.h5")])
        XCTAssertEqual(cacheOne.status, 0, cacheOne.stderr)
        let cacheTwo = try CLI.run(["teacher-cache", "--teacher", teacher, "--teacher", teacher, "--train", train,
                                    "--images", example.appendingPathComponent("data/images").path, "--output", path("c2.h5")])
        XCTAssertEqual(cacheTwo.status, 0, cacheTwo.stderr)
        XCTAssertEqual(try TeacherCache.read(path: path("c2.h5")).teachers.count, 2)
        let fromOne = try CLI.run(distill(["--teacher-cache", path("c1.h5"), "--loss", "dist"], output: "d1.h5"))
        XCTAssertEqual(fromOne.status, 0, fromOne.stderr)
        XCTAssertTrue(fromOne.stdout.contains("loss dist(beta=1.0, gamma=1.0)"), fromOne.stdout)
        let fromTwo = try CLI.run(distill(["--teacher-cache", path("c2.h5"), "--loss", "dist"], output: "d2.h5"))
        XCTAssertEqual(fromTwo.status, 0, fromTwo.stderr)
        XCTAssertEqual(try kerasWeights(path("d2.h5")), try kerasWeights(path("d1.h5")), "cache of two identical teachers")
        XCTAssertNotEqual(try kerasWeights(path("d1.h5")), expected, "dist and kd should train differently")
        // The cache of two teachers next to only one of them is refused.
        let mismatch = try CLI.run(distill(["--teacher-cache", path("c2.h5"), "--teacher", teacher], output: "x.h5"))
        assertCleanFailure(mismatch, mentions: ["c2.h5", "another teacher"])
        let count = try CLI.run(distill(["--teacher-cache", path("c2.h5"), "--teacher-weights", "1,2,3"], output: "x.h5"))
        assertCleanFailure(count, mentions: ["--teacher-weights", "3 weights for 2 teachers"])
    }

    func testResumeWithAnotherLossIsRefused() throws {
        let dkd = distill(["--teacher", teacher, "--loss", "dkd", "--checkpoint-dir", path("C")], output: "s.h5", epochs: 1)
        let first = try CLI.run(dkd)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("loss dkd(alpha=1.0, beta=8.0)"), first.stdout)
        let kd = try CLI.run(distill(["--teacher", teacher, "--checkpoint-dir", path("C"), "--resume"], output: "s2.h5"))
        assertCleanFailure(kd, mentions: ["cannot resume", "--loss was dkd(alpha=1.0, beta=8.0)"])
        let beta = try CLI.run(distill(["--teacher", teacher, "--loss", "dkd", "--dkd-beta", "2", "--checkpoint-dir", path("C"),
                                        "--resume"], output: "s2.h5"))
        assertCleanFailure(beta, mentions: ["cannot resume", "--loss was dkd(alpha=1.0, beta=8.0)"])
        let same = try CLI.run(distill(["--teacher", teacher, "--loss", "dkd", "--checkpoint-dir", path("C"), "--resume"],
                                       output: "s2.h5"))
        XCTAssertEqual(same.status, 0, same.stderr)
        XCTAssertTrue(same.stdout.contains("resuming from"), same.stdout)
    }

    func testMisusedLossAndTeacherFlagsFailInOneLine() throws {
        assertCleanFailure(try CLI.run(distill(["--teacher", teacher, "--dkd-beta", "2"], output: "x.h5")),
                           mentions: ["--dkd-beta is for --loss dkd"])
        assertCleanFailure(try CLI.run(distill(["--teacher", teacher, "--loss", "dkd", "--dist-gamma", "2"], output: "x.h5")),
                           mentions: ["--dist-gamma is for --loss dist"])
        assertCleanFailure(try CLI.run(distill(["--teacher", teacher, "--loss", "dist", "--dist-beta=-1"], output: "x.h5")),
                           mentions: ["--dist-beta must be 0 or more"])
        // An unknown loss is the argument parser's usage error (with its usage lines).
        let fancy = try CLI.run(distill(["--teacher", teacher, "--loss", "fancy"], output: "x.h5"))
        XCTAssertNotEqual(fancy.status, 0)
        XCTAssertTrue(fancy.stderr.contains("'fancy' is invalid for '--loss"), fancy.stderr)
        assertCleanFailure(try CLI.run(distill(["--teacher", teacher, "--teacher", teacher, "--teacher-weights", "1"], output: "x.h5")),
                           mentions: ["--teacher-weights gives 1 weights for 2 teachers"])
        assertCleanFailure(try CLI.run(distill(["--teacher", teacher, "--teacher-weights", "a"], output: "x.h5")),
                           mentions: ["--teacher-weights a", "'a'"])
        assertCleanFailure(try CLI.run(distill(["--teacher", teacher, "--teacher-weights", "0"], output: "x.h5")),
                           mentions: ["all zero"])
        assertCleanFailure(try CLI.run(distill(["--teacher", teacher, "--teacher-arch", "a.json", "--teacher-arch", "b.json"], output: "x.h5")),
                           mentions: ["2 --teacher-arch for 1 --teacher"])
    }
}
