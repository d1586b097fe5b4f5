import XCTest
import Graph
import TestSupport
@testable import Runtime

/// Activation and softmax gradients against central differences of the Double references.
/// Element-wise: L = Σ w f(x), so dL/dx_i = w_i f'(x_i) is checked element by element with
/// h = 1e-4 (truncation error f''' h² / 6 ~ 2e-9 f'''): |analytic - numeric| <= 2e-5 |numeric| + 2e-6
/// (float rounding of the transcendental functions; the absolute part covers cancellations such
/// as 1 - sigmoid near 1). Inputs stay 0.01 away from every kink (relu's 0, threshold, max_value;
/// hard_sigmoid's corners; hard_silu's ±3).
final class ActivationBackwardTests: BackwardTestCase {
    func inputs(for spec: ActivationSpec) -> [Float] {
        var kinks: [Float] = [0, -3, 3, 6, spec.threshold]
        if let m = spec.maxValue { kinks.append(m) }
        if spec.alpha != 0 { kinks += [-0.5 / spec.alpha, 0.5 / spec.alpha] }
        var rng = SeededRandom(17)
        var xs = rng.floats(600, -7, 7, avoiding: kinks, gap: 0.01) + rng.floats(203, -30, 30, avoiding: kinks, gap: 0.01)
        xs += [1e-4, -1e-4, 0.5, -0.5, 0.625, -0.625, 1.5, -1.5, 14.5, -14.5].filter { v in !kinks.contains { abs($0 - v) < 0.01 } }
        return xs
    }

    func numeric(_ spec: ActivationSpec, _ x: Float) -> Double {
        let h = 1e-4
        let up = Double(x) + h, down = Double(x) - h
        return (referenceActivation(spec, up) - referenceActivation(spec, down)) / (up - down)
    }

    func check(_ name: String, _ got: [Float], _ want: [Double], _ xs: [Float],
               file: StaticString = #filePath, line: UInt = #line) {
        for i in got.indices {
            let err = abs(Double(got[i]) - want[i])
            if !(err <= 2e-5 * abs(want[i]) + 2e-6) {
                XCTFail("\(name): x = \(xs[i]): \(got[i]) vs \(want[i])", file: file, line: line)
                return
            }
        }
    }

    func testEveryActivationFromItsInput() {
        for spec in allActivationSpecs {
            let xs = inputs(for: spec)
            var rng = SeededRandom(3)
            let w = rng.floats(xs.count)
            let dx = Buf(count: xs.count)
            activationBackward(spec, input: Buf(xs).c, dOutput: Buf(w).c, dInput: dx.p, count: xs.count, accumulate: false)
            check("\(spec)", dx.array, xs.indices.map { Double(w[$0]) * numeric(spec, xs[$0]) }, xs)
            // accumulate adds; in place (dInput = dOutput) works.
            activationBackward(spec, input: Buf(xs).c, dOutput: Buf(w).c, dInput: dx.p, count: xs.count, accumulate: true)
            check("\(spec) accumulated", dx.array, xs.indices.map { 2 * Double(w[$0]) * numeric(spec, xs[$0]) }, xs)
            let inPlace = Buf(w)
            activationBackward(spec, input: Buf(xs).c, dOutput: inPlace.c, dInput: inPlace.p, count: xs.count, accumulate: false)
            check("\(spec) in place", inPlace.array, xs.indices.map { Double(w[$0]) * numeric(spec, xs[$0]) }, xs)
        }
    }

    func testDerivativeFromOutputWhereAvailable() {
        var covered = 0
        for spec in allActivationSpecs where activationDerivativeFromOutputIsAvailable(spec) {
            covered += 1
            let xs = inputs(for: spec)
            let y = Buf(xs)
            applyActivation(spec, y.p, count: xs.count)
            var rng = SeededRandom(4)
            let w = rng.floats(xs.count)
            let dx = Buf(count: xs.count)
            activationBackward(spec, output: y.c, dOutput: Buf(w).c, dInput: dx.p, count: xs.count, accumulate: false)
            check("\(spec) from output", dx.array, xs.indices.map { Double(w[$0]) * numeric(spec, xs[$0]) }, xs)
        }
        XCTAssertEqual(covered, 14)
        XCTAssertFalse(activationDerivativeFromOutputIsAvailable(.swish))
        XCTAssertFalse(activationDerivativeFromOutputIsAvailable(ActivationSpec(.relu, alpha: 0.1, maxValue: 4, threshold: 0.5)))
    }

    /// One-sided choices at the kinks, as TensorFlow's gradients make them.
    func testKinkConventions() {
        func d(_ spec: ActivationSpec, _ x: Float) -> Float {
            let dx = Buf(count: 1)
            activationBackward(spec, input: Buf([x]).c, dOutput: Buf([1]).c, dInput: dx.p, count: 1, accumulate: false)
            return dx.p[0]
        }
        XCTAssertEqual(d(.relu, 0), 0)
        XCTAssertEqual(d(.relu6, 0), 0)
        XCTAssertEqual(d(.relu6, 6), 0)
        XCTAssertEqual(d(ActivationSpec(.leakyRelu, alpha: 0.2), 0), 0.2)
        XCTAssertEqual(d(ActivationSpec(.elu, alpha: 0.7), 0), 0.7)
        XCTAssertEqual(d(ActivationSpec(.hardSilu), -3), 0)
        XCTAssertEqual(d(ActivationSpec(.hardSilu), 3), 1)
    }

    func referenceSoftmax(_ x: [Double], outer: Int, n: Int, inner: Int, log: Bool) -> [Double] {
        var y = x
        for o in 0..<outer { for i in 0..<inner {
            let idx = (0..<n).map { o * n * inner + $0 * inner + i }
            let m = idx.map { x[$0] }.max()!
            let lse = m + Foundation.log(idx.map { Foundation.exp(x[$0] - m) }.reduce(0, +))
            for k in idx { y[k] = log ? x[k] - lse : Foundation.exp(x[k] - lse) }
        }}
        return y
    }

    func testSoftmaxAndLogSoftmax() {
        for (outer, n, inner) in [(3, 7, 1), (2, 5, 4), (4, 1000, 1)] {
            for log in [false, true] {
                var rng = SeededRandom(UInt64(n * 10 + inner))
                let x = rng.floats(outer * n * inner, -4, 4), w = rng.floats(x.count)
                let y = Buf(x)
                if log { logSoftmax(y.p, outer: outer, axisLength: n, inner: inner) }
                else { softmax(y.p, outer: outer, axisLength: n, inner: inner) }
                let dx = Buf(count: x.count)
                if log {
                    logSoftmaxBackward(output: y.c, dOutput: Buf(w).c, dInput: dx.p, outer: outer, axisLength: n,
                                       inner: inner, accumulate: false)
                } else {
                    softmaxBackward(output: y.c, dOutput: Buf(w).c, dInput: dx.p, outer: outer, axisLength: n,
                                    inner: inner, accumulate: false)
                }
                // Smooth: h = 1e-3; float y carries ~1e-7 relative error.
                checkGradient("\(log ? "log_" : "")softmax [\(outer),\(n),\(inner)]", at: x, analytic: dx.array,
                              h: 1e-3, tolerance: 1e-4) {
                    weightedSum(referenceSoftmax($0.map(Double.init), outer: outer, n: n, inner: inner, log: log), w)
                }
            }
        }
    }
}
