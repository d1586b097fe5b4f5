import Foundation
import XCTest
@testable import H5Model

/// Every failure is one line naming the file and the object, and nothing reaches stderr.
final class ErrorTests: XCTestCase {
    private var folder: TemporaryFolder!
    override func setUpWithError() throws { folder = try TemporaryFolder() }
    override func tearDown() { folder = nil }

    private func readError(_ path: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        let message = errorMessage({ _ = try KerasH5File.read(path: path) }, file: file, line: line)
        XCTAssertFalse(message.contains("\n"), "one line: \(message)", file: file, line: line)
        XCTAssertTrue(message.hasPrefix(path + ": "), "names the file: \(message)", file: file, line: line)
        return message
    }

    /// A weights-only file with one Dense layer whose group `build` fills.
    private func denseFile(_ name: String, _ build: (H5Group) throws -> Void) throws -> String {
        let path = folder.path(name)
        try makeHDF5(path) { root in
            try root.writeFixedStrings("layer_names", ["dense"])
            try root.writeFixedStrings("keras_version", ["2.15.0"], scalar: true)
            let dense = try root.createGroup("dense")
            try dense.writeFixedStrings("weight_names", ["dense/kernel:0", "dense/bias:0"])
            try build(dense)
        }
        return path
    }

    func testMissingEmptyAndNonHDF5Files() throws {
        XCTAssertTrue(readError(folder.path("absent.h5")).contains("No such file"))
        XCTAssertTrue(readError(folder.url.path).contains("not a regular file"))
        XCTAssertTrue(FileManager.default.createFile(atPath: folder.path("empty.h5"), contents: Data()))
        XCTAssertEqual(readError(folder.path("empty.h5")), "\(folder.path("empty.h5")): empty file (0 bytes), not an HDF5 file")
        var generator = SystemRandomNumberGenerator()
        let noise = Data((0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) })
        XCTAssertTrue(FileManager.default.createFile(atPath: folder.path("noise.h5"), contents: noise))
        XCTAssertTrue(readError(folder.path("noise.h5")).contains("not an HDF5 file"))
    }

    func testTruncatedFile() throws {
        try sampleFullModel().write(to: folder.path("good.h5"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: folder.path("good.h5")))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: folder.path("cut.h5")))
        let message = readError(folder.path("cut.h5"))
        XCTAssertTrue(message.contains("cannot open as HDF5") && message.contains("truncated"), message)
    }

    func testHDF5FileWithoutKerasAttributes() throws {
        try makeHDF5(folder.path("plain.h5")) { root in try root.writeFloat64s("x", [1]) }
        XCTAssertEqual(readError(folder.path("plain.h5")), "\(folder.path("plain.h5")): not a Keras model file "
                       + "(an HDF5 file with no 'layer_names' attribute and no 'model_weights' group)")
    }

    func testMissingLayerGroupAndDataset() throws {
        let noGroup = folder.path("nogroup.h5")
        try makeHDF5(noGroup) { root in
            let weights = try root.createGroup("model_weights")
            try weights.writeFixedStrings("layer_names", ["conv", "dense"])
            try weights.createGroup("conv").writeFloat64s("weight_names", [])
        }
        XCTAssertEqual(readError(noGroup),
                       "\(noGroup): 'layer_names' of '/model_weights' lists layer 'dense' but the file has no group '/model_weights/dense'")
        let noDataset = try denseFile("nodataset.h5") { dense in
            try dense.writeDataset("dense/kernel:0", shape: [1], values: .float32([1]))
        }
        XCTAssertEqual(readError(noDataset),
                       "\(noDataset): layer group 'dense' lists weight 'dense/bias:0' but the file has no such dataset")
    }

    func testAbsurdDeclaredShapesAreRefusedBeforeAllocating() throws {
        // 10^12 float32 elements (4 TB) declared, never written: the file stays small.
        let contiguous = try denseFile("huge.h5") { dense in
            try dense.declareDataset("dense/kernel:0", shape: [1_000_000, 1_000_000], element: .float(bytes: 4))
            try dense.writeDataset("dense/bias:0", shape: [1], values: .float32([1]))
        }
        let chunked = try denseFile("huge-chunked.h5") { dense in
            try dense.declareDataset("dense/kernel:0", shape: [1_000_000, 1_000_000], element: .float(bytes: 4), chunks: [1000, 1000])
            try dense.writeDataset("dense/bias:0", shape: [1], values: .float32([1]))
        }
        for path in [contiguous, chunked] {
            let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
            XCTAssertLessThan(size, 100_000)
            XCTAssertEqual(readError(path), "\(path): dataset '/dense/dense/kernel:0' declares shape (1000000, 1000000) "
                           + "of 4-byte elements, more than the file's \(size) bytes can hold")
        }
        // A 2 MB all-zero chunked dataset that was never written is plausible (compression could hold it).
        let plausible = try denseFile("lazy.h5") { dense in
            try dense.declareDataset("dense/kernel:0", shape: [512, 1024], element: .float(bytes: 4), chunks: [64, 64])
            try dense.writeDataset("dense/bias:0", shape: [1], values: .float32([1]))
        }
        let kernel = try XCTUnwrap(KerasH5File.read(path: plausible).weights.layers.first?.weights.first)
        XCTAssertEqual(kernel.shape, [512, 1024])
        XCTAssertEqual(kernel.floats.count, 512 * 1024)
    }

    func testEmptyPathSegmentsAreRefused() throws {
        // A leading "/" would resolve from the file root, not the layer group.
        let path = folder.path("slash.h5")
        try makeHDF5(path) { root in
            try root.writeFixedStrings("layer_names", ["dense"])
            let dense = try root.createGroup("dense")
            try dense.writeFixedStrings("weight_names", ["/dense/kernel:0"])
            try dense.writeDataset("dense/kernel:0", shape: [1], values: .float32([1]))
        }
        XCTAssertEqual(readError(path), "\(path): invalid name '/dense/kernel:0' in '/dense' (empty path segment)")
    }

    func testUnwritableTargetsGiveOneLine() throws {
        let model = sampleFullModel()
        let noFolder = folder.path("missing/m.h5")
        XCTAssertEqual(errorMessage { try model.write(to: noFolder) },
                       "\(noFolder): cannot write: folder '\(folder.path("missing"))' does not exist")
        XCTAssertTrue(FileManager.default.createFile(atPath: folder.path("plain"), contents: Data("x".utf8)))
        let underFile = folder.path("plain/m.h5")
        XCTAssertTrue(errorMessage { try model.write(to: underFile) }.hasPrefix("\(underFile): cannot write"))
        if geteuid() != 0 {   // root writes anywhere
            try FileManager.default.createDirectory(atPath: folder.path("ro"), withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o555])
            XCTAssertEqual(errorMessage { try model.write(to: folder.path("ro/m.h5")) },
                           "\(folder.path("ro/m.h5")): cannot write in folder '\(folder.path("ro"))': Permission denied")
        }
    }

    func testFailedWriteLeavesTheOldFileAndNoTemporary() throws {
        let target = folder.path("m.h5")
        try sampleFullModel().write(to: target)
        let before = try Data(contentsOf: URL(fileURLWithPath: target))
        var bad = sampleFullModel()
        bad.weights.layerNames[1] = "a//b"          // fails inside HDF5 writing, after the temp file exists
        bad.weights.layers[1].name = "a//b"
        let message = errorMessage { try bad.write(to: target) }
        XCTAssertTrue(message.hasPrefix(target + ": invalid name 'a//b'"), message)
        XCTAssertEqual(folder.contents, ["m.h5"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target)), before)
    }

    func testInconsistentValuesAreRefusedBeforeWriting() throws {
        var wrongShape = sampleFullModel()
        wrongShape.weights.layers[5].weights[0].shape = [4, 4]
        XCTAssertEqual(errorMessage { try wrongShape.write(to: self.folder.path("m.h5")) },
                       "\(folder.path("m.h5")): cannot write: weight 'dense/kernel:0' of layer 'dense' has shape (4, 4) but 6 values")
        var mismatch = sampleFullModel()
        mismatch.weights.layerNames.swapAt(0, 1)
        XCTAssertTrue(errorMessage { try mismatch.write(to: self.folder.path("m.h5")) }.contains("do not match layer_names"))
        XCTAssertEqual(folder.contents, [])
    }

    func testHDF5PrintsNothingToStderr() throws {
        try sampleFullModel().write(to: folder.path("good.h5"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: folder.path("good.h5")))
        try bytes.prefix(bytes.count / 3).write(to: URL(fileURLWithPath: folder.path("cut.h5")))
        let captured = folder.path("stderr.txt")
        let saved = dup(2)
        let fd = open(captured, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        dup2(fd, 2)
        _ = try? KerasH5File.read(path: folder.path("cut.h5"))
        _ = try? KerasH5File.read(path: folder.path("absent.h5"))
        _ = try? sampleFullModel().write(to: folder.path("no-such-folder/m.h5"))
        fflush(stderr)
        dup2(saved, 2)
        close(fd)
        close(saved)
        XCTAssertEqual(try String(contentsOfFile: captured, encoding: .utf8), "")
    }
}
