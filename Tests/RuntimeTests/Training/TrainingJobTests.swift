// The training job as a library call, without the command line: configured in code, it checks
// before it works, reports in order, trains, writes a student Keras can read back, and refuses
// with typed errors that name no flag.
import Foundation
import Graph
import TestSupport
import XCTest
@testable import Runtime

final class TrainingJobTests: XCTestCase {
    let example = fixturesDirectory.deletingLastPathComponent().appendingPathComponent("example")
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("job-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    /// The first `rows` images of one of the example's CSVs, as a CSV of our own.
    func subset(_ name: String, rows: Int) throws -> String {
        let lines = try String(contentsOf: example.appendingPathComponent("data/\(name)"), encoding: .utf8)
            .split(separator: "\n").prefix(rows + 1)
        let path = folder.appendingPathComponent(name).path
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func configuration(output: String) throws -> TrainingJob.Configuration {
        var c = TrainingJob.Configuration(student: example.appendingPathComponent("student.h5").path,
                                          train: try subset("train.csv", rows: 96), output: output)
        c.validation = try subset("val.csv", rows: 32)
        c.test = try subset("test.csv", rows: 64)
        c.dataset.imageDirectory = example.appendingPathComponent("data/images").path
        c.teachers = [try LoadedModel.load(path: example.appendingPathComponent("teacher.h5").path)]
        c.teacherNames = ["teacher.h5"]
        c.teacherWeights = [1]
        c.run.epochs = 2
        c.run.batchSize = 32
        c.run.seed = 3
        c.run.historyPath = folder.appendingPathComponent("history.csv").path
        return c
    }

    func testAJobConfiguredInCodeTrainsWritesAndMeasures() throws {
        let output = folder.appendingPathComponent("student.h5").path
        var c = try configuration(output: output)
        var preflightImages: [(TrainingJobFile, String)] = []
        var preflightOutputs: [String] = []
        c.preflight = { images, sizes in
            preflightImages = images
            preflightOutputs = sizes.map(\.0)
        }
        var events: [String] = []
        let job = try TrainingJob(c) { event in
            switch event {
            case .leftOut: events.append("leftOut")
            case .resumed: events.append("resumed")
            case .starting(let s):
                events.append("starting")
                XCTAssertTrue(s.distilling)
                XCTAssertEqual(s.images, 96)
                XCTAssertGreaterThan(s.trainable, 0)
                XCTAssertLessThanOrEqual(s.trainable, s.parameters)
            case .wrote(let path): events.append("wrote \(path)")
            }
        }
        // Every image of the three sets went to the caller's check, with its set.
        XCTAssertEqual(preflightImages.filter { $0.0 == .train }.count, 96)
        XCTAssertEqual(preflightImages.filter { $0.0 == .validation }.count, 32)
        XCTAssertEqual(preflightImages.filter { $0.0 == .test }.count, 64)
        XCTAssertEqual(preflightOutputs, [output, c.run.historyPath!])
        XCTAssertFalse(FileManager.default.fileExists(atPath: output), "nothing is written before run()")
        let result = try job.run(reporter: nil)
        XCTAssertEqual(result.outcome, .completed)
        XCTAssertEqual(events, ["starting", "wrote \(output)"])
        XCTAssertEqual(job.run.history.count, 2)
        // The written student is the trained one: the job's test accuracy is the file's.
        let written = try LoadedModel.load(path: output)
        let test = try ImageDataset.load(c.test!, options: c.dataset)
        let fileAccuracy = try accuracy(of: InferenceSession(model: written), on: test, batchSize: 32)
        XCTAssertEqual(result.studentTestAccuracy, fileAccuracy)
        XCTAssertEqual(result.testImages, 64)
        XCTAssertEqual(result.teacherTestAccuracies.count, 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: c.run.historyPath!))
    }

    /// The caller's preflight runs before anything long or written: its refusal ends the job.
    func testPreflightRefusalStopsBeforeAnyWork() throws {
        struct Refused: Error {}
        let output = folder.appendingPathComponent("student.h5").path
        var c = try configuration(output: output)
        c.preflight = { _, _ in throw Refused() }
        XCTAssertThrowsError(try TrainingJob(c)) { XCTAssertTrue($0 is Refused, "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: output))
        XCTAssertFalse(FileManager.default.fileExists(atPath: c.run.historyPath!))
    }

    func testRefusalsAreTyped() throws {
        var c = try configuration(output: folder.appendingPathComponent("s.h5").path)
        c.teachers = []
        c.teacherWeights = []
        c.unlabeled = example.appendingPathComponent("data/images").path
        XCTAssertThrowsError(try TrainingJob(c)) { error in
            guard let e = error as? TrainingJobError, case .unlabeledWithoutTeacher = e.kind else { return XCTFail("\(error)") }
            XCTAssertFalse(e.description.contains("--"), e.description)
        }
        // A teacher that takes another image size than the student's.
        var t = try configuration(output: folder.appendingPathComponent("s.h5").path)
        let other = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_mini" })
        t.teachers = [try LoadedModel.load(path: other.forms[0].model, archPath: other.forms[0].arch)]
        t.teacherNames = ["other.h5"]
        XCTAssertThrowsError(try TrainingJob(t)) { error in
            guard let e = error as? TrainingJobError, case .teacherInput(let name, _, let image) = e.kind else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "other.h5")
            XCTAssertEqual(image, [28, 28, 1])
        }
        // A teacher with two outputs: which one teaches is not guessed, by the job nor by the
        // library's distiller and teacher cache.
        var two = try LoadedModel.load(path: example.appendingPathComponent("teacher.h5").path)
        let last = two.graph.outputs[0]
        two.graph.outputs.append(two.graph.nodes[last].inputs[0])
        let names = InferenceSession.outputNames(of: two.graph)
        XCTAssertEqual(names.count, 2)
        XCTAssertNotEqual(names[0], names[1])
        var u = try configuration(output: folder.appendingPathComponent("s.h5").path)
        u.teachers = [two]
        u.teacherNames = ["two.h5"]
        XCTAssertThrowsError(try TrainingJob(u)) { error in
            guard let e = error as? TrainingJobError, case .teacherOutputs(let name, let outputs) = e.kind else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "two.h5")
            XCTAssertEqual(outputs, names)
            XCTAssertTrue(e.description.contains("2 outputs (\(names[0]), \(names[1]))"), e.description)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: u.output))
        let student = try LoadedModel.load(path: u.student)
        XCTAssertThrowsError(try Distiller(student: student, teachers: [two], optimizer: Adam(learningRate: .constant(1e-3)), config: DistillConfig())) {
            XCTAssertTrue("\($0)".contains("2 outputs"), "\($0)")
        }
        let dataset = try ImageDataset.load(u.train, options: u.dataset)
        XCTAssertThrowsError(try TeacherCache.compute(teachers: [two], dataset: dataset, batchSize: 8)) {
            XCTAssertTrue("\($0)".contains("2 outputs"), "\($0)")
        }
    }
    /// Teachers the job loads itself (`loadTeachers`, while the images are decoded) train exactly
    /// as teachers loaded beforehand; the step's plans compiled before the first step change
    /// nothing either. The decoding starts before the teachers are read (their forked reads
    /// pause it between two images).
    func testTeachersLoadedByTheJobTrainAsGiven() throws {
        var given = try configuration(output: folder.appendingPathComponent("given.h5").path)
        given.run.epochs = 1
        given.test = nil
        var loaded = given
        loaded.output = folder.appendingPathComponent("loaded.h5").path
        loaded.teachers = []
        var calls = 0, checksBeforeLoading = -1
        let teacherPath = example.appendingPathComponent("teacher.h5").path
        loaded.loadTeachers = {
            calls += 1
            checksBeforeLoading = BackgroundImageCheck.started
            return [try LoadedModel.load(path: teacherPath)]
        }
        let a = try TrainingJob(given)
        let checksBefore = BackgroundImageCheck.started
        let b = try TrainingJob(loaded)
        XCTAssertEqual(calls, 1)
        // The image threads started before the teachers' files were read (in forked children).
        XCTAssertEqual(checksBeforeLoading, checksBefore + 1)
        XCTAssertEqual(BackgroundImageCheck.started, checksBefore + 1)
        XCTAssertEqual(b.teachers.count, 1)
        XCTAssertTrue(b.distiller.distilling)
        _ = try a.run(reporter: nil)
        _ = try b.run(reporter: nil)
        XCTAssertEqual(a.run.history.map(\.loss), b.run.history.map(\.loss))
        XCTAssertEqual(a.distiller.params.snapshot(), b.distiller.params.snapshot())
    }

    /// A refusal of the models while the images are decoded ends the job with the models' error
    /// (not the images'), and nothing is written.
    func testRefusalWhileImagesDecodeEndsTheJob() throws {
        struct BadTeacher: Error {}
        var c = try configuration(output: folder.appendingPathComponent("s.h5").path)
        c.teachers = []
        c.loadTeachers = { throw BadTeacher() }
        XCTAssertThrowsError(try TrainingJob(c)) { XCTAssertTrue($0 is BadTeacher, "\($0)") }
        let other = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_mini" })
        c.loadTeachers = { [try LoadedModel.load(path: other.forms[0].model, archPath: other.forms[0].arch)] }
        c.teacherNames = ["other.h5"]
        XCTAssertThrowsError(try TrainingJob(c)) { error in
            guard let e = error as? TrainingJobError, case .teacherInput(let name, _, _) = e.kind else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "other.h5")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: c.output))
        XCTAssertFalse(FileManager.default.fileExists(atPath: c.run.historyPath!))
    }

    /// A teacher file that crashes libhdf5, read while the images decode, ends the job with the
    /// teacher's error, not the images' (one of which is bad too), and nothing is written; the
    /// decoding started before it was read.
    func testBadTeacherReadWhileDecodingIsReportedBeforeBadImages() throws {
        let images = folder.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        let source = example.appendingPathComponent("data/images")
        let lines = try String(contentsOf: example.appendingPathComponent("data/train.csv"), encoding: .utf8)
            .split(separator: "\n").prefix(41)
        for line in lines.dropFirst() {
            let name = String(line.split(separator: ",")[0])
            try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: images.appendingPathComponent(name))
        }
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("images/corrupt.jpg"),
                                         to: images.appendingPathComponent("corrupt.jpg"))
        let csv = folder.appendingPathComponent("with-bad.csv").path
        try (lines.joined(separator: "\n") + "\ncorrupt.jpg,1,0,0,0,0,0,0,0,0,0\n").write(toFile: csv, atomically: true, encoding: .utf8)
        var c = try configuration(output: folder.appendingPathComponent("s.h5").path)
        c.train = csv
        c.validation = nil
        c.test = nil
        c.dataset.imageDirectory = images.path
        c.teachers = []
        let crashing = fixturesDirectory.appendingPathComponent("fuzz/regressions/libhdf5_H5HG_read_segv.h5").path
        var checksAtLoad = -1
        c.loadTeachers = {
            checksAtLoad = BackgroundImageCheck.started
            return [try LoadedModel.load(path: crashing)]
        }
        let checksBefore = BackgroundImageCheck.started
        XCTAssertThrowsError(try TrainingJob(c)) { error in
            XCTAssertFalse(error is TrainingJobError, "the images' verdict came first: \(error)")
            XCTAssertTrue("\(error)".hasPrefix(crashing + ": "), "\(error)")
        }
        XCTAssertEqual(checksAtLoad, checksBefore + 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: c.output))
        XCTAssertFalse(FileManager.default.fileExists(atPath: c.run.historyPath!))
        // With a good teacher the same set is refused for its bad image.
        c.loadTeachers = { [try LoadedModel.load(path: self.example.appendingPathComponent("teacher.h5").path)] }
        XCTAssertThrowsError(try TrainingJob(c)) { error in
            guard let e = error as? TrainingJobError, case .badImages(let bad) = e.kind else { return XCTFail("\(error)") }
            XCTAssertEqual(bad.bad.map(\.file.name), ["corrupt.jpg"])
        }
    }

    /// Under fast decoding the job's check decodes the training and validation images as the
    /// batches will and keeps them: the batches decode none again.
    func testFastDecodingJobKeepsItsCheckedImages() throws {
        var c = try configuration(output: folder.appendingPathComponent("student.h5").path)
        c.run.fastDecode = true
        c.run.epochs = 1
        let job = try TrainingJob(c)
        XCTAssertEqual(job.run.train.decoded?.fastDecode, true)
        XCTAssertEqual(job.run.train.decoded?.count, 96)
        XCTAssertEqual(job.run.validation?.decoded?.fastDecode, true)
        XCTAssertEqual(job.run.validation?.decoded?.count, 32)
        _ = try job.run(reporter: nil)
        XCTAssertEqual(job.run.imageTimings.images, 96)
        XCTAssertEqual(job.run.imageTimings.held, 96, "every training image came from the check")
    }

    /// Cancelling the background check stops its decoding at the next image: of 2,000 images,
    /// far from all are decoded, and its threads are gone when `cancel` returns.
    func testCancelledCheckStopsDecoding() throws {
        var o = DatasetOptions()
        o.imageDirectory = example.appendingPathComponent("data/images").path
        let many = try ImageDataset.load(try subset("train.csv", rows: 2000), options: o)
        XCTAssertEqual(many.count, 2000)
        let one = try ImageDataset.load(try subset("val.csv", rows: 200), options: o)
        let check = BackgroundImageCheck(sets: [many], height: 28, width: 28, channels: 1, keepBytes: 1 << 30)
        check.cancel()
        let outcome = check.wait()
        XCTAssertLessThan(outcome[0].decoded.count, 1000)
        let full = BackgroundImageCheck(sets: [one], height: 28, width: 28, channels: 1, keepBytes: 1 << 30).wait()
        XCTAssertEqual(full[0].decoded.count, 200)
        XCTAssertEqual(full[0].bad.count, 0)
    }
}
