import Foundation
import XCTest
@testable import H5Model

final class RoundTripTests: XCTestCase {
    func testWeightsOnlyFileRoundTrips() throws {
        let folder = try TemporaryFolder()
        let original = KerasH5File(modelConfig: nil, trainingConfig: nil, kerasVersion: nil, backend: nil,
                                   weights: sampleWeights())
        try original.write(to: folder.path("w.h5"))
        let reread = try KerasH5File.read(path: folder.path("w.h5"))
        XCTAssertEqual(reread, original)
        XCTAssertFalse(reread.isFullModel)
        XCTAssertEqual(reread.weights.layerNames, ["input_1", "normalization", "blk/conv", "blk",
                                                   "global_average_pooling2d", "dense"], "layer_names order kept")
    }

    func testFullModelFileRoundTrips() throws {
        let folder = try TemporaryFolder()
        let original = sampleFullModel()
        try original.write(to: folder.path("m.h5"))
        let reread = try KerasH5File.read(path: folder.path("m.h5"))
        XCTAssertEqual(reread, original)
        XCTAssertTrue(reread.isFullModel)
        // Read -> write -> read again: still the same values.
        try reread.write(to: folder.path("m2.h5"))
        XCTAssertEqual(try KerasH5File.read(path: folder.path("m2.h5")), original)
    }

    func testWeightsSurviveBitForBit() throws {
        let folder = try TemporaryFolder()
        // NaN payloads, -0, subnormals, extremes: anything a conversion would disturb.
        let floatBits: [UInt32] = [0x7FC0_1234, 0xFF80_0001, 0x8000_0000, 0x0000_0001, 0x7F7F_FFFF, 0x3EAA_AAAB]
        let doubleBits: [UInt64] = [0x7FF8_0000_0000_0BAD, 0x8000_0000_0000_0000, 0x0000_0000_0000_0001]
        let halfBits: [UInt16] = [0x7E01, 0x8000, 0x0001, 0x7BFF]
        let layer = LayerWeights(name: "bits", weights: [
            Weight(name: "bits/f32:0", shape: [2, 3], values: .float32(floatBits.map(Float.init(bitPattern:)))),
            Weight(name: "bits/f64:0", shape: [3], values: .float64(doubleBits.map(Double.init(bitPattern:)))),
            Weight(name: "bits/f16:0", shape: [4], values: .float16(halfBits)),
            Weight(name: "bits/i64:0", shape: [2], values: .int64([Int64.min, Int64.max])),
        ])
        let file = KerasH5File(modelConfig: nil, trainingConfig: nil, kerasVersion: nil, backend: nil,
                               weights: WeightsGroup(layerNames: ["bits"], layers: [layer], kerasVersion: "2.15.0", backend: "tensorflow"))
        try file.write(to: folder.path("bits.h5"))
        let weights = try XCTUnwrap(KerasH5File.read(path: folder.path("bits.h5")).weights.layer(named: "bits")).weights
        guard case .float32(let f) = weights[0].values, case .float64(let d) = weights[1].values,
              case .float16(let h) = weights[2].values, case .int64(let i) = weights[3].values else {
            return XCTFail("element types changed: \(weights.map(\.values))")
        }
        XCTAssertEqual(f.map(\.bitPattern), floatBits)
        XCTAssertEqual(d.map(\.bitPattern), doubleBits)
        XCTAssertEqual(h, halfBits)
        XCTAssertEqual(i, [Int64.min, Int64.max])
        XCTAssertEqual(weights[0].shape, [2, 3])
    }

    func testScalarInt64DatasetKeepsShapeAndType() throws {
        let folder = try TemporaryFolder()
        try KerasH5File(modelConfig: nil, trainingConfig: nil, kerasVersion: nil, backend: nil, weights: sampleWeights())
            .write(to: folder.path("w.h5"))
        let count = try XCTUnwrap(KerasH5File.read(path: folder.path("w.h5")).weights.layer(named: "normalization")?.weights[2])
        XCTAssertEqual(count.name, "normalization/count:0")
        XCTAssertEqual(count.shape, [])
        XCTAssertEqual(count.values, .int64([1_281_167]))
        XCTAssertEqual(count.floats, [1_281_167])
    }

    func testNamesWithSlashAreNestedGroups() throws {
        let folder = try TemporaryFolder()
        try KerasH5File(modelConfig: nil, trainingConfig: nil, kerasVersion: nil, backend: nil, weights: sampleWeights())
            .write(to: folder.path("w.h5"))
        try inspectHDF5(folder.path("w.h5")) { root in
            // Keras's layout: layer group + "/" + weight name, with intermediate groups.
            XCTAssertNotNil(try root.dataset("blk/conv/blk/conv/kernel:0"))
            XCTAssertNotNil(try root.dataset("blk/blk/gamma:0"))
            let blk = try XCTUnwrap(root.group("blk"))
            XCTAssertNotNil(try blk.group("conv"), "layer 'blk/conv' lives inside layer group 'blk'")
            XCTAssertNotNil(try root.group("blk/conv/blk"), "intermediate group of the weight name")
        }
        // Group 'blk' also holds the group of layer 'blk/conv': only its weight_names count.
        let blk = try XCTUnwrap(KerasH5File.read(path: folder.path("w.h5")).weights.layer(named: "blk"))
        XCTAssertEqual(blk.weights.map(\.name), ["blk/gamma:0", "blk/moving_variance:0"])
    }

    func testLayerListedBeforeItsPrefixStillWrites() throws {
        // Created in list order, 'blk/dense' would make 'blk' an intermediate group and creating
        // layer 'blk' would then fail; Keras sorts before creating, so must the writer.
        let folder = try TemporaryFolder()
        let layers = [LayerWeights(name: "blk/dense", weights: [Weight(name: "blk/dense/kernel:0", shape: [1], floats: [1])]),
                      LayerWeights(name: "blk", weights: [Weight(name: "blk/kernel:0", shape: [1], floats: [2])])]
        let file = KerasH5File(modelConfig: nil, trainingConfig: nil, kerasVersion: nil, backend: nil,
                               weights: WeightsGroup(layerNames: ["blk/dense", "blk"], layers: layers, kerasVersion: "2.15.0", backend: "tensorflow"))
        try file.write(to: folder.path("w.h5"))
        let reread = try KerasH5File.read(path: folder.path("w.h5"))
        XCTAssertEqual(reread, file)
        XCTAssertEqual(reread.weights.layerNames, ["blk/dense", "blk"])
    }

    func testMissingVersionAndBackendGetDefaults() throws {
        let folder = try TemporaryFolder()
        let file = KerasH5File(modelConfig: nil, trainingConfig: nil, kerasVersion: nil, backend: nil,
                               weights: sampleWeights(kerasVersion: nil, backend: nil))
        try file.write(to: folder.path("w.h5"))
        let weights = try KerasH5File.read(path: folder.path("w.h5")).weights
        XCTAssertEqual(weights.kerasVersion, KerasH5File.defaultKerasVersion)
        XCTAssertEqual(weights.backend, KerasH5File.defaultBackend)
        XCTAssertNotEqual(weights.kerasVersion, "1", "a missing version would make Keras 2 convert Keras-1 weights")
    }
}
