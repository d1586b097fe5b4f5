import XCTest
import Graph
import TestSupport
@testable import Runtime

/// Pooling gradients against central differences of the float forward kernels (pooling only
/// selects or averages, so with Double losses the differences are exact up to the float
/// averages' rounding): average pooling with h = 0.5; max pooling on distinct values at least
/// 0.01 apart with h = 1e-3, so no difference changes which element wins. Tolerance 1e-5 of the
/// largest gradient. Ties follow what tf-keras 2.21 was seen to do (values in the tests).
final class PoolingBackwardTests: BackwardTestCase {
    func pool(_ x: [Float], _ g: Conv2DGeometry, _ kind: PoolKind) -> [Float] {
        let y = Buf(count: g.outputCount)
        pool2d(kind, input: Buf(x).c, geometry: g, output: y.p)
        return y.array
    }

    /// Distinct values 0.01 apart in a random order.
    func distinct(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SeededRandom(seed)
        var v = (0..<n).map { Float($0) * 0.01 - Float(n) * 0.005 }
        for i in stride(from: n - 1, to: 0, by: -1) { v.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return v
    }

    func testWindowPoolingMatchesFiniteDifferences() {
        let cases: [(String, Conv2DGeometry)] = [
            ("3x3 stride 2 same", Conv2DGeometry(batch: 2, inH: 7, inW: 8, inC: 11, outC: 11, kernelH: 3, kernelW: 3,
                                                 strideH: 2, strideW: 2, padding: .same)),
            ("2x2 stride 2 valid", Conv2DGeometry(batch: 2, inH: 6, inW: 7, inC: 3, outC: 3, kernelH: 2, kernelW: 2,
                                                  strideH: 2, strideW: 2, padding: .valid)),
            ("3x3 stride 1 same, one image, channel slices",
             Conv2DGeometry(batch: 1, inH: 5, inW: 6, inC: 20, outC: 20, kernelH: 3, kernelW: 3, padding: .same)),
            ("2x3 stride (1, 2) same", Conv2DGeometry(batch: 2, inH: 5, inW: 9, inC: 4, outC: 4, kernelH: 2, kernelW: 3,
                                                      strideH: 1, strideW: 2, padding: .same)),
        ]
        for (i, (name, g)) in cases.enumerated() {
            for kind in [PoolKind.max, .average] {
                let x = distinct(g.inputCount, seed: UInt64(i + 1))
                var rng = SeededRandom(UInt64(50 + i))
                let w = rng.floats(g.outputCount)
                let dx = Buf(count: g.inputCount)
                pool2dBackward(input: Buf(x).c, dOutput: Buf(w).c, dInput: dx.p, geometry: g, kind: kind, accumulate: false)
                checkGradient("\(kind) \(name)", at: x, analytic: dx.array, h: kind == .max ? 1e-3 : 0.5,
                              tolerance: 1e-5, probes: 60) { weightedSum(pool($0, g, kind), w) }
                let once = dx.array
                pool2dBackward(input: Buf(x).c, dOutput: Buf(w).c, dInput: dx.p, geometry: g, kind: kind, accumulate: true)
                assertClose(dx.array, once.map { 2 * $0 }, tolerance: 1e-6, "\(kind) \(name) accumulate")
            }
        }
    }

    /// tf-keras 2.21, x = [[1,1,0],[1,1,0],[0,0,0]], L = sum(pool(x)): the gradient goes to each
    /// window's first maximum in row-major window order.
    func testMaxPoolTiesGoToTheFirstMaximum() {
        let x: [Float] = [1, 1, 0, 1, 1, 0, 0, 0, 0]
        func grad(_ g: Conv2DGeometry) -> [Float] {
            let dx = Buf(count: 9)
            pool2dBackward(input: Buf(x).c, dOutput: Buf([Float](repeating: 1, count: g.outputCount)).c, dInput: dx.p,
                           geometry: g, kind: .max, accumulate: false)
            return dx.array
        }
        XCTAssertEqual(grad(Conv2DGeometry(batch: 1, inH: 3, inW: 3, inC: 1, outC: 1, kernelH: 2, kernelW: 2, padding: .valid)),
                       [1, 1, 0, 1, 1, 0, 0, 0, 0])
        XCTAssertEqual(grad(Conv2DGeometry(batch: 1, inH: 3, inW: 3, inC: 1, outC: 1, kernelH: 2, kernelW: 2,
                                           strideH: 2, strideW: 2, padding: .same)),
                       [1, 0, 1, 0, 0, 0, 1, 0, 1])
    }

    func testGlobalPooling() {
        let (batch, pixels, c) = (2, 13, 9)
        for kind in [PoolKind.max, .average] {
            let x = distinct(batch * pixels * c, seed: 7)
            var rng = SeededRandom(8)
            let w = rng.floats(batch * c)
            let dx = Buf(count: x.count)
            globalPoolBackward(input: Buf(x).c, dOutput: Buf(w).c, dInput: dx.p, batch: batch, pixels: pixels,
                               channels: c, kind: kind, accumulate: false)
            checkGradient("global \(kind)", at: x, analytic: dx.array, h: kind == .max ? 1e-3 : 0.5, tolerance: 1e-5) {
                let y = Buf(count: batch * c)
                DataOps.globalPool(kind, Buf($0).c, [batch, pixels, 1, c], y.p)
                return weightedSum(y.array, w)
            }
        }
        // tf-keras 2.21's GlobalMaxPooling2D (reduce_max) splits a tie equally: 0.25 to each of four.
        let dx = Buf(count: 9)
        globalPoolBackward(input: Buf([1, 1, 0, 1, 1, 0, 0, 0, 0]).c, dOutput: Buf([1]).c, dInput: dx.p, batch: 1,
                           pixels: 9, channels: 1, kind: .max, accumulate: false)
        XCTAssertEqual(dx.array, [0.25, 0.25, 0, 0.25, 0.25, 0, 0, 0, 0])
    }
}
