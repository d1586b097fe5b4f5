import CKernels
// Shared by the backward kernels: how a gradient is written, per-channel sums over many rows, and
// the parallel matrix products of the conv/dense gradients.
//
// Writing a gradient: every backward function takes `accumulate`. false overwrites the gradient
// buffer; true adds into it (a tensor read by several layers, a weight shared between calls).
//
// Per-channel sums (dBias, dGamma, BN statistics...) run over up to N*H*W = 100k rows: rows are
// split across workers, each worker sums blocks of `reductionBlockRows` rows in float vectors and
// adds each block's sum into Double, so the rounding error grows with the block length, not with
// the row count. The partials are summed in worker order: for a given thread count the result
// does not depend on scheduling.

/// Stores `v` at `p`, or adds it to what is there.
@inline(__always) func put(_ v: Vec, _ p: UnsafeMutablePointer<Float>, accumulate: Bool) {
    store(accumulate ? load(p) + v : v, p)
}
@inline(__always) func putPartial(_ v: Vec, _ p: UnsafeMutablePointer<Float>, _ n: Int, accumulate: Bool) {
    storePartial(accumulate ? loadPartial(p, n) + v : v, p, n)
}
@inline(__always) func put(_ v: Float, _ p: UnsafeMutablePointer<Float>, accumulate: Bool) {
    p.pointee = accumulate ? p.pointee + v : v
}

/// dst[0..<n] += src[0..<n].
@inline(__always) func addInto(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i + 8 <= n { store(load(dst + i) + load(src + i), dst + i); i += 8 }
    while i < n { dst[i] += src[i]; i += 1 }
}

/// Zeroes `count` floats in parallel (a gradient about to be accumulated into).
func zeroFill(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
    parallelForStatic(count, minChunk: 1 << 16) { _, r in (p + r.lowerBound).update(repeating: 0, count: r.count) }
}

/// Writes or adds Double totals into a float gradient.
@inline(__always) func putTotals(_ totals: UnsafePointer<Double>, _ dst: UnsafeMutablePointer<Float>?, _ n: Int,
                                 accumulate: Bool) {
    guard let dst else { return }
    for i in 0..<n { put(Float(totals[i]), dst + i, accumulate: accumulate) }
}

let reductionBlockRows = 128

/// How many workers `channelReduce` shares `rows` rows among (1: the calling thread alone).
func channelReduceChunks(rows: Int, minChunk: Int = 256) -> Int {
    rows > 0 ? min(RuntimeThreads.count, max(1, rows / max(1, minChunk))) : 0
}

/// Per-channel sums over `rows` rows, in parallel. `body(rows, acc)` adds the contribution of
/// `rows` (at most `reductionBlockRows` of them) into `acc`, `sums` consecutive arrays of
/// `channels` floats. `finish` gets the totals (`sums * channels` Doubles, same layout).
/// Allocates two small buffers per call (workers x sums x channels), never per row.
func channelReduce(rows: Int, channels: Int, sums: Int, minChunk: Int = 256,
                   body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void,
                   finish: (UnsafePointer<Double>) -> Void) {
    let width = sums * channels
    let threads = RuntimeThreads.count
    withUnsafeTemporaryAllocation(of: Double.self, capacity: max(1, threads * width)) { partial in
    withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, threads * width)) { scratch in
        let part = partial.baseAddress!, scr = scratch.baseAddress!
        part.update(repeating: 0, count: threads * width)
        let chunks = channelReduceChunks(rows: rows, minChunk: minChunk)
        parallelForStatic(rows, minChunk: max(1, minChunk), threads: threads) { w, range in
            let acc = scr + w * width, total = part + w * width
            var r = range.lowerBound
            while r < range.upperBound {
                let end = min(range.upperBound, r + reductionBlockRows)
                acc.update(repeating: 0, count: width)
                body(r..<end, acc)
                for i in 0..<width { total[i] += Double(acc[i]) }
                r = end
            }
        }
        for w in 1..<max(1, chunks) {
            for i in 0..<width { part[i] += part[w * width + i] }
        }
        finish(part)
    }}
}

/// Column sums of a [rows, channels] matrix: dBias of a conv or dense layer from its dOutput
/// (rows = every output pixel of the batch).
public func biasBackward(dOutput: UnsafePointer<Float>, rows: Int, channels: Int,
                         dBias: UnsafeMutablePointer<Float>, accumulate: Bool) {
    channelReduce(rows: rows, channels: channels, sums: 1, body: { range, acc in
        for r in range { addInto(acc, dOutput + r * channels, channels) }
    }, finish: { putTotals($0, dBias, channels, accumulate: accumulate) })
}

// MARK: parallel products

/// Products smaller than this (m*n*k) run on one thread: a dispatch would cost more.
let parallelGemmMinWork = 1 << 18

/// C[m, n] (+)= A[m, k] · op(B), A not transposed: tiles of rows of C shared out to the workers
/// (or columns when there are few rows). `accumulate` adds into C.
/// Why tiles: measured on dX of a 1x1 conv (m = 26k pixels, k = 24, n = 144), 256-row tiles ran
/// 20-30% faster than one slice per worker (the tile of C stays in cache while it is written).
func gemmSplitRows(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                   b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                   c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    let beta: Float = accumulate ? 1 : 0
    let threads = RuntimeThreads.count
    if threads <= 1 || m * n * k < parallelGemmMinWork {
        sgemm(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, transB: transB, c: c, ldc: ldc, beta: beta)
    } else if m >= 16 * threads {
        let tile = max(16, min(256, m / threads))
        let tiles = (m + tile - 1) / tile
        parallelForStatic(tiles, threads: threads) { _, r in
            for t in r {
                let r0 = t * tile, rows = min(tile, m - r0)
                sgemm(m: rows, n: n, k: k, a: a + r0 * lda, lda: lda, b: b, ldb: ldb, transB: transB,
                      c: c + r0 * ldc, ldc: ldc, beta: beta)
            }
        }
    } else {
        // Few rows: split the columns of C, i.e. the columns of op(B).
        parallelForStatic(n, minChunk: 16, threads: threads) { _, r in
            let bPart = transB ? b + r.lowerBound * ldb : b + r.lowerBound
            sgemm(m: m, n: r.count, k: k, a: a, lda: lda, b: bPart, ldb: ldb, transB: transB,
                  c: c + r.lowerBound, ldc: ldc, beta: beta)
        }
    }
}

/// Floats of workspace `gemmTransposedA` may use: one m x n partial per extra worker.
func gemmTransposedAWorkspaceCount(m: Int, n: Int, threads: Int) -> Int { max(0, threads - 1) * m * n }

/// C[m, n] (+)= Aᵀ · B with A stored [k, m] and B stored [k, n]: the weight gradients, where k
/// (pixels or rows) is long and m x n (the weight) small. Long k: split over k, each extra worker
/// summing into its own m x n partial in `workspace` (see `gemmTransposedAWorkspaceCount`);
/// measured on a 1x1 conv's dW (k = 26k pixels, 144 x 24) that ran 2x faster than splitting C's
/// rows. Short k: split C's columns or rows when they are wide enough, else k anyway.
/// `aScale` (AVX-512 only): A's element [p, i] is a[p, i] * scale[p / rowsPerScale, i] (rows of
/// the scale lda apart), rounded as a stored product would be: the same bits as A stored scaled.
func gemmTransposedA(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                     b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                     accumulate: Bool, workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int,
                     aScale: (scale: UnsafePointer<Float>, rowsPerScale: Int)? = nil) {
    precondition(aScale == nil || KernelISA.avx512, "a scaled transposed-A product needs AVX-512")
    if KernelISA.avx512 {
        // The 16-lane kernel (CKernels): each element of C summed over all of k by one worker,
        // so no partials and the same result whatever the thread count. C's rows in tiles of 12,
        // its columns in strips of 32; the workers share out the rows when A (k x m) is the larger
        // operand, else the columns, so each streams only its share of the larger one (both
        // streaming all of a 5 MB output gradient left two threads no faster than one).
        let rowTiles = (m + 11) / 12, strips = (n + 31) / 32
        let threads = m * n * k < parallelGemmMinWork ? 1 : RuntimeThreads.count
        let byRows = (m >= n && rowTiles >= threads) || strips < threads
        parallelFor(byRows ? rowTiles : strips, threads: threads) { _, r in
            let rows = byRows ? (r.lowerBound * 12)..<min(m, r.upperBound * 12) : 0..<m
            let cols = byRows ? 0..<n : (r.lowerBound * 32)..<min(n, r.upperBound * 32)
            if let (scale, per) = aScale {
                ck_gemm_at_scaled_block_avx512(a, lda, scale, max(1, per), b, ldb, c, ldc, k, rows.lowerBound,
                                               rows.upperBound, cols.lowerBound, cols.upperBound, accumulate ? 1 : 0)
            } else {
                ck_gemm_at_block_avx512(a, lda, b, ldb, c, ldc, k, rows.lowerBound, rows.upperBound, cols.lowerBound,
                                        cols.upperBound, accumulate ? 1 : 0)
            }
        }
        return
    }
    let beta: Float = accumulate ? 1 : 0
    let all = RuntimeThreads.count
    let partials = m * n == 0 || workspace == nil ? 0 : workspaceCount / (m * n)
    let kThreads = min(all, 1 + partials)
    if all <= 1 || m * n * k < parallelGemmMinWork {
        sgemm(m: m, n: n, k: k, a: a, lda: lda, transA: true, b: b, ldb: ldb, c: c, ldc: ldc, beta: beta)
    } else if kThreads == all && k >= 2048 {
        splitK(kThreads)
    } else if n >= 64 * all {
        parallelForStatic(n, minChunk: 64, threads: all) { _, r in
            sgemm(m: m, n: r.count, k: k, a: a, lda: lda, transA: true, b: b + r.lowerBound, ldb: ldb,
                  c: c + r.lowerBound, ldc: ldc, beta: beta)
        }
    } else if m >= 64 * all {
        parallelForStatic(m, minChunk: 64, threads: all) { _, r in
            sgemm(m: r.count, n: n, k: k, a: a + r.lowerBound, lda: lda, transA: true, b: b, ldb: ldb,
                  c: c + r.lowerBound * ldc, ldc: ldc, beta: beta)
        }
    } else {
        splitK(kThreads)
    }

    func splitK(_ threads: Int) {
        let chunks = min(threads, max(1, k / 64))
        parallelForStatic(k, minChunk: 64, threads: chunks) { w, r in
            let dst = w == 0 ? c : workspace! + (w - 1) * m * n
            sgemm(m: m, n: n, k: r.count, a: a + r.lowerBound * lda, lda: lda, transA: true,
                  b: b + r.lowerBound * ldb, ldb: ldb, c: dst, ldc: w == 0 ? ldc : n, beta: w == 0 ? beta : 0)
        }
        for w in 1..<chunks {
            let src = workspace! + (w - 1) * m * n
            for i in 0..<m { addInto(c + i * ldc, src + i * n, n) }
        }
    }
}
