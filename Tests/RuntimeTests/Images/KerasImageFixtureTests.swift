import Graph
import Foundation
import TestSupport
import XCTest

@testable import Runtime

/// Every array `keras.utils.load_img` + `img_to_array` returned in fixtures/make_image_fixtures.py
/// (fixtures/images/expected.json + expected.bin), compared with `loadImage` at tolerance 0.
final class KerasImageFixtureTests: XCTestCase {
    struct Case: Decodable, CustomStringConvertible {
        let file: String
        let pil_mode: String
        let color_mode: String
        let target: [Int]?
        let interpolation: String
        let shape: [Int]
        let dtype: String
        let offset: Int
        let count: Int

        var description: String {
            "\(file) (\(pil_mode)) \(color_mode) target \(target.map { "\($0)" } ?? "native") \(interpolation)"
        }
    }

    struct Manifest: Decodable {
        let versions: [String: String]
        let cases: [Case]
    }

    static let directory = fixturesDirectory.appendingPathComponent("images")
    static let manifest: Manifest = {
        let data = try! Data(contentsOf: directory.appendingPathComponent("expected.json"))
        return try! JSONDecoder().decode(Manifest.self, from: data)
    }()
    static let blob: [UInt8] = Array(try! Data(contentsOf: directory.appendingPathComponent("expected.bin")))

    static func expected(_ c: Case) -> [Float] {
        if c.dtype == "u1" { return blob[c.offset..<(c.offset + c.count)].map(Float.init) }
        return (0..<c.count).map { i in
            Float(UInt16(blob[c.offset + 2 * i]) | UInt16(blob[c.offset + 2 * i + 1]) << 8)
        }
    }

    static func load(_ c: Case) throws -> ImageArray {
        try loadImage(path: directory.appendingPathComponent(c.file).path,
                      channels: c.color_mode == "rgb" ? 3 : 1,
                      targetHeight: c.target?[0], targetWidth: c.target?[1],
                      interpolation: Interpolation(rawValue: c.interpolation)!)
    }

    /// Compares the cases selected; returns how many values differed in all.
    @discardableResult
    func check(_ select: (Case) -> Bool, tolerance: Double = 0, file: StaticString = #filePath,
               line: UInt = #line) throws -> Int {
        let cases = Self.manifest.cases.filter(select)
        XCTAssertFalse(cases.isEmpty, "no fixture cases selected", file: file, line: line)
        var differing = 0
        for c in cases {
            let actual = try Self.load(c)
            XCTAssertEqual([actual.height, actual.width, actual.channels], c.shape, "\(c)", file: file, line: line)
            let expected = Self.expected(c)
            assertClose(actual.values, expected, tolerance: tolerance, "\(c)", file: file, line: line)
            differing += zip(actual.values, expected).filter { $0 != $1 }.count
        }
        return differing
    }

    func testJPEGDecodeMatchesPILAtNativeSize() throws {
        try check { $0.file.hasSuffix(".jpg") && $0.target == nil }
    }

    func testJPEGResizedMatchesKeras() throws {
        try check { $0.file.hasSuffix(".jpg") && $0.target != nil }
    }

    func testPNGMatchesKeras() throws {
        try check { $0.file.hasSuffix(".png") && $0.file != "rgba16.png" }
    }

    func testBilinearMatchesKeras() throws {
        try check { $0.interpolation == "bilinear" }
    }

    /// 16-bit RGBA: libpng's simplified API cannot give PIL's high bytes for translucent pixels
    /// (see PNGDecoder.rgba16); they may be 1 off. Opaque ones are exact.
    func testRGBA16WithinOneOfKeras() throws {
        let differing = try check({ $0.file == "rgba16.png" }, tolerance: 1)
        print("rgba16.png: \(differing) values differ by 1 from Keras (translucent pixels)")
        let native = Self.manifest.cases.first { $0.file == "rgba16.png" && $0.target == nil && $0.color_mode == "rgb" }!
        let actual = try Self.load(native).values, expected = Self.expected(native)
        // Columns 0..<6 of the fixture are opaque.
        for y in 0..<native.shape[0] {
            for x in 0..<6 {
                let i = (y * native.shape[1] + x) * 3
                XCTAssertEqual(Array(actual[i..<(i + 3)]), Array(expected[i..<(i + 3)]), "opaque pixel (\(x), \(y))")
            }
        }
    }

    /// The decoded layout is PIL's mode for the file, except where the difference cannot show
    /// after Keras's conversion: palette ("P") is expanded to RGB, 1-bit ("1") to L (0/255).
    func testDecodedModeIsPILs() throws {
        let expected: [String: Image.Mode] = ["P": .rgb, "1": .l, "L": .l, "LA": .la, "RGB": .rgb,
                                              "RGBA": .rgba, "CMYK": .cmyk, "I;16": .i16]
        for (file, pilMode) in Set(Self.manifest.cases.map { [$0.file, $0.pil_mode] }).map({ ($0[0], $0[1]) }) {
            let image = try Image(contentsOfFile: Self.directory.appendingPathComponent(file).path)
            XCTAssertEqual(image.mode, expected[pilMode], "\(file) is \(pilMode) in PIL")
        }
    }

    func testFixturesCoverEveryLayout() {
        let modes = Set(Self.manifest.cases.map(\.pil_mode))
        XCTAssertEqual(modes, ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "CMYK"])
        let kinds = Set(Self.manifest.cases.map { "\($0.color_mode) \($0.interpolation) \($0.target == nil)" })
        XCTAssertEqual(kinds.count, 2 * 3)
    }

    /// PIL decodes a JPEG with junk bytes before a header marker (a libjpeg warning, "3
    /// extraneous bytes before marker 0xdb"), and so must we. (marker_in_scan.jpg, with a
    /// "premature end of data segment" warning, is among the fixture cases.)
    func testJPEGWarningIsNotAnError() throws {
        let clean = try loadImage(path: Self.directory.appendingPathComponent("rgb420.jpg").path)
        let warned = try loadImage(path: Self.directory.appendingPathComponent("junk_before_marker.jpg").path)
        XCTAssertEqual(clean, warned)
    }

    /// Keras keeps a 16-bit grey PNG as "I;16" in grayscale mode: values above 255 reach the model.
    func testGray16GrayscaleKeepsSixteenBits() throws {
        let array = try loadImage(path: Self.directory.appendingPathComponent("gray16.png").path, channels: 1)
        XCTAssertEqual(Array(array.values.prefix(5)), [0, 1, 255, 256, 65535])
        let rgb = try loadImage(path: Self.directory.appendingPathComponent("gray16.png").path, channels: 3)
        XCTAssertEqual(Array(rgb.values.prefix(15)), [0, 0, 0, 1, 1, 1, 255, 255, 255, 255, 255, 255, 255, 255, 255])
    }

    func testBatchBufferMatchesArrays() throws {
        let files = ["rgb420.jpg", "palette.png", "gray.jpg"]
        let (h, w, c) = (31, 17, 3)
        var batch = [Float](repeating: -1, count: files.count * h * w * c)
        try batch.withUnsafeMutableBufferPointer { buffer in
            for (i, name) in files.enumerated() {
                let slot = UnsafeMutableBufferPointer(rebasing: buffer[(i * h * w * c)..<((i + 1) * h * w * c)])
                try loadImage(path: Self.directory.appendingPathComponent(name).path, channels: c,
                              targetHeight: h, targetWidth: w, into: slot)
            }
        }
        for (i, name) in files.enumerated() {
            let single = try loadImage(path: Self.directory.appendingPathComponent(name).path, channels: c,
                                       targetHeight: h, targetWidth: w)
            XCTAssertEqual(Array(batch[(i * h * w * c)..<((i + 1) * h * w * c)]), single.values, name)
        }
    }

    func testFromData() throws {
        let path = Self.directory.appendingPathComponent("la.png").path
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(try loadImage(data: data, name: "la.png", channels: 1, targetHeight: 5, targetWidth: 40),
                       try loadImage(path: path, channels: 1, targetHeight: 5, targetWidth: 40))
    }

    /// A JPEG decoded keeping only the pixels the nearest resize picks
    /// (`JPEGDecoder.decodeResizedNearest`, what the pre-flight check and the batches use) is the
    /// full decode then the resize, byte for byte: every fixture JPEG, both colour modes, sizes
    /// that shrink, grow, keep one axis or are odd; and a file the full decode refuses is refused
    /// with the same reason. The same with the fast decode's DCT scaling (`--fast-decode`).
    func testPickedDecodeEqualsFullDecodeThenResize() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path).filter { $0.hasSuffix(".jpg") }.sorted()
        XCTAssertGreaterThan(files.count, 8)
        var picked = 0, scaledDiffer = 0
        for name in files {
            let path = Self.directory.appendingPathComponent(name).path
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            // Keras's decode, and the fast decode's DCT scaling (the small targets scale these photos).
            for channels in [3, 1] {
                for (h, w) in [(5, 7), (16, 16), (31, 17), (64, 48), (200, 300), (1, 1)] {
                    for atLeast in [nil, (width: w, height: h)] {
                        let what = "\(name) channels \(channels) \(h)x\(w) \(atLeast == nil ? "keras" : "fast")"
                        let full = Result { try kerasImage(Image(contentsOfFile: path, decodeAtLeast: atLeast), name: path,
                                                           channels: channels, targetHeight: h, targetWidth: w, interpolation: .nearest) }
                        let fast = Result { try kerasImage(contentsOfFile: path, channels: channels, targetHeight: h, targetWidth: w,
                                                           interpolation: .nearest, decodeAtLeast: atLeast) }
                        switch (full, fast) {
                        case (.success(let a), .success(let b)):
                            XCTAssertEqual(a, b, what)
                        case (.failure(let a as ImageError), .failure(let b as ImageError)):
                            XCTAssertEqual(a.reason, b.reason, what)
                            XCTAssertEqual(a.file, b.file)
                        default:
                            XCTFail("\(what): \(full) against \(fast)")
                        }
                        let taken = try? data.withUnsafeBytes {
                            try JPEGDecoder.decodeResizedNearest($0, channels: channels, width: w, height: h, atLeast: atLeast)
                        }
                        if taken?.pixels.isEmpty == false { picked += 1 }
                        if atLeast != nil, taken?.pixels.isEmpty == false, let a = try? full.get(),
                           let keras = try? kerasImage(contentsOfFile: path, channels: channels, targetHeight: h, targetWidth: w,
                                                       interpolation: .nearest), a != keras {
                            scaledDiffer += 1
                        }
                    }
                }
            }
        }
        // rgb420, rgb422, progressive, gray (...) take the picked decode at every size but their own.
        XCTAssertGreaterThan(picked, 60)
        // The fast decode's scaling gives other pixels than Keras's decode for some of them.
        XCTAssertGreaterThan(scaledDiffer, 5)
    }
}
