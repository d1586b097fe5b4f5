import CKernels
import Foundation
import XCTest
@testable import Runtime

/// The AVX-512 rows of the affine resampling (CKernels/affine_avx512.c) against the per-pixel
/// Swift loop they replace, which AugmentParityTests holds to Keras: the same float32 bits for
/// every pixel, on random images and transforms far past the edges (sample points many image
/// sizes out, so every branch of the reflect mapping runs), odd widths (a partial last group of
/// eight), flips, one and three channels, both fill modes they cover.
final class AugmentVectorTests: XCTestCase {
    func testVectorRowsEqualScalarLoopBitForBit() throws {
        guard ck_avx512_usable() != 0 else { throw XCTSkip("this CPU has no AVX-512: the vector rows never run here") }
        var rng = SplitMix64(seed: 15)
        let shapes = [(7, 5, 3), (13, 29, 3), (228, 228, 3), (31, 17, 1), (2, 2, 3), (2, 9, 1), (1, 9, 3), (40, 3, 3)]
        var rowsDone = 0, rowsTotal = 0, cases = 0
        for mode in [FillMode.reflect, .nearest] {
            var config = AugmentConfig()
            config.fillMode = mode
            let augmenter = try ImageAugmenter(config)
            for (h, w, c) in shapes {
                for round in 0..<12 {
                    let input = (0..<(h * w * c)).map { _ in Float(rng.uniform(0, 255)) }
                    var p = TransformParameters()
                    p.theta = rng.uniform(-180, 180)
                    // Small, ordinary and far-out shifts and zooms: round 0 keeps every point inside.
                    let reach = [0.0, 0.3, 1.5, 4, 40][round % 5]
                    p.tx = rng.uniform(-reach, reach) * Double(h)
                    p.ty = rng.uniform(-reach, reach) * Double(w)
                    p.shear = rng.uniform(-30, 30)
                    p.zx = rng.uniform(0.2, round % 3 == 0 ? 1.0 : 9.0)
                    p.zy = rng.uniform(0.2, round % 3 == 0 ? 1.0 : 9.0)
                    if round == 0 { (p.theta, p.tx, p.ty, p.shear, p.zx, p.zy) = (0, 0, 0, 0, 0.5, 0.5) }
                    p.flipHorizontal = round % 2 == 1
                    p.flipVertical = round % 4 == 2
                    let matrix = try XCTUnwrap(AffineMatrix.keras(p, height: h, width: w))
                    func run(_ avx512: Bool) -> [Float] {
                        var out = [Float](repeating: .nan, count: input.count)
                        KernelISA.with(avx512: avx512) {
                            input.withUnsafeBufferPointer { src in
                                out.withUnsafeMutableBufferPointer { dst in
                                    augmenter.apply(p, matrix: matrix, to: src, height: h, width: w, channels: c, into: dst)
                                }
                            }
                        }
                        return out
                    }
                    let vector = run(true), scalar = run(false)
                    let differing = zip(vector, scalar).filter { $0.bitPattern != $1.bitPattern }.count
                    XCTAssertEqual(differing, 0, "\(mode) \(h)x\(w)x\(c) round \(round): \(differing) values differ")
                    XCTAssertFalse(scalar.contains { $0.isNaN }, "every pixel written")
                    // How many rows the vector code took itself (a declined row is the Swift loop's).
                    let coefficients = [matrix.m00, matrix.m01, matrix.m10, matrix.m11, matrix.offset0, matrix.offset1]
                    var scratch = [Float](repeating: 0, count: w * c)
                    // Called directly too (so also under DISTILLCTL_NO_AVX512, where `apply` keeps to
                    // the Swift loop): each row it takes equals the loop's.
                    for r in 0..<h {
                        rowsTotal += 1
                        let done = ck_affine_row_avx512(input, h, w, c, coefficients, mode == .reflect ? 1 : 0, r,
                                                        p.flipHorizontal ? 1 : 0, &scratch)
                        guard done != 0 else { continue }
                        rowsDone += 1
                        let outRow = p.flipVertical ? h - 1 - r : r
                        XCTAssertEqual(scratch.map(\.bitPattern), scalar[(outRow * w * c)..<((outRow + 1) * w * c)].map(\.bitPattern),
                                       "\(mode) \(h)x\(w)x\(c) round \(round) row \(r)")
                    }
                    cases += 1
                }
            }
        }
        XCTAssertEqual(cases, 2 * 8 * 12)
        // Only the shapes below 2 rows decline: the vector rows cover every other case here.
        let tooSmall = 2 * 12 * 1
        XCTAssertEqual(rowsDone, rowsTotal - tooSmall, "rows the vector code declined")
    }
}
