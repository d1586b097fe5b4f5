import Foundation
import TestSupport
import XCTest
import ZIPFoundation
@testable import H5Model

/// The `.keras` zip archive and the Keras 3 weights layout, against the archives Keras 3 wrote
/// (fixtures/cases/k3n_*/model.keras, stored entries).
final class KerasArchiveTests: XCTestCase {
    let fixture = fixturesDirectory.appendingPathComponent("cases/k3n_seed_mini/model.keras").path

    /// The archive's entries as Keras wrote them, and the weights equal to the standalone
    /// `.weights.h5` Keras saved from the same model.
    func testReadsTheArchiveKeras3Wrote() throws {
        let archive = try KerasArchive.read(path: fixture)
        XCTAssertEqual(archive.kerasVersion, "3.15.1")
        XCTAssertTrue(archive.config.hasPrefix("{\"module\": \"keras\", \"class_name\": \"Sequential\""), archive.config.prefix(80) + "")
        let standalone = try Keras3Weights.read(path: fixturesDirectory.appendingPathComponent("cases/k3n_seed_mini/model.weights.h5").path)
        XCTAssertEqual(archive.weights, standalone)
        XCTAssertGreaterThan(archive.weights.entries.filter { !$0.variables.isEmpty }.count, 25)
    }

    /// Deflated entries (zip tools, or Python's zipfile with ZIP_DEFLATED) read like stored ones.
    func testDeflatedEntriesReadLikeStoredOnes() throws {
        let folder = try TemporaryFolder()
        do {   // the archive is flushed and closed when it goes out of scope
            let source = try Archive(url: URL(fileURLWithPath: fixture), accessMode: .read)
            let deflated = try Archive(url: URL(fileURLWithPath: folder.path("deflated.keras")), accessMode: .create)
            for entry in source {
                var data = Data()
                _ = try source.extract(entry) { data.append($0) }
                try deflated.addEntry(with: entry.path, type: .file, uncompressedSize: Int64(data.count),
                                      compressionMethod: .deflate) { position, size in
                    data.subdata(in: Int(position)..<Int(position) + size)
                }
            }
        }
        let written = try Archive(url: URL(fileURLWithPath: folder.path("deflated.keras")), accessMode: .read)
        XCTAssertEqual(written.map(\.path), ["metadata.json", "config.json", "model.weights.h5"])
        // metadata.json (64 bytes) does not shrink; the other two must have been deflated.
        XCTAssertTrue(written.dropFirst().allSatisfy { $0.compressedSize < $0.uncompressedSize / 2 }, "entries should be compressed")
        let a = try KerasArchive.read(path: fixture), b = try KerasArchive.read(path: folder.path("deflated.keras"))
        XCTAssertEqual(a.config, b.config)
        XCTAssertEqual(a.metadata, b.metadata)
        XCTAssertEqual(a.weights, b.weights)
        XCTAssertEqual(folder.contents, ["deflated.keras"], "no extracted weights left behind")
    }

    /// Written archives: stored entries in Keras's order, read back equal; atomic.
    func testWriteThenReadIsIdentical() throws {
        let folder = try TemporaryFolder()
        let original = try KerasArchive.read(path: fixture)
        try original.write(to: folder.path("out.keras"))
        let back = try KerasArchive.read(path: folder.path("out.keras"))
        XCTAssertEqual(back.config, original.config)
        XCTAssertEqual(back.metadata, original.metadata)
        XCTAssertEqual(back.weights, original.weights)
        let entries = Array(try Archive(url: URL(fileURLWithPath: folder.path("out.keras")), accessMode: .read))
        XCTAssertEqual(entries.map(\.path), ["metadata.json", "config.json", "model.weights.h5"])
        XCTAssertTrue(entries.allSatisfy { $0.compressedSize == $0.uncompressedSize }, "Keras stores entries uncompressed")
        XCTAssertEqual(folder.contents, ["out.keras"])
        XCTAssertTrue(KerasArchive.isZip(path: folder.path("out.keras")))
        XCTAssertFalse(KerasArchive.isZip(path: fixturesDirectory.appendingPathComponent("cases/k3n_seed_mini/model.weights.h5").path))
    }

    /// A weights layout group holding something other than numbered variables is refused by name.
    func testNonNumberedVariableIsRefused() throws {
        let folder = try TemporaryFolder()
        try makeHDF5(folder.path("w.weights.h5")) { root in
            try root.writeDataset("layers/dense/vars/0", shape: [2], values: .float32([1, 2]))
            try root.writeDataset("layers/dense/vars/kernel", shape: [2], values: .float32([1, 2]))
        }
        XCTAssertEqual(errorMessage { _ = try Keras3Weights.read(path: folder.path("w.weights.h5")) },
                       "\(folder.path("w.weights.h5")): '/layers/dense/vars/kernel' is not a numbered variable "
                       + "(Keras 3 names a layer's variables 0, 1, ...)")
        try makeHDF5(folder.path("gap.weights.h5")) { root in
            try root.writeDataset("layers/dense/vars/0", shape: [2], values: .float32([1, 2]))
            try root.writeDataset("layers/dense/vars/2", shape: [2], values: .float32([1, 2]))
        }
        XCTAssertEqual(errorMessage { _ = try Keras3Weights.read(path: folder.path("gap.weights.h5")) },
                       "\(folder.path("gap.weights.h5")): '/layers/dense/vars' has 2 variables but no '1'")
    }
}
