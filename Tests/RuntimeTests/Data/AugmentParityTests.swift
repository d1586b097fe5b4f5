import Foundation
import XCTest
import TestSupport
@testable import Runtime

/// Keras parity for `ImageAugmenter.apply`: every case of fixtures/augment/cases.json (made by
/// fixtures/make_augment_fixtures.py with tf-keras 2.21 / scipy 1.17.1 / Pillow 13) is Keras's
/// `ImageDataGenerator(fill_mode, cval).apply_transform(x, params)` with fixed parameters.
///
/// Tolerance: 1e-4 on 0...255 values. Outputs are the same doubles rounded to float32 when the
/// matrix is Keras's own, so the expected difference is 0; building the matrix ourselves (cos,
/// sin and 3x3 products in a possibly different last bit) may move a sample point by ~1e-15.
final class AugmentParityTests: XCTestCase {
    struct Case {
        var name: String
        var shape: [Int]
        var fillMode: FillMode
        var cval: Double
        var params: TransformParameters
        var matrix: AffineMatrix?
        var input: NpyArray
        var output: NpyArray
    }

    static let directory = fixturesDirectory.appendingPathComponent("augment")

    static func loadCases() throws -> [Case] {
        let data = try Data(contentsOf: directory.appendingPathComponent("cases.json"))
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let entries = try XCTUnwrap(root["cases"] as? [[String: Any]])
        return try entries.map { e in
            let name = try XCTUnwrap(e["name"] as? String)
            let raw = try XCTUnwrap(e["params"] as? [String: Any])
            func number(_ key: String) -> Double? { (raw[key] as? NSNumber)?.doubleValue }
            func flag(_ key: String) -> Bool { (raw[key] as? NSNumber)?.boolValue ?? false }
            var p = TransformParameters()
            p.theta = number("theta") ?? 0
            p.tx = number("tx") ?? 0
            p.ty = number("ty") ?? 0
            p.shear = number("shear") ?? 0
            p.zx = number("zx") ?? 1
            p.zy = number("zy") ?? 1
            p.flipHorizontal = flag("flip_horizontal")
            p.flipVertical = flag("flip_vertical")
            p.channelShiftIntensity = number("channel_shift_intensity")
            p.brightness = number("brightness")
            var matrix: AffineMatrix? = nil
            if let m = e["matrix"] as? [[Double]], let o = e["offset"] as? [Double] {
                matrix = AffineMatrix(m00: m[0][0], m01: m[0][1], m10: m[1][0], m11: m[1][1],
                                      offset0: o[0], offset1: o[1])
            }
            return Case(name: name, shape: try XCTUnwrap(e["shape"] as? [Int]),
                        fillMode: try XCTUnwrap(FillMode(rawValue: try XCTUnwrap(e["fill_mode"] as? String))),
                        cval: try XCTUnwrap((e["cval"] as? NSNumber)?.doubleValue), params: p, matrix: matrix,
                        input: try NpyArray.read(path: directory.appendingPathComponent(name + ".in.npy").path),
                        output: try NpyArray.read(path: directory.appendingPathComponent(name + ".out.npy").path))
        }
    }

    func augmenter(_ c: Case) throws -> ImageAugmenter {
        var config = AugmentConfig()
        config.fillMode = c.fillMode
        config.cval = c.cval
        return try ImageAugmenter(config)
    }

    func run(_ c: Case, matrix: AffineMatrix?) throws -> [Float] {
        let a = try augmenter(c)
        var out = [Float](repeating: .nan, count: c.output.values.count)
        c.input.values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                a.apply(c.params, matrix: matrix, to: src, height: c.shape[0], width: c.shape[1],
                        channels: c.shape[2], into: dst)
            }
        }
        return out
    }

    func testCasesCoverEveryFillMode() throws {
        let cases = try Self.loadCases()
        XCTAssertGreaterThanOrEqual(cases.count, 60)
        for mode in FillMode.allCases {
            XCTAssertGreaterThanOrEqual(cases.filter { $0.fillMode == mode && $0.matrix != nil }.count, 10, "\(mode)")
        }
        for c in cases {
            XCTAssertEqual(c.input.shape, c.shape, c.name)
            XCTAssertEqual(c.output.shape, c.shape, c.name)
            XCTAssertEqual(c.matrix != nil, c.params.hasAffine, c.name)
            // Every case changes its image, so a do-nothing apply cannot pass.
            XCTAssertNotEqual(c.input.values, c.output.values, c.name)
        }
    }

    /// Our matrix construction against the doubles Keras passed to scipy.
    func testMatrixMatchesKeras() throws {
        for c in try Self.loadCases() {
            let ours = AffineMatrix.keras(c.params, height: c.shape[0], width: c.shape[1])
            guard let k = c.matrix else {
                XCTAssertNil(ours, c.name)
                continue
            }
            let m = try XCTUnwrap(ours, c.name)
            assertClose([m.m00, m.m01, m.m10, m.m11, m.offset0, m.offset1],
                        [k.m00, k.m01, k.m10, k.m11, k.offset0, k.offset1], tolerance: 1e-12, c.name)
        }
    }

    /// Resampling, flips, channel shift and brightness with Keras's own matrix: scipy's exact sums.
    func testApplyWithKerasMatrix() throws {
        var worst: [String: Double] = [:]
        for c in try Self.loadCases() {
            let out = try run(c, matrix: c.matrix)
            let d = assertClose(out, c.output.values, tolerance: 1e-4, c.name)
            worst[c.fillMode.rawValue] = max(worst[c.fillMode.rawValue] ?? 0, d)
        }
        print("augment parity (Keras's matrix), worst |diff| per fill mode: \(worst.sorted { $0.key < $1.key })")
    }

    /// End to end: parameters in, our matrix, our resampling.
    func testApplyEndToEnd() throws {
        var worst: [String: Double] = [:]
        for c in try Self.loadCases() {
            let a = try augmenter(c)
            let image = ImageArray(height: c.shape[0], width: c.shape[1], channels: c.shape[2], values: c.input.values)
            let out = a.apply(c.params, to: image)
            let d = assertClose(out.values, c.output.values, tolerance: 1e-4, c.name)
            worst[c.fillMode.rawValue] = max(worst[c.fillMode.rawValue] ?? 0, d)
        }
        print("augment parity (end to end), worst |diff| per fill mode: \(worst.sorted { $0.key < $1.key })")
    }
}
