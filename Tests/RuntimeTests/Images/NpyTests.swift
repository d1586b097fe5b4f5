import Foundation
import TestSupport
import XCTest

@testable import Runtime

/// `.npy` files written by numpy (fixtures/make_image_fixtures.py, make_npy) read back, broken
/// ones rejected with one-line errors, and our writer's bytes equal to numpy's.
final class NpyTests: XCTestCase {
    let directory = fixturesDirectory.appendingPathComponent("images")

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// (arange(24) - 7.5) / 3 in float32, as numpy computed it.
    let f4Values: [Float] = (0..<24).map { (Float($0) - 7.5) / 3 }

    func testReadFloat32() throws {
        let array = try NpyArray.read(path: path("npy_f4.npy"))
        XCTAssertEqual(array.shape, [2, 3, 4])
        assertClose(array.values, f4Values, tolerance: 0)
    }

    func testReadVersion2() throws {
        XCTAssertEqual(try NpyArray.read(path: path("npy_f4_v2.npy")), NpyArray(shape: [2, 3, 4], values: f4Values))
    }

    func testReadFloat64Converts() throws {
        let array = try NpyArray.read(path: path("npy_f8.npy"))
        XCTAssertEqual(array.shape, [3, 5])
        assertClose(array.values, (0..<15).map { Float((Double($0) / 7 - 1) * 1e3) }, tolerance: 0)
    }

    func testReadScalarAndEmpty() throws {
        XCTAssertEqual(try NpyArray.read(path: path("npy_f4_scalar.npy")), NpyArray(shape: [], values: [2.5]))
        XCTAssertEqual(try NpyArray.read(path: path("npy_f4_empty.npy")), NpyArray(shape: [0, 3], values: []))
    }

    func assertReadFails(_ name: String, reason: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try NpyArray.read(path: path(name)), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(error is NpyError, "\(type(of: error))", file: file, line: line)
            XCTAssertTrue(text.contains(path(name)), "\(text) does not name the file", file: file, line: line)
            XCTAssertTrue(text.contains(reason), "\(text) does not say '\(reason)'", file: file, line: line)
            XCTAssertFalse(text.contains("\n"), "\(text) is not one line", file: file, line: line)
        }
    }

    func testRejectsOtherLayoutsAndTypes() {
        assertReadFails("npy_fortran.npy", reason: "Fortran-order array (shape (3, 4)) not supported")
        assertReadFails("npy_i8.npy", reason: "dtype '<i8' not supported (expected '<f4', or '<f8' which is converted)")
        assertReadFails("npy_f4_big_endian.npy", reason: "dtype '>f4' not supported")
    }

    func testRejectsBrokenFiles() {
        assertReadFails("npy_truncated.npy", reason: "truncated: shape (2, 3, 4) of '<f4' needs 96 bytes of data, file has 86")
        assertReadFails("npy_bad_header.npy", reason: "header 'shape' is not a tuple")
        assertReadFails("rgb.png", reason: "not a .npy file")
        assertReadFails("no_such.npy", reason: "no such file")
        for header in ["{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1, }",
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", "{'descr': '<f4', 'fortran_order': Fals, 'shape': (2,), }",
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }"] {
            var bytes = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count), 0] + Array(header.utf8)
            bytes += [UInt8](repeating: 0, count: 8)
            XCTAssertThrowsError(try NpyArray.read(data: Data(bytes), name: "made.npy"), header) { error in
                XCTAssertTrue("\(error)".hasPrefix("npy file 'made.npy': header"), "\(error)")
            }
        }
    }

    func testWriteMatchesNumpyByteForByte() throws {
        let reference = (0..<30).map { (Float($0) - 4) / 7 }
        XCTAssertEqual(NpyArray(shape: [2, 3, 5], values: reference).encoded(),
                       try Data(contentsOf: URL(fileURLWithPath: path("npy_reference_2x3x5.npy"))))
        XCTAssertEqual(NpyArray(shape: [7], values: Array(reference.prefix(7))).encoded(),
                       try Data(contentsOf: URL(fileURLWithPath: path("npy_reference_1d.npy"))))
        XCTAssertEqual(NpyArray(shape: [2, 3, 4], values: f4Values).encoded(),
                       try Data(contentsOf: URL(fileURLWithPath: path("npy_f4.npy"))))
        XCTAssertEqual(NpyArray(shape: [2] + Array(repeating: 1, count: 12) + [100], values: (0..<200).map { Float($0) / 3 }).encoded(),
                       try Data(contentsOf: URL(fileURLWithPath: path("npy_reference_boundary.npy"))))
        XCTAssertEqual(NpyArray(shape: [], values: [2.5]).encoded(),
                       try Data(contentsOf: URL(fileURLWithPath: path("npy_f4_scalar.npy"))))
    }

    func testWriteIsAtomicAndRoundTrips() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("npy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let target = folder.appendingPathComponent("out.npy").path
        try Data("old contents".utf8).write(to: URL(fileURLWithPath: target))
        let array = NpyArray(shape: [4, 1, 3], values: (0..<12).map { Float($0) * -0.37 + 1e-30 })
        try array.write(path: target)
        XCTAssertEqual(try NpyArray.read(path: target), array)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["out.npy"])
        XCTAssertThrowsError(try array.write(path: folder.appendingPathComponent("missing/out.npy").path)) { error in
            XCTAssertTrue("\(error)".contains("cannot write"), "\(error)")
        }
    }

    func testLongHeaderHeaderAlignment() throws {
        // Many dimensions: the header still ends on a 64-byte boundary with a newline.
        let array = NpyArray(shape: Array(repeating: 1, count: 40), values: [3])
        let data = array.encoded()
        let length = Int(data[8]) | Int(data[9]) << 8
        XCTAssertEqual((10 + length) % 64, 0)
        XCTAssertEqual(data[10 + length - 1], 0x0A)
        XCTAssertEqual(try NpyArray.read(data: data), array)
    }
}
