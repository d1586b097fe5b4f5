// Conv2D computed directly, for inputs with few channels (image stems: RGB or grayscale).
//   input [batch, inH, inW, inC], kernel HWIO [kH, kW, inC, outC], output [batch, outH, outW, outC]
// Why: with inC <= 4 the im2col matrix is only kH*kW*inC (e.g. 27) wide, where sgemm is far from
// its peak and im2col costs as much as the product. Here each output pixel broadcasts its few
// input values against contiguous weight rows, accumulating 32 output channels in registers,
// and applies the epilogue before the one store. Windows are clipped at the borders, so padding
// costs nothing.
import CKernels
import Graph

/// Whether `conv2d` takes the direct path for this geometry.
@inline(__always)
func conv2dIsDirect(_ g: Conv2DGeometry) -> Bool { !g.isPointwise && g.inC <= 4 }

/// The direct Conv2D (see the file comment); same contract as `conv2d`, no workspace.
func conv2dDirect(input: UnsafePointer<Float>, geometry g: Conv2DGeometry, kernel: UnsafePointer<Float>,
                  output: UnsafeMutablePointer<Float>, epilogue: Epilogue) {
    let rows = g.batch * g.outH
    let minRows = max(1, 65_536 / max(1, g.outW * g.outC * g.kernelH * g.kernelW * g.inC))
    if KernelISA.avx512 && g.dilationW == 1 {
        // The 16-lane kernel (CKernels), over the same chunks of rows.
        var e = SplitEpilogue(epilogue, output: output)
        var cg = g.convForC
        let rowFloats = g.outW * g.outC
        parallelFor(rows, minChunk: minRows) { _, range in
            ck_direct_conv_rows_avx512(&cg, input, kernel, output, range.lowerBound, range.upperBound, &e.inRegisters)
            e.finish(output, offset: range.lowerBound * rowFloats, cols: range.count * rowFloats)
        }
    } else {
        withActivation(epilogue.elementwise, DirectConvJob(
            x: input, g: g, w: kernel, y: output,
            e: EpilogueVector(epilogue, output: output), rows: rows, minRows: minRows))
    }
    if epilogue.activation.kind == .softmax {
        softmax(output, outer: g.outputPixels, axisLength: g.outC, inner: 1)
    }
}

private struct DirectConvJob: ActivationConsumer {
    let x: UnsafePointer<Float>, g: Conv2DGeometry
    let w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    let e: EpilogueVector
    let rows: Int, minRows: Int

    func run<A: VectorActivation>(_ act: A) {
        parallelFor(rows, minChunk: minRows) { _, range in
            for row in range {
                let n = row / g.outH, oy = row % g.outH
                let ky = Conv2DGeometry.validTaps(oy, stride: g.strideH, pad: g.padTop, dilation: g.dilationH,
                                                  kernel: g.kernelH, size: g.inH)
                let image = x + n * g.inH * g.inW * g.inC
                let outRow = y + row * g.outW * g.outC
                for ox in 0..<g.outW {
                    let kx = Conv2DGeometry.validTaps(ox, stride: g.strideW, pad: g.padLeft, dilation: g.dilationW,
                                                      kernel: g.kernelW, size: g.inW)
                    let origin = image + ((oy * g.strideH - g.padTop) * g.inW + ox * g.strideW - g.padLeft) * g.inC
                    pixel(origin, ky, kx, outRow + ox * g.outC, act)
                }
            }
        }
    }

    /// One output pixel: for every tap (ky, kx, ci) inside the input, x broadcast times the
    /// weight row w[ky, kx, ci, c..c+31] into four accumulators.
    @inline(__always)
    private func pixel<A: VectorActivation>(_ origin: UnsafePointer<Float>, _ ky: Range<Int>, _ kx: Range<Int>,
                                            _ out: UnsafeMutablePointer<Float>, _ act: A) {
        let ci = g.inC, co = g.outC
        let rowStep = g.dilationH * g.inW * ci, colStep = g.dilationW * ci
        var c = 0
        // Without horizontal dilation a kernel row's taps read kx.count * inC consecutive input
        // floats against consecutive weight rows: one flat loop instead of two nested short ones.
        let flat = g.dilationW == 1
        while c + 32 <= co {
            var a0 = Vec(), a1 = Vec(), a2 = Vec(), a3 = Vec()
            @inline(__always) func tap(_ v: Vec, _ q: UnsafePointer<Float>) {
                a0 = madd(v, load(q), a0)
                a1 = madd(v, load(q + 8), a1)
                a2 = madd(v, load(q + 16), a2)
                a3 = madd(v, load(q + 24), a3)
            }
            for i in ky {
                if flat {
                    let p = origin + i * rowStep + kx.lowerBound * ci
                    var q = w + ((i * g.kernelW + kx.lowerBound) * ci) * co + c
                    for j in 0..<(kx.count * ci) { tap(Vec(repeating: p[j]), q); q += co }
                    continue
                }
                for t in kx {
                    let p = origin + i * rowStep + t * colStep
                    var q = w + ((i * g.kernelW + t) * ci) * co + c
                    for j in 0..<ci { tap(Vec(repeating: p[j]), q); q += co }
                }
            }
            e.emit(a0, channel: c, at: out + c, act)
            e.emit(a1, channel: c + 8, at: out + c + 8, act)
            e.emit(a2, channel: c + 16, at: out + c + 16, act)
            e.emit(a3, channel: c + 24, at: out + c + 24, act)
            c += 32
        }
        while c < co {
            let lanes = min(8, co - c)
            var a = Vec()
            for i in ky {
                for t in kx {
                    let p = origin + i * rowStep + t * colStep
                    var q = w + ((i * g.kernelW + t) * ci) * co + c
                    for j in 0..<ci {
                        a = madd(Vec(repeating: p[j]), lanes == 8 ? load(q) : loadPartial(q, lanes), a)
                        q += co
                    }
                }
            }
            e.emit(a, channel: c, at: out + c, count: lanes, act)
            c += 8
        }
    }
}
