import Foundation
import TestSupport
import XCTest

@testable import Runtime

/// Broken, truncated and foreign files give one-line errors naming the file and the decoder's
/// reason. fixtures/make_image_fixtures.py checks that Keras fails on each of these files too.
final class ImageErrorTests: XCTestCase {
    let directory = fixturesDirectory.appendingPathComponent("images")

    func assertLoadFails(_ name: String, reason: String, file: StaticString = #filePath, line: UInt = #line) {
        let path = directory.appendingPathComponent(name).path
        XCTAssertThrowsError(try loadImage(path: path), name, file: file, line: line) { error in
            guard let error = error as? ImageError else {
                return XCTFail("\(name): \(type(of: error)) is not an ImageError", file: file, line: line)
            }
            XCTAssertEqual(error.file, path, file: file, line: line)
            let text = "\(error)"
            XCTAssertTrue(text.contains(path), "\(text) does not name the file", file: file, line: line)
            XCTAssertTrue(text.contains(reason), "\(text) does not say '\(reason)'", file: file, line: line)
            XCTAssertFalse(text.contains("\n"), "\(text) is not one line", file: file, line: line)
            XCTAssertEqual(error.localizedDescription, text, file: file, line: line)
        }
    }

    func testTruncatedJPEG() {
        assertLoadFails("truncated.jpg", reason: "JPEG decoder: Premature end of JPEG file")
        assertLoadFails("truncated_header.jpg", reason: "JPEG decoder: Premature end of JPEG file")
    }

    func testCorruptJPEG() {
        assertLoadFails("corrupt.jpg", reason: "JPEG decoder: Bogus Huffman table definition")
    }

    func testTruncatedPNG() {
        assertLoadFails("truncated.png", reason: "PNG: truncated file (chunk 'IDAT' ends past the end of the file)")
    }

    func testCorruptPNG() {
        // zlib's message for the flipped byte, e.g. "IDAT: invalid literal/lengths set"
        assertLoadFails("corrupt.png", reason: "PNG decoder: IDAT: ")
    }

    func testBadAncillaryCRCBeforeImageData() {
        assertLoadFails("bad_crc_text.png", reason: "PNG: bad CRC in 'tEXt' chunk")
    }

    func testUnknownAndEmptyFiles() {
        assertLoadFails("not_an_image.png", reason: "unsupported image format (first bytes 74 68 69 73")
        assertLoadFails("small.gif", reason: "unsupported image format (looks like GIF)")
        assertLoadFails("empty.jpg", reason: "empty file")
    }

    func testMissingFileAndDirectory() {
        assertLoadFails("no_such_image.jpg", reason: "no such file")
        XCTAssertThrowsError(try loadImage(path: directory.path)) { error in
            XCTAssertEqual((error as? ImageError)?.reason, "is a directory")
        }
    }

    func testTruncatedInEveryPlaceNeverCrashes() throws {
        // Cut a JPEG and a PNG at every length: each must decode or throw, never trap.
        for name in ["rgb444_progressive.jpg", "rgba.png"] {
            let data = try Data(contentsOf: directory.appendingPathComponent(name))
            var failures = 0
            for n in 0..<data.count {
                do { _ = try Image(data: data.prefix(n), name: name) } catch is ImageError { failures += 1 }
            }
            XCTAssertGreaterThan(failures, data.count * 9 / 10, name)
        }
    }

    func testBadArguments() throws {
        let path = directory.appendingPathComponent("rgb.png").path
        XCTAssertThrowsError(try loadImage(path: path, channels: 2)) { error in
            XCTAssertEqual((error as? ImageError)?.reason, "channels must be 1 (grayscale) or 3 (rgb), got 2")
        }
        XCTAssertThrowsError(try loadImage(path: path, targetHeight: 4)) { error in
            XCTAssertEqual((error as? ImageError)?.reason, "targetHeight and targetWidth must be given together")
        }
        var small = [Float](repeating: 0, count: 5)
        try small.withUnsafeMutableBufferPointer { buffer in
            XCTAssertThrowsError(try loadImage(path: path, channels: 1, targetHeight: 2, targetWidth: 3, into: buffer))
        }
    }
}
