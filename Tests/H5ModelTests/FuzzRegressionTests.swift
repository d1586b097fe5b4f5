import Foundation
import TestSupport
import XCTest
@testable import H5Model

/// Files the fuzzer made that crash Debian's libhdf5 1.10.8 itself (fixtures/fuzz/regressions/
/// libhdf5_*.h5; fixtures/fuzz/README.md has the backtraces). The reader reads a file first in a
/// forked child, so each is one error line here, and this process lives on.
final class FuzzRegressionTests: XCTestCase {
    func testFilesThatCrashLibHDF5AreOneLineErrors() throws {
        let folder = fixturesDirectory.appendingPathComponent("fuzz/regressions")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
            .filter { $0.hasPrefix("libhdf5_") && $0.hasSuffix(".h5") && !$0.contains("hang") }.sorted()
        XCTAssertFalse(files.isEmpty)
        for name in files {
            let path = folder.appendingPathComponent(name).path
            do {
                _ = try KerasH5File.read(path: path)
                XCTFail("\(name) was read")
            } catch {
                let message = String(describing: error)
                XCTAssertFalse(message.contains("\n"), message)
                XCTAssertTrue(message.hasPrefix(path + ": "), message)
                // Out-of-bounds reads inside libhdf5 crash it in a fresh process (checked when
                // they were found); in the child of a test process the memory around may differ,
                // so libhdf5 may instead read garbage and fail later: either way, one error.
                XCTAssertTrue(message.contains(": corrupt HDF5 file: libhdf5 crashed reading it (signal 11")
                              || message.contains("(HDF5: ") || message.contains("' of '/"), message)
            }
        }
    }

    /// A file on which libhdf5 loops for ever (in its global heap's cache): ended after the
    /// timeout (120 s for distillctl; 2 s here).
    func testFileThatHangsLibHDF5IsEndedAfterTheTimeout() {
        let path = fixturesDirectory.appendingPathComponent("fuzz/regressions/libhdf5_H5HG_hang.h5").path
        let start = Date()
        let outcome = IsolatedRead.probe(timeout: 2) { _ = try KerasH5File.readInProcess(path: path) }
        XCTAssertEqual(outcome, .crashed("libhdf5 did not finish reading it within 2 s"))
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }

    /// The child's read comes back to the parent (read once, not twice): the seed's model
    /// read through the child equals a read in this process, every kind of stored values survives
    /// the transfer, and a cut or padded reply is refused (the parent then reads the file itself).
    func testChildReadIsHandedToTheParent() throws {
        let path = fixturesDirectory.appendingPathComponent("cases/k2_seed_effnetb0/model.h5").path
        let direct = try withHDF5 { try KerasH5File.readInProcess(path: path) }
        var readsHere = 0
        let viaChild = try withHDF5 {
            try IsolatedRead.guarded(path: path) { () throws -> KerasH5File in
                readsHere += 1    // counted in the child's copy of this variable, not in ours
                return try KerasH5File.readInProcess(path: path)
            }
        }
        XCTAssertEqual(viaChild, direct)
        XCTAssertEqual(readsHere, 0, "the parent read the file again")
        XCTAssertEqual(try KerasH5File.read(path: path), direct)
        XCTAssertEqual(try withHDF5 { try IsolatedRead.guarded(path: path) { true } }, true)
        XCTAssertEqual(try withHDF5 { try IsolatedRead.guarded(path: path) { false } }, false)

        let every = KerasH5File(
            modelConfig: nil, trainingConfig: "{\"loss\": \"x\"}", kerasVersion: "2.21.0", backend: nil,
            weights: WeightsGroup(layerNames: ["a", "é/b", ""], layers: [
                LayerWeights(name: "a", weights: [
                    Weight(name: "a/k:0", shape: [2, 1], values: .float32([1.5, -0])),
                    Weight(name: "a/d:0", shape: [1], values: .float64([.pi])),
                    Weight(name: "a/h:0", shape: [2], values: .float16([0x3C00, 0x7E00])),
                ]),
                LayerWeights(name: "é/b", weights: [
                    Weight(name: "n/count:0", shape: [], values: .int64([Int64.min])),
                    Weight(name: "n/i:0", shape: [3], values: .int32([1, -2, 3])),
                ]),
                LayerWeights(name: "", weights: []),
            ], kerasVersion: nil, backend: "tensorflow"))
        var out = TransferWriter()
        every.write(to: &out)
        var input = TransferReader(out.bytes)
        XCTAssertEqual(KerasH5File(from: &input), every)
        XCTAssertTrue(input.atEnd)
        for cut in [0, 1, out.bytes.count / 2, out.bytes.count - 1] {
            var short = TransferReader(Array(out.bytes[..<cut]))
            XCTAssertNil(KerasH5File(from: &short), "cut at \(cut)")
        }
        var garbage = TransferReader([UInt8](repeating: 0xFF, count: 64))
        XCTAssertNil(KerasH5File(from: &garbage))
    }

    /// The isolation itself: a crash, a hang, an error and a success in the child.
    func testIsolatedReadClassifiesTheChild() {
        XCTAssertEqual(IsolatedRead.probe { raise(SIGSEGV) },
                       .crashed("libhdf5 crashed reading it (signal 11, Segmentation fault)"))
        XCTAssertEqual(IsolatedRead.probe { abort() }, .crashed("libhdf5 crashed reading it (signal 6, Aborted)"))
        XCTAssertEqual(IsolatedRead.probe(timeout: 1) { sleep(30) },
                       .crashed("libhdf5 did not finish reading it within 1 s"))
        XCTAssertEqual(IsolatedRead.probe { throw H5ModelError("x.h5: bad") }, .failed("x.h5: bad"))
        XCTAssertEqual(IsolatedRead.probe {}, .ok)
        XCTAssertEqual(IsolatedRead.probe { raise(SIGILL) }, .swiftTrap)
    }
}
