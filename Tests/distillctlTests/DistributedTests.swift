// Data-parallel distillation over Open MPI on this machine (loopback), and the teacher cache.
// mpirun comes from Debian's openmpi-bin (scripts/install-deps.sh installs it); these tests fail,
// not skip, without it.
import Foundation
import H5Model
import Runtime
import TestSupport
import XCTest

final class DistributedTests: ExampleCommandCase {


    var mpirun: String {
        get throws {
            for dir in ["/usr/bin", "/usr/local/bin"] where FileManager.default.isExecutableFile(atPath: dir + "/mpirun") {
                return dir + "/mpirun"
            }
            throw RuntimeError("mpirun not found: install openmpi-bin (scripts/install-deps.sh does)")
        }
    }

    var binary: String { CLI.productsDirectory.appendingPathComponent("distillctl").path }

    /// Runs `mpirun -np N distillctl ARGS` (root allowed, as in CI containers).
    func mpi(_ ranks: Int, _ arguments: [String]) throws -> CLIResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try mpirun)
        p.arguments = ["-np", String(ranks), "--oversubscribe", binary] + arguments
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return CLIResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    /// distill on the example with SGD and momentum, the first blocks' batch norms frozen: the
    /// settings the rank-equivalence tests share (add --train and --output).
    var sgdDistillOnExample: [String] {
        ["distill", "--teacher", teacher, "--student", student,
         "--images", example.appendingPathComponent("data/images").path, "--epochs", "1", "--batch-size", "8",
         "--seed", "11", "--optimizer", "sgd", "--learning-rate", "0.01", "--momentum", "0.9",
         "--freeze", "block1_bn", "block2_bn", "block3_bn"]
    }

    /// Largest |a - b| over every weight; the two files must hold the same weights.
    func maxDifference(_ a: String, _ b: String) throws -> Float {
        let x = try kerasWeights(a), y = try kerasWeights(b)
        XCTAssertEqual(Set(x.keys), Set(y.keys))
        var worst: Float = 0
        for (k, v) in x { for (p, q) in zip(v, y[k]!) { worst = max(worst, abs(p - q)) } }
        return worst
    }

    /// 200 images, batch 8 (25 steps): 2 ranks x 4 images give the weights of 1 rank x 8, for the
    /// student with its batch norms frozen (inference mode) and, with --sync-batchnorm, trained.
    func testTwoRanksOfFourMatchOneRankOfEight() throws {
        let train = try subsetCSV(200)
        let common = ["distill", "--teacher", example.appendingPathComponent("teacher.h5").path,
                      "--student", example.appendingPathComponent("student.h5").path, "--train", train,
                      "--images", example.appendingPathComponent("data/images").path, "--epochs", "1", "--batch-size", "8",
                      "--seed", "11", "--optimizer", "sgd", "--learning-rate", "0.01", "--momentum", "0.9"]
        for (name, extra, twoRankExtra) in [("frozen batch norm", ["--freeze", "block1_bn", "block2_bn", "block3_bn"], [String]()),
                                            ("synchronised batch norm", [], ["--sync-batchnorm"])] {
            let one = try mpi(1, common + extra + ["--output", path("one.h5")])
            XCTAssertEqual(one.status, 0, one.stderr)
            let two = try mpi(2, common + extra + twoRankExtra + ["--output", path("two.h5")])
            XCTAssertEqual(two.status, 0, two.stderr)
            XCTAssertTrue(two.stdout.contains("2 ranks, 8 images per step in all"), two.stdout)
            XCTAssertEqual(two.stdout.components(separatedBy: "wrote ").count, 2, "rank 0 alone writes: \(two.stdout)")
            let d = try maxDifference(path("one.h5"), path("two.h5"))
            print("\(name): 2 ranks vs 1, largest weight difference \(d)")
            XCTAssertLessThanOrEqual(d, 1e-6, name)
        }
        // Without synchronisation each rank normalises with its own 4 images: a different result.
        let perRank = try mpi(2, common + ["--output", path("per-rank.h5")])
        XCTAssertEqual(perRank.status, 0, perRank.stderr)
        XCTAssertGreaterThan(try maxDifference(path("one.h5"), path("per-rank.h5")), 1e-4)
    }

    /// The teacher cache: the same student as the live teacher (augmentation off), whether the
    /// cache was made by one process or two ranks; refused with augmentation, for other images,
    /// or next to another teacher.
    func testTeacherCacheGivesTheLiveTeachersStudent() throws {
        let train = try subsetCSV(120)
        let teacher = example.appendingPathComponent("teacher.h5").path
        let images = example.appendingPathComponent("data/images").path
        let made = try CLI.run(["teacher-cache", "--teacher", teacher, "--train", train, "--images", images, "--output", path("cache.h5")])
        XCTAssertEqual(made.status, 0, made.stderr)
        XCTAssertTrue(made.stdout.contains("120 images x 10 logits"), made.stdout)
        let byTwo = try mpi(2, ["teacher-cache", "--teacher", teacher, "--train", train, "--images", images, "--output", path("cache2.h5")])
        XCTAssertEqual(byTwo.status, 0, byTwo.stderr)
        let a = try TeacherCache.read(path: path("cache.h5")), b = try TeacherCache.read(path: path("cache2.h5"))
        XCTAssertEqual(a.images, b.images)
        XCTAssertEqual(a.teacher, b.teacher)
        for (x, y) in zip(a.logits, b.logits) { XCTAssertEqual(x, y, accuracy: 1e-5 * max(1, abs(x))) }

        let common = ["--student", example.appendingPathComponent("student.h5").path, "--train", train, "--images", images,
                      "--epochs", "2", "--batch-size", "16", "--seed", "2"]
        let live = try CLI.run(["distill", "--teacher", teacher] + common + ["--output", path("live.h5")])
        XCTAssertEqual(live.status, 0, live.stderr)
        let cached = try CLI.run(["distill", "--teacher-cache", path("cache.h5")] + common + ["--output", path("cached.h5")])
        XCTAssertEqual(cached.status, 0, cached.stderr)
        XCTAssertTrue(cached.stdout.contains("teacher logits from the cache"), cached.stdout)
        let d = try maxDifference(path("live.h5"), path("cached.h5"))
        print("teacher cache vs live teacher: largest weight difference \(d)")
        // The teacher's float32 logits depend on its batch size at the 1e-6 level (OpenBLAS picks
        // kernels by matrix size); the students agree to that level.
        XCTAssertLessThanOrEqual(d, 1e-5)

        let augmented = try CLI.run(["distill", "--teacher-cache", path("cache.h5")] + common
                                    + ["--augment", "rotation_range=5", "--output", path("x.h5")])
        XCTAssertNotEqual(augmented.status, 0)
        XCTAssertTrue(augmented.stderr.contains("cannot be combined with --augment"), augmented.stderr)
        let fast = try CLI.run(["distill", "--teacher-cache", path("cache.h5")] + common + ["--fast-decode", "--output", path("x.h5")])
        assertCleanFailure(fast, mentions: ["cannot be combined with --fast-decode"])
        let other = try CLI.run(["distill", "--teacher-cache", path("cache.h5"), "--student", example.appendingPathComponent("student.h5").path,
                                 "--train", try subsetCSV(150), "--images", images, "--output", path("x.h5")])
        assertCleanFailure(other, mentions: ["the teacher cache has no logits for"])
        let wrongTeacher = try CLI.run(["distill", "--teacher", example.appendingPathComponent("student.h5").path,
                                        "--teacher-cache", path("cache.h5")] + common + ["--output", path("x.h5")])
        XCTAssertNotEqual(wrongTeacher.status, 0)
        XCTAssertTrue(wrongTeacher.stderr.contains("the cache was made by another teacher"), wrongTeacher.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("x.h5")))
    }

    /// SIGKILL to rank 1 in the middle of training: mpirun ends rank 0 too, within seconds, and
    /// says which rank died.
    func testKillingOneRankEndsTheJob() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try mpirun)
        p.arguments = ["-np", "2", "--oversubscribe", binary, "distill", "--teacher", example.appendingPathComponent("teacher.h5").path,
                       "--student", example.appendingPathComponent("student.h5").path,
                       "--train", example.appendingPathComponent("data/train.csv").path,
                       "--images", example.appendingPathComponent("data/images").path, "--epochs", "50", "--batch-size", "16",
                       "--output", path("never.h5")]
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        let log = path("mpi.log")
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        // Find rank 1 (a distillctl whose environment says OMPI_COMM_WORLD_RANK=1) once training runs.
        var victim: Int32? = nil
        let deadline = Date().addingTimeInterval(60)
        while victim == nil && Date() < deadline && p.isRunning {
            usleep(200_000)
            guard (try? String(contentsOfFile: log, encoding: .utf8))?.contains("Epoch 1/") == true else { continue }
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = Int32(entry), let env = FileManager.default.contents(atPath: "/proc/\(entry)/environ"),
                      let cmd = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8), cmd.contains(binary) else { continue }
                if String(decoding: env, as: UTF8.self).split(separator: "\0").contains("OMPI_COMM_WORLD_RANK=1") { victim = pid }
            }
        }
        let pid = try XCTUnwrap(victim, "rank 1 never started training")
        kill(pid, SIGKILL)
        let killed = Date()
        while p.isRunning && Date().timeIntervalSince(killed) < 30 { usleep(50_000) }
        let took = Date().timeIntervalSince(killed)
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        let text = try String(contentsOfFile: log, encoding: .utf8)
        print("killing rank 1 ended the job in \(String(format: "%.2f", took)) s")
        XCTAssertLessThan(took, 10, "the job must end within seconds: \(text)")
        XCTAssertNotEqual(p.terminationStatus, 0)
        XCTAssertTrue(text.contains("rank 1"), "the message must name rank 1: \(text)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("never.h5")))
    }
}
