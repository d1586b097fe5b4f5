import XCTest
import Graph
import TestSupport
@testable import Runtime

final class DropoutTests: BackwardTestCase {
    func mask(seed: UInt64, step: UInt64, rate: Float, count: Int) -> [Float] {
        let m = Buf(count: count)
        dropoutMask(seed: seed, step: step, rate: rate, mask: m.p, count: count)
        return m.array
    }

    /// Keras semantics: kept with probability 1 - rate, kept values scaled by 1 / (1 - rate).
    func testMaskValuesAndKeepRate() {
        for rate: Float in [0, 0.2, 0.5] {
            let m = mask(seed: 42, step: 3, rate: rate, count: 200_000)
            let scale = 1 / (1 - rate)
            XCTAssertTrue(m.allSatisfy { $0 == 0 || $0 == scale })
            let kept = Double(m.filter { $0 != 0 }.count) / Double(m.count)
            // Binomial standard deviation at n = 200000 is at most 0.0011: allow 5 of them.
            XCTAssertEqual(kept, Double(1 - rate), accuracy: 0.0056, "rate \(rate)")
        }
    }

    /// A step's mask depends only on (seed, step), not on the thread count; steps and seeds differ.
    func testMaskIsReproducible() {
        let a = mask(seed: 7, step: 11, rate: 0.3, count: 100_000)
        let saved = RuntimeThreads.count
        RuntimeThreads.set(1)
        let b = mask(seed: 7, step: 11, rate: 0.3, count: 100_000)
        RuntimeThreads.set(saved)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, mask(seed: 7, step: 12, rate: 0.3, count: 100_000))
        XCTAssertNotEqual(a, mask(seed: 8, step: 11, rate: 0.3, count: 100_000))
        XCTAssertEqual(DropoutRandom(seed: 1, step: 2).uniform(5), DropoutRandom(seed: 1, step: 2).uniform(5))
    }

    /// Forward y = x * broadcast(mask) for each noise-shape pattern, and the backward (the same
    /// product applied to dy) against central differences (linear: h = 0.5, tolerance 1e-6).
    func testBroadcastMasks() {
        let shape = [2, 3, 4, 5]
        for noise in [[2, 1, 1, 5], [2, 3, 4, 5], [1, 3, 4, 5], [2, 3, 4, 1], [1, 3, 1, 5], [2, 1, 1, 1], [2, 3, 1, 1]] {
            let m = mask(seed: 9, step: 0, rate: 0.4, count: noise.reduce(1, *))
            var rng = SeededRandom(10)
            let x = rng.floats(120), w = rng.floats(120)
            let y = Buf(count: 120)
            applyDropoutMask(Buf(x).c, mask: Buf(m).c, y.p, shape: shape, maskShape: noise, accumulate: false)
            // Reference broadcast.
            var want = [Float](repeating: 0, count: 120)
            for j in 0..<120 {
                var rem = j, idx = [Int](repeating: 0, count: 4)
                for d in (0..<4).reversed() { idx[d] = rem % shape[d]; rem /= shape[d] }
                var off = 0
                for d in 0..<4 { off = off * noise[d] + (noise[d] == 1 ? 0 : idx[d]) }
                want[j] = x[j] * m[off]
            }
            XCTAssertEqual(y.array, want, "noise shape \(noise)")
            let dx = Buf(count: 120)
            applyDropoutMask(Buf(w).c, mask: Buf(m).c, dx.p, shape: shape, maskShape: noise, accumulate: false)
            checkGradient("dropout \(noise)", at: x, analytic: dx.array, h: 0.5, tolerance: 1e-6) {
                let y = Buf(count: 120)
                applyDropoutMask(Buf($0).c, mask: Buf(m).c, y.p, shape: shape, maskShape: noise, accumulate: false)
                return weightedSum(y.array, w)
            }
        }
    }

    /// One decision per image ([N, 1, 1, 1], EfficientNet's drop-connect) on a tensor large enough
    /// to be split among the workers mid-image, with runs not a multiple of 8: every element is
    /// x * its image's mask value exactly, written or added.
    func testPerImageMaskSplitAmongWorkers() {
        let shape = [8, 15, 15, 7], count = 8 * 15 * 15 * 7, rep = 15 * 15 * 7
        let m = mask(seed: 3, step: 1, rate: 0.5, count: 8)
        XCTAssertTrue(m.contains(0) && m.contains(2), "the test wants both decisions")
        var rng = SeededRandom(4)
        let x = rng.floats(count), base = rng.floats(count)
        let y = Buf(count: count)
        applyDropoutMask(Buf(x).c, mask: Buf(m).c, y.p, shape: shape, maskShape: [8, 1, 1, 1], accumulate: false)
        XCTAssertEqual(y.array, (0..<count).map { x[$0] * m[$0 / rep] })
        let acc = Buf(base)
        applyDropoutMask(Buf(x).c, mask: Buf(m).c, acc.p, shape: shape, maskShape: [8, 1, 1, 1], accumulate: true)
        XCTAssertEqual(acc.array, (0..<count).map { base[$0] + x[$0] * m[$0 / rep] })
    }
}
