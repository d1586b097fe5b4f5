import XCTest
import Graph
import TestSupport
@testable import Runtime

/// Subscript (`x[...]`) and image-resize gradients against central differences of the float
/// forwards, reusing the layout tests' check (linear maps: h = 0.5, tolerance 1e-5 of the largest
/// gradient; accumulate adds).
final class SliceResizeBackwardTests: BackwardTestCase {

    func testSubscriptWindowsMatchPython() throws {
        // Python's slice.indices on an axis of 6: (begin, count).
        func r(_ a: SliceAxis) -> [Int]? { a.resolve(6).map { [$0.begin, $0.count] } }
        XCTAssertEqual(r(SliceAxis(start: 1, stop: 3, step: 1)), [1, 2])
        XCTAssertEqual(r(SliceAxis(start: nil, stop: nil, step: 2)), [0, 3])
        XCTAssertEqual(r(SliceAxis(start: -3, stop: -1, step: 1)), [3, 2])
        XCTAssertEqual(r(SliceAxis(start: nil, stop: nil, step: -1)), [5, 6])
        XCTAssertEqual(r(SliceAxis(start: 4, stop: 0, step: -2)), [4, 2])
        XCTAssertEqual(r(SliceAxis(start: -100, stop: 100, step: 4)), [0, 2])
        XCTAssertEqual(r(SliceAxis(start: 5, stop: 2, step: 1)), [5, 0])
        XCTAssertEqual(r(SliceAxis(start: -2, stop: nil, step: 1, isIndex: true)), [4, 1])
        XCTAssertNil(r(SliceAxis(start: 6, stop: nil, step: 1, isIndex: true)))

        let (w, shape) = try sliceWindow([.all, SliceAxis(start: 2, stop: nil, step: 1, isIndex: true),
                                          SliceAxis(start: nil, stop: nil, step: -2)], [2, 3, 4, 5],
                                         fail: { RuntimeError($0) })
        XCTAssertEqual(shape, [2, 3, 3])
        XCTAssertEqual(w, SliceWindow(begin: [0, 0, 2, 4], step: [1, 1, 1, -2], counts: [2, 3, 1, 3]))
        XCTAssertThrowsError(try sliceWindow([SliceAxis(start: 5, stop: 5, step: 1)], [1, 6], fail: { RuntimeError($0) }))

        // Forward values: x[:, 1:3, ::-2] of iota.
        let s = [1, 4, 5]
        let x = (0..<20).map(Float.init)
        let (win, out) = try sliceWindow([SliceAxis(start: 1, stop: 3, step: 1), SliceAxis(start: nil, stop: nil, step: -2)],
                                         s, fail: { RuntimeError($0) })
        XCTAssertEqual(out, [1, 2, 3])
        let y = Buf(count: 6)
        stridedSlice(Buf(x).c, shape: s, window: win, y.p)
        XCTAssertEqual(y.array, [9, 7, 5, 14, 12, 10])
    }

    func testSubscriptGradients() throws {
        let s = [2, 5, 6, 3]
        let cases: [[SliceAxis]] = [
            [SliceAxis(start: 1, stop: 4, step: 1)],
            [.all, .all, SliceAxis(start: nil, stop: 2, step: 1)],
            [SliceAxis(start: nil, stop: nil, step: 2), SliceAxis(start: 1, stop: nil, step: 1)],
            [SliceAxis(start: -1, stop: nil, step: 1, isIndex: true), SliceAxis(start: nil, stop: nil, step: -2)],
            [SliceAxis(start: -3, stop: -1, step: 1), .all, SliceAxis(start: 2, stop: nil, step: 1, isIndex: true)],
        ]
        for (k, axes) in cases.enumerated() {
            let (w, out) = try sliceWindow(axes, s, fail: { RuntimeError($0) })
            checkLinearMapGradient("slice \(axes)", inCount: s.reduce(1, *), outCount: out.reduce(1, *), seed: UInt64(10 + k),
                         forward: { stridedSlice($0, shape: s, window: w, $1) },
                         backward: { stridedSliceBackward(dOutput: $0, dInput: $1, shape: s, window: w, accumulate: $2) })
        }
    }

    func testResizeGradients() {
        let s = [2, 5, 7, 3]
        let windows: [(Int, Int, Int, Int)] = [(0, 0, 5, 7), (1, 2, 3, 4)]
        for interpolation in Interpolation.allCases {
            for window in windows {
                for (oh, ow) in [(8, 9), (3, 2), (5, 7)] {
                    checkLinearMapGradient("resize \(interpolation) \(window) to \(oh)x\(ow)", inCount: s.reduce(1, *),
                                 outCount: s[0] * oh * ow * s[3], seed: 20,
                                 forward: { resizeImages(input: $0, batch: s[0], height: s[1], width: s[2], channels: s[3],
                                                         window: window, outHeight: oh, outWidth: ow,
                                                         interpolation: interpolation, output: $1) },
                                 backward: { resizeImagesBackward(dOutput: $0, dInput: $1, batch: s[0], height: s[1],
                                                                  width: s[2], channels: s[3], window: window,
                                                                  outHeight: oh, outWidth: ow,
                                                                  interpolation: interpolation, accumulate: $2) })
                }
            }
        }
    }
}

/// sqrt, rsqrt, square and log (operation layers' element-wise math): forward against Double on
/// their domain, special values as TensorFlow gives them, and derivatives against central
/// differences (h = 1e-4 relative; 2e-5 relative tolerance), inputs in (0.05, 50) and denormals.
final class MathActivationTests: BackwardTestCase {
    let kinds: [ActivationKind] = [.sqrt, .rsqrt, .square, .log]

    func testForwardMatchesDouble() {
        var rng = SeededRandom(31)
        let xs = rng.floats(997, 0.05, 50) + rng.floats(200, 1e-30, 1e-3) + [1e-40, 3e-45, 1, 4, Float.greatestFiniteMagnitude]
        for kind in kinds {
            let spec = ActivationSpec(kind)
            let y = Buf(xs)
            applyActivation(spec, y.p, count: xs.count)
            let want = xs.map { referenceActivation(spec, Double($0)) }
            assertRelClose(y.array, want.map { Double(Float($0)) }, rel: 4e-7, abs: 0, inputs: xs, "\(kind)")
        }
        let special: [Float] = [0, -1, .infinity, .nan]
        func run(_ kind: ActivationKind) -> [Float] {
            let y = Buf(special)
            applyActivation(ActivationSpec(kind), y.p, count: special.count)
            return y.array
        }
        let log = run(.log), sqrt = run(.sqrt), rsqrt = run(.rsqrt)
        XCTAssertEqual(log[0], -.infinity); XCTAssertTrue(log[1].isNaN); XCTAssertEqual(log[2], .infinity); XCTAssertTrue(log[3].isNaN)
        XCTAssertEqual(sqrt[0], 0); XCTAssertTrue(sqrt[1].isNaN); XCTAssertEqual(sqrt[2], .infinity)
        XCTAssertEqual(rsqrt[0], .infinity); XCTAssertTrue(rsqrt[1].isNaN); XCTAssertEqual(rsqrt[2], 0)
    }

    func testDerivativesMatchCentralDifferences() {
        var rng = SeededRandom(32)
        let xs = rng.floats(500, 0.05, 50)
        let w = rng.floats(xs.count)
        for kind in kinds {
            let spec = ActivationSpec(kind)
            let dx = Buf(count: xs.count)
            activationBackward(spec, input: Buf(xs).c, dOutput: Buf(w).c, dInput: dx.p, count: xs.count, accumulate: false)
            for i in xs.indices {
                let h = 1e-4 * Double(xs[i])
                let numeric = (referenceActivation(spec, Double(xs[i]) + h) - referenceActivation(spec, Double(xs[i]) - h)) / (2 * h)
                let want = Double(w[i]) * numeric
                XCTAssertLessThanOrEqual(abs(Double(dx.p[i]) - want), 2e-5 * abs(want) + 1e-9, "\(kind) at \(xs[i])")
            }
        }
    }
}
