import XCTest
import Graph
import TestSupport
@testable import Runtime

final class NormalizationTests: XCTestCase {
    func testFoldBatchNorm() {
        let gamma: [Float] = [1.5, -0.5, 2], beta: [Float] = [0.1, 0.2, -0.3]
        let mean: [Float] = [0.5, -1, 2], variance: [Float] = [4, 0.25, 0.01], eps: Float = 1e-3
        let bias: [Float] = [1, 2, 3]
        for (g, b, bi) in [(gamma, beta, nil), (nil, beta, nil), (gamma, nil, nil), (nil, nil, bias), (gamma, beta, bias)]
                as [([Float]?, [Float]?, [Float]?)] {
            let (scale, shift) = foldBatchNorm(gamma: g, beta: b, movingMean: mean, movingVariance: variance,
                                               epsilon: eps, bias: bi)
            // BN of the raw value v (with the producing layer's bias added), straight from the
            // definition: gamma * (v - mean) / sqrt(var + eps) + beta.
            for c in 0..<3 { for v in [-2.0, 0.0, 3.0] {
                let pre = v + Double(bi?[c] ?? 0)
                let want = Double(g?[c] ?? 1) * (pre - Double(mean[c])) / (Double(variance[c]) + Double(eps)).squareRoot()
                    + Double(b?[c] ?? 0)
                XCTAssertEqual(v * Double(scale[c]) + Double(shift[c]), want, accuracy: 1e-5)
            }}
        }
    }

    func testChannelAffine() {
        var rng = SeededRandom(9)
        // Fewer than 8 channels go through whole vectors over a period of lcm(C, 8) floats, with
        // the leftover rows after the last whole period done one by one.
        for (channels, rows) in [(3, 37), (8, 37), (13, 37), (40, 37), (1, 203), (5, 1001), (6, 77), (7, 3000)] {
            let x = rng.floats(rows * channels, -3, 3)
            let scale = rng.floats(channels, 0.5, 2), shift = rng.floats(channels)
            for (s, b, act) in [(scale, shift, ActivationSpec.linear), (scale, nil, .swish), (nil, shift, .relu),
                                (nil, nil, .linear), (scale, shift, ActivationSpec(.softmax))]
                    as [([Float]?, [Float]?, ActivationSpec)] {
                let want = referenceEpilogue(x.map(Double.init), channels: channels, scale: s, shift: b, act)
                let sv = s ?? [], bv = b ?? []
                // out of place
                var y = [Float](repeating: .nan, count: x.count)
                x.withUnsafeBufferPointer { xp in sv.withUnsafeBufferPointer { sp in bv.withUnsafeBufferPointer { bp in
                y.withUnsafeMutableBufferPointer { yp in
                    channelAffine(input: xp.baseAddress!, count: x.count, channels: channels,
                                  scale: s == nil ? nil : sp.baseAddress, shift: b == nil ? nil : bp.baseAddress,
                                  activation: act, output: yp.baseAddress!)
                }}}}
                assertClose(y, want, tolerance: 1e-6, "C=\(channels) \(act.kind) out of place")
                // in place
                var z = x
                sv.withUnsafeBufferPointer { sp in bv.withUnsafeBufferPointer { bp in
                z.withUnsafeMutableBufferPointer { zp in
                    channelAffine(input: zp.baseAddress!, count: x.count, channels: channels,
                                  scale: s == nil ? nil : sp.baseAddress, shift: b == nil ? nil : bp.baseAddress,
                                  activation: act, output: zp.baseAddress!)
                }}}
                assertClose(z, want, tolerance: 1e-6, "C=\(channels) \(act.kind) in place")
            }
        }
    }

    /// Softmax along every axis of a [4, 5, 11] tensor, against a Double reference.
    func testSoftmaxAlongAnyAxis() {
        var rng = SeededRandom(10)
        let shape = [4, 5, 11]
        let x = rng.floats(shape.reduce(1, *), -30, 30)
        for axis in 0..<3 {
            let outer = shape[..<axis].reduce(1, *), len = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
            var want = [Double](repeating: 0, count: x.count)
            for o in 0..<outer { for i in 0..<inner {
                let idx = (0..<len).map { (o * len + $0) * inner + i }
                let m = idx.map { Double(x[$0]) }.max()!
                let e = idx.map { Foundation.exp(Double(x[$0]) - m) }
                let s = e.reduce(0, +)
                for (k, j) in idx.enumerated() { want[j] = e[k] / s }
            }}
            let got = x.mutated { softmax($0, outer: outer, axisLength: len, inner: inner) }
            assertClose(got, want, tolerance: 1e-6, "axis \(axis)")
        }
        // Large logits must not overflow.
        let big: [Float] = [1000, 999, -1000]
        let got = big.mutated { softmax($0, outer: 1, axisLength: 3, inner: 1) }
        assertClose(got, [1 / (1 + Foundation.exp(-1.0)), Foundation.exp(-1.0) / (1 + Foundation.exp(-1.0)), 0],
                    tolerance: 1e-6)
    }
}
