// Pointwise (1x1, stride 1) convolution as a register-blocked matrix product over packed weights,
// with the epilogue applied in registers before the one store.
//   input   [m, k], rows lda apart (NHWC pixels x input channels)
//   kernel  [k, n] (HWIO with H = W = 1), packed by `packPointwise` into panels of output
//           channels: panel p is k rows of 16 floats, kernel[kk, 16p ..< 16p + 16], zeros past n;
//           a last panel of 1-8 channels is 8 wide.
//   output  [m, n], rows ldc apart
// Why not OpenBLAS here: EfficientNet's 1x1 convolutions have small k and n (16-1152) and many
// rows; sgemm packs both operands on every call and leaves the epilogue (bias, swish, the
// residual) to a second pass over the output. Here the weights are packed once (per plan, or per
// call into the workspace), input rows are read in place, and each 6-pixel x 16-channel tile
// is 12 accumulators that get their epilogue before the store (the classic 6x16 AVX2 register
// block: per input channel, 2 weight loads and 6 broadcasts feed 12 fused multiply-adds).
// Rows are cut into blocks whose input fits in L2; a block sweeps all panels (so one panel,
// k x 16 floats, stays in L1/L2 while six-row tiles stream past it). Blocks, and panel groups
// when there are few blocks, are shared among the workers. With AVX-512 (KernelISA) the same
// blocks go to the C tile in CKernels/pointwise_avx512.c (12 rows x two panels, 24 zmm
// accumulators); the tiles below are the AVX2 path.
import CKernels
import Graph

/// Floats `packPointwise` writes for a [k, n] kernel.
public func pointwisePackedCount(k: Int, n: Int) -> Int {
    let rest = n % 16
    return k * (n - rest + (rest == 0 ? 0 : rest <= 8 ? 8 : 16))
}

/// Packs `kernel` [k, n] (rows n apart) into panels (see the file comment), row kk multiplied by
/// `rowScale[kk]` when given (squeeze-and-excitation's channel scale folded into the weights).
public func packPointwise(_ kernel: UnsafePointer<Float>, k: Int, n: Int, rowScale: UnsafePointer<Float>? = nil,
                          into dst: UnsafeMutablePointer<Float>) {
    packPanels(k: k, n: n, into: dst) { kk, c0, valid, out in
        let src = kernel + kk * n + c0
        if let s = rowScale?[kk] {
            for l in 0..<valid { out[l] = src[l] * s }
        } else {
            out.update(from: src, count: valid)
        }
    }
}

/// Packs the transpose of `w` [rows, cols] (rows cols apart) as `packPointwise` packs a
/// [k = cols, n = rows] kernel: the backward product dX = dY · Wᵀ of a 1x1 convolution.
public func packPointwise(transposeOf w: UnsafePointer<Float>, rows: Int, cols: Int,
                          into dst: UnsafeMutablePointer<Float>) {
    packPanels(k: cols, n: rows, into: dst) { kk, c0, valid, out in
        for l in 0..<valid { out[l] = w[(c0 + l) * cols + kk] }
    }
}

/// `packPointwise(transposeOf:rows:cols:into:)`'s panels with AVX-512: 16 x 16 blocks transposed
/// in registers, the panels shared among the workers (the scalar packing, one strided read per
/// weight on one thread while the other worker waited, took about 1% of an unfrozen EfficientNetB0
/// step's CPU).
func packTransposedPointwiseAVX512(_ w: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>) {
    parallelFor((rows + 15) / 16, minChunk: max(1, 4096 / max(1, cols))) { _, panels in
        ck_pack_transposed_panels_avx512(w, rows, cols, panels.lowerBound, panels.upperBound, dst)
    }
}

/// `packPointwise(_:k:n:into:)`'s panels (no row scale) with AVX-512, the panels shared among
/// the workers: `conv2d` packs a 1x1 kernel on every call (the training forward's weights change every step),
/// and one thread copying 16 floats a call left the other worker idle for about 1% of the step.
func packPointwiseAVX512(_ w: UnsafePointer<Float>, k: Int, n: Int, into dst: UnsafeMutablePointer<Float>) {
    parallelFor((n + 15) / 16, minChunk: max(1, 4096 / max(1, k))) { _, panels in
        ck_pack_panels_avx512(w, k, n, panels.lowerBound, panels.upperBound, dst)
    }
}

/// The panel layout: for each panel (output channels c0..<c0 + valid), for each row kk < k,
/// `fill(kk, c0, valid, out)` writes the row's `valid` values; the panel's padding is zeroed here.
@inline(__always)
private func packPanels(k: Int, n: Int, into dst: UnsafeMutablePointer<Float>,
                        _ fill: (_ kk: Int, _ c0: Int, _ valid: Int, _ out: UnsafeMutablePointer<Float>) -> Void) {
    var out = dst
    var c0 = 0
    while c0 < n {
        let width = panelWidth(n, c0), valid = min(width, n - c0)
        for kk in 0..<k {
            fill(kk, c0, valid, out)
            for l in valid..<width { out[l] = 0 }
            out += width
        }
        c0 += width
    }
}

/// `packed` (a kernel packed by `packPointwise`) with row kk multiplied by `rowScale[kk]`: the
/// same as packing the kernel with that row scale. The panels are shared among the workers: at
/// batch 1 squeeze-and-excitation scales a projection's kernel (up to 672 x 112) once per image,
/// and on one thread the other worker waited for it.
public func scalePackedPointwise(_ packed: UnsafePointer<Float>, k: Int, n: Int, rowScale: UnsafePointer<Float>,
                                 into dst: UnsafeMutablePointer<Float>, threads: Int = RuntimeThreads.count) {
    let panels = (n + 15) / 16
    parallelFor(panels, minChunk: max(1, 8192 / max(1, 16 * k)), threads: threads) { _, range in
        for p in range {
            // Panels before p are all 16 wide (only the last can be 8).
            let c0 = p * 16, width = panelWidth(n, c0)
            var src = packed + c0 * k, out = dst + c0 * k
            for kk in 0..<k {
                let s = Vec(repeating: rowScale[kk])
                store(load(src) * s, out)
                if width == 16 { store(load(src + 8) * s, out + 8) }
                src += width
                out += width
            }
        }
    }
}

/// Width of the panel starting at output channel c0 (16, or 8 for a last panel of 1-8 channels).
@inline(__always)
func panelWidth(_ n: Int, _ c0: Int) -> Int { n - c0 <= 8 ? 8 : 16 }

/// output = epilogue(input · kernel) with the kernel packed by `packPointwise`.
public func pointwiseConv(m: Int, n: Int, k: Int, input: UnsafePointer<Float>, lda: Int,
                          packed: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, ldc: Int,
                          epilogue: Epilogue, threads: Int = RuntimeThreads.count) {
    guard m > 0, n > 0 else { return }
    if KernelISA.avx512 {
        // The 16-lane kernel (CKernels) over the same blocks.
        var e = SplitEpilogue(epilogue, output: output)
        PointwiseBlocks(m: m, n: n, k: k, threads: threads).forEach { rows, panels in
            ck_pointwise_block_avx512(input, lda, k, packed, n, output, ldc, rows.lowerBound, rows.upperBound,
                                      panels.lowerBound, panels.upperBound, &e.inRegisters)
            let c0 = panels.lowerBound * 16
            e.finish(output, offset: rows.lowerBound * ldc + c0, rows: rows.count, cols: min(n, panels.upperBound * 16) - c0,
                     ld: ldc)
        }
    } else {
        pointwiseConvAVX2(m: m, n: n, k: k, input: input, lda: lda, packed: packed, output: output, ldc: ldc,
                          epilogue: epilogue, threads: threads)
    }
    if epilogue.activation.kind == .softmax {
        precondition(ldc == n, "softmax epilogue needs contiguous rows")
        softmax(output, outer: m, axisLength: n, inner: 1)
    }
}

/// output = epilogue((x times its image's channel scale) · kernel) for x [m, k] and scale
/// [m / rowsPerScale, k]: a squeeze-and-excitation's multiply folded into the 1x1 convolution
/// after it (training, `TrainingPlan.exciteIntoConv`). Each block of rows is scaled into a
/// buffer of the worker's just before the tiles read it, the multiply's own products (x * s,
/// rounded once), so the product never goes to memory and the outputs are `pointwiseConv`'s over
/// the stored product bit for bit. AVX-512 only; no residual in the epilogue.
func pointwiseConvScaledInput(m: Int, n: Int, k: Int, input: UnsafePointer<Float>, channelScale: UnsafePointer<Float>,
                              rowsPerScale: Int, packed: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              epilogue: Epilogue, threads: Int = RuntimeThreads.count) {
    precondition(KernelISA.avx512 && epilogue.residual == nil && epilogue.activation.kind != .softmax,
                 "a scaled-input pointwise product is for AVX-512 without a residual")
    guard m > 0, n > 0 else { return }
    let per = max(1, rowsPerScale)
    let e = SplitEpilogue(epilogue, output: output)
    PointwiseBlocks(m: m, n: n, k: k, threads: threads).forEach { rows, panels in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: rows.count * k) { buffer in
            let scaled = buffer.baseAddress!
            for (j, r) in rows.enumerated() {
                scaleRow(input + r * k, by: channelScale + (r / per) * k, into: scaled + j * k, count: k)
            }
            // The block's rows as rows 0..<count of the buffer and of the output from its first row.
            var local = e.inRegisters
            local.output = local.output.map { $0 + rows.lowerBound * n }
            ck_pointwise_block_avx512(scaled, k, k, packed, n, output + rows.lowerBound * n, n, 0, rows.count,
                                      panels.lowerBound, panels.upperBound, &local)
        }
        let c0 = panels.lowerBound * 16
        e.finish(output, offset: rows.lowerBound * n + c0, rows: rows.count, cols: min(n, panels.upperBound * 16) - c0,
                 ld: n)
    }
}

/// Dwords (bf16 pairs) `packPointwiseBF16` writes for a [k, n] kernel.
public func pointwiseBF16PackedCount(k: Int, n: Int) -> Int { (k + 1) / 2 * (n + 15) / 16 * 16 }

/// Rounds to the nearest bfloat16, ties to even (what vcvtne2ps2bf16 does to the activations);
/// a NaN stays a (quiet) NaN.
@inline(__always)
public func bfloat16Bits(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
    return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
}

/// The float32 value of bfloat16 bits.
@inline(__always)
public func floatFromBFloat16(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

/// Packs `kernel` [k, n] (rows n apart) for `pointwiseConvBF16`: panels of 16 output channels
/// (zeros past n), each (k + 1) / 2 rows of 16 dwords, the dword of channel j in row q holding
/// bf16(kernel[2q, j]) in its low half and bf16(kernel[2q + 1, j]) (0 past k) in its high half:
/// the pairs one `vdpbf16ps` lane multiplies.
public func packPointwiseBF16(_ kernel: UnsafePointer<Float>, k: Int, n: Int, into dst: UnsafeMutablePointer<UInt32>) {
    let pairs = (k + 1) / 2
    var out = dst
    for c0 in stride(from: 0, to: n, by: 16) {
        for q in 0..<pairs {
            for j in 0..<16 {
                let c = c0 + j
                guard c < n else { out[j] = 0; continue }
                let lo = UInt32(bfloat16Bits(kernel[2 * q * n + c]))
                let hi = 2 * q + 1 < k ? UInt32(bfloat16Bits(kernel[(2 * q + 1) * n + c])) : 0
                out[j] = lo | hi << 16
            }
            out += 16
        }
    }
}

/// output = epilogue(input · kernel) in bfloat16 with float32 accumulation (AVX512_BF16; see
/// CKernels/pointwise_bf16_avx512.c), the kernel packed by `packPointwiseBF16`; with `rowScale`
/// (k floats) the input's channel kk is multiplied by rowScale[kk] first. Same blocks and
/// workers as `pointwiseConv`.
public func pointwiseConvBF16(m: Int, n: Int, k: Int, input: UnsafePointer<Float>, lda: Int,
                              rowScale: UnsafePointer<Float>? = nil, packed: UnsafePointer<UInt32>,
                              output: UnsafeMutablePointer<Float>, ldc: Int, epilogue: Epilogue,
                              threads: Int = RuntimeThreads.count) {
    precondition(KernelISA.bf16Available, "pointwiseConvBF16 needs AVX512_BF16")
    guard m > 0, n > 0 else { return }
    var e = SplitEpilogue(epilogue, output: output)
    let blocks = PointwiseBlocks(m: m, n: n, k: k, threads: threads)
    // When workers share a block's panels (late layers at batch 1), each would round the same
    // rows to bf16 again: round them once, here, into this thread's buffer, which the workers read.
    let pairs = blocks.splitsPanels ? ck_bf16_pairs_buffer(m * ((k + 1) / 2)) : nil
    if let pairs { ck_bf16_pairs_avx512(input, lda, k, rowScale, pairs, 0, m) }
    blocks.forEach { rows, panels in
        if let pairs {
            ck_pointwise_bf16_pairs_block_avx512(pairs, k, packed, n, output, ldc, rows.lowerBound, rows.upperBound,
                                                 panels.lowerBound, panels.upperBound, &e.inRegisters)
        } else {
            ck_pointwise_bf16_block_avx512(input, lda, k, rowScale, packed, n, output, ldc, rows.lowerBound,
                                           rows.upperBound, panels.lowerBound, panels.upperBound, &e.inRegisters)
        }
        let c0 = panels.lowerBound * 16
        e.finish(output, offset: rows.lowerBound * ldc + c0, rows: rows.count, cols: min(n, panels.upperBound * 16) - c0,
                 ld: ldc)
    }
    if epilogue.activation.kind == .softmax {
        precondition(ldc == n, "softmax epilogue needs contiguous rows")
        softmax(output, outer: m, axisLength: n, inner: 1)
    }
}

/// How a product's rows and panels are cut into blocks and shared among workers: rows in blocks
/// whose input fits in L2 (a multiple of 12 rows, the AVX-512 tile; the AVX2 tile is 6), and when
/// there are fewer blocks than work items, panel groups too.
private struct PointwiseBlocks {
    let m: Int, n: Int, k: Int, threads: Int

    /// Rows per block, blocks, panel groups per block, work items in flight.
    private var layout: (blockRows: Int, blocks: Int, groups: Int, work: Int) {
        // Rows per block: the block's input (rows x k floats) about 64 KB; or all the rows when
        // there are few and their input fits in L2 (late layers: 64-225 pixels against kernels
        // of 0.5-1.5 MB), so the workers split the kernel's panels and each streams only its
        // share of the weights from memory, once.
        let few = m <= 384 && m * k <= 131_072
        let pairs = ((n + 15) / 16 + 1) / 2
        // A single row or a few against a large kernel (squeeze-and-excitation's products at batch
        // 1, up to 1152 x 48) is bound by reading the weights: one panel group per worker, each
        // reading its share, where one thread would read all of it while the other waited.
        let gemv = m <= 12 && n * k >= 32_768 && n > 16
        let work = threads <= 1 ? 1 : m * n * k >= 131_072 ? 4 * threads : gemv ? threads : 1
        // Few rows against a small kernel with fewer pairs of panels than work items
        // (EfficientNet's block4-5 projections at batch 1: 225 x 480 x 80-112, 3-4 pairs, the last
        // one 16 channels) cannot be shared evenly by panels: with two workers one of them got 48
        // or 64 channels' work to the other's 32 or 48. Their rows are shared instead, in blocks
        // of whole 12-row tiles, each worker reading the whole kernel (at most 256 KB, from L2).
        let rowsShared = few && work > 1 && pairs < work && k * n <= 65_536 && m >= 24
        let blockRows = rowsShared ? max(12, m / work / 12 * 12)
            : few ? m : max(12, min(384, 16_384 / max(1, k) / 12 * 12))
        let blocks = (m + blockRows - 1) / blockRows
        // Panel groups start at even panels, so the tiles keep pairing panels (32 channels).
        let groups = blocks >= work ? 1 : min(pairs, (work + blocks - 1) / blocks)
        return (blockRows, blocks, groups, work)
    }

    /// Whether a block's panels are split among several work items (each reads the block's rows).
    var splitsPanels: Bool { layout.groups > 1 }

    func forEach(_ body: (_ rows: Range<Int>, _ panels: Range<Int>) -> Void) {
        let (blockRows, blocks, groups, work) = layout
        let panels = (n + 15) / 16, pairs = (panels + 1) / 2
        parallelFor(blocks * groups, threads: work == 1 ? 1 : threads) { _, items in
            for item in items {
                let r0 = (item / groups) * blockRows, r1 = min(m, r0 + blockRows)
                let g = item % groups
                body(r0..<r1, min(panels, 2 * (g * pairs / groups))..<min(panels, 2 * ((g + 1) * pairs / groups)))
            }
        }
    }
}

/// The AVX2 path: the register tiles below, specialised per activation.
private func pointwiseConvAVX2(m: Int, n: Int, k: Int, input: UnsafePointer<Float>, lda: Int,
                               packed: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, ldc: Int,
                               epilogue: Epilogue, threads: Int) {
    let e = EpilogueVector(epilogue, output: output)
    let job = PointwiseJob(m: m, n: n, k: k, a: input, lda: lda, b: packed, c: output, ldc: ldc, e: e,
                           threads: threads, after: nil)
    // The common activations run in registers; the rest (rare in convolutions) as a pass over
    // each finished block, so the kernel is not compiled for every activation there is.
    let act = epilogue.elementwise
    let plainReluFamily = (act.kind == .relu || act.kind == .relu6) && act.alpha == 0 && act.threshold == 0
    switch act.kind {
    case .linear: job.run(LinearActivation())
    case .swish: job.run(SwishActivation())
    case .sigmoid: job.run(SigmoidActivation())
    case _ where plainReluFamily:
        if let m = act.kind == .relu6 ? (act.maxValue ?? 6) : act.maxValue {
            job.run(ClippedReluActivation(maxValue: m))
        } else {
            job.run(ReluActivation())
        }
    default:
        let plain = PointwiseJob(m: m, n: n, k: k, a: input, lda: lda, b: packed, c: output, ldc: ldc,
                                 e: EpilogueVector(.none, output: output), threads: threads,
                                 after: epilogue.withoutSoftmax)
        plain.run(LinearActivation())
    }
}

private struct PointwiseJob {
    let m: Int, n: Int, k: Int
    let a: UnsafePointer<Float>, lda: Int
    let b: UnsafePointer<Float>
    let c: UnsafeMutablePointer<Float>, ldc: Int
    let e: EpilogueVector
    let threads: Int
    /// Applied to each finished block when the activation is not fused into the tiles.
    let after: Epilogue?

    func run<A: VectorActivation>(_ act: A) {
        PointwiseBlocks(m: m, n: n, k: k, threads: threads).forEach { rows, panels in block(rows: rows, panels: panels, act) }
    }

    @inline(__always)
    private func block<A: VectorActivation>(rows: Range<Int>, panels: Range<Int>, _ act: A) {
        for p in panels {
            let c0 = p * 16
            let panel = b + c0 * k
            let valid = min(16, n - c0)
            if panelWidth(n, c0) == 16 {
                tiles(rows, panel, c0, valid, act, TwoVectors.self)
            } else {
                tiles(rows, panel, c0, valid, act, OneVector.self)
            }
        }
        if let after {
            let c0 = panels.lowerBound * 16, cols = min(n, panels.upperBound * 16) - c0
            after.apply(c + rows.lowerBound * ldc + c0, rows: rows.count, cols: cols, ld: ldc, channelOffset: c0,
                        outputOffset: rows.lowerBound * ldc + c0)
        }
    }

    @inline(__always)
    private func tiles<A: VectorActivation, W: PanelVectors>(_ rows: Range<Int>, _ panel: UnsafePointer<Float>,
                                                            _ c0: Int, _ valid: Int, _ act: A, _: W.Type) {
        var r = rows.lowerBound
        while r < rows.upperBound {
            let count = min(6, rows.upperBound - r)
            if count == 6 || count >= 3 {
                tile6(r, count, panel, c0, valid, act, W.self)
            } else {
                for i in 0..<count { tile1(r + i, panel, c0, valid, act, W.self) }
            }
            r += count
        }
    }

    /// Six rows (pixels) from row r times one panel; with `count` < 6 rows left, the missing rows
    /// re-read the last one and are not stored (a whole tile still beats 3-5 one-row passes,
    /// which wait on loads rather than on multiply-adds).
    @inline(__always)
    private func tile6<A: VectorActivation, W: PanelVectors>(_ r: Int, _ count: Int, _ panel: UnsafePointer<Float>,
                                                            _ c0: Int, _ valid: Int, _ act: A, _: W.Type) {
        let last = count - 1
        let x0 = a + r * lda, x1 = x0 + min(1, last) * lda, x2 = x0 + min(2, last) * lda
        let x3 = x0 + min(3, last) * lda, x4 = x0 + min(4, last) * lda, x5 = x0 + min(5, last) * lda
        var s00 = Vec(), s10 = Vec(), s20 = Vec(), s30 = Vec(), s40 = Vec(), s50 = Vec()
        var s01 = Vec(), s11 = Vec(), s21 = Vec(), s31 = Vec(), s41 = Vec(), s51 = Vec()
        var q = panel
        // Weights first, then row by row one broadcast and its two multiply-adds: 12 accumulators,
        // 2 weight vectors and 1 broadcast fit AVX2's 16 registers (all six broadcasts up front
        // made LLVM spill accumulators to the stack).
        for kk in 0..<k {
            let w0 = load(q), w1 = W.two ? load(q + 8) : Vec()
            var v = Vec(repeating: x0[kk])
            s00 = madd(v, w0, s00); if W.two { s01 = madd(v, w1, s01) }
            v = Vec(repeating: x1[kk])
            s10 = madd(v, w0, s10); if W.two { s11 = madd(v, w1, s11) }
            v = Vec(repeating: x2[kk])
            s20 = madd(v, w0, s20); if W.two { s21 = madd(v, w1, s21) }
            v = Vec(repeating: x3[kk])
            s30 = madd(v, w0, s30); if W.two { s31 = madd(v, w1, s31) }
            v = Vec(repeating: x4[kk])
            s40 = madd(v, w0, s40); if W.two { s41 = madd(v, w1, s41) }
            v = Vec(repeating: x5[kk])
            s50 = madd(v, w0, s50); if W.two { s51 = madd(v, w1, s51) }
            q += W.two ? 16 : 8
        }
        let out = c + r * ldc + c0
        store(s00, s01, out, c0, valid, act, W.self)
        store(s10, s11, out + ldc, c0, valid, act, W.self)
        store(s20, s21, out + 2 * ldc, c0, valid, act, W.self)
        if count == 6 {
            store(s30, s31, out + 3 * ldc, c0, valid, act, W.self)
            store(s40, s41, out + 4 * ldc, c0, valid, act, W.self)
            store(s50, s51, out + 5 * ldc, c0, valid, act, W.self)
            return
        }
        if count > 3 { store(s30, s31, out + 3 * ldc, c0, valid, act, W.self) }
        if count > 4 { store(s40, s41, out + 4 * ldc, c0, valid, act, W.self) }
    }

    /// One row times one panel (the rows left over after the six-row tiles).
    @inline(__always)
    private func tile1<A: VectorActivation, W: PanelVectors>(_ r: Int, _ panel: UnsafePointer<Float>, _ c0: Int,
                                                            _ valid: Int, _ act: A, _: W.Type) {
        let x0 = a + r * lda
        var s0 = Vec(), s1 = Vec()
        var q = panel
        for kk in 0..<k {
            let v = Vec(repeating: x0[kk])
            s0 = madd(v, load(q), s0)
            if W.two { s1 = madd(v, load(q + 8), s1) }
            q += W.two ? 16 : 8
        }
        store(s0, s1, c + r * ldc + c0, c0, valid, act, W.self)
    }

    /// A tile row's accumulators (channels c0..<c0 + valid) through the epilogue to `out`.
    @inline(__always)
    private func store<A: VectorActivation, W: PanelVectors>(_ lo: Vec, _ hi: Vec, _ out: UnsafeMutablePointer<Float>,
                                                            _ c0: Int, _ valid: Int, _ act: A, _: W.Type) {
        if valid == 16 {
            e.emit(lo, channel: c0, at: out, act)
            e.emit(hi, channel: c0 + 8, at: out + 8, act)
            return
        }
        e.emit(lo, channel: c0, at: out, count: min(8, valid), act)
        if W.two && valid > 8 { e.emit(hi, channel: c0 + 8, at: out + 8, count: valid - 8, act) }
    }
}

/// Panel width as a compile-time constant of each specialisation: two vectors (16 channels) or one.
private protocol PanelVectors { static var two: Bool { get } }
private enum TwoVectors: PanelVectors { static var two: Bool { true } }
private enum OneVector: PanelVectors { static var two: Bool { false } }
