// Checkpoints through the command line, as a user meets them: a run killed (SIGKILL) or
// interrupted (Ctrl-C) mid-epoch and resumed ends with exactly the weights and history of a run
// never stopped; a diverging run stops naming epoch, batch and step and leaves the last good
// checkpoint as it was; early stopping, best.h5 and the plot.
import Foundation
import H5Model
import Runtime
import TestSupport
import XCTest

final class CheckpointCommandTests: ExampleCommandCase {


    /// The bundled example (3,000 training images) with augmentation, so that the data order, the
    /// augmentation and the optimizer state all have to be restored exactly.
    func distillArguments(output: String, checkpoints: String, history: String, epochs: Int = 5) throws -> [String] {
        let val = path("val.csv")
        if !FileManager.default.fileExists(atPath: val) {
            let lines = try String(contentsOf: example.appendingPathComponent("data/val.csv"), encoding: .utf8)
                .split(separator: "\n").prefix(201)
            try (lines.joined(separator: "\n") + "\n").write(toFile: val, atomically: true, encoding: .utf8)
        }
        return ["distill", "--teacher", example.appendingPathComponent("teacher.h5").path,
                "--student", example.appendingPathComponent("student.h5").path,
                "--train", example.appendingPathComponent("data/train.csv").path, "--val", val,
                "--images", example.appendingPathComponent("data/images").path,
                "--epochs", String(epochs), "--batch-size", "16", "--seed", "5",
                "--augment", "rotation_range=15, width_shift_range=0.1, horizontal_flip=TRUE",
                "--output", output, "--checkpoint-dir", checkpoints, "--history", history]
    }

    /// Starts distillctl with stdout and stderr in files.
    func start(_ arguments: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = CLI.productsDirectory.appendingPathComponent("distillctl")
        p.arguments = arguments
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    /// Waits (up to a minute) for `file` to exist.
    func waitFor(_ file: String, _ process: Process) throws {
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: file) {
            guard process.isRunning, Date() < deadline else { throw RuntimeError("never saw \(file): the run ended or hung first") }
            usleep(20_000)
        }
    }

    func testKilledAndInterruptedRunsResumeToTheUninterruptedWeights() throws {
        // The reference: five epochs, never stopped.
        let reference = try CLI.run(try distillArguments(output: path("a.h5"), checkpoints: path("A"), history: path("a.csv")))
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let expected = try kerasWeights(path("a.h5"))
        XCTAssertGreaterThan(expected.count, 10)
        let expectedHistory = try String(contentsOfFile: path("a.csv"), encoding: .utf8)
        XCTAssertEqual(expectedHistory.split(separator: "\n").count, 6)

        // SIGKILL some time into the second epoch: the epoch-1 checkpoint is what survives.
        let killedArgs = try distillArguments(output: path("b.h5"), checkpoints: path("B"), history: path("b.csv"))
        let killed = try start(killedArgs, log: path("b.log"))
        try waitFor(path("B/last.h5"), killed)
        usleep(300_000)
        XCTAssertTrue(killed.isRunning, "the run ended before it could be killed")
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        XCTAssertEqual(killed.terminationReason, .uncaughtSignal)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("b.h5")))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: path("B")).filter { $0.hasPrefix(".") }
        XCTAssertTrue(leftovers.isEmpty || leftovers.allSatisfy { $0.contains(".tmp") }, "\(leftovers)")
        let resumed = try CLI.run(killedArgs + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from"), resumed.stdout)
        XCTAssertEqual(try kerasWeights(path("b.h5")), expected, "resumed after SIGKILL")
        XCTAssertEqual(try String(contentsOfFile: path("b.csv"), encoding: .utf8), expectedHistory)

        // Ctrl-C in the middle of an epoch: a checkpoint of that very step, exit 130, no student.
        let interruptedArgs = try distillArguments(output: path("c.h5"), checkpoints: path("C"), history: path("c.csv"))
        let interrupted = try start(interruptedArgs, log: path("c.log"))
        try waitFor(path("C/last.h5"), interrupted)
        usleep(250_000)
        interrupted.interrupt()
        interrupted.waitUntilExit()
        let log = try String(contentsOfFile: path("c.log"), encoding: .utf8)
        XCTAssertEqual(interrupted.terminationStatus, 130, log)
        XCTAssertTrue(log.contains("interrupted in epoch"), log)
        XCTAssertTrue(log.contains("--resume --checkpoint-dir \(path("C"))"), log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("c.h5")))
        let saved = try TrainingCheckpoint.read(path: path("C/last.h5"))
        XCTAssertGreaterThan(saved.state.step, 0)
        let again = try CLI.run(interruptedArgs + ["--resume"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(try kerasWeights(path("c.h5")), expected, "resumed after Ctrl-C")
        XCTAssertEqual(try String(contentsOfFile: path("c.csv"), encoding: .utf8), expectedHistory)

        // A resume with other settings is refused, naming what differs.
        let other = try CLI.run(interruptedArgs.map { $0 == "16" ? "32" : $0 } + ["--resume"])
        assertCleanFailure(other, mentions: ["cannot resume", "--batch-size was 16"])
    }

    /// A learning rate that jumps to 1e12 in epoch 2 blows the weights up: the run stops on that
    /// step with a one-line error, writes no student, and the epoch-1 checkpoint stays intact.
    func testDivergenceStopsAndKeepsTheLastGoodCheckpoint() throws {
        var args = try distillArguments(output: path("d.h5"), checkpoints: path("D"), history: path("d.csv"), epochs: 3)
        args += ["--optimizer", "sgd", "--learning-rate", "0.01", "--lr-schedule", "step", "--lr-decay-epochs", "1",
                 "--lr-decay-rate", "1e14"]
        let r = try CLI.run(args)
        assertCleanFailure(r, mentions: ["training stopped", "in epoch 2, batch", "(step ", "the last good checkpoint is \(path("D/last.h5")) (epoch 1)"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("d.h5")))
        let checkpoint = try TrainingCheckpoint.read(path: path("D/last.h5"))
        XCTAssertEqual(checkpoint.state.history.count, 1)
        XCTAssertEqual(checkpoint.state.position.epoch, 1)
        for (name, values) in try kerasWeights(path("D/last.h5")) {
            XCTAssertTrue(values.allSatisfy(\.isFinite), name)
        }
    }

    /// min_delta so large that nothing after the first epoch improves: patience 1 stops after epoch
    /// 2; with restore-best-weights the student written has epoch 1's weights.
    func testEarlyStoppingRestoresTheBestEpoch() throws {
        var args = try distillArguments(output: path("e.h5"), checkpoints: path("E"), history: path("e.csv"), epochs: 6)
        args += ["--early-stopping-patience", "1", "--min-delta", "100", "--restore-best-weights", "--plot", path("e.svg")]
        let r = try CLI.run(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("early stopping: val_loss has not improved for 1 epochs; weights of epoch 1 restored"), r.stdout)
        XCTAssertEqual(try String(contentsOfFile: path("e.csv"), encoding: .utf8).split(separator: "\n").count, 3)
        XCTAssertNotEqual(try kerasWeights(path("e.h5")), try kerasWeights(path("E/last.h5")))
        // The weights written are those after epoch 1: the same as a one-epoch run's.
        let one = try CLI.run(try distillArguments(output: path("one.h5"), checkpoints: path("O"), history: path("one.csv"), epochs: 1))
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertEqual(try kerasWeights(path("e.h5")), try kerasWeights(path("one.h5")))
        let svg = try String(contentsOfFile: path("e.svg"), encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.contains("data-name=\"val_accuracy\""), svg)
    }
}
