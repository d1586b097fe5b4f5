import Foundation
import XCTest
@testable import H5Model

/// Used by fixtures/check_h5_roundtrip.py: with DISTILLCTL_H5_ROUNDTRIP=DIR set, reads every
/// Keras-made DIR/*.h5, writes DIR/*.swift.h5 for Keras to load back, and checks that re-reading
/// the written file gives identical values. Skipped otherwise (swift test never needs Python).
final class ExternalRoundTripTests: XCTestCase {
    func testRewriteKerasFiles() throws {
        guard let folder = ProcessInfo.processInfo.environment["DISTILLCTL_H5_ROUNDTRIP"] else {
            throw XCTSkip("set DISTILLCTL_H5_ROUNDTRIP to a folder of Keras .h5 files")
        }
        let inputs = try FileManager.default.contentsOfDirectory(atPath: folder)
            .filter { $0.hasSuffix(".h5") && !$0.hasSuffix(".swift.h5") }.sorted()
        XCTAssertFalse(inputs.isEmpty, "no .h5 files in \(folder)")
        for name in inputs {
            let input = folder + "/" + name
            let output = folder + "/" + name.dropLast(3) + ".swift.h5"
            let original = try KerasH5File.read(path: input)
            try original.write(to: output)
            XCTAssertEqual(try KerasH5File.read(path: output), original, name)
            let weights = original.weights.layers.reduce(0) { $0 + $1.weights.count }
            print("rewrote \(name): \(original.weights.layers.count) layers, \(weights) weights, full model: \(original.isFullModel)")
        }
    }
}
