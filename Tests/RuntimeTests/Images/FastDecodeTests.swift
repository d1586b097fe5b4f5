// `--fast-decode`: a JPEG at least twice the target size is decoded with libjpeg-turbo's DCT
// scaling before Keras's resize. PIL's `draft` chooses and applies the same scaling, so the
// expected arrays (fixtures/make_fast_decode_fixtures.py) are keras.utils.load_img's steps after a
// draft; where the photo is less than twice the target, fast decoding is Keras's own decode.
import Foundation
import TestSupport
import XCTest
@testable import Runtime

final class FastDecodeTests: XCTestCase {
    let folder = fixturesDirectory.appendingPathComponent("images/fast_decode")

    func cases() throws -> [[String: Any]] {
        let data = try Data(contentsOf: folder.appendingPathComponent("cases.json"))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try XCTUnwrap(root["cases"] as? [[String: Any]])
    }

    func testFastDecodeMatchesPILsDraftThenKerasResize() throws {
        var scaled = 0
        for c in try cases() {
            let name = c["case"] as! String, target = c["target"] as! [Int]
            let channels = (c["color_mode"] as! String) == "rgb" ? 3 : 1
            let path = folder.appendingPathComponent(c["file"] as! String).path
            let want = try NpyArray.read(path: folder.appendingPathComponent(name + ".npy").path)
            XCTAssertEqual(want.shape, [target[0], target[1], channels], name)
            var got = [Float](repeating: -1, count: want.values.count)
            try got.withUnsafeMutableBufferPointer {
                try loadImage(path: path, channels: channels, targetHeight: target[0], targetWidth: target[1], fastDecode: true, into: $0)
            }
            let worst = zip(got, want.values).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertEqual(worst, 0, "\(name): fast decode differs from PIL's draft + load_img by \(worst)")
            // The decoded size is the one PIL's draft gave.
            let size = c["decoded_size"] as! [Int]
            let decoded = try Image(contentsOfFile: path, decodeAtLeast: (target[1], target[0]))
            XCTAssertEqual([decoded.width, decoded.height], size, name)
            let full = try Image(contentsOfFile: path)
            if decoded.width != full.width { scaled += 1 }
            // Not scaled: exactly Keras's load_img (the fixture's difference to it is 0 there).
            if decoded.width == full.width {
                XCTAssertEqual(c["max_abs_difference_to_load_img"] as? Double, 0, name)
                let plain = try loadImage(path: path, channels: channels, targetHeight: target[0], targetWidth: target[1])
                XCTAssertEqual(plain.values, got, name)
            }
        }
        XCTAssertGreaterThanOrEqual(scaled, 20, "most cases exercise the DCT scaling")
    }

    /// The training loader decodes the same way, and only when asked.
    func testLoaderUsesFastDecodeOnlyWhenAsked() throws {
        let c = try XCTUnwrap(try cases().first { $0["case"] as? String == "photo420_rgb_60x80" })
        let path = folder.appendingPathComponent("photo420.jpg").path
        let csv = FileManager.default.temporaryDirectory.appendingPathComponent("fast-\(UUID().uuidString).csv")
        try "image_id,label\n\(path),0\n".write(to: csv, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: csv) }
        let dataset = try ImageDataset.load(csv.path)
        let want = try NpyArray.read(path: folder.appendingPathComponent("photo420_rgb_60x80.npy").path)
        XCTAssertEqual(c["target"] as? [Int], [60, 80])
        for fast in [false, true] {
            var options = LoaderOptions(height: 60, width: 80, channels: 3, batchSize: 1, shuffle: false)
            options.fastDecode = fast
            let batch = try XCTUnwrap(try BatchLoader(dataset: dataset, options: options).epoch(0).next())
            let keras = try loadImage(path: path, channels: 3, targetHeight: 60, targetWidth: 80)
            XCTAssertEqual(batch.images.data, fast ? want.values : keras.values, "fastDecode \(fast)")
        }
    }
}
