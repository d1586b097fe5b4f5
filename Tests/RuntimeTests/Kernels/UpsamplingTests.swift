import Graph
import XCTest
import Foundation
import TestSupport
@testable import Runtime

final class UpsamplingTests: XCTestCase {
    func run(_ x: [Float], _ n: Int, _ h: Int, _ w: Int, _ c: Int, _ sh: Int, _ sw: Int,
             _ mode: Interpolation) -> [Float] {
        var y = [Float](repeating: .nan, count: n * h * sh * w * sw * c)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            upsampling2d(input: xp.baseAddress!, batch: n, height: h, width: w, channels: c, sizeH: sh, sizeW: sw,
                         interpolation: mode, output: yp.baseAddress!)
        }}
        return y
    }

    func testNearestRepeats() {
        // Keras's own docstring example: (2, 2, 1, 3) with size (1, 2)
        let x: [Float] = (0..<12).map(Float.init)
        let y = run(x, 2, 2, 1, 3, 1, 2, .nearest)
        XCTAssertEqual(y, [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 6, 7, 8, 9, 10, 11, 9, 10, 11])
    }

    /// tf.image.resize([[1, 2], [3, 4]], [4, 4], "bilinear") with half-pixel centres.
    func testBilinearMatchesTensorFlowOnKnownCase() {
        let y = run([1, 2, 3, 4], 1, 2, 2, 1, 2, 2, .bilinear)
        let want: [Double] = [1.0, 1.25, 1.75, 2.0,
                              1.5, 1.75, 2.25, 2.5,
                              2.5, 2.75, 3.25, 3.5,
                              3.0, 3.25, 3.75, 4.0]
        assertClose(y, want, tolerance: 1e-6)
    }

    /// Half-pixel bilinear in Double: sample point ((i + 0.5) / s - 0.5), clamped to the image,
    /// weights from the distance to the two neighbours.
    func testBilinearMatchesReference() {
        var rng = SeededRandom(21)
        for (n, h, w, c, sh, sw) in [(2, 3, 5, 13, 2, 3), (1, 4, 4, 8, 3, 3), (1, 1, 3, 2, 2, 2)] {
            let x = rng.floats(n * h * w * c)
            let y = run(x, n, h, w, c, sh, sw, .bilinear)
            func axis(_ i: Int, _ size: Int, _ s: Int) -> (Int, Int, Double) {
                let p = min(max((Double(i) + 0.5) / Double(s) - 0.5, 0), Double(size - 1))
                let lo = Int(p.rounded(.down))
                return (lo, min(lo + 1, size - 1), p - Double(lo))
            }
            var want = [Double]()
            for b in 0..<n { for oy in 0..<(h * sh) { for ox in 0..<(w * sw) { for k in 0..<c {
                let (y0, y1, fy) = axis(oy, h, sh), (x0, x1, fx) = axis(ox, w, sw)
                func v(_ yy: Int, _ xx: Int) -> Double { Double(x[((b * h + yy) * w + xx) * c + k]) }
                want.append((1 - fy) * ((1 - fx) * v(y0, x0) + fx * v(y0, x1)) + fy * ((1 - fx) * v(y1, x0) + fx * v(y1, x1)))
            }}}}
            assertClose(y, want, tolerance: 1e-6, "\(n)x\(h)x\(w)x\(c) size \(sh)x\(sw)")
            // nearest, same sizes
            let yn = run(x, n, h, w, c, sh, sw, .nearest)
            var wantN = [Double]()
            for b in 0..<n { for oy in 0..<(h * sh) { for ox in 0..<(w * sw) { for k in 0..<c {
                wantN.append(Double(x[((b * h + oy / sh) * w + ox / sw) * c + k]))
            }}}}
            assertClose(yn, wantN, tolerance: 0, "nearest")
        }
    }
}
