import Foundation
import XCTest
@testable import H5Model

/// What the writer puts on disk, checked against the layout Keras writes (reference §1, §2).
final class WriterLayoutTests: XCTestCase {
    private let fixedNullPadASCII = { (size: Int) in H5AttributeInfo.Kind.fixedString(size: size, padding: .nullPadded, utf8: false) }

    func testWeightsGroupStringsAreFixedLengthNullPadASCII() throws {
        let folder = try TemporaryFolder()
        try sampleFullModel().write(to: folder.path("m.h5"))
        try inspectHDF5(folder.path("m.h5")) { root in
            let weights = try XCTUnwrap(root.group("model_weights"))
            XCTAssertEqual(try weights.attributeInfo("layer_names"),
                           H5AttributeInfo(kind: fixedNullPadASCII(24), dims: [6]), "longest: global_average_pooling2d")
            XCTAssertEqual(try weights.attributeInfo("backend"), H5AttributeInfo(kind: fixedNullPadASCII(10), dims: []))
            XCTAssertEqual(try weights.attributeInfo("keras_version"), H5AttributeInfo(kind: fixedNullPadASCII(6), dims: []))
            let dense = try XCTUnwrap(weights.group("dense"))
            XCTAssertEqual(try dense.attributeInfo("weight_names"), H5AttributeInfo(kind: fixedNullPadASCII(14), dims: [2]))
            XCTAssertEqual(try root.attributeInfo("keras_version").kind, fixedNullPadASCII(6))
            XCTAssertEqual(try root.attributeInfo("model_config"), H5AttributeInfo(kind: .variableString(utf8: false), dims: []))
            XCTAssertEqual(try root.attributeInfo("training_config"), H5AttributeInfo(kind: .variableString(utf8: false), dims: []))
        }
    }

    func testWeightlessLayersGetEmptyFloat64WeightNames() throws {
        let folder = try TemporaryFolder()
        try sampleFullModel().write(to: folder.path("m.h5"))
        try inspectHDF5(folder.path("m.h5")) { root in
            for group in ["model_weights/input_1", "model_weights/global_average_pooling2d", "model_weights/top_level_model_weights"] {
                let g = try XCTUnwrap(root.group(group), group)
                XCTAssertEqual(try g.attributeInfo("weight_names"), H5AttributeInfo(kind: .float(bytes: 8), dims: [0]),
                               "\(group): SIMPLE (0,) float64, never a NULL dataspace")
            }
            XCTAssertEqual(try root.attributeNames().sorted(), ["backend", "keras_version", "model_config", "training_config"])
        }
    }

    func testModelConfigBeyondTheHeaderLimit() throws {
        // EfficientNet configs are 160-200 KB; a fixed-length attribute that size would not fit.
        let folder = try TemporaryFolder()
        var file = sampleFullModel()
        file.modelConfig = #"{"layers": [""# + String(repeating: "x", count: 250_000) + #""]}"#
        try file.write(to: folder.path("m.h5"))
        XCTAssertEqual(try KerasH5File.read(path: folder.path("m.h5")).modelConfig, file.modelConfig)
    }

    func testDataIsContiguousLittleEndianInTheFileBytes() throws {
        // Outside check: the kernel's float32 LE bytes appear verbatim in the file, which holds
        // only for contiguous, unfiltered, little-endian storage.
        let folder = try TemporaryFolder()
        try sampleFullModel().write(to: folder.path("m.h5"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: folder.path("m.h5")))
        let kernel = ramp(54).flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init) }
        XCTAssertNotNil(bytes.range(of: Data(kernel)))
        let count = withUnsafeBytes(of: Int64(1_281_167).littleEndian, Array.init)
        XCTAssertNotNil(bytes.range(of: Data(count)), "int64 count stored as <i8")
        XCTAssertEqual(Array(bytes.prefix(9)), [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a, 0], "superblock version 0 (h5py's default libver)")
    }

    func testTopLevelModelWeightsIsNotReadAsALayer() throws {
        let folder = try TemporaryFolder()
        try sampleFullModel().write(to: folder.path("m.h5"))
        try inspectHDF5(folder.path("m.h5")) { root in XCTAssertNotNil(try root.group("model_weights/top_level_model_weights")) }
        XCTAssertFalse(try KerasH5File.read(path: folder.path("m.h5")).weights.layerNames.contains("top_level_model_weights"))
    }

    func testWriteLeavesNoTemporaryFileAndReplacesTheTarget() throws {
        let folder = try TemporaryFolder()
        try Data("old".utf8).write(to: URL(fileURLWithPath: folder.path("m.h5")))
        try sampleFullModel().write(to: folder.path("m.h5"))
        XCTAssertEqual(folder.contents, ["m.h5"])
        XCTAssertEqual(try KerasH5File.read(path: folder.path("m.h5")), sampleFullModel())
    }
}
