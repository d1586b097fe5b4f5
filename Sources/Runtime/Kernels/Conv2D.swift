// Conv2D (groups = 1) over NHWC.
//   input  [batch, inH, inW, inC]
//   kernel HWIO [kernelH, kernelW, inC, outC]  (Keras's layout; as a matrix [kH*kW*inC, outC])
//   output [batch, outH, outW, outC]
// 1x1/stride 1/unpadded: the NHWC input already is the [pixels, inC] matrix, so one product
// (PointwiseConv.swift, with the weights packed into the workspace).
// inC <= 4 (image stems): computed directly, see Conv2DDirect.swift.
// Otherwise im2col: each output pixel's receptive field is copied as a row (ky, kx, ci order,
// matching the kernel's rows; padding as zeros) into a per-worker workspace tile, then sgemm.
// Tiles keep the workspace to a few MB whatever the image size.

/// im2col rows per tile for a receptive field of `k` floats: the tile is at most ~2 MB (at least
/// 64 rows, at most 1024).
@inline(__always)
func conv2dTileRows(_ g: Conv2DGeometry) -> Int {
    let k = g.kernelH * g.kernelW * g.inC
    return max(64, min(1024, (1 << 19) / k))
}

/// Floats of workspace `conv2d` needs for `threads` workers (the packed weights for the pointwise
/// case, 0 for the direct one).
public func conv2dWorkspaceCount(_ g: Conv2DGeometry, threads: Int = RuntimeThreads.count) -> Int {
    if g.isPointwise { return pointwisePackedCount(k: g.inC, n: g.outC) }
    if conv2dIsDirect(g) { return 0 }
    let rows = min(conv2dTileRows(g), max(1, g.outputPixels))
    return max(1, threads) * rows * g.kernelH * g.kernelW * g.inC
}

/// Conv2D: output = epilogue(conv(input, kernel)). `workspace` holds `workspaceCount` floats,
/// at least `conv2dWorkspaceCount(g, threads: 1)` (fewer than the default count just means fewer
/// workers); it may be nil when that count is 0.
public func conv2d(input: UnsafePointer<Float>, geometry g: Conv2DGeometry,
                   kernel: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                   epilogue: Epilogue,
                   workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int) {
    let pixels = g.outputPixels
    guard pixels > 0 else { return }
    if g.isPointwise {
        // Packed into the workspace, then the register-blocked product (PointwiseConv.swift);
        // OpenBLAS when the caller gave no room for the packed weights.
        if let ws = workspace, workspaceCount >= pointwisePackedCount(k: g.inC, n: g.outC) {
            if KernelISA.avx512 {
                packPointwiseAVX512(kernel, k: g.inC, n: g.outC, into: ws)
            } else {
                packPointwise(kernel, k: g.inC, n: g.outC, into: ws)
            }
            pointwiseConv(m: pixels, n: g.outC, k: g.inC, input: input, lda: g.inC, packed: ws, output: output,
                          ldc: g.outC, epilogue: epilogue)
        } else {
            gemmWithEpilogue(m: pixels, n: g.outC, k: g.inC, a: input, lda: g.inC,
                             b: kernel, ldb: g.outC, c: output, ldc: g.outC, epilogue: epilogue)
        }
        return
    }
    if conv2dIsDirect(g) {
        conv2dDirect(input: input, geometry: g, kernel: kernel, output: output, epilogue: epilogue)
        return
    }
    let k = g.kernelH * g.kernelW * g.inC
    let maxRows = min(conv2dTileRows(g), pixels)
    let slots = workspaceCount / (maxRows * k)
    guard let ws = workspace, slots >= 1 else {
        preconditionFailure("conv2d workspace too small: \(workspaceCount) < \(maxRows * k)")
    }
    let threads = min(RuntimeThreads.count, slots)
    let (tileRows, tiles) = balancedTiles(pixels, maxRows: maxRows, workers: threads)
    let tail = epilogue.withoutSoftmax

    if tiles >= threads {
        // Each worker builds and multiplies its own tiles in its own workspace slot.
        parallelFor(tiles, threads: threads) { w, range in
            let slot = ws + w * tileRows * k
            for t in range {
                let p0 = t * tileRows, rows = min(tileRows, pixels - p0)
                im2col(input, g, pixels: p0..<(p0 + rows), into: slot)
                sgemm(m: rows, n: g.outC, k: k, a: slot, lda: k, b: kernel, ldb: g.outC,
                      c: output + p0 * g.outC, ldc: g.outC)
                tail.apply(output + p0 * g.outC, rows: rows, cols: g.outC, ld: g.outC, outputOffset: p0 * g.outC)
            }
        }
        if epilogue.activation.kind == .softmax {
            softmax(output, outer: pixels, axisLength: g.outC, inner: 1)
        }
    } else {
        // Fewer tiles than workers (small images): the whole im2col matrix fits in the
        // workspace (pixels < threads * tileRows), so build it, then split the product by columns.
        parallelFor(pixels, minChunk: 16, threads: threads) { _, r in
            im2col(input, g, pixels: r, into: ws + r.lowerBound * k)
        }
        gemmWithEpilogue(m: pixels, n: g.outC, k: k, a: ws, lda: k, b: kernel, ldb: g.outC,
                         c: output, ldc: g.outC, epilogue: epilogue, threads: threads)
    }
}

/// Writes the receptive fields of output pixels `pixels` (flattened n, oy, ox) as consecutive
/// rows of kernelH*kernelW*inC floats at `dst`, zeros where the window hangs over the padding.
func im2col(_ input: UnsafePointer<Float>, _ g: Conv2DGeometry, pixels: Range<Int>,
            into dst: UnsafeMutablePointer<Float>) {
    let c = g.inC, rowLen = g.kernelW * c, k = g.kernelH * rowLen
    var n = pixels.lowerBound / (g.outH * g.outW)
    var oy = (pixels.lowerBound / g.outW) % g.outH
    var ox = pixels.lowerBound % g.outW
    var out = dst
    for _ in pixels {
        let image = input + n * g.inH * g.inW * c
        let iy0 = oy * g.strideH - g.padTop, ix0 = ox * g.strideW - g.padLeft
        for ky in 0..<g.kernelH {
            let iy = iy0 + ky * g.dilationH
            let row = out + ky * rowLen
            if iy < 0 || iy >= g.inH {
                row.update(repeating: 0, count: rowLen)
                continue
            }
            let src = image + iy * g.inW * c
            for kx in 0..<g.kernelW {
                let ix = ix0 + kx * g.dilationW
                if ix < 0 || ix >= g.inW {
                    (row + kx * c).update(repeating: 0, count: c)
                } else {
                    (row + kx * c).update(from: src + ix * c, count: c)
                }
            }
        }
        out += k
        ox += 1
        if ox == g.outW {
            ox = 0; oy += 1
            if oy == g.outH { oy = 0; n += 1 }
        }
    }
}
