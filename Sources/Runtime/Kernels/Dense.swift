// Dense and the tiled, parallel matrix product with epilogue that the convolutions share.
//
// Layouts: input [rows, in] (rows = every leading axis of Keras's input flattened), kernel IO
// [in, out], output [rows, out]; all row-major float32.

/// Dense: output = act(input · kernel * scale + shift + residual), all from `epilogue` (bias is
/// the shift). Softmax activation is applied over `out`.
public func dense(input: UnsafePointer<Float>, rows: Int, inFeatures: Int,
                  kernel: UnsafePointer<Float>, outFeatures: Int,
                  output: UnsafeMutablePointer<Float>, epilogue: Epilogue) {
    gemmWithEpilogue(m: rows, n: outFeatures, k: inFeatures, a: input, lda: inFeatures,
                     b: kernel, ldb: outFeatures, c: output, ldc: outFeatures, epilogue: epilogue)
}

/// Rows per sgemm tile: the product tile (rows x n) stays around 128 KB so the epilogue reads it
/// from cache; at least 64 rows, because each sgemm call re-packs B and a short tile would make
/// that dominate.
@inline(__always)
func gemmTileRows(n: Int) -> Int { max(64, min(1024, 32_768 / max(1, n))) }

/// Splits `count` rows into tiles of at most `maxRows`, their number rounded up to a multiple of
/// `workers` when there are at least that many, so every worker gets the same number of tiles.
@inline(__always)
func balancedTiles(_ count: Int, maxRows: Int, workers: Int) -> (rows: Int, tiles: Int) {
    var tiles = (count + maxRows - 1) / maxRows
    if tiles >= workers && workers > 1 { tiles = (tiles + workers - 1) / workers * workers }
    let rows = (count + tiles - 1) / max(1, tiles)
    return (max(1, rows), (count + max(1, rows) - 1) / max(1, rows))
}

/// C[m, n] = A[m, k] · B[k, n] followed by `epilogue` (columns are channels; lda, ldb, ldc are
/// row strides),
/// parallel over workers: by row tiles when there are enough rows, else by column blocks (batch-1
/// dense layers, late small-spatial convs). Each worker calls single-threaded OpenBLAS on its part
/// and applies the epilogue to the tile it just produced.
public func gemmWithEpilogue(m: Int, n: Int, k: Int,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      c: UnsafeMutablePointer<Float>, ldc: Int, epilogue: Epilogue,
                      threads: Int = RuntimeThreads.count) {
    guard m > 0, n > 0 else { return }
    let tail = epilogue.withoutSoftmax
    let (tileRows, tiles) = balancedTiles(m, maxRows: gemmTileRows(n: n), workers: threads)
    let colBlocks = (n + 15) / 16
    // Below ~0.25 MFLOP a dispatch costs more than it saves.
    let tiny = m * n * k < 131_072

    func rowTiles(_ range: Range<Int>) {
        for t in range {
            let r0 = t * tileRows, rows = min(tileRows, m - r0)
            sgemm(m: rows, n: n, k: k, a: a + r0 * lda, lda: lda, b: b, ldb: ldb, c: c + r0 * ldc, ldc: ldc)
            tail.apply(c + r0 * ldc, rows: rows, cols: n, ld: ldc, outputOffset: r0 * ldc)
        }
    }
    if threads <= 1 || tiny {
        rowTiles(0..<tiles)
    } else if tiles >= threads {
        parallelFor(tiles, threads: threads) { _, r in rowTiles(r) }
    } else if m >= 8 * threads && m >= colBlocks {
        // Few rows but enough to share: one slice of rows per worker.
        parallelFor(m, minChunk: 8, threads: threads) { _, r in
            sgemm(m: r.count, n: n, k: k, a: a + r.lowerBound * lda, lda: lda, b: b, ldb: ldb,
                  c: c + r.lowerBound * ldc, ldc: ldc)
            tail.apply(c + r.lowerBound * ldc, rows: r.count, cols: n, ld: ldc, outputOffset: r.lowerBound * ldc)
        }
    } else {
        parallelFor(colBlocks, threads: threads) { _, r in
            let c0 = r.lowerBound * 16, cols = min(n, r.upperBound * 16) - c0
            sgemm(m: m, n: cols, k: k, a: a, lda: lda, b: b + c0, ldb: ldb, c: c + c0, ldc: ldc)
            tail.apply(c + c0, rows: m, cols: cols, ld: ldc, channelOffset: c0, outputOffset: c0)
        }
    }
    if epilogue.activation.kind == .softmax {
        precondition(ldc == n, "softmax epilogue needs contiguous rows")
        softmax(c, outer: m, axisLength: n, inner: 1)
    }
}
