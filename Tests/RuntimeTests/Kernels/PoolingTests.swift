import Graph
import XCTest
import TestSupport
@testable import Runtime

final class PoolingTests: XCTestCase {
    /// Naive pooling: max over the real elements of the window; average divided by their count.
    func reference(_ kind: PoolKind, _ x: [Float], _ g: Conv2DGeometry) -> [Double] {
        var out = [Double](repeating: 0, count: g.outputCount)
        for n in 0..<g.batch { for oy in 0..<g.outH { for ox in 0..<g.outW { for c in 0..<g.inC {
            var vals: [Double] = []
            for ky in 0..<g.kernelH { for kx in 0..<g.kernelW {
                let iy = oy * g.strideH - g.padTop + ky, ix = ox * g.strideW - g.padLeft + kx
                if iy >= 0 && iy < g.inH && ix >= 0 && ix < g.inW {
                    vals.append(Double(x[((n * g.inH + iy) * g.inW + ix) * g.inC + c]))
                }
            }}
            out[((n * g.outH + oy) * g.outW + ox) * g.outC + c] =
                kind == .max ? vals.max()! : vals.reduce(0, +) / Double(vals.count)
        }}}}
        return out
    }

    func testPool2dMatchesReference() {
        var rng = SeededRandom(12)
        let geometries: [(Int, Int, Int, Int, Int, Int, Int, Int, ConvPadding)] = [ // n, h, w, c, ph, pw, sh, sw
            (2, 7, 9, 3, 2, 2, 2, 2, .valid), (1, 7, 9, 13, 2, 2, 2, 2, .same), (2, 8, 8, 5, 3, 3, 2, 2, .same),
            (1, 9, 7, 8, 3, 3, 1, 1, .same), (1, 10, 11, 17, 3, 2, 2, 3, .same), (1, 6, 6, 4, 3, 3, 3, 3, .valid),
            (1, 5, 5, 9, 5, 5, 1, 1, .same),
        ]
        for (n, h, w, c, ph, pw, sh, sw, p) in geometries {
            let g = Conv2DGeometry(batch: n, inH: h, inW: w, inC: c, outC: c, kernelH: ph, kernelW: pw,
                                   strideH: sh, strideW: sw, padding: p)
            // negative inputs catch a max that lets padding zeros in
            let x = rng.floats(g.inputCount, -2, -0.1)
            for kind in [PoolKind.max, .average] {
                var y = [Float](repeating: .nan, count: g.outputCount)
                x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                    pool2d(kind, input: xp.baseAddress!, geometry: g, output: yp.baseAddress!)
                }}
                assertClose(y, reference(kind, x, g), tolerance: 1e-6, "\(kind) \(g)")
            }
        }
    }

    func testPoolingGeometryDefaultsStridesToPoolSize() {
        let g = Conv2DGeometry.pooling(batch: 1, inH: 7, inW: 8, channels: 3, poolH: 2, poolW: 3, padding: .valid)
        XCTAssertEqual([g.strideH, g.strideW, g.outH, g.outW, g.outC], [2, 3, 3, 2, 3])
        let s = Conv2DGeometry.pooling(batch: 1, inH: 7, inW: 8, channels: 3, poolH: 3, poolW: 3,
                                       strideH: 2, strideW: 2, padding: .same)
        XCTAssertEqual([s.outH, s.outW, s.padTop, s.padLeft], [4, 4, 1, 0])
    }

    func testGlobalPools() {
        var rng = SeededRandom(13)
        for (n, s, c) in [(1, 1, 3), (2, 49, 13), (3, 300, 40), (1, 12996, 32)] {
            let x = rng.floats(n * s * c, -1, 1)
            var avg = [Float](repeating: .nan, count: n * c), mx = avg
            x.withUnsafeBufferPointer { xp in
                avg.withUnsafeMutableBufferPointer { globalAveragePool(input: xp.baseAddress!, batch: n, spatial: s, channels: c, output: $0.baseAddress!) }
                mx.withUnsafeMutableBufferPointer { globalMaxPool(input: xp.baseAddress!, batch: n, spatial: s, channels: c, output: $0.baseAddress!) }
            }
            var wantAvg = [Double](repeating: 0, count: n * c), wantMax = [Double](repeating: -.infinity, count: n * c)
            for b in 0..<n { for p in 0..<s { for k in 0..<c {
                let v = Double(x[(b * s + p) * c + k])
                wantAvg[b * c + k] += v / Double(s)
                wantMax[b * c + k] = max(wantMax[b * c + k], v)
            }}}
            assertClose(avg, wantAvg, tolerance: 1e-6, "avg n=\(n) s=\(s) c=\(c)")
            assertClose(mx, wantMax, tolerance: 0, "max n=\(n) s=\(s) c=\(c)")
        }
    }
}
