import Foundation
import XCTest
@testable import H5Model

/// Datasets in the types and byte orders other writers may have used; HDF5 converts to native.
final class DatasetTests: XCTestCase {
    private func roundTrip(_ values: WeightValues, shape: [Int], storedAs: H5Element? = nil,
                           bigEndian: Bool = false) throws -> (shape: [Int], values: WeightValues) {
        let folder = try TemporaryFolder()
        try makeHDF5(folder.path("d.h5")) { root in
            try root.writeDataset("w", shape: shape, values: values, storedAs: storedAs, bigEndian: bigEndian)
        }
        return try inspectHDF5(folder.path("d.h5")) { root in try XCTUnwrap(root.dataset("w")).read() }
    }

    func testBigEndianFloatsReadAsNative() throws {
        let f32 = try roundTrip(.float32([1.5, -0.25, 3e38]), shape: [3], bigEndian: true)
        XCTAssertEqual(f32.values, .float32([1.5, -0.25, 3e38]))
        let f64 = try roundTrip(.float64([1e-300, -2]), shape: [2, 1], bigEndian: true)
        XCTAssertEqual(f64.shape, [2, 1])
        XCTAssertEqual(f64.values, .float64([1e-300, -2]))
        let f16 = try roundTrip(.float16([0x3C00, 0xC000, 0x0001]), shape: [3], bigEndian: true)
        XCTAssertEqual(f16.values, .float16([0x3C00, 0xC000, 0x0001]))
        let i64 = try roundTrip(.int64([-5, 1 << 40]), shape: [2], bigEndian: true)
        XCTAssertEqual(i64.values, .int64([-5, 1 << 40]))
    }

    func testOtherIntegerWidthsWiden() throws {
        let values = WeightValues.int64([0, 1, 200])
        XCTAssertEqual(try roundTrip(values, shape: [3], storedAs: .integer(bytes: 1, signed: false)).values, .int32([0, 1, 200]))
        XCTAssertEqual(try roundTrip(.int64([-300, 7, 32767]), shape: [3], storedAs: .integer(bytes: 2, signed: true)).values,
                       .int32([-300, 7, 32767]))
        XCTAssertEqual(try roundTrip(.int64([4_000_000_000]), shape: [1], storedAs: .integer(bytes: 4, signed: false)).values,
                       .int64([4_000_000_000]), "uint32 does not fit int32")
        XCTAssertEqual(try roundTrip(.int32([-9, 9]), shape: [2]).values, .int32([-9, 9]))
    }

    func testScalarAndEmptyDatasets() throws {
        let scalar = try roundTrip(.float32([2.5]), shape: [])
        XCTAssertEqual(scalar.shape, [])
        XCTAssertEqual(scalar.values, .float32([2.5]))
        let empty = try roundTrip(.float32([]), shape: [0, 4])
        XCTAssertEqual(empty.shape, [0, 4])
        XCTAssertEqual(empty.values, .float32([]))
    }

    func testStringDatasetIsUnsupported() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("s.h5")
        try makeHDF5(path) { root in
            try root.writeFixedStrings("layer_names", ["dense"])
            let dense = try root.createGroup("dense")
            try dense.writeFixedStrings("weight_names", ["dense/kernel:0"])
            _ = try dense.createDataset("dense/kernel:0", type: .string(size: 4, padding: .nullPadded, utf8: false),
                                        space: .simple([2]))
        }
        let message = errorMessage { _ = try KerasH5File.read(path: path) }
        XCTAssertEqual(message, "\(path): dataset '/dense/dense/kernel:0' has an unsupported element type (strings); "
                       + "expected float16/32/64 or integers")
    }
}
