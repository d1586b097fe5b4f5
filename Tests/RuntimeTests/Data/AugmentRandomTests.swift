import Foundation
import XCTest
import TestSupport
@testable import Runtime

/// Keras's `get_random_transform` distributions (ranges and moments, not numpy's stream), seeding,
/// and the speed of one augmentation at the seed's image size.
final class AugmentRandomTests: XCTestCase {
    func draws(_ config: AugmentConfig, height: Int = 100, width: Int = 50, count: Int = 20000) throws -> [TransformParameters] {
        let a = try ImageAugmenter(config)
        return (0..<count).map { a.randomParameters(height: height, width: width, seed: 7, epoch: 0, item: $0) }
    }

    func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(v.count) }
    func variance(_ v: [Double]) -> Double {
        let m = mean(v)
        return v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count)
    }

    /// U(a, b): mean (a+b)/2, variance (b-a)^2/12, every draw inside [a, b).
    func assertUniform(_ v: [Double], _ a: Double, _ b: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(v.allSatisfy { $0 >= a && $0 < b }, "\(what): a draw outside [\(a), \(b))", file: file, line: line)
        let width = b - a
        XCTAssertEqual(mean(v), (a + b) / 2, accuracy: 0.03 * width, what, file: file, line: line)
        XCTAssertEqual(variance(v), width * width / 12, accuracy: 0.05 * width * width / 12, what, file: file, line: line)
        XCTAssertLessThan(v.min()!, a + 0.01 * width, what, file: file, line: line)
        XCTAssertGreaterThan(v.max()!, b - 0.01 * width, what, file: file, line: line)
    }

    /// RGB images are resampled three channels at a time (a 4-lane vector per tap); each channel
    /// must come out bit for bit as the one-channel (scalar) path makes it, for every fill mode,
    /// flips and the seed's draws at 228x228 and on a small image whose last pixel is a tap.
    func testRGBResampleEqualsEachChannelAlone() throws {
        var rng = SplitMix64(seed: 11)
        for (h, w) in [(228, 228), (7, 5)] {
            let n = h * w
            let rgb = (0..<(n * 3)).map { _ in Float(rng.index(below: 256)) + Float(rng.nextUnit()) }
            for mode in FillMode.allCases {
                var config = AugmentConfig.seedExample
                config.fillMode = mode
                config.cval = 17
                let a = try ImageAugmenter(config)
                for item in 0..<12 {
                    let p = a.randomParameters(height: h, width: w, seed: 3, epoch: 0, item: item)
                    let out = a.apply(p, to: ImageArray(height: h, width: w, channels: 3, values: rgb)).values
                    for k in 0..<3 {
                        let plane = (0..<n).map { rgb[$0 * 3 + k] }
                        let alone = a.apply(p, to: ImageArray(height: h, width: w, channels: 1, values: plane)).values
                        let mine = (0..<n).map { out[$0 * 3 + k] }
                        XCTAssertEqual(mine.map(\.bitPattern), alone.map(\.bitPattern), "\(h)x\(w) \(mode) item \(item) channel \(k)")
                    }
                }
            }
        }
    }

    func testSeedConfigDistributions() throws {
        let p = try draws(.seedExample)
        assertUniform(p.map(\.theta), -40, 40, "theta")
        // tx comes from height_shift_range times the height (100), ty from width_shift_range times the width (50).
        assertUniform(p.map(\.tx), -20, 20, "tx")
        assertUniform(p.map(\.ty), -10, 10, "ty")
        assertUniform(p.map(\.shear), -0.2, 0.2, "shear (degrees)")
        assertUniform(p.map(\.zx), 0.5, 1.5, "zx")
        assertUniform(p.map(\.zy), 0.5, 1.5, "zy")
        // zx and zy are drawn independently.
        let zx = p.map(\.zx), zy = p.map(\.zy)
        let cov = mean(zip(zx, zy).map { ($0 - 1) * ($1 - 1) }) - (mean(zx) - 1) * (mean(zy) - 1)
        XCTAssertLessThan(abs(cov / (variance(zx) * variance(zy)).squareRoot()), 0.03)
        let flips = Double(p.filter(\.flipHorizontal).count) / Double(p.count)
        XCTAssertEqual(flips, 0.5, accuracy: 0.02)
        XCTAssertFalse(p.contains(where: \.flipVertical))
        XCTAssertTrue(p.allSatisfy { $0.brightness == nil && $0.channelShiftIntensity == nil })
    }

    func testOtherRangesAndForms() throws {
        var c = AugmentConfig()
        c.widthShiftRange = .uniform(7)          // >= 1: pixels, not a fraction
        c.heightShiftRange = .integer(3)         // choice(3) * +-1: -2...2
        c.zoomLower = 0.8
        c.zoomUpper = 1.1
        c.verticalFlip = true
        c.channelShiftRange = 30
        c.brightnessRange = 0.5...1.5
        let p = try draws(c)
        assertUniform(p.map(\.ty), -7, 7, "ty in pixels")
        assertUniform(p.map(\.zx), 0.8, 1.1, "zx")
        assertUniform(p.map { $0.channelShiftIntensity! }, -30, 30, "channel shift")
        assertUniform(p.map { $0.brightness! }, 0.5, 1.5, "brightness")
        XCTAssertEqual(Double(p.filter(\.flipVertical).count) / Double(p.count), 0.5, accuracy: 0.02)
        XCTAssertFalse(p.contains(where: \.flipHorizontal))
        // Integer form: P(0) = 1/3 (choice 0, either sign), P(+-1) = P(+-2) = 1/6.
        var counts: [Double: Int] = [:]
        for v in p.map(\.tx) { counts[v, default: 0] += 1 }
        XCTAssertEqual(Set(counts.keys), [-2, -1, 0, 1, 2])
        XCTAssertEqual(Double(counts[0]!) / Double(p.count), 1.0 / 3, accuracy: 0.015)
        for k in [-2.0, -1, 1, 2] { XCTAssertEqual(Double(counts[k]!) / Double(p.count), 1.0 / 6, accuracy: 0.015) }
        // A list of fractions: one value times a random sign, times the size.
        c = AugmentConfig()
        c.widthShiftRange = .values([0.1, 0.2])
        let q = try draws(c, width: 50)
        XCTAssertEqual(Set(q.map(\.ty)), [-10, -5, 5, 10])
        XCTAssertTrue(q.allSatisfy { $0.tx == 0 && $0.theta == 0 && $0.zx == 1 && !$0.hasAffine == ($0.ty == 0) })
    }

    func testIdentityConfigDrawsIdentity() throws {
        XCTAssertTrue(AugmentConfig().isIdentity)
        XCTAssertFalse(AugmentConfig.seedExample.isIdentity)
        let p = try draws(AugmentConfig(), count: 100)
        XCTAssertTrue(p.allSatisfy { $0 == TransformParameters() })
    }

    func testDrawsArePureFunctionsOfSeedEpochItem() throws {
        let a = try ImageAugmenter(.seedExample)
        let p = a.randomParameters(height: 228, width: 228, seed: 42, epoch: 3, item: 17)
        XCTAssertEqual(p, a.randomParameters(height: 228, width: 228, seed: 42, epoch: 3, item: 17))
        XCTAssertNotEqual(p, a.randomParameters(height: 228, width: 228, seed: 42, epoch: 3, item: 18))
        XCTAssertNotEqual(p, a.randomParameters(height: 228, width: 228, seed: 42, epoch: 4, item: 17))
        XCTAssertNotEqual(p, a.randomParameters(height: 228, width: 228, seed: 43, epoch: 3, item: 17))
        // Pinned: these numbers may only change together with a note that old runs no longer resume identically.
        var rng = SplitMix64(seed: 0)
        XCTAssertEqual(rng.next(), 0xE220_A839_7B1D_CDAF)  // SplitMix64's published first output for seed 0
    }

    func testParsesRAndPythonArguments() throws {
        let seed = try AugmentConfig.parse("""
            rotation_range = 40, width_shift_range = 0.2, height_shift_range = 0.2, shear_range = 0.2,
            zoom_range = 0.5, horizontal_flip = TRUE, fill_mode = "reflect"
            """)
        XCTAssertEqual(seed, .seedExample)
        let c = try AugmentConfig.parse("zoom_range=c(0.8, 1.2), brightness_range=[0.5,1.5], width_shift_range=2L, height_shift_range=(-1, 0, 1), vertical_flip=True, fill_mode=constant, cval=12.5, channel_shift_range=10")
        XCTAssertEqual([c.zoomLower, c.zoomUpper], [0.8, 1.2])
        XCTAssertEqual(c.brightnessRange, 0.5...1.5)
        XCTAssertEqual(c.widthShiftRange, .integer(2))
        XCTAssertEqual(c.heightShiftRange, .values([-1, 0, 1]))
        XCTAssertTrue(c.verticalFlip)
        XCTAssertEqual(c.fillMode, .constant)
        XCTAssertEqual(c.cval, 12.5)
        XCTAssertEqual(c.channelShiftRange, 10)
        XCTAssertTrue(try AugmentConfig.parse("").isIdentity)
        for (text, mention) in [("rescale = 0.5", "unknown argument 'rescale'"), ("fill_mode = mirror", "one of constant"),
                                ("horizontal_flip = maybe", "TRUE or FALSE"), ("zoom_range = [1]", "[lower, upper]"),
                                ("rotation_range", "name = value")] {
            XCTAssertThrowsError(try AugmentConfig.parse(text)) { XCTAssertTrue("\($0)".contains(mention), "\($0)") }
        }
    }

    func testRejectsBadRanges() {
        var c = AugmentConfig()
        c.zoomLower = 0
        XCTAssertThrowsError(try ImageAugmenter(c))
        c = AugmentConfig()
        c.rotationRange = -1
        XCTAssertThrowsError(try ImageAugmenter(c))
        c = AugmentConfig()
        c.widthShiftRange = .uniform(.nan)
        XCTAssertThrowsError(try ImageAugmenter(c))
    }
}

/// CPU time of the calling thread (wall time on 2 shared cores says little about the code).
func threadCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
