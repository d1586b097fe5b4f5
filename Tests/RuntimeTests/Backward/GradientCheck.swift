// Shared by the backward tests: finite-difference gradient checks and owned float buffers.
//
// How the checks work: a test defines a scalar loss L(θ) = Σ w ⊙ f(θ) with random weights w,
// evaluated in Double (through a Double-precision reference forward, or through the float
// kernel for pure data movement), so dL/d(output) = w is what the backward kernel receives.
// For a random subset of coordinates i, the central difference
//     (L(θ + h e_i) - L(θ - h e_i)) / (θ_i⁺ - θ_i⁻)
// (divided by the step actually taken after rounding θ_i ± h to float) is compared with the
// analytic gradient. With a Double forward the truncation error is O(h²) and rounding ~1e-12,
// so the remaining difference is the float kernel's own rounding; tolerances are stated
// relative to the gradient's largest magnitude.
import Graph
import Foundation
import XCTest
@testable import Runtime

/// A float buffer owned by a test, passed to kernels as a pointer. Swift may release an object
/// right after its last use, which for `buf.c` is before the kernel runs; so every Buf stays in
/// `Buf.live` until the test's tearDown calls `Buf.releaseAll()` (`BackwardTestCase` does).
final class Buf {
    nonisolated(unsafe) private static var live: [Buf] = []
    static func releaseAll() { live.removeAll() }

    let p: UnsafeMutablePointer<Float>
    let count: Int
    init(_ values: [Float]) {
        count = values.count
        p = .allocate(capacity: max(1, count))
        p.initialize(from: values, count: count)
        Buf.live.append(self)
    }
    init(count: Int, fill: Float = .nan) {
        self.count = count
        p = .allocate(capacity: max(1, count))
        p.initialize(repeating: fill, count: max(1, count))
        Buf.live.append(self)
    }
    deinit { p.deallocate() }
    var c: UnsafePointer<Float> { UnsafePointer(p) }
    var array: [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
}

/// Test cases that use `Buf`.
class BackwardTestCase: XCTestCase {
    override func tearDown() {
        Buf.releaseAll()
        super.tearDown()
    }
}

/// Σ w_i y_i in Double.
func weightedSum<T: BinaryFloatingPoint>(_ y: [T], _ w: [Float]) -> Double {
    precondition(y.count == w.count, "loss weights \(w.count) for \(y.count) outputs")
    var s = 0.0
    for i in y.indices { s += Double(y[i]) * Double(w[i]) }
    return s
}

/// Checks `analytic` = dL/dθ at θ = `theta` against central differences at `probes` coordinates
/// (all of them when there are fewer; always the first and the last). Passes when
/// |analytic_i - numeric_i| <= tolerance * max(max_j |analytic_j|, 1e-3) for each probe.
@discardableResult
func checkGradient(_ name: String, at theta: [Float], analytic: [Float], h: Float, tolerance: Double,
                   probes: Int = 40, seed: UInt64 = 1, file: StaticString = #filePath, line: UInt = #line,
                   loss: ([Float]) -> Double) -> Double {
    XCTAssertEqual(theta.count, analytic.count, "\(name): gradient size", file: file, line: line)
    guard theta.count == analytic.count, !theta.isEmpty else { return .infinity }
    var indices: [Int]
    if theta.count <= probes {
        indices = Array(theta.indices)
    } else {
        var rng = SeededRandom(seed)
        indices = [0, theta.count - 1]
        while indices.count < probes { indices.append(Int(rng.next() % UInt64(theta.count))) }
    }
    let scale = max(analytic.map { abs(Double($0)) }.max() ?? 0, 1e-3)
    var worst = 0.0, worstIndex = -1, worstNumeric = 0.0
    var t = theta
    for i in indices {
        let x = theta[i]
        let up = x + h, down = x - h
        t[i] = up; let lu = loss(t)
        t[i] = down; let ld = loss(t)
        t[i] = x
        let numeric = (lu - ld) / (Double(up) - Double(down))
        let err = abs(Double(analytic[i]) - numeric) / scale
        if err.isNaN || err > worst { worst = err.isNaN ? .infinity : err; worstIndex = i; worstNumeric = numeric }
    }
    if worst > tolerance {
        XCTFail("\(name): index \(worstIndex): analytic \(analytic[worstIndex]) vs numeric \(worstNumeric) " +
                "(error \(worst) of scale \(scale) > \(tolerance))", file: file, line: line)
    }
    return worst
}

extension SeededRandom {
    /// Floats in [lo, hi) kept at least `gap` away from each point of `kinks` (so a finite
    /// difference of half-width < gap never straddles a kink).
    mutating func floats(_ n: Int, _ lo: Float, _ hi: Float, avoiding kinks: [Float], gap: Float) -> [Float] {
        (0..<n).map { _ in
            var v = uniform(lo, hi)
            while kinks.contains(where: { abs($0 - v) < gap }) { v = uniform(lo, hi) }
            return v
        }
    }
}
