import XCTest
import Graph
import TestSupport
@testable import Runtime

/// Merge and channel-scale gradients against central differences of the float forwards. Every
/// merge is linear in each input separately except maximum/minimum, which are piecewise linear:
/// h = 0.5 for the linear ones; for maximum/minimum each input's values sit on its own offset of
/// a 0.02 grid (no two inputs closer than 0.005) and h = 1e-3. Tolerance 1e-5 of the largest
/// gradient (float rounding of the forward's products).
final class ElementwiseBackwardTests: BackwardTestCase {
    func forward(_ xs: [[Float]], _ shapes: [[Int]], _ out: [Int], _ kind: MergeKind) -> [Float] {
        let bufs = xs.map { Buf($0) }
        let y = Buf(count: out.reduce(1, *))
        DataOps.merge(kind, bufs.map { $0.c }, shapes, y.p, out)
        return y.array
    }

    func testMergeGradientsWithBroadcasting() {
        let layouts: [(String, [[Int]], [Int])] = [
            ("same shapes", [[2, 3, 4, 5], [2, 3, 4, 5], [2, 3, 4, 5]], [2, 3, 4, 5]),
            ("broadcast [N,1,1,C] and [C]", [[2, 3, 4, 5], [2, 1, 1, 5], [5]], [2, 3, 4, 5]),
            ("both broadcast", [[2, 1, 3], [1, 4, 3]], [2, 4, 3]),
            // Two inputs as squeeze-and-excitation and residual blocks have them (the fast paths).
            ("excite [N,H,W,C] * [N,1,1,C]", [[3, 4, 2, 11], [3, 1, 1, 11]], [3, 4, 2, 11]),
            ("excite, scale first", [[2, 1, 1, 9], [2, 5, 3, 9]], [2, 5, 3, 9]),
            ("residual pair", [[2, 7, 5, 13], [2, 7, 5, 13]], [2, 7, 5, 13]),
        ]
        for (name, shapes, out) in layouts {
            for kind in [MergeKind.add, .subtract, .multiply, .average, .maximum, .minimum] {
                let used = kind == .subtract ? Array(shapes.prefix(2)) : shapes
                var rng = SeededRandom(UInt64(used.count * 31 + out.count))
                let piecewise = kind == .maximum || kind == .minimum
                let xs: [[Float]] = used.enumerated().map { k, s in
                    (0..<s.reduce(1, *)).map { _ in
                        piecewise ? (Float(Int(rng.next() % 100)) * 0.02 - 1) + Float(k) * 0.005 : rng.uniform()
                    }
                }
                let w = rng.floats(out.reduce(1, *))
                let grads = used.map { Buf(count: $0.reduce(1, *)) }
                mergeBackward(inputs: xs.map { Buf($0).c }, shapes: used, outShape: out, kind: kind,
                              dOutput: Buf(w).c, dInputs: grads.map { $0.p }, accumulate: false)
                for k in used.indices {
                    checkGradient("\(kind) \(name) input \(k)", at: xs[k], analytic: grads[k].array,
                                  h: piecewise ? 1e-3 : 0.5, tolerance: 1e-5) { xk in
                        var inputs = xs
                        inputs[k] = xk
                        return weightedSum(forward(inputs, used, out, kind), w)
                    }
                }
                // accumulate, and an input without a gradient.
                let before = grads.map { $0.array }
                mergeBackward(inputs: xs.map { Buf($0).c }, shapes: used, outShape: out, kind: kind,
                              dOutput: Buf(w).c, dInputs: [nil] + grads.dropFirst().map { $0.p }, accumulate: true)
                assertClose(grads[0].array, before[0], tolerance: 0, "\(kind) \(name) skipped input untouched")
                for k in used.indices.dropFirst() {
                    assertClose(grads[k].array, before[k].map { 2 * $0 }, tolerance: 1e-5, "\(kind) \(name) accumulate \(k)")
                }
            }
        }
    }

    /// tf-keras 2.21, a = [1,2,3], b = [1,1,3], c = [1,2,3], L = sum(layer([a, b, c])): ties go to
    /// the first input holding the extreme.
    func testMaximumAndMinimumTies() {
        let xs: [[Float]] = [[1, 2, 3], [1, 1, 3], [1, 2, 3]]
        func grads(_ kind: MergeKind) -> [[Float]] {
            let g = (0..<3).map { _ in Buf(count: 3) }
            mergeBackward(inputs: xs.map { Buf($0).c }, shapes: [[3], [3], [3]], outShape: [3], kind: kind,
                          dOutput: Buf([1, 1, 1]).c, dInputs: g.map { $0.p }, accumulate: false)
            return g.map { $0.array }
        }
        XCTAssertEqual(grads(.maximum), [[1, 1, 1], [0, 0, 0], [0, 0, 0]])
        XCTAssertEqual(grads(.minimum), [[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    }

    func testChannelScale() {
        for (batch, pixels, c) in [(2, 7, 13), (1, 600, 40)] {
            var rng = SeededRandom(UInt64(pixels))
            let x = rng.floats(batch * pixels * c), s = rng.floats(batch * c), w = rng.floats(x.count)
            func loss(_ x: [Float], _ s: [Float]) -> Double {
                let y = Buf(count: x.count)
                channelScale(Buf(x).c, batch: batch, spatial: pixels, channels: c, scale: Buf(s).c, output: y.p)
                return weightedSum(y.array, w)
            }
            let dx = Buf(count: x.count), ds = Buf(count: s.count)
            channelScaleBackward(input: Buf(x).c, scale: Buf(s).c, dOutput: Buf(w).c, batch: batch, pixels: pixels,
                                 channels: c, dInput: dx.p, dScale: ds.p, accumulate: false)
            checkGradient("channelScale dInput \(pixels)", at: x, analytic: dx.array, h: 0.5, tolerance: 1e-5) { loss($0, s) }
            checkGradient("channelScale dScale \(pixels)", at: s, analytic: ds.array, h: 0.5, tolerance: 1e-5) { loss(x, $0) }
            let only = Buf(count: x.count)
            channelScaleBackward(input: Buf(x).c, scale: Buf(s).c, dOutput: Buf(w).c, batch: batch, pixels: pixels,
                                 channels: c, dInput: only.p, dScale: nil, accumulate: false)
            assertClose(only.array, dx.array, tolerance: 0, "dInput alone")
        }
    }

    func testChannelAffineBackward() {
        let rows = 20, c = 7
        var rng = SeededRandom(77)
        let x = rng.floats(rows * c), scale = rng.floats(c, 0.5, 2), shift = rng.floats(c), w = rng.floats(rows * c)
        func loss(_ x: [Float], _ s: [Float], _ b: [Float]) -> Double {
            let y = Buf(count: x.count)
            channelAffine(input: Buf(x).c, count: x.count, channels: c, scale: Buf(s).c, shift: Buf(b).c, output: y.p)
            return weightedSum(y.array, w)
        }
        let dx = Buf(count: x.count), ds = Buf(count: c), db = Buf(count: c)
        channelAffineBackward(input: Buf(x).c, rows: rows, channels: c, scale: Buf(scale).c, shift: Buf(shift).c,
                              activation: .linear, dOutput: Buf(w).c, dInput: dx.p, dScale: ds.p, dShift: db.p,
                              accumulate: false)
        checkGradient("affine dInput", at: x, analytic: dx.array, h: 0.5, tolerance: 1e-5) { loss($0, scale, shift) }
        checkGradient("affine dScale", at: scale, analytic: ds.array, h: 0.5, tolerance: 1e-5) { loss(x, $0, shift) }
        checkGradient("affine dShift", at: shift, analytic: db.array, h: 0.5, tolerance: 1e-5) { loss(x, scale, $0) }
    }
}
