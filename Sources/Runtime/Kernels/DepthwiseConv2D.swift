// DepthwiseConv2D over NHWC, computed directly (no im2col: each output reads only its own channel).
//   input  [batch, inH, inW, C]
//   kernel HWCM [kernelH, kernelW, C, M]  (M = depth_multiplier; Keras's layout)
//   output [batch, outH, outW, C*M], output channel c*M + m = sum over taps of
//          input[.., c] * kernel[ky, kx, c, m]
// Geometry: `Conv2DGeometry` with inC = C, outC = C*M.
//
// How it is fast: channels are innermost and vectorised, so each tap is a contiguous load of
// input and weights. Interior pixels (every tap inside the input) of 3- and 5-wide kernels with
// stride 1 or 2 go four at a time through `strip`, which loads each input column once for the
// four windows; other pixels go one at a time (channel blocks of 32, then 8, then a padded tail).
// Kernel-tap ranges are computed once per row (vertical) and only at the left/right borders
// (horizontal), so interior pixels run with no bounds tests. Rows are split across workers;
// scale/shift, the residual and the activation are applied in registers before the single store.
// With AVX-512 (KernelISA) and multiplier 1 the rows go to CKernels/depthwise_avx512.c instead
// (16 lanes, strips of 8 then 4, optional per-row channel sums for a following global pool).
import CKernels
import Graph

/// DepthwiseConv2D: output = epilogue(depthwise(input, kernel)).
/// `channelSums` (AVX-512 path, multiplier 1, an activation it applies in registers): also the
/// per-channel sums of each output row r (over batch x outH) into channelSums + r * C.
public func depthwiseConv2d(input: UnsafePointer<Float>, geometry g: Conv2DGeometry, multiplier: Int,
                            kernel: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                            epilogue: Epilogue, channelSums: UnsafeMutablePointer<Float>? = nil) {
    precondition(multiplier >= 1 && g.outC == g.inC * multiplier, "depthwise: outC must be inC * multiplier")
    guard g.outputPixels > 0 else { return }
    let rows = g.batch * g.outH
    let minRows = max(1, 32_768 / max(1, g.outW * g.outC * g.kernelH * g.kernelW))
    if KernelISA.avx512 && multiplier == 1 {
        // The 16-lane kernel (CKernels), over the same chunks of rows.
        var e = SplitEpilogue(epilogue, output: output)
        precondition(channelSums == nil || e.after == nil, "depthwise channel sums need an in-register epilogue")
        e.inRegisters.channel_sums = channelSums
        var cg = g.depthwiseForC
        let rowFloats = g.outW * g.outC
        // The kernel computes stride-1 rows in pairs within a call, so the workers get whole pairs:
        // at batch 1 the late 8-row layers were cut into eight 1-row chunks, which never paired.
        let unit = g.strideH == 1 && g.strideW == 1 && g.dilationH == 1 && g.dilationW == 1
            && (g.kernelW == 3 || g.kernelW == 5) ? 2 : 1
        parallelFor((rows + unit - 1) / unit, minChunk: max(1, minRows / unit)) { _, units in
            let range = (units.lowerBound * unit)..<min(rows, units.upperBound * unit)
            ck_depthwise_rows_avx512(&cg, input, kernel, output, range.lowerBound, range.upperBound, 0, g.outC,
                                     &e.inRegisters)
            e.finish(output, offset: range.lowerBound * rowFloats, cols: range.count * rowFloats)
        }
    } else {
        precondition(channelSums == nil, "depthwise channel sums need the AVX-512 kernel")
        withActivation(epilogue.elementwise, DepthwiseJob(
            x: input, g: g, m: multiplier, w: kernel, y: output,
            e: EpilogueVector(epilogue, output: output), rows: rows, minRows: minRows))
    }
    if epilogue.activation.kind == .softmax {
        softmax(output, outer: g.outputPixels, axisLength: g.outC, inner: 1)
    }
}

private struct DepthwiseJob: ActivationConsumer {
    let x: UnsafePointer<Float>, g: Conv2DGeometry, m: Int
    let w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    let e: EpilogueVector
    let rows: Int, minRows: Int

    func run<A: VectorActivation>(_ act: A) {
        parallelFor(rows, minChunk: minRows) { _, range in
            for row in range { outputRow(row / g.outH, row % g.outH, act) }
        }
    }

    @inline(__always)
    private func outputRow<A: VectorActivation>(_ n: Int, _ oy: Int, _ act: A) {
        let ky = Conv2DGeometry.validTaps(oy, stride: g.strideH, pad: g.padTop, dilation: g.dilationH,
                                          kernel: g.kernelH, size: g.inH)
        // Interior columns: every horizontal tap lands inside the input.
        let span = (g.kernelW - 1) * g.dilationW
        let oxLo = min(g.outW, (g.padLeft + g.strideW - 1) / g.strideW)
        let oxHi = max(oxLo, min(g.outW, g.inW - 1 - span + g.padLeft >= 0
                                 ? (g.inW - 1 - span + g.padLeft) / g.strideW + 1 : 0))
        let image = x + n * g.inH * g.inW * g.inC
        let iy0 = oy * g.strideH - g.padTop
        let outRow = y + (n * g.outH + oy) * g.outW * g.outC
        // Interior strips of four pixels with the common kernel shapes run through `strip`
        // (kernel width and stride as constants, so the input columns the four windows share
        // are loaded once); everything else, pixel by pixel.
        let stripKind = m == 1 && g.dilationW == 1 && (g.kernelW == 3 || g.kernelW == 5)
            && (g.strideW == 1 || g.strideW == 2) ? g.kernelW * 10 + g.strideW : 0
        var ox = 0
        while ox < g.outW {
            let ix0 = ox * g.strideW - g.padLeft
            // Address of input (iy0, ix0, channel 0); taps add ky*dH rows and kx*dW columns.
            let origin = image + (iy0 * g.inW + ix0) * g.inC
            let out = outRow + ox * g.outC
            if stripKind != 0 && ox >= oxLo && ox + 4 <= oxHi {
                switch stripKind {
                case 31: strip(origin, ky, out, act, Taps3Stride1.self)
                case 32: strip(origin, ky, out, act, Taps3Stride2.self)
                case 51: strip(origin, ky, out, act, Taps5Stride1.self)
                default: strip(origin, ky, out, act, Taps5Stride2.self)
                }
                ox += 4
                continue
            }
            let kx = (ox >= oxLo && ox < oxHi) ? 0..<g.kernelW
                : Conv2DGeometry.validTaps(ox, stride: g.strideW, pad: g.padLeft, dilation: g.dilationW,
                                           kernel: g.kernelW, size: g.inW)
            if m == 1 {
                pixel(origin, ky, kx, out, act)
            } else {
                pixelMultiplier(origin, ky, kx, out, act)
            }
            ox += 1
        }
    }

    /// Four adjacent interior output pixels, multiplier 1, dilation 1, 8 channels at a time.
    /// Kernel width and stride come from the type `S`, so they are constants in each
    /// specialisation: the tap loop unrolls and the loads of input columns shared by neighbouring
    /// windows merge. Per kernel row, 3*sW + kW input loads and kW weight loads feed 4*kW
    /// multiply-adds (instead of two loads for every one).
    @inline(__always)
    private func strip<A: VectorActivation, S: StripShape>(_ origin: UnsafePointer<Float>, _ ky: Range<Int>,
                                                          _ out: UnsafeMutablePointer<Float>, _ act: A, _: S.Type) {
        let kW = S.kernelW, sW = S.strideW
        let C = g.inC
        let rowStep = g.dilationH * g.inW * C
        var c = 0
        while c + 8 <= C {
            var a0 = Vec(), a1 = Vec(), a2 = Vec(), a3 = Vec()
            for i in ky {
                let p = origin + i * rowStep + c
                let q = w + i * kW * C + c
                for t in 0..<kW {
                    let wv = load(q + t * C)
                    a0 = madd(load(p + t * C), wv, a0)
                    a1 = madd(load(p + (sW + t) * C), wv, a1)
                    a2 = madd(load(p + (2 * sW + t) * C), wv, a2)
                    a3 = madd(load(p + (3 * sW + t) * C), wv, a3)
                }
            }
            e.emit(a0, channel: c, at: out + c, act)
            e.emit(a1, channel: c, at: out + C + c, act)
            e.emit(a2, channel: c, at: out + 2 * C + c, act)
            e.emit(a3, channel: c, at: out + 3 * C + c, act)
            c += 8
        }
        if c < C {
            for j in 0..<4 { pixel(origin + j * sW * C, ky, 0..<kW, out + j * C, act, from: c) }
        }
    }

    /// One output pixel, multiplier 1, channels `start..<C` in blocks of 32, then 8, then a padded tail.
    @inline(__always)
    private func pixel<A: VectorActivation>(_ origin: UnsafePointer<Float>, _ ky: Range<Int>, _ kx: Range<Int>,
                                            _ out: UnsafeMutablePointer<Float>, _ act: A, from start: Int = 0) {
        let C = g.inC
        let rowStep = g.dilationH * g.inW * C, colStep = g.dilationW * C
        let wRow = g.kernelW * C
        var c = start
        while c + 32 <= C {
            var a0 = Vec(), a1 = Vec(), a2 = Vec(), a3 = Vec()
            for i in ky {
                var p = origin + i * rowStep + kx.lowerBound * colStep + c
                var q = w + i * wRow + kx.lowerBound * C + c
                for _ in kx {
                    a0 = madd(load(p), load(q), a0)
                    a1 = madd(load(p + 8), load(q + 8), a1)
                    a2 = madd(load(p + 16), load(q + 16), a2)
                    a3 = madd(load(p + 24), load(q + 24), a3)
                    p += colStep; q += C
                }
            }
            e.emit(a0, channel: c, at: out + c, act)
            e.emit(a1, channel: c + 8, at: out + c + 8, act)
            e.emit(a2, channel: c + 16, at: out + c + 16, act)
            e.emit(a3, channel: c + 24, at: out + c + 24, act)
            c += 32
        }
        while c + 8 <= C {
            var a = Vec()
            for i in ky {
                var p = origin + i * rowStep + kx.lowerBound * colStep + c
                var q = w + i * wRow + kx.lowerBound * C + c
                for _ in kx { a = madd(load(p), load(q), a); p += colStep; q += C }
            }
            e.emit(a, channel: c, at: out + c, act)
            c += 8
        }
        if c < C {
            let n = C - c
            var a = Vec()
            for i in ky {
                var p = origin + i * rowStep + kx.lowerBound * colStep + c
                var q = w + i * wRow + kx.lowerBound * C + c
                for _ in kx { a = madd(loadPartial(p, n), loadPartial(q, n), a); p += colStep; q += C }
            }
            e.emitPartial(a, channel: c, at: out + c, n, act)
        }
    }

    /// One output pixel with depth multiplier M > 1: output channel j reads input channel j / M,
    /// gathered lane by lane (the rare case; the weights are still contiguous per tap).
    @inline(__always)
    private func pixelMultiplier<A: VectorActivation>(_ origin: UnsafePointer<Float>, _ ky: Range<Int>,
                                                      _ kx: Range<Int>, _ out: UnsafeMutablePointer<Float>,
                                                      _ act: A) {
        let C = g.inC, CM = g.outC
        let rowStep = g.dilationH * g.inW * C, colStep = g.dilationW * C
        var j = 0
        while j < CM {
            let lanes = min(8, CM - j)
            var a = Vec()
            for i in ky {
                for t in kx {
                    let p = origin + i * rowStep + t * colStep
                    let q = w + (i * g.kernelW + t) * CM + j
                    var xin = Vec()
                    for l in 0..<lanes { xin[l] = p[(j + l) / m] }
                    a = madd(xin, lanes == 8 ? load(q) : loadPartial(q, lanes), a)
                }
            }
            e.emit(a, channel: j, at: out + j, count: lanes, act)
            j += 8
        }
    }
}

/// Kernel width and stride of a `strip` specialisation, as compile-time constants.
private protocol StripShape { static var kernelW: Int { get }; static var strideW: Int { get } }
private enum Taps3Stride1: StripShape { static var kernelW: Int { 3 }; static var strideW: Int { 1 } }
private enum Taps3Stride2: StripShape { static var kernelW: Int { 3 }; static var strideW: Int { 2 } }
private enum Taps5Stride1: StripShape { static var kernelW: Int { 5 }; static var strideW: Int { 1 } }
private enum Taps5Stride2: StripShape { static var kernelW: Int { 5 }; static var strideW: Int { 2 } }
