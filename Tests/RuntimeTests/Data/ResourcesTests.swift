import Foundation
import Graph
import TestSupport
import XCTest
@testable import Runtime

/// The memory estimate made before allocating, against what the compiled plans really hold.
final class ResourcesTests: XCTestCase {
    func testEstimateCoversThePlansItPredicts() throws {
        for name in ["k2_seed_mini", "k2_bn_conv", "k2_seed_effnetb0"] {
            let c = try XCTUnwrap(fixtureCases().first { $0.name == name })
            let session = try InferenceSession(model: LoadedModel.load(path: try XCTUnwrap(c.path(c.model))))
            let item = session.inputShapes[0]
            guard item.allSatisfy({ $0 > 0 }) else { continue }
            for batch in [1, 4] {
                let plan = try session.plan(for: [[batch] + item])
                let estimate = try session.estimatedBytes(items: batch, batchSize: batch, threads: 1, wholeBatch: true)
                XCTAssertGreaterThanOrEqual(estimate, plan.bytes, "\(name) batch \(batch)")
                XCTAssertLessThanOrEqual(estimate, 4 * plan.bytes + (1 << 20), "\(name) batch \(batch): far above the plan")
            }
        }
    }

    func testAbsurdBatchesAreRefusedWithoutOverflow() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_mini" })
        let session = try InferenceSession(model: LoadedModel.load(path: try XCTUnwrap(c.path(c.model))))
        let estimate = try session.estimatedBytes(items: Int.max / 2, batchSize: Int.max / 2)
        XCTAssertGreaterThan(estimate, 1 << 50)
        let machine = MachineMemory(total: 1 << 30, available: 1 << 29)
        XCTAssertThrowsError(try checkMemory(what: "a run", bytes: estimate, machine: machine)) { error in
            XCTAssertTrue("\(error)".hasPrefix("a run needs about "), "\(error)")
            XCTAssertTrue("\(error)".hasSuffix("this machine has 1.0 GiB (512.0 MiB available)"), "\(error)")
        }
        XCTAssertNoThrow(try checkMemory(what: "a run", bytes: 1 << 20, machine: machine))
        XCTAssertGreaterThan(MachineMemory.current().total, 0)
    }
}
