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
