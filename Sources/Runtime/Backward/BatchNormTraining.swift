// BatchNormalization in training mode over the last axis of x [rows, C] (rows = N*H*W for NHWC
// images), with an optional fused activation after it (EfficientNet's BN -> swish):
//     mean = Σ x / n,  var = Σ (x - mean)² / n   (biased: what the output is normalised with)
//     xhat = (x - mean) / sqrt(var + eps),  z = gamma * xhat + beta,  y = f(z)
// Backward, with dz = dy * f'(z):
//     dBeta = Σ dz,  dGamma = Σ dz * xhat,
//     dx = gamma / sqrt(var + eps) * (dz - dBeta / n - xhat * dGamma / n)
// Forward: two passes over x (shifted moments, output); backward: two (sums, dx).
// The sums are Double-accumulated per block (`channelReduce`).
//
// Moving statistics, as tf-keras 2.21 updates them (measured; fixtures/make_bn_training_fixture.py
// and fixtures/training/bn/meta.json). One step from moving_variance v with momentum 0.9:
//   4-D input [2,3,5,6] (TF's fused batch norm, n = 30 rows):
//     |v_keras - (0.9 v + 0.1 * biased)| = 0.0196,  |v_keras - (0.9 v + 0.1 * biased * n/(n-1))| = 8e-8
//   2-D input [8,11] (Keras's non-fused path, n = 8):
//     |v_keras - (0.9 v + 0.1 * biased)| = 1.4e-7,  |v_keras - (0.9 v + 0.1 * biased * n/(n-1))| = 0.148
// So the moving variance takes the Bessel-corrected batch variance n/(n-1) * var when Keras uses
// the fused kernel and the biased one otherwise. The output is normalised with the biased variance
// in both. When the fused kernel runs (tf-keras's batch_normalization.py, read, not measured beyond
// ranks 4 and 2): input rank 4 or 5 with the channel axis first or last, no renorm, no
// virtual_batch_size, no adjustment, not synchronized, and the config's `fused` not false.
// The same held eagerly and inside tf.function. Keras 3.15.1 (TensorFlow backend) never corrects:
// the same check gave |v - biased rule| = 7e-8 (4-D) and 6e-8 (2-D), so pass false for its models.
import Graph

/// Synchronised batch normalization across data-parallel ranks (`--sync-batchnorm`): the batch
/// statistics, and the two sums of the backward pass, are over every rank's rows.
public protocol BatchNormSync: AnyObject {
    /// Replaces this rank's mean and biased variance (over `rows` rows) with those over all ranks'
    /// rows; returns the total row count.
    func combine(mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>, channels: Int, rows: Int) -> Int
    /// Sums `count` doubles over all ranks, in place.
    func sum(_ values: UnsafeMutablePointer<Double>, count: Int)
}

/// Training-mode forward: y = f(gamma * (x - mean) / sqrt(var + eps) + beta) with the batch's own
/// statistics, which it also returns (batchMean, batchVariance: C floats each, the variance
/// biased). gamma/beta nil: scale/center off. y may be x itself. Overwrites its outputs. With
/// `sync`, the statistics are those of every rank's rows. Returns the rows they were taken over.
@discardableResult
public func batchNormTrainingForward(input x: UnsafePointer<Float>, rows: Int, channels: Int,
                                     gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?,
                                     epsilon: Float, activation: ActivationSpec = .linear,
                                     output y: UnsafeMutablePointer<Float>,
                                     batchMean: UnsafeMutablePointer<Float>,
                                     batchVariance: UnsafeMutablePointer<Float>,
                                     sync: BatchNormSync? = nil) -> Int {
    batchNormTrainingForward(input: x, rows: rows, channels: channels, gamma: gamma, beta: beta, epsilon: epsilon,
                             activation: activation, output: y, batchMean: batchMean, batchVariance: batchVariance,
                             sync: sync, averagePool: nil)
}

/// The same, also writing the global average pool of y per image into `averagePool` ([images, C],
/// images = rows / pixels) as the pass stores y: a squeeze-and-excitation's squeeze without a
/// read of y of its own. The sums are `globalAveragePool`'s, in its order (blocks of
/// `globalPoolBlockRows` rows), so the same bits. The images are shared among the workers.
@discardableResult
func batchNormTrainingForward(input x: UnsafePointer<Float>, rows: Int, channels: Int,
                              gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?,
                              epsilon: Float, activation: ActivationSpec,
                              output y: UnsafeMutablePointer<Float>,
                              batchMean: UnsafeMutablePointer<Float>,
                              batchVariance: UnsafeMutablePointer<Float>,
                              sync: BatchNormSync?, averagePool: (output: UnsafeMutablePointer<Float>, pixels: Int)?) -> Int {
    let C = channels, n = Double(max(1, rows))
    // One pass of shifted sums: S1 = Σ (x - s), S2 = Σ (x - s)², mean = s + S1/n,
    // var = S2/n - (S1/n)². The shift s is the mean of the first 128 rows, so (mean - s)² is
    // about var/128 and the subtraction loses nothing that matters; a single read of x instead
    // of two (the tensors are tens of MB: the passes are memory-bound).
    withUnsafeTemporaryAllocation(of: Float.self, capacity: C) { shiftBuf in
        let shift = shiftBuf.baseAddress!
        let head = min(max(rows, 0), 128)
        shift.update(repeating: 0, count: C)
        for r in 0..<head { addInto(shift, x + r * C, C) }
        for c in 0..<C { shift[c] /= Float(max(1, head)) }
        channelReduce(rows: rows, channels: C, sums: 2, body: { range, acc in
            for r in range { addShiftedMoments(x + r * C, shift, acc, C) }
        }, finish: { t in
            for c in 0..<C {
                let d = t[c] / n
                batchMean[c] = Float(Double(shift[c]) + d)
                batchVariance[c] = Float(max(0, t[C + c] / n - d * d))
            }
        })
    }
    let total = sync?.combine(mean: batchMean, variance: batchVariance, channels: C, rows: rows) ?? rows
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * C) { buf in
        let a = buf.baseAddress!, b = a + C
        for c in 0..<C {
            a[c] = (gamma?[c] ?? 1) / (batchVariance[c] + epsilon).squareRoot()
            b[c] = beta?[c] ?? 0
        }
        normalize(x, y, rows: rows, channels: C, center: batchMean, scale: a, shift: b, activation: activation,
                  pool: averagePool)
    }
    return total
}

/// acc[c] += x[c] - s[c] and acc[C + c] += (x[c] - s[c])² over one row.
@inline(__always)
private func addShiftedMoments(_ x: UnsafePointer<Float>, _ s: UnsafePointer<Float>,
                               _ acc: UnsafeMutablePointer<Float>, _ C: Int) {
    var c = 0
    while c + 8 <= C {
        let d = load(x + c) - load(s + c)
        store(load(acc + c) + d, acc + c)
        store(madd(d, d, load(acc + C + c)), acc + C + c)
        c += 8
    }
    while c < C { let d = x[c] - s[c]; acc[c] += d; acc[C + c] += d * d; c += 1 }
}

/// y = f((x - center) * scale + shift), per channel, rows in parallel; with `pool`, images in
/// parallel, each image's average over its `pixels` rows of y into `pool.output` (see
/// `batchNormTrainingForward(..., averagePool:)`).
private func normalize(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, channels C: Int,
                       center: UnsafePointer<Float>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
                       activation: ActivationSpec, pool: (output: UnsafeMutablePointer<Float>, pixels: Int)?) {
    struct Job: ActivationConsumer {
        let x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rows: Int, C: Int
        let center: UnsafePointer<Float>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>
        let pool: (output: UnsafeMutablePointer<Float>, pixels: Int)?

        /// Row r of y; with `sum`, y's row also added into it (sum + y, as the pool adds).
        @inline(__always)
        func row<A: VectorActivation>(_ f: A, _ r: Int, _ sum: UnsafeMutablePointer<Float>?) {
            let xr = x + r * C, yr = y + r * C
            var c = 0
            while c + 8 <= C {
                let v = f(madd(load(xr + c) - load(center + c), load(scale + c), load(shift + c)))
                store(v, yr + c)
                if let sum { store(load(sum + c) + v, sum + c) }
                c += 8
            }
            if c < C {
                let n = C - c
                let z = madd(loadPartial(xr + c, n) - loadPartial(center + c, n),
                             loadPartial(scale + c, n), loadPartial(shift + c, n))
                let v = f(z)
                storePartial(v, yr + c, n)
                if let sum { storePartial(loadPartial(sum + c, n) + v, sum + c, n) }
            }
        }

        func run<A: VectorActivation>(_ f: A) {
            guard let pool, pool.pixels > 0 else {
                parallelFor(rows, minChunk: max(1, 16_384 / max(1, C))) { _, range in
                    for r in range { row(f, r, nil) }
                }
                return
            }
            let pixels = pool.pixels
            parallelFor(rows / pixels) { _, images in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: C) { buffer in
                    let partial = buffer.baseAddress!
                    for image in images {
                        // globalAveragePool's arithmetic: a float sum per block of rows, added
                        // onto the image's total, then one divide.
                        let out = pool.output + image * C, first = image * pixels
                        out.update(repeating: 0, count: C)
                        var s0 = 0
                        while s0 < pixels {
                            let s1 = min(pixels, s0 + globalPoolBlockRows)
                            partial.update(repeating: 0, count: C)
                            for r in (first + s0)..<(first + s1) { row(f, r, partial) }
                            addInto(out, partial, C)
                            s0 = s1
                        }
                        let count = Float(pixels)
                        for c in 0..<C { out[c] /= count }
                    }
                }
            }
        }
    }
    withActivation(activation, Job(x: x, y: y, rows: rows, C: C, center: center, scale: scale, shift: shift,
                                   pool: pool))
}

/// Training-mode backward, from the forward's input x and the batch statistics it returned
/// (same gamma, beta, epsilon, activation). dGamma/dBeta may be nil (scale/center off, or not
/// wanted). Overwrites its outputs, or adds into them when `accumulate`. dInput must not alias
/// x or dOutput.
public func batchNormTrainingBackward(input x: UnsafePointer<Float>, rows: Int, channels: Int,
                                      gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?,
                                      batchMean: UnsafePointer<Float>, batchVariance: UnsafePointer<Float>,
                                      epsilon: Float, activation: ActivationSpec = .linear,
                                      dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
                                      dGamma: UnsafeMutablePointer<Float>?, dBeta: UnsafeMutablePointer<Float>?,
                                      accumulate: Bool, sync: BatchNormSync? = nil) {
    batchNormTrainingBackward(input: x, rows: rows, channels: channels, gamma: gamma, beta: beta, batchMean: batchMean,
                              batchVariance: batchVariance, epsilon: epsilon, activation: activation, dOutput: dOutput,
                              dInput: dInput, dGamma: dGamma, dBeta: dBeta, accumulate: accumulate, sync: sync,
                              excite: nil)
}

/// The same, with the activation's gradient given as a squeeze-and-excitation input's
/// (`excite`; then dOutput is not read): only when `ExciteGradient.fusable(activation)` and not
/// `accumulate` (the first pass stores dz, so the second never needs that gradient again).
func batchNormTrainingBackward(input x: UnsafePointer<Float>, rows: Int, channels: Int,
                               gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?,
                               batchMean: UnsafePointer<Float>, batchVariance: UnsafePointer<Float>,
                               epsilon: Float, activation: ActivationSpec,
                               dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
                               dGamma: UnsafeMutablePointer<Float>?, dBeta: UnsafeMutablePointer<Float>?,
                               accumulate: Bool, sync: BatchNormSync?, excite: ExciteGradient?) {
    let C = channels, localRows = Double(max(1, rows))
    // When f' is not 1, the first pass stores dz in dInput so the second need not re-evaluate f'
    // (an exp for swish); impossible when accumulating into dInput.
    let storeDz = !accumulate && !activation.isIdentity
    precondition(excite == nil || (storeDz && ExciteGradient.fusable(activation)), "an excite gradient the pass cannot take")
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 6 * C) { buf in
        let invStd = buf.baseAddress!, a = invStd + C, b = a + C, ones = b + C
        let meanDz = ones + C, q = meanDz + C
        for c in 0..<C {
            invStd[c] = 1 / (batchVariance[c] + epsilon).squareRoot()
            a[c] = (gamma?[c] ?? 1) * invStd[c]
            b[c] = beta?[c] ?? 0
            ones[c] = 1
        }
        // Pass 1: Σ dz and Σ dz * (x - mean), optionally storing dz.
        affineBackward(x: x, rows: rows, channels: C, a: a, b: b, center: batchMean, dxScale: ones,
                       activation: activation, dy: dOutput, dx: storeDz ? dInput : nil, accumulate: false,
                       excite: excite, sums: { local in
            // Synchronised: the sums (and the row count) over every rank.
            let merged = UnsafeMutablePointer<Double>.allocate(capacity: 2 * C + 1)
            defer { merged.deallocate() }
            var t = local, n = localRows
            if let sync {
                merged.update(from: local, count: 2 * C)
                merged[2 * C] = Double(rows)
                sync.sum(merged, count: 2 * C + 1)
                t = UnsafePointer(merged)
                n = max(1, merged[2 * C])
            }
            for c in 0..<C {
                let sumDz = t[c], sumDzXhat = t[C + c] * Double(invStd[c])
                meanDz[c] = Float(sumDz / n)
                q[c] = Float(sumDzXhat / n * Double(invStd[c]))     // xhat * dGamma / n = (x - mean) * q
                // dGamma and dBeta are this rank's own part: the gradient sum over ranks adds them up.
                if let dBeta { put(Float(local[c]), dBeta + c, accumulate: accumulate) }
                if let dGamma { put(Float(local[C + c] * Double(invStd[c])), dGamma + c, accumulate: accumulate) }
            }
        })
        // Pass 2: dx = a * (dz - mean(dz) - (x - mean) * q).
        withActivationDerivative(activation, BatchNormInputGradJob(
            x: x, rows: rows, C: C, mean: batchMean, a: a, b: b, meanDz: meanDz, q: q,
            dy: storeDz ? UnsafePointer(dInput) : dOutput, dzStored: storeDz,
            dx: dInput, accumulate: accumulate))
    }
}

private struct BatchNormInputGradJob: ActivationDerivativeConsumer {
    let x: UnsafePointer<Float>, rows: Int, C: Int
    let mean: UnsafePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>
    let meanDz: UnsafePointer<Float>, q: UnsafePointer<Float>
    /// dOutput, or dz itself when `dzStored` (then it is dx's own buffer, overwritten in place).
    let dy: UnsafePointer<Float>, dzStored: Bool
    let dx: UnsafeMutablePointer<Float>, accumulate: Bool

    func run<D: VectorActivationDerivative>(_ d: D) {
        let recompute = !dzStored && !d.isOne
        parallelFor(rows, minChunk: max(1, 16_384 / max(1, C))) { _, range in
            for r in range {
                let xr = x + r * C, dyr = dy + r * C, dxr = dx + r * C
                @inline(__always) func step(_ c: Int, _ n: Int) {
                    let full = n == 8
                    @inline(__always) func ld(_ p: UnsafePointer<Float>) -> Vec { full ? load(p + c) : loadPartial(p + c, n) }
                    let xc = ld(xr) - ld(mean)
                    var dz = ld(dyr)
                    if recompute { dz *= d(madd(xc, ld(a), ld(b))) }
                    let g = ld(a) * (dz - ld(meanDz) - xc * ld(q))
                    if full { put(g, dxr + c, accumulate: accumulate) } else { putPartial(g, dxr + c, n, accumulate: accumulate) }
                }
                var c = 0
                while c + 8 <= C { step(c, 8); c += 8 }
                if c < C { step(c, C - c) }
            }
        }
    }
}

/// The moving-average update after a training step, as tf-keras 2.21 does it:
///   moving_mean     <- moving_mean * momentum + batchMean * (1 - momentum)
///   moving_variance <- moving_variance * momentum + v * (1 - momentum)
/// with v = batchVariance * rows / (rows - 1) when `correctVariance` (tf-keras's fused path, in
/// practice 4-D image inputs; see the measurements at the top of this file), v = batchVariance
/// otherwise (2-D and 3-D inputs; and every Keras 3 model). `rows` is the count the statistics
/// were taken over (N*H*W). The arithmetic follows each path's order: fused:
/// (1 - f) * old + f * v with f = 1 - momentum; non-fused: old - (old - v) * (1 - momentum).
public func batchNormUpdateMovingStatistics(movingMean: UnsafeMutablePointer<Float>,
                                            movingVariance: UnsafeMutablePointer<Float>,
                                            batchMean: UnsafePointer<Float>, batchVariance: UnsafePointer<Float>,
                                            channels: Int, rows: Int, momentum: Double, correctVariance: Bool) {
    let f = Float(1 - momentum)
    if correctVariance {
        // TensorFlow's fused kernel: rows / max(rows - 1, 1), in float.
        let adjust = Float(rows) / Float(max(rows - 1, 1))
        let keep = 1 - f
        for c in 0..<channels {
            movingMean[c] = keep * movingMean[c] + f * batchMean[c]
            movingVariance[c] = keep * movingVariance[c] + f * (batchVariance[c] * adjust)
        }
    } else {
        for c in 0..<channels {
            movingMean[c] -= (movingMean[c] - batchMean[c]) * f
            movingVariance[c] -= (movingVariance[c] - batchVariance[c]) * f
        }
    }
}
