// DepthwiseConv2D backward over NHWC; layouts as the forward (Kernels/DepthwiseConv2D.swift):
//   input  x  [batch, inH, inW, C]
//   kernel W  HWCM [kernelH, kernelW, C, M]   (output channel j = c*M + m)
//   dOutput dY [batch, outH, outW, C*M]
// dInput[n, iy, ix, c] = Σ over taps (ky, kx) that read (iy, ix), Σ_m dY[n, oy, ox, c*M+m] * W[ky, kx, c, m]
// dKernel[ky, kx, j]   = Σ over output pixels x[n, iy, ix, j/M] * dY[n, oy, ox, j]
// dBias                = column sums of dY (`biasBackward`).
//
// Both vectorise across channels like the forward (32 lanes, then 8, then a padded tail).
// dInput, stride 1 and M = 1 (most of EfficientNet): the transposed convolution is then itself a
// depthwise convolution of dY with the kernel flipped in both spatial axes and the padding
// mirrored (padTop' = (kH-1)*dH - padTop), so the tuned forward kernel computes it.
// Otherwise dInput is a gather: each input pixel collects from the output pixels that read it (the
// transposed convolution), so workers split input rows and never write the same element.
// dKernel: workers split output rows, each summing into its own copy of the (small) kernel
// gradient; for one output row, tap and channel block the sum over the row's pixels runs in
// registers. M > 1 (rare) gathers input lanes per output channel, as the forward does. With
// AVX-512 and M = 1 all taps of a kernel row go together, each dY vector loaded once for them.
import CKernels

/// Floats of workspace `depthwiseConv2dBackwardKernel` uses for `threads` workers: one kernel-sized
/// partial per worker after the first.
public func depthwiseConv2dBackwardKernelWorkspaceCount(_ g: Conv2DGeometry,
                                                        threads: Int = RuntimeThreads.count) -> Int {
    max(0, threads - 1) * g.kernelH * g.kernelW * g.outC
}

/// dInput from dOutput (any stride, dilation, padding, multiplier). Overwrites dInput, or adds
/// into it when `accumulate`.
public func depthwiseConv2dBackwardInput(dOutput: UnsafePointer<Float>, geometry g: Conv2DGeometry,
                                         multiplier m: Int, kernel: UnsafePointer<Float>,
                                         dInput: UnsafeMutablePointer<Float>, accumulate: Bool) {
    precondition(m >= 1 && g.outC == g.inC * m, "depthwise: outC must be inC * multiplier")
    let mirroredTop = (g.kernelH - 1) * g.dilationH - g.padTop
    let mirroredLeft = (g.kernelW - 1) * g.dilationW - g.padLeft
    if m == 1 && !accumulate && g.strideH == 1 && g.strideW == 1 && mirroredTop >= 0 && mirroredLeft >= 0
        && g.outputPixels > 0 {
        let taps = g.kernelH * g.kernelW
        withUnsafeTemporaryAllocation(of: Float.self, capacity: taps * g.inC) { flipped in
            for t in 0..<taps {
                (flipped.baseAddress! + t * g.inC).update(from: kernel + (taps - 1 - t) * g.inC, count: g.inC)
            }
            let transposed = Conv2DGeometry(
                batch: g.batch, inH: g.outH, inW: g.outW, inC: g.inC, outH: g.inH, outW: g.inW, outC: g.inC,
                kernelH: g.kernelH, kernelW: g.kernelW, strideH: 1, strideW: 1,
                dilationH: g.dilationH, dilationW: g.dilationW, padTop: mirroredTop, padLeft: mirroredLeft)
            depthwiseConv2d(input: dOutput, geometry: transposed, multiplier: 1, kernel: flipped.baseAddress!,
                            output: dInput, epilogue: .none)
        }
        return
    }
    let rowWork = g.inW * g.outC * g.kernelH * g.kernelW
    parallelForStatic(g.batch * g.inH, minChunk: max(1, 32_768 / max(1, rowWork))) { _, range in
        // Per pixel: the (dY offset, W offset) of every tap that read it; for M > 1 the per-output-
        // channel products before summing each channel's M of them.
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * g.kernelH * g.kernelW + 2 * g.kernelH) { buf in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: m > 1 ? g.outC : 1) { tmp in
            let dyOff = buf.baseAddress!, wOff = dyOff + g.kernelH * g.kernelW
            let rowKy = wOff + g.kernelH * g.kernelW, rowOy = rowKy + g.kernelH
            for row in range {
                let n = row / g.inH, iy = row % g.inH
                // Vertical taps reading row iy: iy = oy*sH - padTop + ky*dH.
                var rows = 0
                for ky in 0..<g.kernelH {
                    let t = iy + g.padTop - ky * g.dilationH
                    guard t >= 0, t % g.strideH == 0, t / g.strideH < g.outH else { continue }
                    rowKy[rows] = ky; rowOy[rows] = t / g.strideH; rows += 1
                }
                let dyImage = dOutput + n * g.outH * g.outW * g.outC
                let dxRow = dInput + (n * g.inH + iy) * g.inW * g.inC
                for ix in 0..<g.inW {
                    var taps = 0
                    for kx in 0..<g.kernelW {
                        let u = ix + g.padLeft - kx * g.dilationW
                        guard u >= 0, g.strideW == 1 || u % g.strideW == 0 else { continue }
                        let ox = u / g.strideW
                        guard ox < g.outW else { continue }
                        for v in 0..<rows {
                            dyOff[taps] = (rowOy[v] * g.outW + ox) * g.outC
                            wOff[taps] = (rowKy[v] * g.kernelW + kx) * g.outC
                            taps += 1
                        }
                    }
                    let dst = dxRow + ix * g.inC
                    if m == 1 {
                        gatherTaps(dyImage, kernel, dyOff, wOff, taps, g.outC, into: dst, accumulate: accumulate)
                    } else {
                        let t = tmp.baseAddress!
                        gatherTaps(dyImage, kernel, dyOff, wOff, taps, g.outC, into: t, accumulate: false)
                        for c in 0..<g.inC {
                            var s: Float = 0
                            for k in 0..<m { s += t[c * m + k] }
                            put(s, dst + c, accumulate: accumulate)
                        }
                    }
                }
            }
        }}
    }
}

/// out[j] (+)= Σ_t dy[dyOff[t] + j] * w[wOff[t] + j] for j < width.
@inline(__always)
private func gatherTaps(_ dy: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                        _ dyOff: UnsafePointer<Int>, _ wOff: UnsafePointer<Int>, _ taps: Int, _ width: Int,
                        into out: UnsafeMutablePointer<Float>, accumulate: Bool) {
    var j = 0
    while j + 32 <= width {
        var a0 = Vec(), a1 = Vec(), a2 = Vec(), a3 = Vec()
        for t in 0..<taps {
            let p = dy + dyOff[t] + j, q = w + wOff[t] + j
            a0 = madd(load(p), load(q), a0)
            a1 = madd(load(p + 8), load(q + 8), a1)
            a2 = madd(load(p + 16), load(q + 16), a2)
            a3 = madd(load(p + 24), load(q + 24), a3)
        }
        put(a0, out + j, accumulate: accumulate); put(a1, out + j + 8, accumulate: accumulate)
        put(a2, out + j + 16, accumulate: accumulate); put(a3, out + j + 24, accumulate: accumulate)
        j += 32
    }
    while j + 8 <= width {
        var a = Vec()
        for t in 0..<taps { a = madd(load(dy + dyOff[t] + j), load(w + wOff[t] + j), a) }
        put(a, out + j, accumulate: accumulate)
        j += 8
    }
    if j < width {
        let n = width - j
        var a = Vec()
        for t in 0..<taps { a = madd(loadPartial(dy + dyOff[t] + j, n), loadPartial(w + wOff[t] + j, n), a) }
        putPartial(a, out + j, n, accumulate: accumulate)
    }
}

/// dKernel (HWCM) from the forward input and dOutput. Overwrites dKernel, or adds into it when
/// `accumulate`. `workspace` holds `workspaceCount` floats (see
/// `depthwiseConv2dBackwardKernelWorkspaceCount`; fewer means fewer workers; nil runs on one).
public func depthwiseConv2dBackwardKernel(input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
                                          geometry g: Conv2DGeometry, multiplier m: Int,
                                          dKernel: UnsafeMutablePointer<Float>, accumulate: Bool,
                                          workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int) {
    precondition(m >= 1 && g.outC == g.inC * m, "depthwise: outC must be inC * multiplier")
    let size = g.kernelH * g.kernelW * g.outC
    let rows = g.batch * g.outH
    let partials = workspace == nil ? 0 : workspaceCount / max(1, size)
    let rowWork = g.outW * g.outC * g.kernelH * g.kernelW
    let threads = min(RuntimeThreads.count, 1 + partials)
    let chunks = rows > 0 ? min(threads, max(1, rows / max(1, 65_536 / max(1, rowWork)))) : 0
    if chunks == 0 || !accumulate { dKernel.update(repeating: 0, count: size) }
    guard chunks > 0 else { return }
    parallelForStatic(rows, minChunk: max(1, 65_536 / max(1, rowWork)), threads: threads) { w, range in
        let dst = w == 0 ? dKernel : workspace! + (w - 1) * size
        if w > 0 { dst.update(repeating: 0, count: size) }
        for row in range { kernelGradRow(input, dOutput, g, m, n: row / g.outH, oy: row % g.outH, into: dst) }
    }
    for w in 1..<chunks { addInto(dKernel, workspace! + (w - 1) * size, size) }
}

/// Adds output row (n, oy)'s contribution to every kernel tap into `dw`.
@inline(__always)
private func kernelGradRow(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ g: Conv2DGeometry, _ m: Int,
                           n: Int, oy: Int, into dw: UnsafeMutablePointer<Float>) {
    let C = g.inC, CM = g.outC
    let ky = Conv2DGeometry.validTaps(oy, stride: g.strideH, pad: g.padTop, dilation: g.dilationH,
                                      kernel: g.kernelH, size: g.inH)
    let dyRow = dy + (n * g.outH + oy) * g.outW * CM
    for i in ky {
        let iy = oy * g.strideH - g.padTop + i * g.dilationH
        let xRow = x + (n * g.inH + iy) * g.inW * C
        // All of the kernel row's taps per load of dy (CKernels), the same sums as below.
        if m == 1 && KernelISA.avx512
            && ck_depthwise_kernel_grad_row_avx512(xRow, dyRow, CM, g.outW, g.inW, g.kernelW, g.strideW, g.padLeft,
                                                   g.dilationW, dw + i * g.kernelW * CM) != 0 { continue }
        for kx in 0..<g.kernelW {
            // Output columns whose tap kx lands inside the input: ix = ox*sW - padLeft + kx*dW.
            let lead = g.padLeft - kx * g.dilationW
            let lo = lead <= 0 ? 0 : (lead + g.strideW - 1) / g.strideW
            let last = g.inW - 1 + lead
            let hi = last < 0 ? 0 : min(g.outW, last / g.strideW + 1)
            guard lo < hi else { continue }
            // x at (iy, ix(lo)); successive output columns step sW input columns.
            let x0 = xRow + (lo * g.strideW - lead) * C, xStep = g.strideW * C
            let dy0 = dyRow + lo * CM
            let out = dw + (i * g.kernelW + kx) * CM
            if m == 1 && KernelISA.avx512 {
                ck_sum_products_avx512(x0, xStep, dy0, CM, hi - lo, CM, out)   // 16 lanes, same sums
            } else if m == 1 {
                sumProducts(x0, xStep, dy0, CM, count: hi - lo, width: CM, into: out)
            } else {
                sumProductsGathered(x0, xStep, dy0, CM, count: hi - lo, width: CM, multiplier: m, into: out)
            }
        }
    }
}

/// out[j] += Σ_{k < count} a[k*aStep + j] * b[k*bStep + j] for j < width.
@inline(__always)
private func sumProducts(_ a: UnsafePointer<Float>, _ aStep: Int, _ b: UnsafePointer<Float>, _ bStep: Int,
                         count: Int, width: Int, into out: UnsafeMutablePointer<Float>) {
    var j = 0
    while j + 32 <= width {
        var s0 = Vec(), s1 = Vec(), s2 = Vec(), s3 = Vec()
        var p = a + j, q = b + j
        for _ in 0..<count {
            s0 = madd(load(p), load(q), s0)
            s1 = madd(load(p + 8), load(q + 8), s1)
            s2 = madd(load(p + 16), load(q + 16), s2)
            s3 = madd(load(p + 24), load(q + 24), s3)
            p += aStep; q += bStep
        }
        store(load(out + j) + s0, out + j); store(load(out + j + 8) + s1, out + j + 8)
        store(load(out + j + 16) + s2, out + j + 16); store(load(out + j + 24) + s3, out + j + 24)
        j += 32
    }
    while j + 8 <= width {
        var s = Vec()
        var p = a + j, q = b + j
        for _ in 0..<count { s = madd(load(p), load(q), s); p += aStep; q += bStep }
        store(load(out + j) + s, out + j)
        j += 8
    }
    if j < width {
        let n = width - j
        var s = Vec()
        var p = a + j, q = b + j
        for _ in 0..<count { s = madd(loadPartial(p, n), loadPartial(q, n), s); p += aStep; q += bStep }
        storePartial(loadPartial(out + j, n) + s, out + j, n)
    }
}

/// As `sumProducts` with a's lanes gathered per output channel: a[k*aStep + j/M].
@inline(__always)
private func sumProductsGathered(_ a: UnsafePointer<Float>, _ aStep: Int, _ b: UnsafePointer<Float>, _ bStep: Int,
                                 count: Int, width: Int, multiplier m: Int, into out: UnsafeMutablePointer<Float>) {
    var j = 0
    while j < width {
        let lanes = min(8, width - j)
        var s = Vec()
        var p = a, q = b + j
        for _ in 0..<count {
            var xv = Vec()
            for l in 0..<lanes { xv[l] = p[(j + l) / m] }
            s = madd(xv, loadPartial(q, lanes), s)
            p += aStep; q += bStep
        }
        storePartial(loadPartial(out + j, lanes) + s, out + j, lanes)
        j += 8
    }
}
