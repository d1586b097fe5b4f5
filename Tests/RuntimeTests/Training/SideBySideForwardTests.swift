import Foundation
import Graph
import TestSupport
import XCTest
@testable import Runtime

/// The teachers' passes and the student's frozen prefix run as one pool job (`Distiller.sideBySide`)
/// give the steps of running them one after the other, bit for bit: the same losses, the same
/// weights after the updates, whether one teacher or two, whole batches or a partial one.
final class SideBySideForwardTests: XCTestCase {
    func seed() throws -> LoadedModel { try seedModel() }

    /// `steps` steps (each on its own batch of `rows` images) with the passes side by side or not:
    /// the losses, every parameter after them, and the phases the profile saw.
    func run(student: LoadedModel, teachers: [LoadedModel], weights: [Double]?, trainable: TrainableSelection,
             rows: [Int], sideBySide: Bool) throws -> (losses: [Float], params: [[Float]], phases: [String]) {
        var config = DistillConfig()
        config.seed = 11
        config.trainable = trainable
        let distiller = try Distiller(student: student, teachers: teachers, teacherWeights: weights,
                                      optimizer: Adam(learningRate: .constant(1e-2)), config: config)
        distiller.sideBySide = sideBySide
        distiller.phases = PhaseTimes()
        let (losses, params) = try seedSteps(distiller, rows: rows, seed: 7)
        return (losses, params, distiller.phases!.order)
    }

    func assertSame(teachers: [LoadedModel], weights: [Double]? = nil, trainable: TrainableSelection, rows: [Int],
                    threads: Int, _ what: String) throws {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        RuntimeThreads.set(threads)
        let student = try seed()
        let together = try run(student: student, teachers: teachers, weights: weights, trainable: trainable, rows: rows,
                               sideBySide: true)
        let apart = try run(student: student, teachers: teachers, weights: weights, trainable: trainable, rows: rows,
                            sideBySide: false)
        // The job did run (a step that fell back to the sequential passes would prove nothing).
        XCTAssertTrue(together.phases.contains("teachers + frozen prefix"), "\(what): \(together.phases)")
        XCTAssertFalse(apart.phases.contains("teachers + frozen prefix"), what)
        XCTAssertEqual(together.losses, apart.losses, what)
        XCTAssertTrue(together.losses.allSatisfy(\.isFinite), what)
        XCTAssertEqual(together.params.count, apart.params.count, what)
        for (k, (a, b)) in zip(together.params, apart.params).enumerated() where a != b {
            XCTFail("\(what): parameter \(k) differs after the steps")
            break
        }
    }

    /// A batch of 4, of 1 (which keeps the sequential passes: one image each, on all workers) and
    /// of 3, one after the other on the same distiller.
    func testOneTeacherHeadOnlyWholeAndPartialBatches() throws {
        try assertSame(teachers: [seed()], trainable: .headOnly, rows: [4, 1, 3], threads: 2, "one teacher, head only")
    }

    func testOneTeacherUnfrozenFromBlock5a() throws {
        try assertSame(teachers: [seed()], trainable: .unfreezeFrom("block5a_expand_conv"), rows: [2, 3], threads: 2,
                       "one teacher, unfrozen from block5a")
    }

    /// Two teachers whose logits differ (the second's head took a step), weighted 1:3, and more
    /// workers than cores.
    func testTwoTeachersAndThreeWorkers() throws {
        var config = DistillConfig()
        config.trainable = .headOnly
        let other = try Distiller(student: seed(), teacher: nil, optimizer: Adam(learningRate: .constant(0.5)), config: config)
        var labels = [Float](repeating: 0, count: 2 * other.classes)
        labels[0] = 1
        labels[other.classes + 1] = 1
        var rng = SeededRandom(9)
        _ = try other.step(Tensor(shape: [2, 228, 228, 3], data: rng.floats(2 * 228 * 228 * 3, 0, 255)), labels: labels, index: 0)
        let second = other.trainedModel()
        try assertSame(teachers: [seed(), second], weights: [1, 3], trainable: .headOnly, rows: [3], threads: 3,
                       "two teachers, three workers")
    }
}
