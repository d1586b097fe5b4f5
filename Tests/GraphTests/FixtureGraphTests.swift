import Foundation
import H5Model
import TestSupport
import XCTest
@testable import Graph

/// Graphs built from Keras's own configs must agree with Keras on parameter counts, and weights
/// must bind by name for every fixture in every form it comes in.
final class FixtureGraphTests: XCTestCase {
    func kerasCounts(_ c: FixtureCase) throws -> (Int, Int, Int) {
        let attrs = try H5Arrays.attributes(path: c.path(c.io)!)
        func int(_ key: String) throws -> Int {
            guard case .integer(let v)? = attrs[key] else { throw GraphError("\(c.io): no integer attribute \(key)") }
            return Int(v)
        }
        return (try int("total_params"), try int("trainable_params"), try int("non_trainable_params"))
    }

    /// Dropout's noise shape as Keras uses it in training: a Dropout's own (None follows the input),
    /// and SpatialDropout2D's (batch, 1, 1, channels), which its config does not spell out.
    func testDropoutNoiseShapes() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_dropout_noise" })
        let model = try LoadedModel.load(path: c.forms[0].model, archPath: c.forms[0].arch)
        func noise(_ name: String) throws -> [Int]? {
            let node = try XCTUnwrap(model.graph.uniqueLayers.first { $0.name == name })
            guard case .dropout(_, let shape, _) = node.op else { XCTFail("\(name) is \(node.op)"); return nil }
            return shape
        }
        XCTAssertEqual(try noise("dropout"), nil)
        XCTAssertEqual(try noise("spatial_dropout2d"), [-1, 1, 1, -1])
        XCTAssertEqual(try noise("dropout_1"), [-1, 1, 1, 4])
    }

    func testParameterCountsMatchKerasForEveryFixture() throws {
        let cases = try fixtureCases()
        XCTAssertGreaterThan(cases.count, 40)
        for c in cases {
            let expected = try kerasCounts(c)
            for form in c.forms {
                let model = try LoadedModel.load(path: form.model, archPath: form.arch)
                let counts = model.graph.parameterCounts()
                XCTAssertEqual([counts.total, counts.trainable, counts.nonTrainable], [expected.0, expected.1, expected.2],
                               "\(c.name) (\(form.label))")
            }
        }
    }

    func testEveryFixtureHasAtLeastOneLoadableForm() throws {
        for c in try fixtureCases() {
            XCTAssertFalse(c.forms.isEmpty, c.name)
        }
    }

    /// The seed's teacher, as saved: Keras's own totals appear in our summary.
    func testSeedSummaryShowsKerasTotals() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_effnetb0" })
        let (total, trainable, frozen) = try kerasCounts(c)
        for form in c.forms {
            let text = try LoadedModel.load(path: form.model, archPath: form.arch).graph.summary()
            XCTAssertTrue(text.contains("Total params: \(grouped(total))"), text)
            XCTAssertTrue(text.contains("Trainable params: \(grouped(trainable))"), text)
            XCTAssertTrue(text.contains("Non-trainable params: \(grouped(frozen))"), text)
            XCTAssertTrue(text.contains("efficientnetb0 (Functional)"), text)
        }
    }
}
