import XCTest
import Graph
import TestSupport
@testable import Runtime

/// BatchNormalization in training mode: forward against a Double reference, backward against
/// central differences of that reference, and one real tf-keras 2.21 step (fixtures/training/bn,
/// made by fixtures/make_bn_training_fixture.py) for the output, gradients and moving statistics.
final class BatchNormTrainingTests: BackwardTestCase {
    /// y = f(gamma (x - mean) / sqrt(var + eps) + beta) with the batch's biased variance, in Double.
    func reference(_ x: [Float], rows: Int, c: Int, gamma: [Float]?, beta: [Float]?, eps: Float,
                   _ act: ActivationSpec) -> (y: [Double], mean: [Double], variance: [Double]) {
        var mean = [Double](repeating: 0, count: c), variance = mean
        for i in x.indices { mean[i % c] += Double(x[i]) / Double(rows) }
        for i in x.indices { let d = Double(x[i]) - mean[i % c]; variance[i % c] += d * d / Double(rows) }
        let y = x.indices.map { i -> Double in
            let ch = i % c
            let xhat = (Double(x[i]) - mean[ch]) / (variance[ch] + Double(eps)).squareRoot()
            return referenceActivation(act, Double(gamma?[ch] ?? 1) * xhat + Double(beta?[ch] ?? 0))
        }
        return (y, mean, variance)
    }

    func checkTraining(rows: Int, c: Int, act: ActivationSpec, center: Bool = true, scale: Bool = true,
                       accumulate: Bool = false, seed: UInt64) {
        var rng = SeededRandom(seed)
        let x = rng.floats(rows * c).map { $0 * 2 + 1 }, w = rng.floats(rows * c)
        let gamma = scale ? rng.floats(c, 0.5, 1.5) : nil, beta = center ? rng.floats(c) : nil
        let eps: Float = 1e-3
        let name = "BN \(rows)x\(c) \(act.kind) center \(center) scale \(scale) accumulate \(accumulate)"
        let xb = Buf(x), gb = gamma.map { Buf($0) }, bb = beta.map { Buf($0) }
        let y = Buf(count: x.count), mean = Buf(count: c), variance = Buf(count: c)
        batchNormTrainingForward(input: xb.c, rows: rows, channels: c, gamma: gb?.c, beta: bb?.c, epsilon: eps,
                                 activation: act, output: y.p, batchMean: mean.p, batchVariance: variance.p)
        let ref = reference(x, rows: rows, c: c, gamma: gamma, beta: beta, eps: eps, act)
        assertClose(y.array, ref.y, tolerance: 2e-5, "\(name) y")
        assertClose(mean.array, ref.mean, tolerance: 1e-6, "\(name) mean")
        assertClose(variance.array, ref.variance, tolerance: 2e-6, "\(name) variance")

        // Gradients, written once (or twice when accumulating: then half of the result).
        let dx = Buf(count: x.count, fill: 0), dg = Buf(count: c, fill: 0), db = Buf(count: c, fill: 0)
        for _ in 0..<(accumulate ? 2 : 1) {
            batchNormTrainingBackward(input: xb.c, rows: rows, channels: c, gamma: gb?.c, beta: bb?.c,
                                      batchMean: mean.c, batchVariance: variance.c, epsilon: eps, activation: act,
                                      dOutput: Buf(w).c, dInput: dx.p, dGamma: scale ? dg.p : nil,
                                      dBeta: center ? db.p : nil, accumulate: accumulate)
        }
        let k: Float = accumulate ? 0.5 : 1
        // Smooth in every argument; h = 1e-3 gives truncation ~1e-7 of the scale.
        checkGradient("\(name) dInput", at: x, analytic: dx.array.map { $0 * k }, h: 1e-3, tolerance: 1e-4) {
            weightedSum(reference($0, rows: rows, c: c, gamma: gamma, beta: beta, eps: eps, act).y, w)
        }
        if let gamma {
            checkGradient("\(name) dGamma", at: gamma, analytic: dg.array.map { $0 * k }, h: 1e-3, tolerance: 1e-4) {
                weightedSum(reference(x, rows: rows, c: c, gamma: $0, beta: beta, eps: eps, act).y, w)
            }
        }
        if let beta {
            checkGradient("\(name) dBeta", at: beta, analytic: db.array.map { $0 * k }, h: 1e-3, tolerance: 1e-4) {
                weightedSum(reference(x, rows: rows, c: c, gamma: gamma, beta: $0, eps: eps, act).y, w)
            }
        }
    }

    func testTrainingForwardAndBackward() {
        // Swish's first backward pass has a 16-lane kernel of its own under AVX-512.
        for isa in kernelISAs {
            KernelISA.with(avx512: isa) {
                checkTraining(rows: 30, c: 6, act: .linear, seed: 1)
                checkTraining(rows: 8, c: 11, act: .linear, seed: 2)
                checkTraining(rows: 50, c: 13, act: .swish, seed: 3)                    // dz stored in dInput
                checkTraining(rows: 50, c: 13, act: .swish, accumulate: true, seed: 4)  // dz recomputed
                checkTraining(rows: 40, c: 9, act: ActivationSpec(.gelu), center: false, seed: 5)
                checkTraining(rows: 40, c: 9, act: .sigmoid, scale: false, seed: 6)
                checkTraining(rows: 23, c: 5, act: .linear, center: false, scale: false, seed: 7)
                checkTraining(rows: 3000, c: 20, act: .swish, seed: 8)                  // several workers, blocks
                checkTraining(rows: 40, c: 37, act: .swish, seed: 9)                    // 16-lane tail of 5
            }
        }
    }

    /// A large mean next to a small spread: the centred passes keep the variance.
    func testLargeMeanSmallVariance() {
        let rows = 4096, c = 3
        var rng = SeededRandom(12)
        let x = (0..<(rows * c)).map { _ in 1000 + rng.uniform() * 0.01 }
        let y = Buf(count: x.count), mean = Buf(count: c), variance = Buf(count: c)
        batchNormTrainingForward(input: Buf(x).c, rows: rows, channels: c, gamma: nil, beta: nil, epsilon: 0,
                                 output: y.p, batchMean: mean.p, batchVariance: variance.p)
        let ref = reference(x, rows: rows, c: c, gamma: nil, beta: nil, eps: 0, .linear)
        for ch in 0..<c { XCTAssertEqual(Double(variance.p[ch]), ref.variance[ch], accuracy: ref.variance[ch] * 1e-3) }
    }

    func load(_ case: String, _ name: String) throws -> [Float] {
        try NpyArray.read(path: fixturesDirectory.appendingPathComponent("training/bn/\(`case`)_\(name).npy").path).values
    }

    /// One tf-keras 2.21 training step (momentum 0.9, epsilon 1e-3): 4-D input through TF's fused
    /// kernel (moving variance Bessel-corrected), 2-D through the non-fused path (biased).
    func testMatchesKerasTrainingStep() throws {
        for (name, c, correct) in [("rank4", 6, true), ("rank2", 11, false)] {
            let x = try load(name, "x"), w = try load(name, "w")
            let gamma = Buf(try load(name, "gamma")), beta = Buf(try load(name, "beta"))
            let rows = x.count / c
            let y = Buf(count: x.count), mean = Buf(count: c), variance = Buf(count: c)
            batchNormTrainingForward(input: Buf(x).c, rows: rows, channels: c, gamma: gamma.c, beta: beta.c,
                                     epsilon: 1e-3, output: y.p, batchMean: mean.p, batchVariance: variance.p)
            assertClose(y.array, try load(name, "y"), tolerance: 1e-5, "\(name) y")
            let dx = Buf(count: x.count), dg = Buf(count: c), db = Buf(count: c)
            batchNormTrainingBackward(input: Buf(x).c, rows: rows, channels: c, gamma: gamma.c, beta: beta.c,
                                      batchMean: mean.c, batchVariance: variance.c, epsilon: 1e-3,
                                      dOutput: Buf(w).c, dInput: dx.p, dGamma: dg.p, dBeta: db.p, accumulate: false)
            assertClose(dx.array, try load(name, "dx"), tolerance: 1e-5, "\(name) dx")
            assertClose(dg.array, try load(name, "dgamma"), tolerance: 1e-5, "\(name) dgamma")
            assertClose(db.array, try load(name, "dbeta"), tolerance: 1e-5, "\(name) dbeta")

            let mm = Buf(try load(name, "moving_mean")), mv = Buf(try load(name, "moving_variance"))
            batchNormUpdateMovingStatistics(movingMean: mm.p, movingVariance: mv.p, batchMean: mean.c,
                                            batchVariance: variance.c, channels: c, rows: rows, momentum: 0.9,
                                            correctVariance: correct)
            assertClose(mm.array, try load(name, "new_moving_mean"), tolerance: 2e-7, "\(name) moving mean")
            assertClose(mv.array, try load(name, "new_moving_variance"), tolerance: 4e-7, "\(name) moving variance")
            // The other rule is far off: the fixture really tells them apart.
            let other = Buf(try load(name, "moving_variance")), otherMean = Buf(count: c)
            batchNormUpdateMovingStatistics(movingMean: otherMean.p, movingVariance: other.p, batchMean: mean.c,
                                            batchVariance: variance.c, channels: c, rows: rows, momentum: 0.9,
                                            correctVariance: !correct)
            let gap = zip(other.array, try load(name, "new_moving_variance")).map { abs($0 - $1) }.max()!
            XCTAssertGreaterThan(gap, 1e-2, "\(name): the other variance rule should not match Keras")
        }
    }

    func testMovingStatisticsRules() {
        let mm = Buf([1, 2]), mv = Buf([4, 5])
        batchNormUpdateMovingStatistics(movingMean: mm.p, movingVariance: mv.p, batchMean: Buf([3, 0]).c,
                                        batchVariance: Buf([2, 1]).c, channels: 2, rows: 5, momentum: 0.99,
                                        correctVariance: true)
        assertClose(mm.array, [0.99 * 1 + 0.01 * 3, 0.99 * 2], tolerance: 1e-6, "mean")
        assertClose(mv.array, [0.99 * 4 + 0.01 * 2 * 1.25, 0.99 * 5 + 0.01 * 1.25], tolerance: 1e-6, "corrected")
        let mv2 = Buf([4, 5]), mm2 = Buf([1, 2])
        batchNormUpdateMovingStatistics(movingMean: mm2.p, movingVariance: mv2.p, batchMean: Buf([3, 0]).c,
                                        batchVariance: Buf([2, 1]).c, channels: 2, rows: 1, momentum: 0.9,
                                        correctVariance: false)
        assertClose(mv2.array, [0.9 * 4 + 0.1 * 2, 0.9 * 5 + 0.1 * 1], tolerance: 1e-6, "biased")
    }

    /// Frozen (inference-mode) BN with a fused activation: y = f(gamma (x - mm) / sqrt(mv + eps) + beta).
    func testInferenceBackward() {
        let rows = 45, c = 10
        for (i, act) in [ActivationSpec.linear, .swish].enumerated() {
            var rng = SeededRandom(UInt64(60 + i))
            let x = rng.floats(rows * c, -2, 2), w = rng.floats(rows * c)
            let gamma = rng.floats(c, 0.5, 1.5), beta = rng.floats(c), mm = rng.floats(c), mv = rng.floats(c, 0.5, 2)
            func loss(_ x: [Float], _ g: [Float], _ b: [Float]) -> Double {
                weightedSum(x.indices.map { k -> Double in
                    let ch = k % c
                    let z = Double(g[ch]) * (Double(x[k]) - Double(mm[ch])) / (Double(mv[ch]) + 1e-3).squareRoot() + Double(b[ch])
                    return referenceActivation(act, z)
                }, w)
            }
            let dx = Buf(count: x.count), dg = Buf(count: c), db = Buf(count: c)
            batchNormInferenceBackward(input: Buf(x).c, rows: rows, channels: c, gamma: Buf(gamma).c, beta: Buf(beta).c,
                                       movingMean: Buf(mm).c, movingVariance: Buf(mv).c, epsilon: 1e-3, activation: act,
                                       dOutput: Buf(w).c, dInput: dx.p, dGamma: dg.p, dBeta: db.p, accumulate: false)
            checkGradient("inference \(act.kind) dInput", at: x, analytic: dx.array, h: 1e-3, tolerance: 1e-4) { loss($0, gamma, beta) }
            checkGradient("inference \(act.kind) dGamma", at: gamma, analytic: dg.array, h: 1e-3, tolerance: 1e-4) { loss(x, $0, beta) }
            checkGradient("inference \(act.kind) dBeta", at: beta, analytic: db.array, h: 1e-3, tolerance: 1e-4) { loss(x, gamma, $0) }
        }
    }
}
