// Learning-rate schedules and ReduceLROnPlateau against tf-keras 2.21 and Keras 3.15: schedule
// values at steps 0..60 and a few large steps; the callback itself (Keras's class) fed a scripted
// metric sequence, with the learning rate read after every epoch.
import Foundation
import XCTest
import TestSupport
@testable import Runtime

func makeSchedule(_ c: [String: Any]) -> any LearningRateSchedule {
    switch c["kind"] as! String {
    case "exponential":
        return ExponentialDecay(initialLearningRate: double(c["initial_learning_rate"])!, decaySteps: c["decay_steps"] as! Int,
                                decayRate: double(c["decay_rate"])!, staircase: c["staircase"] as! Bool)
    case "piecewise":
        return PiecewiseConstantDecay(boundaries: ints(c["boundaries"]), values: (c["values"] as! [NSNumber]).map(\.doubleValue))
    case "cosine":
        return CosineDecay(initialLearningRate: double(c["initial_learning_rate"])!, decaySteps: c["decay_steps"] as! Int,
                           alpha: double(c["alpha"]) ?? 0, warmupTarget: double(c["warmup_target"]),
                           warmupSteps: c["warmup_steps"] as? Int ?? 0)
    default:
        fatalError("unknown schedule \(c)")
    }
}

func makePlateau(_ c: [String: Any], flavor: KerasFlavor) throws -> ReduceLROnPlateau {
    try ReduceLROnPlateau(monitor: c["monitor"] as! String, factor: double(c["factor"])!, patience: c["patience"] as! Int,
                          mode: ReduceLROnPlateau.Mode(rawValue: c["mode"] as! String)!, minDelta: double(c["min_delta"])!,
                          cooldown: c["cooldown"] as! Int, minLearningRate: double(c["min_lr"])!, flavor: flavor)
}

final class ScheduleTests: XCTestCase {
    func testSchedulesMatchKeras() throws {
        let worst = WorstDifferences()
        for (file, _) in kerasFlavors {
            let json = try loadTrainingFixture("schedules_\(file)")
            let steps = ints(json["steps"])
            let cases = json["schedules"] as! [[String: Any]]
            XCTAssertEqual(cases.count, 7)
            for c in cases {
                let name = "\(file) \(c["name"] as! String)"
                let schedule = makeSchedule(c["config"] as! [String: Any])
                let got = steps.map { schedule.learningRate(at: $0) }
                worst.note(name, assertRelative(got, floats(c["values"]), rel: 1e-6, name))
            }
        }
        worst.report("Schedules: worst relative difference to Keras")
    }

    /// Exact values that pin down the step convention (the first update uses step 0) and the
    /// staircase boundaries, independent of the fixtures.
    func testScheduleBoundaries() {
        let stair = ExponentialDecay(initialLearningRate: 1, decaySteps: 3, decayRate: 0.5, staircase: true)
        XCTAssertEqual((0..<7).map { stair.learningRate(at: $0) }, [1, 1, 1, 0.5, 0.5, 0.5, 0.25])
        let piecewise = PiecewiseConstantDecay(boundaries: [2, 4], values: [3, 2, 1])
        XCTAssertEqual((0..<6).map { piecewise.learningRate(at: $0) }, [3, 3, 3, 2, 2, 1])
        let warm = CosineDecay(initialLearningRate: 0, decaySteps: 10, warmupTarget: 1, warmupSteps: 4)
        XCTAssertEqual(warm.learningRate(at: 2), 0.5)
        XCTAssertEqual(warm.learningRate(at: 4), 1)
        XCTAssertEqual(warm.learningRate(at: 14), 0, accuracy: 1e-7)
        XCTAssertEqual(warm.learningRate(at: 100), warm.learningRate(at: 14))
    }

    /// The optimizer evaluates its schedule at `iterations` before each update.
    func testOptimizerUsesScheduleAtIterations() throws {
        let store = FixtureParameters(names: ["w"], initial: [[0]])
        store.setGradients([[1]])
        let sgd = SGD(learningRate: .schedule(PiecewiseConstantDecay(boundaries: [0, 1], values: [1, 10, 100])))
        var seen: [Float] = []
        for _ in 0..<3 {
            seen.append(sgd.learningRate)
            try sgd.apply(store.buffers)
        }
        XCTAssertEqual(seen, [1, 10, 100])
        XCTAssertEqual(store.current, [[-111]])
    }

    func testReduceLROnPlateauMatchesKeras() throws {
        for (file, flavor) in kerasFlavors {
            let json = try loadTrainingFixture("schedules_\(file)")
            let cases = json["plateau"] as! [[String: Any]]
            XCTAssertEqual(cases.count, 4)
            for c in cases {
                let name = "\(file) \(c["name"] as! String)"
                let got = try replay(c, flavor: flavor)
                XCTAssertEqual(got, floats(c["learning_rate"]), name)
            }
        }
    }

    /// tf-keras and Keras 3 round the reduced rate differently; the fixtures see it (so the
    /// flavor matters), on the case that multiplies 0.003 by 0.3.
    func testPlateauFlavorsDiffer() throws {
        let k2 = (try loadTrainingFixture("schedules_k2")["plateau"] as! [[String: Any]]).first { $0["name"] as? String == "max_accuracy" }!
        let k3 = (try loadTrainingFixture("schedules_k3")["plateau"] as! [[String: Any]]).first { $0["name"] as? String == "max_accuracy" }!
        XCTAssertNotEqual(floats(k2["learning_rate"]), floats(k3["learning_rate"]))
        XCTAssertNotEqual(try replay(k2, flavor: .keras3), floats(k2["learning_rate"]))
        XCTAssertNotEqual(try replay(k3, flavor: .tfKeras2), floats(k3["learning_rate"]))
    }

    func replay(_ c: [String: Any], flavor: KerasFlavor) throws -> [Float] {
        var plateau = try makePlateau(c["config"] as! [String: Any], flavor: flavor)
        var lr = Float(double(c["initial_learning_rate"])!)
        return floats(c["metric"]).map { metric in
            lr = plateau.epochEnded(monitored: Double(metric), learningRate: lr)
            return lr
        }
    }

    /// Driving an optimizer; state survives Codable (for --resume); factor >= 1 is refused.
    func testPlateauDrivesOptimizerAndRoundTrips() throws {
        let adam = Adam(learningRate: .constant(0.01))
        var plateau = try ReduceLROnPlateau(monitor: "val_loss", factor: 0.5, patience: 1, cooldown: 1)
        XCTAssertFalse(plateau.maximises)
        XCTAssertFalse(try plateau.epochEnded(monitored: 1.0, optimizer: adam))
        XCTAssertTrue(try plateau.epochEnded(monitored: 1.0, optimizer: adam))
        XCTAssertEqual(adam.learningRate, 0.005)
        let copy = try JSONDecoder().decode(ReduceLROnPlateau.self, from: JSONEncoder().encode(plateau))
        XCTAssertEqual(copy, plateau)
        XCTAssertEqual(copy.cooldownCounter, 1)
        XCTAssertThrowsError(try ReduceLROnPlateau(factor: 1.0))
        XCTAssertTrue(try ReduceLROnPlateau(monitor: "val_accuracy").maximises)
        let scheduled = Adam(learningRate: .schedule(ConstantLearningRate(0.1)))
        var p2 = try ReduceLROnPlateau(patience: 0)
        XCTAssertThrowsError(try p2.epochEnded(monitored: .nan, optimizer: scheduled))
    }
}
