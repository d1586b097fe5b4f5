// --precision (predict, bench) and --teacher-precision (distill, teacher-cache) through the
// command line: bf16 is refused in one line where the CPU lacks AVX512_BF16 (forced here with
// DISTILLCTL_NO_BF16 or DISTILLCTL_NO_AVX512), never run as float32 instead; where it runs,
// predict's bf16 results stay near its float32 ones.
import Foundation
import H5Model
import Runtime
import TestSupport
import XCTest

final class PrecisionCommandTests: ExampleCommandCase {
    let seed = fixturesDirectory.appendingPathComponent("cases/k2_seed_effnetb0")


    /// The seed fixture's two images as a .npy.
    func seedInput() throws -> String {
        let x = try XCTUnwrap(H5Arrays.read(path: seed.appendingPathComponent("io.h5").path)["input"])
        try NpyArray(shape: x.shape, values: x.floats).write(path: path("x.npy"))
        return path("x.npy")
    }

    func testBF16IsRefusedInOneLineWhereUnsupported() throws {
        let model = seed.appendingPathComponent("model.h5").path, teacher = example.appendingPathComponent("teacher.h5").path
        let images = example.appendingPathComponent("data/images").path, train = example.appendingPathComponent("data/val.csv").path
        let input = try seedInput()
        let runs: [([String], String)] = [
            (["predict", model, "--input", input, "--output", path("p.npy"), "--precision", "bf16"], "--precision bf16"),
            (["bench", model, "--iterations", "1", "--precision", "bf16"], "--precision bf16"),
            (["bench", model, "--iterations", "1", "--train", "--precision", "bf16"], "--precision bf16"),
            (["teacher-cache", "--teacher", teacher, "--train", train, "--images", images, "--output", path("c.h5"),
              "--teacher-precision", "bf16"], "--teacher-precision bf16"),
            (["distill", "--teacher", teacher, "--student", example.appendingPathComponent("student.h5").path,
              "--train", train, "--images", images, "--epochs", "1", "--output", path("s.h5"), "--teacher-precision", "bf16"],
             "--teacher-precision bf16"),
        ]
        for environment in [["DISTILLCTL_NO_BF16": "1"], ["DISTILLCTL_NO_AVX512": "1"]] {
            for (arguments, flag) in runs {
                let r = try CLI.run(arguments, environment: environment)
                assertCleanFailure(r, mentions: [flag, "AVX512_BF16"])
                XCTAssertEqual(r.stdout, "", "\(arguments[0]) \(environment): nothing runs before the refusal")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("p.npy")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("c.h5")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("s.h5")))
        // float32, asked for explicitly, runs everywhere.
        let f32 = try CLI.run(["predict", model, "--input", input, "--output", path("p.npy"), "--precision", "f32"],
                              environment: ["DISTILLCTL_NO_BF16": "1"])
        XCTAssertEqual(f32.status, 0, f32.stderr)
        let bad = try CLI.run(["predict", model, "--input", input, "--output", path("q.npy"), "--precision", "fp16"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--precision"), bad.stderr)
    }

    /// The seed's EfficientNetB0 through predict: bf16 probabilities within 0.05 of float32's,
    /// the same top-1, and not identical (the products did run in bf16).
    func testPredictInBF16StaysNearFloat32() throws {
        try XCTSkipUnless(KernelISA.bf16Available, "this CPU has no AVX512_BF16 (the refusal is tested above)")
        let model = seed.appendingPathComponent("model.h5").path, input = try seedInput()
        for p in ["f32", "bf16"] {
            let r = try CLI.run(["predict", model, "--input", input, "--output", path("\(p).npy"), "--precision", p])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let a = try NpyArray.read(path: path("f32.npy")), b = try NpyArray.read(path: path("bf16.npy"))
        XCTAssertEqual(a.shape, b.shape)
        let diff = zip(a.values, b.values).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(diff, 0.05)
        XCTAssertGreaterThan(diff, 0)
        let width = a.shape[1]
        for r in 0..<a.shape[0] {
            let x = a.values[(r * width)..<((r + 1) * width)], y = b.values[(r * width)..<((r + 1) * width)]
            XCTAssertEqual(x.firstIndex(of: x.max()!), y.firstIndex(of: y.max()!), "image \(r)")
        }
    }

    /// distill with a bf16 teacher runs, and its checkpoint records the teacher's precision: a
    /// resume with the float32 teacher (other soft targets) is refused, one with bf16 goes on.
    func testResumeWithTheTeacherInAnotherPrecisionIsRefused() throws {
        try XCTSkipUnless(KernelISA.bf16Available, "this CPU has no AVX512_BF16 (the refusal is tested above)")
        let lines = try String(contentsOf: example.appendingPathComponent("data/train.csv"), encoding: .utf8)
            .split(separator: "\n").prefix(101)
        try (lines.joined(separator: "\n") + "\n").write(toFile: path("train.csv"), atomically: true, encoding: .utf8)
        func distill(_ precision: String, resume: Bool) -> [String] {
            ["distill", "--teacher", example.appendingPathComponent("teacher.h5").path,
             "--student", example.appendingPathComponent("student.h5").path, "--train", path("train.csv"),
             "--images", example.appendingPathComponent("data/images").path, "--epochs", resume ? "2" : "1",
             "--batch-size", "16", "--output", path("s.h5"), "--checkpoint-dir", path("C"),
             "--teacher-precision", precision] + (resume ? ["--resume"] : [])
        }
        let first = try CLI.run(distill("bf16", resume: false))
        XCTAssertEqual(first.status, 0, first.stderr)
        // The flag reaches the teacher: the float32 teacher's soft targets train another student.
        var f32 = distill("f32", resume: false)
        f32[f32.firstIndex(of: path("s.h5"))!] = path("f32.h5")
        f32[f32.firstIndex(of: path("C"))!] = path("D")
        let other32 = try CLI.run(f32)
        XCTAssertEqual(other32.status, 0, other32.stderr)
        XCTAssertNotEqual(try kerasWeights(path("s.h5")), try kerasWeights(path("f32.h5")))
        let other = try CLI.run(distill("f32", resume: true))
        assertCleanFailure(other, mentions: ["cannot resume", "in bf16"])
        let same = try CLI.run(distill("bf16", resume: true))
        XCTAssertEqual(same.status, 0, same.stderr)
        XCTAssertTrue(same.stdout.contains("resuming from"), same.stdout)
    }

    /// teacher-cache with a bf16 teacher records that it ran in bf16; its logits of 100 example images are within 1% of the
    /// logits' range of the float32 ones (measured on the whole test set: 0.037 in a range of 48),
    /// not identical, and the same top-1 wherever float32's margin exceeds twice the difference.
    func testTeacherCacheInBF16StaysNearFloat32() throws {
        try XCTSkipUnless(KernelISA.bf16Available, "this CPU has no AVX512_BF16 (the refusal is tested above)")
        let lines = try String(contentsOf: example.appendingPathComponent("data/test.csv"), encoding: .utf8)
            .split(separator: "\n").prefix(101)
        try (lines.joined(separator: "\n") + "\n").write(toFile: path("test.csv"), atomically: true, encoding: .utf8)
        for p in ["f32", "bf16"] {
            let r = try CLI.run(["teacher-cache", "--teacher", example.appendingPathComponent("teacher.h5").path,
                                 "--train", path("test.csv"), "--images", example.appendingPathComponent("data/images").path,
                                 "--output", path("\(p).h5"), "--teacher-precision", p])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let a = try TeacherCache.read(path: path("f32.h5")), b = try TeacherCache.read(path: path("bf16.h5"))
        // The cache records its precision, so a run taught by it is marked as a bf16 teacher's.
        XCTAssertEqual(a.precision, .float32)
        XCTAssertEqual(b.precision, .bfloat16)
        XCTAssertEqual(a.teachers, b.teachers)
        XCTAssertTrue(b.teacher.hasSuffix(" in bf16"), b.teacher)
        XCTAssertFalse(a.teacher.contains("bf16"), a.teacher)
        XCTAssertEqual(a.logits.count, 100 * a.classes)
        XCTAssertEqual(a.logits.count, b.logits.count)
        let range = Double((a.logits.max() ?? 0) - (a.logits.min() ?? 0))
        let diff = Double(zip(a.logits, b.logits).map { abs($0 - $1) }.max() ?? .infinity)
        XCTAssertLessThanOrEqual(diff, 0.01 * range)
        XCTAssertGreaterThan(diff, 0)
        let k = a.classes
        for r in 0..<100 {
            let x = Array(a.logits[(r * k)..<((r + 1) * k)]), y = Array(b.logits[(r * k)..<((r + 1) * k)])
            let sorted = x.sorted(by: >)
            guard Double(sorted[0] - sorted[1]) > 2 * diff else { continue }
            XCTAssertEqual(x.firstIndex(of: sorted[0]), y.firstIndex(of: y.max()!), "image \(r)")
        }
    }
}
