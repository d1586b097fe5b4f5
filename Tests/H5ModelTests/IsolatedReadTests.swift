import Foundation
import TestSupport
import XCTest
@testable import H5Model

/// How the forked child hands its read back: through memory shared with the parent when the reply
/// fits the region, through the pipe when it does not, the same bytes either way; a model file
/// takes one child, not one to tell its layout and another to read it.
final class IsolatedReadTests: XCTestCase {
    func testReplyComesBackWhetherItFitsTheRegionOrNot() throws {
        let payload = (0..<50_000).map { Float($0) * 0.5 - 7 }
        // 200 kB of floats: in a 1 MB region, past a 64 kB one (spilled to the pipe after the
        // region filled), with no region, and an empty reply in a region.
        for regionBytes in [1 << 20, 1 << 16, 0] {
            let (outcome, reply) = IsolatedRead.run(regionBytes: regionBytes) { out in
                out.string("head")
                out.array(payload)
                out.bool(true)
            }
            XCTAssertEqual(outcome, .ok)
            var input = TransferReader(try XCTUnwrap(reply, "region \(regionBytes)"))
            XCTAssertEqual(input.string(), "head")
            XCTAssertEqual(input.array(of: Float.self), payload, "region \(regionBytes)")
            XCTAssertEqual(input.bool(), true)
            XCTAssertTrue(input.atEnd)
        }
        let (outcome, reply) = IsolatedRead.run(regionBytes: 4096) { _ in }
        XCTAssertEqual(outcome, .ok)
        XCTAssertEqual(try XCTUnwrap(reply).buffer.count, 0)
        // A failure still comes back as its message, whatever the region.
        XCTAssertEqual(IsolatedRead.run(regionBytes: 4096) { out in out.int(1); throw H5ModelError("x.h5: bad") }.outcome,
                       .failed("x.h5: bad"))
    }

    /// The writer spills to its bytes exactly when the region cannot take what comes next.
    func testWriterSpillsWhenTheRegionIsFull() {
        let region = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 16)
        defer { region.deallocate() }
        var out = TransferWriter(region: region)
        out.int(1)
        out.int(2)
        XCTAssertTrue(out.inRegion)
        XCTAssertEqual(out.count, 16)
        out.bool(true)
        XCTAssertFalse(out.inRegion)
        var input = TransferReader(out.bytes)
        XCTAssertEqual(input.int(), 1)
        XCTAssertEqual(input.int(), 2)
        XCTAssertEqual(input.bool(), true)
        XCTAssertTrue(input.atEnd)
    }

    /// A legacy model file is told from Keras 3's layout and read by one child; a file in Keras
    /// 3's layout gives nil, for its own reader.
    func testLegacyFileIsToldAndReadByOneChild() throws {
        let path = fixturesDirectory.appendingPathComponent("cases/k2_seed_effnetb0/model.h5").path
        let before = IsolatedRead.children
        let file = try XCTUnwrap(try KerasH5File.readUnlessKeras3Layout(path: path))
        XCTAssertEqual(IsolatedRead.children, before + 1)
        XCTAssertEqual(file, try withHDF5 { try KerasH5File.readInProcess(path: path) })
        let keras3 = fixturesDirectory.appendingPathComponent("cases/k3n_seed_mini/model.weights.h5").path
        XCTAssertNil(try KerasH5File.readUnlessKeras3Layout(path: keras3))
        var nilReply = TransferWriter()
        KerasH5File?.none.write(to: &nilReply)
        var input = TransferReader(nilReply.bytes)
        XCTAssertEqual(KerasH5File?(from: &input), .some(nil))
        XCTAssertTrue(input.atEnd)
    }
}
