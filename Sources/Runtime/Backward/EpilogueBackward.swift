// Backward of the per-channel affine transform + activation over [rows, channels] (row-major,
// channel last) that ends conv/dense layers (`Epilogue`) and that inference-mode
// BatchNormalization, Rescaling and Normalization compute (`channelAffine`):
//     z = (x - center[c]) * a[c] + b[c],   y = f(z)      (center 0 for a plain affine map)
//     dz = dy * f'(z)   (recomputed from x in registers: z is never stored)
//     dx = dz * a,   Σ_rows dz   (dShift, dBeta),   Σ_rows dz * (x - center[c])   (dScale, dGamma)
// One pass over x and dy; the per-channel sums go through `channelReduce`. Centering before
// scaling (as TensorFlow's batch norm does) keeps z accurate when the mean is large.
import CKernels
import Graph

/// The gradient a squeeze-and-excitation block's input x [images, pixels, C] gets, left unstored:
/// dOutput * scale[image] + poolTerm[image], with dOutput the excite multiply's output gradient,
/// scale its per-image channel scale and poolTerm = dPool / pixels (what
/// `channelScaleAndPoolBackward` would write, the same roundings).
struct ExciteGradient {
    let dOutput: UnsafePointer<Float>, scale: UnsafePointer<Float>, poolTerm: UnsafePointer<Float>, pixels: Int

    /// Whether an affine backward with `activation` after it can take its dy this way: the
    /// 16-lane swish kernel only.
    static func fusable(_ activation: ActivationSpec) -> Bool { KernelISA.avx512 && activation.kind == .swish }
}

struct AffineBackwardJob: ActivationDerivativeConsumer {
    let x: UnsafePointer<Float>, rows: Int, channels: Int
    let a: UnsafePointer<Float>, b: UnsafePointer<Float>, center: UnsafePointer<Float>
    /// dx = dz * dxScale (a, or ones to store dz itself).
    let dxScale: UnsafePointer<Float>
    let dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, accumulate: Bool
    let sums: ((UnsafePointer<Double>) -> Void)?
    /// When set, dy is this instead (and `dy` is not read); only with `ExciteGradient.fusable`.
    var excite: ExciteGradient? = nil

    func run<D: VectorActivationDerivative>(_ d: D) {
        precondition(excite == nil || (KernelISA.avx512 && d is SwishDerivative), "an excite gradient needs the swish kernel")
        if KernelISA.avx512 && d is SwishDerivative {
            // EfficientNet's bn -> swish backward: the 16-lane kernel (CKernels/train_avx512.c),
            // whose derivative is bound by its arithmetic at eight lanes, not by memory.
            @inline(__always) func block(_ range: Range<Int>, _ acc: UnsafeMutablePointer<Float>?) {
                if let e = excite {
                    ck_affine_swish_grad_excite_rows_avx512(x, e.dOutput, e.scale, e.poolTerm, e.pixels, channels,
                                                            range.lowerBound, range.upperBound, center, a, b, dxScale,
                                                            dx, accumulate ? 1 : 0, acc)
                    return
                }
                ck_affine_swish_grad_rows_avx512(x, dy, channels, range.lowerBound, range.upperBound, center, a, b,
                                                 dxScale, dx, accumulate ? 1 : 0, acc)
            }
            if let finish = sums {
                channelReduce(rows: rows, channels: channels, sums: 2, body: { range, acc in block(range, acc) },
                              finish: finish)
            } else {
                parallelFor(rows, minChunk: max(1, 16_384 / max(1, channels))) { _, range in block(range, nil) }
            }
            return
        }
        if let finish = sums {
            channelReduce(rows: rows, channels: channels, sums: 2, body: { range, acc in
                for r in range { row(r, d, acc) }
            }, finish: finish)
        } else {
            parallelFor(rows, minChunk: max(1, 16_384 / max(1, channels))) { _, range in
                for r in range { row(r, d, nil) }
            }
        }
    }

    @inline(__always)
    private func row<D: VectorActivationDerivative>(_ r: Int, _ d: D, _ acc: UnsafeMutablePointer<Float>?) {
        let C = channels, xr = x + r * C, dyr = dy + r * C
        @inline(__always) func step(_ j: Int, _ n: Int) {
            let full = n == 8
            let xv = full ? load(xr + j) : loadPartial(xr + j, n)
            let xc = xv - (full ? load(center + j) : loadPartial(center + j, n))
            var dz = full ? load(dyr + j) : loadPartial(dyr + j, n)
            if !d.isOne {
                let av = full ? load(a + j) : loadPartial(a + j, n)
                dz *= d(madd(xc, av, full ? load(b + j) : loadPartial(b + j, n)))
            }
            if let dx {
                let sv = full ? load(dxScale + j) : loadPartial(dxScale + j, n)
                if full { put(dz * sv, dx + r * C + j, accumulate: accumulate) }
                else { putPartial(dz * sv, dx + r * C + j, n, accumulate: accumulate) }
            }
            if let acc {
                let s0 = dz, s1 = dz * xc
                if full {
                    store(load(acc + j) + s0, acc + j); store(load(acc + C + j) + s1, acc + C + j)
                } else {
                    storePartial(loadPartial(acc + j, n) + s0, acc + j, n)
                    storePartial(loadPartial(acc + C + j, n) + s1, acc + C + j, n)
                }
            }
        }
        var j = 0
        while j + 8 <= C { step(j, 8); j += 8 }
        if j < C { step(j, C - j) }
    }
}

/// Runs the affine backward with a, b, center defaulting to ones, zeros, zeros and dxScale to a.
func affineBackward(x: UnsafePointer<Float>, rows: Int, channels: Int,
                    a: UnsafePointer<Float>?, b: UnsafePointer<Float>?, center: UnsafePointer<Float>?,
                    dxScale: UnsafePointer<Float>? = nil, activation: ActivationSpec, dy: UnsafePointer<Float>,
                    dx: UnsafeMutablePointer<Float>?, accumulate: Bool, excite: ExciteGradient? = nil,
                    sums: ((UnsafePointer<Double>) -> Void)?) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * channels) { defaults in
        let ones = defaults.baseAddress!, zeros = ones + channels
        ones.update(repeating: 1, count: channels)
        zeros.update(repeating: 0, count: channels)
        withActivationDerivative(activation, AffineBackwardJob(
            x: x, rows: rows, channels: channels, a: a ?? UnsafePointer(ones), b: b ?? UnsafePointer(zeros),
            center: center ?? UnsafePointer(zeros), dxScale: dxScale ?? a ?? UnsafePointer(ones), dy: dy, dx: dx, accumulate: accumulate, sums: sums,
            excite: excite))
    }
}

/// Backward of a conv/dense epilogue y = f(acc * scale + shift) (Kernels/Epilogue.swift) from the
/// stored accumulator `acc` ([rows, channels], the product before the epilogue): dAccumulator =
/// dz * scale, dScale = Σ dz * acc, dShift = Σ dz (a bias gradient), dz = dOutput * f'(z).
/// With scale and shift nil, `accumulator` is the pre-activation z itself. Any output may be nil.
/// All outputs are overwritten, or added into when `accumulate`; dAccumulator may be dOutput.
/// Softmax is not element-wise: run `softmaxBackward` first, then this with a linear activation.
public func epilogueBackward(accumulator acc: UnsafePointer<Float>, rows: Int, channels: Int,
                             scale: UnsafePointer<Float>?, shift: UnsafePointer<Float>?,
                             activation: ActivationSpec, dOutput: UnsafePointer<Float>,
                             dAccumulator: UnsafeMutablePointer<Float>?,
                             dScale: UnsafeMutablePointer<Float>?, dShift: UnsafeMutablePointer<Float>?,
                             accumulate: Bool) {
    let sums: ((UnsafePointer<Double>) -> Void)? = dScale == nil && dShift == nil ? nil : { t in
        putTotals(t, dShift, channels, accumulate: accumulate)
        putTotals(t + channels, dScale, channels, accumulate: accumulate)
    }
    affineBackward(x: acc, rows: rows, channels: channels, a: scale, b: shift, center: nil,
                   activation: activation, dy: dOutput, dx: dAccumulator, accumulate: accumulate, sums: sums)
}

/// Backward of `channelAffine` (y = f(x * scale[c] + shift[c]): Rescaling, Normalization,
/// frozen BatchNormalization after folding): the same computation as `epilogueBackward`.
public func channelAffineBackward(input x: UnsafePointer<Float>, rows: Int, channels: Int,
                                  scale: UnsafePointer<Float>?, shift: UnsafePointer<Float>?,
                                  activation: ActivationSpec, dOutput: UnsafePointer<Float>,
                                  dInput: UnsafeMutablePointer<Float>?,
                                  dScale: UnsafeMutablePointer<Float>?, dShift: UnsafeMutablePointer<Float>?,
                                  accumulate: Bool) {
    epilogueBackward(accumulator: x, rows: rows, channels: channels, scale: scale, shift: shift,
                     activation: activation, dOutput: dOutput, dAccumulator: dInput,
                     dScale: dScale, dShift: dShift, accumulate: accumulate)
}

/// Inference-mode BatchNormalization backward (a frozen layer, or training=False), with an
/// optional fused activation: y = f(gamma * (x - mean) / sqrt(var + eps) + beta) with the moving
/// statistics as constants, so dInput = dz * gamma / sqrt(var + eps), dGamma = Σ dz * (x - mean) /
/// sqrt(var + eps), dBeta = Σ dz. gamma/beta nil means scale/center off (1 and 0). Any output may
/// be nil (a frozen layer wants only dInput). Overwrites, or adds when `accumulate`.
public func batchNormInferenceBackward(input x: UnsafePointer<Float>, rows: Int, channels: Int,
                                       gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?,
                                       movingMean: UnsafePointer<Float>, movingVariance: UnsafePointer<Float>,
                                       epsilon: Float, activation: ActivationSpec = .linear,
                                       dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>?,
                                       dGamma: UnsafeMutablePointer<Float>?, dBeta: UnsafeMutablePointer<Float>?,
                                       accumulate: Bool) {
    let C = channels
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * C) { buf in
        let a = buf.baseAddress!, b = a + C, invStd = a + 2 * C
        for c in 0..<C {
            invStd[c] = 1 / (movingVariance[c] + epsilon).squareRoot()
            a[c] = (gamma?[c] ?? 1) * invStd[c]
            b[c] = beta?[c] ?? 0
        }
        let sums: ((UnsafePointer<Double>) -> Void)? = dGamma == nil && dBeta == nil ? nil : { t in
            putTotals(t, dBeta, C, accumulate: accumulate)
            if let dGamma {
                for c in 0..<C { put(Float(t[C + c] * Double(invStd[c])), dGamma + c, accumulate: accumulate) }
            }
        }
        affineBackward(x: x, rows: rows, channels: C, a: a, b: b, center: movingMean, activation: activation,
                       dy: dOutput, dx: dInput, accumulate: accumulate, sums: sums)
    }
}
