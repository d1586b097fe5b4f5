// Conv2D backward (groups = 1) over NHWC; layouts as the forward (Kernels/Conv2D.swift):
//   input  x  [batch, inH, inW, inC]
//   kernel W  HWIO [kernelH, kernelW, inC, outC], as a matrix [K = kH*kW*inC, outC]
//   dOutput dY [batch, outH, outW, outC], as a matrix [P = output pixels, outC]
// The forward is Y = im2col(x) · W, so
//   dKernel = im2col(x)ᵀ · dY          (pixel tiles: im2col tile, then a transposed-A product)
//   dInput  = col2im(dY · Wᵀ)          (bands of output rows: product, then scatter-add)
//   dBias   = column sums of dY        (`biasBackward`)
// Pointwise (1x1, stride 1, unpadded): im2col(x) is x itself, so both are single products.
//
// Why bands for dInput: the windows of neighbouring output rows overlap in the input, so two
// workers scattering into dInput could race. A band is `rows` whole output rows of one image
// with rows * strideH >= the window's height, so bands two apart never touch the same input
// row: the even bands run in parallel, then the odd ones.

import CKernels

/// Output rows per dInput band: the band's dY·Wᵀ tile is about 2 MB (as the forward's im2col
/// tiles), and at least enough rows that bands two apart are disjoint in the input.
/// (`targetFloats` is lowered by tests to get many small bands.)
@inline(__always)
func conv2dBandRows(_ g: Conv2DGeometry, targetFloats: Int = 1 << 19) -> Int {
    let k = g.kernelH * g.kernelW * g.inC
    let span = (g.kernelH - 1) * g.dilationH + 1
    let disjoint = (span + g.strideH - 1) / g.strideH
    return min(max(1, g.outH), max(disjoint, targetFloats / max(1, g.outW * k)))
}

/// Floats of workspace `conv2dBackwardInput` and `conv2dBackwardKernel` need for `threads`
/// workers (either function; fewer floats just means fewer workers, down to one).
public func conv2dBackwardWorkspaceCount(_ g: Conv2DGeometry, threads: Int = RuntimeThreads.count) -> Int {
    let t = max(1, threads)
    let k = g.kernelH * g.kernelW * g.inC
    if g.isPointwise {
        return max(gemmTransposedAWorkspaceCount(m: g.inC, n: g.outC, threads: t), pointwisePackedCount(k: g.outC, n: g.inC))
    }
    let tileRows = min(conv2dTileRows(g), max(1, g.outputPixels))
    let kernelGrad = t * tileRows * k + (t - 1) * k * g.outC
    let inputGrad = t * conv2dBandRows(g) * g.outW * k
    return max(kernelGrad, inputGrad)
}

/// dInput = d(loss)/d(input) from dOutput. Overwrites dInput, or adds into it when `accumulate`.
public func conv2dBackwardInput(dOutput: UnsafePointer<Float>, geometry g: Conv2DGeometry,
                                kernel: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
                                accumulate: Bool,
                                workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int) {
    conv2dBackwardInput(dOutput: dOutput, geometry: g, kernel: kernel, dInput: dInput, accumulate: accumulate,
                        workspace: workspace, workspaceCount: workspaceCount, bandRows: conv2dBandRows(g))
}

func conv2dBackwardInput(dOutput: UnsafePointer<Float>, geometry g: Conv2DGeometry,
                         kernel: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>, accumulate: Bool,
                         workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int, bandRows: Int) {
    if g.isPointwise {
        // dX [P, inC] = dY [P, outC] · Wᵀ (W stored [inC, outC]): with AVX-512, Wᵀ packed into
        // the workspace and the pointwise tile (accumulating through the epilogue's residual);
        // else OpenBLAS.
        if KernelISA.avx512, let ws = workspace, workspaceCount >= pointwisePackedCount(k: g.outC, n: g.inC) {
            packTransposedPointwiseAVX512(kernel, rows: g.inC, cols: g.outC, into: ws)
            pointwiseConv(m: g.outputPixels, n: g.inC, k: g.outC, input: dOutput, lda: g.outC, packed: ws,
                          output: dInput, ldc: g.inC,
                          epilogue: accumulate ? Epilogue(residual: UnsafePointer(dInput)) : .none)
            return
        }
        gemmSplitRows(m: g.outputPixels, n: g.inC, k: g.outC, a: dOutput, lda: g.outC,
                      b: kernel, ldb: g.outC, transB: true, c: dInput, ldc: g.inC, accumulate: accumulate)
        return
    }
    if !accumulate { zeroFill(dInput, g.inputCount) }
    guard g.outputPixels > 0 else { return }
    let k = g.kernelH * g.kernelW * g.inC
    let bandFloats = bandRows * g.outW * k
    guard let ws = workspace, workspaceCount >= bandFloats else {
        preconditionFailure("conv2dBackwardInput workspace too small: \(workspaceCount) < \(bandFloats)")
    }
    let threads = min(RuntimeThreads.count, workspaceCount / bandFloats)
    let bandsPerImage = (g.outH + bandRows - 1) / bandRows
    for phase in 0..<2 {
        let perImage = (bandsPerImage - phase + 1) / 2     // bands phase, phase+2, ...
        parallelForStatic(g.batch * perImage, threads: threads) { w, range in
            let slot = ws + w * bandFloats
            for j in range {
                let n = j / perImage, band = phase + 2 * (j % perImage)
                let oy0 = band * bandRows, rows = min(bandRows, g.outH - oy0)
                let p0 = (n * g.outH + oy0) * g.outW, pixels = rows * g.outW
                // dCol [pixels, K] = dY [pixels, outC] · Wᵀ
                sgemm(m: pixels, n: k, k: g.outC, a: dOutput + p0 * g.outC, lda: g.outC,
                      b: kernel, ldb: g.outC, transB: true, c: slot, ldc: k)
                col2imAdd(slot, g, image: n, rows: oy0..<(oy0 + rows), into: dInput)
            }
        }
    }
}

/// Adds each receptive-field row of `cols` (output rows `rows` of image `n`, ky, kx, ci order)
/// back onto the input pixels it was read from; taps over the padding are dropped.
private func col2imAdd(_ cols: UnsafePointer<Float>, _ g: Conv2DGeometry, image n: Int, rows: Range<Int>,
                       into dx: UnsafeMutablePointer<Float>) {
    let c = g.inC, k = g.kernelH * g.kernelW * c
    let image = dx + n * g.inH * g.inW * c
    var src = cols
    for oy in rows {
        let ky = Conv2DGeometry.validTaps(oy, stride: g.strideH, pad: g.padTop, dilation: g.dilationH,
                                          kernel: g.kernelH, size: g.inH)
        let iy0 = oy * g.strideH - g.padTop
        for ox in 0..<g.outW {
            let kx = Conv2DGeometry.validTaps(ox, stride: g.strideW, pad: g.padLeft, dilation: g.dilationW,
                                              kernel: g.kernelW, size: g.inW)
            let ix0 = ox * g.strideW - g.padLeft
            for i in ky {
                let rowBase = image + ((iy0 + i * g.dilationH) * g.inW + ix0) * c
                for t in kx {
                    addInto(rowBase + t * g.dilationW * c, src + (i * g.kernelW + t) * c, c)
                }
            }
            src += k
        }
    }
}

/// dKernel = d(loss)/d(kernel) (HWIO) from the forward input and dOutput. Overwrites dKernel, or
/// adds into it when `accumulate`.
public func conv2dBackwardKernel(input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
                                 geometry g: Conv2DGeometry, dKernel: UnsafeMutablePointer<Float>,
                                 accumulate: Bool,
                                 workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int) {
    conv2dBackwardKernel(input: input, dOutput: dOutput, geometry: g, dKernel: dKernel, accumulate: accumulate,
                         workspace: workspace, workspaceCount: workspaceCount,
                         tileRows: min(conv2dTileRows(g), max(1, g.outputPixels)))
}

/// A pointwise convolution's kernel gradient when its input is x [batch, H, W, inC] times a
/// per-image channel scale [batch, inC] that was never stored (a squeeze-and-excitation's excite,
/// `TrainingPlan.exciteIntoConv`): the products made as the multiply makes them, so the same bits
/// as `conv2dBackwardKernel` over the stored product. AVX-512 only.
func pointwiseBackwardKernel(input x: UnsafePointer<Float>, channelScale: UnsafePointer<Float>,
                             dOutput: UnsafePointer<Float>, geometry g: Conv2DGeometry,
                             dKernel: UnsafeMutablePointer<Float>, accumulate: Bool) {
    precondition(g.isPointwise && KernelISA.avx512, "a scaled kernel gradient is for AVX-512 1x1 convolutions")
    gemmTransposedA(m: g.inC, n: g.outC, k: g.outputPixels, a: x, lda: g.inC, b: dOutput, ldb: g.outC,
                    c: dKernel, ldc: g.outC, accumulate: accumulate, workspace: nil, workspaceCount: 0,
                    aScale: (channelScale, g.outH * g.outW))
}

/// (`tileRows` is lowered by tests to get many tiles.)
func conv2dBackwardKernel(input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
                          geometry g: Conv2DGeometry, dKernel: UnsafeMutablePointer<Float>, accumulate: Bool,
                          workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int, tileRows: Int) {
    let k = g.kernelH * g.kernelW * g.inC, pixels = g.outputPixels
    if g.isPointwise {
        // dW [inC, outC] = xᵀ [inC, P] · dY [P, outC]
        gemmTransposedA(m: g.inC, n: g.outC, k: pixels, a: input, lda: g.inC, b: dOutput, ldb: g.outC,
                        c: dKernel, ldc: g.outC, accumulate: accumulate,
                        workspace: workspace, workspaceCount: workspaceCount)
        return
    }
    guard pixels > 0 else {
        if !accumulate { dKernel.update(repeating: 0, count: k * g.outC) }
        return
    }
    let tiles = (pixels + tileRows - 1) / tileRows
    let perWorker = tileRows * k + k * g.outC          // im2col tile + dW partial
    guard let ws = workspace, workspaceCount >= tileRows * k else {
        preconditionFailure("conv2dBackwardKernel workspace too small: \(workspaceCount) < \(tileRows * k)")
    }
    let threads = min(RuntimeThreads.count, tiles, 1 + max(0, workspaceCount - tileRows * k) / perWorker)
    // Worker 0 accumulates straight into dKernel; worker w > 0 into its own partial.
    let partials = ws + threads * tileRows * k
    parallelForStatic(tiles, threads: threads) { w, range in
        let slot = ws + w * tileRows * k
        let dst = w == 0 ? dKernel : partials + (w - 1) * k * g.outC
        var first = true
        for t in range {
            let p0 = t * tileRows, rows = min(tileRows, pixels - p0)
            im2col(input, g, pixels: p0..<(p0 + rows), into: slot)
            let beta: Float = first ? (w == 0 && accumulate ? 1 : 0) : 1
            sgemm(m: k, n: g.outC, k: rows, a: slot, lda: k, transA: true,
                  b: dOutput + p0 * g.outC, ldb: g.outC, c: dst, ldc: g.outC, beta: beta)
            first = false
        }
    }
    let workers = min(threads, tiles)
    if workers > 1 {
        parallelForStatic(k, minChunk: 64) { _, r in
            for w in 1..<workers {
                let src = partials + (w - 1) * k * g.outC
                addInto(dKernel + r.lowerBound * g.outC, src + r.lowerBound * g.outC, r.count * g.outC)
            }
        }
    }
}
