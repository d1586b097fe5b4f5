// Depthwise convolution (multiplier 1) over NHWC in 16-lane AVX-512: the structure of
// Runtime/Kernels/DepthwiseConv2D.swift with twice the lanes. Channels are innermost, so a tap is
// one contiguous load of input and one of weights. Interior pixels of 3- and 5-wide kernels with
// stride 1 or 2 go in strips of 8 (then 4, then 3 or 2) neighbouring outputs, the kernel shape a constant, so
// each input column is loaded once for all the windows of the strip that read it; border pixels
// and other shapes go one at a time with their valid taps. The epilogue runs in registers.
// Rows are reached through a pointer per kernel row, so the input can also be a ring of rows that
// a 1x1 expansion or a stem convolution fills just ahead of the depthwise pass
// (ck_expand_depthwise_avx512, ck_conv_depthwise_avx512). With stride 1, output rows go in pairs
// that share their input rows (strip2).
#if defined(__x86_64__)
#include "ckernels.h"
#include "vec512.h"

/// P adjacent interior outputs (every tap inside the input), kernel width KW, stride SW,
/// dilation 1. rows[i] is the input row kernel row i reads (taps kyLo..<kyHi), `col` the offset
/// in it of the first window's leftmost tap.
INLINE void strip(const int P, const int KW, const int SW, const float *const *rows, ptrdiff_t col,
                  ptrdiff_t kyLo, ptrdiff_t kyHi, const float *w, ptrdiff_t C, ptrdiff_t c0, ptrdiff_t c1, float *out,
                  const ck_epilogue *e) {
    for (ptrdiff_t c = c0; c < c1; c += 16) {
        const __mmask16 m = ck_lanes(c1 - c);
        __m512 acc[8];
        for (int j = 0; j < P; j++) {
            acc[j] = _mm512_setzero_ps();
            ck_prefetch_store(out + j * C + c, 16);
        }
        for (ptrdiff_t i = kyLo; i < kyHi; i++) {
            const float *p = rows[i] + col + c;
            const float *q = w + i * KW * C + c;
            __m512 col[(8 - 1) * 2 + 5];
            for (int t = 0; t < (P - 1) * SW + KW; t++) col[t] = _mm512_maskz_loadu_ps(m, p + t * C);
            for (int t = 0; t < KW; t++) {
                const __m512 wv = _mm512_maskz_loadu_ps(m, q + t * C);
                for (int j = 0; j < P; j++) acc[j] = _mm512_fmadd_ps(col[j * SW + t], wv, acc[j]);
            }
        }
        // The strip's values go into the channel sums once, not pixel by pixel (each addition
        // would wait on the last one's store).
        __m512 total = _mm512_setzero_ps();
        for (int j = 0; j < P; j++) total = _mm512_add_ps(total, ck_store(acc[j], c, out + j * C + c, m, e));
        ck_add_sums(total, c, m, e);
    }
}

/// `strip` for two output rows at once, stride 1: row B is the row below row A, so B's kernel row
/// i reads the input row of A's kernel row i + 1 (rowsB[i] == rowsA[i + 1]). Each of the kernelH + 1
/// input rows is loaded once for both rows (one row at a time loaded kernelH rows per output
/// row), and the 2P accumulators are independent chains. Every accumulator still takes its kernel
/// rows in ascending order and its taps left to right: the same sums in the same order as two
/// calls of `strip`. Alone (one thread, EfficientNet's stride-1 layers): 8x8x1152 5x5 44 -> 38 us,
/// 57x57x144 3x3 133 -> 124 us, 15x15x480 3x3 30 -> 28 us, 29x29x240 5x5 89 -> 84 us.
INLINE void strip2(const int P, const int KW, const float *const *rowsA, const float *const *rowsB, ptrdiff_t kernelH,
                   ptrdiff_t col, ptrdiff_t loA, ptrdiff_t hiA, ptrdiff_t loB, ptrdiff_t hiB, const float *w, ptrdiff_t C,
                   ptrdiff_t c0, ptrdiff_t c1, float *outA, float *outB, const ck_epilogue *eA, const ck_epilogue *eB) {
    for (ptrdiff_t c = c0; c < c1; c += 16) {
        const __mmask16 m = ck_lanes(c1 - c);
        __m512 a[8], b[8];
        for (int j = 0; j < P; j++) {
            a[j] = _mm512_setzero_ps();
            b[j] = _mm512_setzero_ps();
            ck_prefetch_store(outA + j * C + c, 16);
            ck_prefetch_store(outB + j * C + c, 16);
        }
        for (ptrdiff_t u = 0; u <= kernelH; u++) {
            const int useA = u < kernelH && u >= loA && u < hiA;      /* A's kernel row u */
            const int useB = u >= 1 && u - 1 >= loB && u - 1 < hiB;  /* B's kernel row u - 1 */
            if (!useA && !useB) continue;
            const float *p = (useA ? rowsA[u] : rowsB[u - 1]) + col + c;
            __m512 cols[8 - 1 + 5];
            for (int t = 0; t < P - 1 + KW; t++) cols[t] = _mm512_maskz_loadu_ps(m, p + t * C);
            if (useA) {
                const float *q = w + u * KW * C + c;
                for (int t = 0; t < KW; t++) {
                    const __m512 wv = _mm512_maskz_loadu_ps(m, q + t * C);
                    for (int j = 0; j < P; j++) a[j] = _mm512_fmadd_ps(cols[j + t], wv, a[j]);
                }
            }
            if (useB) {
                const float *q = w + (u - 1) * KW * C + c;
                for (int t = 0; t < KW; t++) {
                    const __m512 wv = _mm512_maskz_loadu_ps(m, q + t * C);
                    for (int j = 0; j < P; j++) b[j] = _mm512_fmadd_ps(cols[j + t], wv, b[j]);
                }
            }
        }
        __m512 totalA = _mm512_setzero_ps(), totalB = _mm512_setzero_ps();
        for (int j = 0; j < P; j++) totalA = _mm512_add_ps(totalA, ck_store(a[j], c, outA + j * C + c, m, eA));
        ck_add_sums(totalA, c, m, eA);
        for (int j = 0; j < P; j++) totalB = _mm512_add_ps(totalB, ck_store(b[j], c, outB + j * C + c, m, eB));
        ck_add_sums(totalB, c, m, eB);
    }
}

/// One output pixel's channels c0..<c1 with taps kyLo..<kyHi x kxLo..<kxHi, four channel vectors at a time.
INLINE void pixel(const ck_depthwise_geometry *g, const float *const *rows, ptrdiff_t col, ptrdiff_t kyLo,
                  ptrdiff_t kyHi, ptrdiff_t kxLo, ptrdiff_t kxHi, const float *w, ptrdiff_t c0, ptrdiff_t c1, float *out,
                  const ck_epilogue *e) {
    const ptrdiff_t C = g->channels;
    const ptrdiff_t colStep = g->dilationW * C, wRow = g->kernelW * C;
    ptrdiff_t c = c0;
    for (; c + 64 <= c1; c += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (ptrdiff_t i = kyLo; i < kyHi; i++) {
            const float *p = rows[i] + col + kxLo * colStep + c;
            const float *q = w + i * wRow + kxLo * C + c;
            for (ptrdiff_t t = kxLo; t < kxHi; t++, p += colStep, q += C) {
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(p), _mm512_loadu_ps(q), a0);
                a1 = _mm512_fmadd_ps(_mm512_loadu_ps(p + 16), _mm512_loadu_ps(q + 16), a1);
                a2 = _mm512_fmadd_ps(_mm512_loadu_ps(p + 32), _mm512_loadu_ps(q + 32), a2);
                a3 = _mm512_fmadd_ps(_mm512_loadu_ps(p + 48), _mm512_loadu_ps(q + 48), a3);
            }
        }
        ck_emit(a0, c, out + c, 0xFFFF, e);
        ck_emit(a1, c + 16, out + c + 16, 0xFFFF, e);
        ck_emit(a2, c + 32, out + c + 32, 0xFFFF, e);
        ck_emit(a3, c + 48, out + c + 48, 0xFFFF, e);
    }
    for (; c < c1; c += 16) {
        const __mmask16 m = ck_lanes(c1 - c);
        __m512 a = _mm512_setzero_ps();
        for (ptrdiff_t i = kyLo; i < kyHi; i++) {
            const float *p = rows[i] + col + kxLo * colStep + c;
            const float *q = w + i * wRow + kxLo * C + c;
            for (ptrdiff_t t = kxLo; t < kxHi; t++, p += colStep, q += C)
                a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p), _mm512_maskz_loadu_ps(m, q), a);
        }
        ck_emit(a, c, out + c, m, e);
    }
}

/// Channels per pass over an output row: as many (a multiple of 16) as keep the pass's share of
/// the kernel rows it reads, of the weights and of the output row within 64 KB (whole rows; a
/// strip touches only a few columns of them at a time, so that is about L1's 48 KB in use; 32
/// and 128 KB measured slower). Taking every channel of a strip before the next strip
/// (EfficientNet's late 5x5 layers: 480-1152 channels) made each strip read 100-300 KB of input
/// and weights, all from L2 again for the next strip, whose windows overlap it: blocked, those
/// layers ran 1.1-1.45x faster alone; 3x3 layers with few rows in a block gained nothing.
static inline ptrdiff_t channel_block(const ck_depthwise_geometry *g) {
    const ptrdiff_t perChannel = 4 * (g->kernelH * g->inW + g->kernelH * g->kernelW + g->outW);
    ptrdiff_t block = 65536 / (perChannel > 0 ? perChannel : 1) / 16 * 16;
    if (block < 16) block = 16;
    return block >= g->channels ? g->channels : block;
}

/// `channel_block` for `row2`'s passes: kernelH + 1 input rows and two output rows, within 96 KB (64 KB
/// made the pairs of 29x29x240 and 15x15x672 5x5 rows 4-12% slower than single rows alone).
static inline ptrdiff_t channel_block2(const ck_depthwise_geometry *g) {
    const ptrdiff_t perChannel = 4 * ((g->kernelH + 1) * g->inW + g->kernelH * g->kernelW + 2 * g->outW);
    ptrdiff_t block = 98304 / (perChannel > 0 ? perChannel : 1) / 16 * 16;
    if (block < 16) block = 16;
    return block >= g->channels ? g->channels : block;
}

/// The interior output columns oxLo..<oxHi of a row: those whose every horizontal tap falls inside
/// the input (the strips' columns; the others take their valid taps one pixel at a time).
static inline void interior_columns(const ck_depthwise_geometry *g, ptrdiff_t *oxLo, ptrdiff_t *oxHi) {
    const ptrdiff_t span = (g->kernelW - 1) * g->dilationW;
    ptrdiff_t lo = (g->padLeft + g->strideW - 1) / g->strideW;
    if (lo > g->outW) lo = g->outW;
    ptrdiff_t hi = g->inW - 1 - span + g->padLeft >= 0 ? (g->inW - 1 - span + g->padLeft) / g->strideW + 1 : 0;
    if (hi > g->outW) hi = g->outW;
    if (hi < lo) hi = lo;
    *oxLo = lo;
    *oxHi = hi;
}

/// Output row oy of one image into outRow; rows[i] is the input row kernel row i reads, for the
/// taps that fall inside the input. KW and SW are the strip shape (0 when the kernel has none).
/// Only channels cBegin..<cEnd, in passes over `block` of them at a time.
INLINE void row(const int KW, const int SW, const ck_depthwise_geometry *g, const float *const *rows,
                const float *w, float *outRow, ptrdiff_t oy, ptrdiff_t cBegin, ptrdiff_t cEnd, ptrdiff_t block,
                const ck_epilogue *e) {
    const ptrdiff_t C = g->channels;
    ptrdiff_t kyLo, kyHi;
    ck_valid_taps(oy, g->strideH, g->padTop, g->dilationH, g->kernelH, g->inH, &kyLo, &kyHi);
    ptrdiff_t oxLo, oxHi;
    interior_columns(g, &oxLo, &oxHi);
    for (ptrdiff_t c0 = cBegin; c0 < cEnd; c0 += block) {
        const ptrdiff_t c1 = c0 + block < cEnd ? c0 + block : cEnd;
        ptrdiff_t ox = 0;
        while (ox < g->outW) {
            const ptrdiff_t col = (ox * g->strideW - g->padLeft) * C;
            float *out = outRow + ox * C;
            if (KW != 0 && ox >= oxLo && ox + 8 <= oxHi) {
                strip(8, KW, SW, rows, col, kyLo, kyHi, w, C, c0, c1, out, e);
                ox += 8;
            } else if (KW != 0 && ox >= oxLo && ox + 4 <= oxHi) {
                strip(4, KW, SW, rows, col, kyLo, kyHi, w, C, c0, c1, out, e);
                ox += 4;
            } else if (KW != 0 && ox >= oxLo && ox + 2 <= oxHi) {
                /* 2-3 interior pixels left (15-wide 5x5 rows: 8 + 3), a strip still shares
                   their input columns: 10% faster than one pixel at a time for those layers. */
                if (ox + 3 <= oxHi) {
                    strip(3, KW, SW, rows, col, kyLo, kyHi, w, C, c0, c1, out, e);
                    ox += 3;
                } else {
                    strip(2, KW, SW, rows, col, kyLo, kyHi, w, C, c0, c1, out, e);
                    ox += 2;
                }
            } else {
                ptrdiff_t kxLo = 0, kxHi = g->kernelW;
                if (ox < oxLo || ox >= oxHi)
                    ck_valid_taps(ox, g->strideW, g->padLeft, g->dilationW, g->kernelW, g->inW, &kxLo, &kxHi);
                pixel(g, rows, col, kyLo, kyHi, kxLo, kxHi, w, c0, c1, out, e);
                ox += 1;
            }
        }
    }
}

/// Output rows oy and oy + 1 (stride 1, KW 3 or 5) of one image into outA and outB: `row` for
/// both, their interior strips of 8 and 4 through `strip2` (rowsB[i] == rowsA[i + 1]), the rest
/// of each row as `row` computes it.
INLINE void row2(const int KW, const ck_depthwise_geometry *g, const float *const *rowsA, const float *const *rowsB,
                 const float *w, float *outA, float *outB, ptrdiff_t oy, ptrdiff_t cBegin, ptrdiff_t cEnd,
                 ptrdiff_t block, const ck_epilogue *eA, const ck_epilogue *eB) {
    const ptrdiff_t C = g->channels;
    ptrdiff_t loA, hiA, loB, hiB;
    ck_valid_taps(oy, 1, g->padTop, g->dilationH, g->kernelH, g->inH, &loA, &hiA);
    ck_valid_taps(oy + 1, 1, g->padTop, g->dilationH, g->kernelH, g->inH, &loB, &hiB);
    ptrdiff_t oxLo, oxHi;
    interior_columns(g, &oxLo, &oxHi);
    for (ptrdiff_t c0 = cBegin; c0 < cEnd; c0 += block) {
        const ptrdiff_t c1 = c0 + block < cEnd ? c0 + block : cEnd;
        ptrdiff_t ox = 0;
        while (ox < g->outW) {
            const ptrdiff_t col = (ox * g->strideW - g->padLeft) * C;
            if (ox >= oxLo && ox + 8 <= oxHi) {
                strip2(8, KW, rowsA, rowsB, g->kernelH, col, loA, hiA, loB, hiB, w, C, c0, c1, outA + ox * C,
                       outB + ox * C, eA, eB);
                ox += 8;
            } else if (ox >= oxLo && ox + 4 <= oxHi) {
                strip2(4, KW, rowsA, rowsB, g->kernelH, col, loA, hiA, loB, hiB, w, C, c0, c1, outA + ox * C,
                       outB + ox * C, eA, eB);
                ox += 4;
            } else if (ox >= oxLo && ox + 3 <= oxHi) {
                strip2(3, KW, rowsA, rowsB, g->kernelH, col, loA, hiA, loB, hiB, w, C, c0, c1, outA + ox * C,
                       outB + ox * C, eA, eB);
                ox += 3;
            } else if (ox >= oxLo && ox + 2 <= oxHi) {
                strip2(2, KW, rowsA, rowsB, g->kernelH, col, loA, hiA, loB, hiB, w, C, c0, c1, outA + ox * C,
                       outB + ox * C, eA, eB);
                ox += 2;
            } else {
                /* One pixel with its valid taps, in each of the two rows, as `row` computes it. */
                ptrdiff_t kxLo = 0, kxHi = g->kernelW;
                if (ox < oxLo || ox >= oxHi)
                    ck_valid_taps(ox, g->strideW, g->padLeft, g->dilationW, g->kernelW, g->inW, &kxLo, &kxHi);
                pixel(g, rowsA, col, loA, hiA, kxLo, kxHi, w, c0, c1, outA + ox * C, eA);
                pixel(g, rowsB, col, loB, hiB, kxLo, kxHi, w, c0, c1, outB + ox * C, eB);
                ox += 1;
            }
        }
    }
}

/// The epilogue for output row r: with channel sums, pointed at row r's slot, whose channels
/// c0..<c1 (the ones this call computes) it zeroes. Returns a pointer to per-thread copy `slot`
/// (0 or 1: rows are computed one or two at a time per caller).
static inline const ck_epilogue *row_sums_in(int slot, const ck_epilogue *e, ptrdiff_t r, ptrdiff_t C, ptrdiff_t c0,
                                             ptrdiff_t c1) {
    static _Thread_local ck_epilogue copy[2];
    if (!e->channel_sums) return e;
    copy[slot] = *e;
    copy[slot].channel_sums = e->channel_sums + r * C;
    for (ptrdiff_t c = c0; c < c1; c++) copy[slot].channel_sums[c] = 0;
    return &copy[slot];
}

static inline const ck_epilogue *row_sums(const ck_epilogue *e, ptrdiff_t r, ptrdiff_t C, ptrdiff_t c0, ptrdiff_t c1) {
    return row_sums_in(0, e, r, C, c0, c1);
}

/// Whether two rows of this geometry go through `row2`: stride 1, dilation 1, 3 or 5 wide.
static inline int pairs_rows(const ck_depthwise_geometry *g) {
    return g->strideH == 1 && g->dilationH == 1 && g->dilationW == 1 && g->strideW == 1 &&
           (g->kernelW == 3 || g->kernelW == 5);
}

/// `row2` with the strip shape chosen from the geometry (`pairs_rows` must hold).
INLINE void any_row2(const ck_depthwise_geometry *g, const float *const *rowsA, const float *const *rowsB,
                     const float *w, float *outA, float *outB, ptrdiff_t oy, ptrdiff_t c0, ptrdiff_t c1,
                     ptrdiff_t block, const ck_epilogue *eA, const ck_epilogue *eB) {
    if (g->kernelW == 3) row2(3, g, rowsA, rowsB, w, outA, outB, oy, c0, c1, block, eA, eB);
    else row2(5, g, rowsA, rowsB, w, outA, outB, oy, c0, c1, block, eA, eB);
}

/// `row` with the strip shape chosen from the geometry.
INLINE void any_row(const ck_depthwise_geometry *g, const float *const *rows, const float *w, float *outRow,
                    ptrdiff_t oy, ptrdiff_t c0, ptrdiff_t c1, ptrdiff_t block, const ck_epilogue *e) {
    switch (g->dilationW == 1 ? g->kernelW * 10 + g->strideW : 0) {
    case 31: row(3, 1, g, rows, w, outRow, oy, c0, c1, block, e); break;
    case 32: row(3, 2, g, rows, w, outRow, oy, c0, c1, block, e); break;
    case 51: row(5, 1, g, rows, w, outRow, oy, c0, c1, block, e); break;
    case 52: row(5, 2, g, rows, w, outRow, oy, c0, c1, block, e); break;
    default: row(0, 1, g, rows, w, outRow, oy, c0, c1, block, e); break;
    }
}

AVX512 void ck_depthwise_rows_avx512(const ck_depthwise_geometry *g, const float *x, const float *w, float *y,
                                     ptrdiff_t row0, ptrdiff_t row1, ptrdiff_t c0, ptrdiff_t c1, const ck_epilogue *e) {
    const ptrdiff_t C = g->channels, block = channel_block(g), pairs = pairs_rows(g);
    const ptrdiff_t block2 = channel_block2(g);
    const float *rows[g->kernelH + 1];
    for (ptrdiff_t r = row0; r < row1; r++) {
        const ptrdiff_t n = r / g->outH, oy = r % g->outH;
        const float *image = x + n * g->inH * g->inW * C;
        for (ptrdiff_t i = 0; i <= g->kernelH; i++)
            rows[i] = image + (oy * g->strideH - g->padTop + i * g->dilationH) * g->inW * C;
        if (pairs && r + 1 < row1 && oy + 1 < g->outH) {
            /* rows + 1: row oy + 1's kernel rows (stride 1) */
            any_row2(g, rows, rows + 1, w, y + r * g->outW * C, y + (r + 1) * g->outW * C, oy, c0, c1, block2,
                     row_sums_in(0, e, r, C, c0, c1), row_sums_in(1, e, r + 1, C, c0, c1));
            r++;
            continue;
        }
        any_row(g, rows, w, y + r * g->outW * C, oy, c0, c1, block, row_sums(e, r, C, c0, c1));
    }
}

/// Fills ring slot `slot` with input row `inputRow` of image n of a fused pair's depthwise part.
typedef void (*fill_row_fn)(const void *producer, ptrdiff_t n, ptrdiff_t inputRow, float *slot);

/// Output rows row0..<row1 of a depthwise convolution whose input rows `fill` produces into a ring
/// of kernelH + 1 rows (slot r % (kernelH + 1) for input row r), each just before the first output
/// row that reads it. Two output rows of stride 1 go through `any_row2` together (their kernelH + 1
/// input rows all in the ring at once). Inlined with `fill` a constant, so the producer's call is
/// direct.
INLINE void ring_rows(const ck_depthwise_geometry *g, const float *kernel, const ck_epilogue *e, fill_row_fn fill,
                      const void *producer, float *y, float *ring, ptrdiff_t row0, ptrdiff_t row1) {
    const ptrdiff_t C = g->channels, W = g->inW, K = g->kernelH, R = K + 1, pairs = pairs_rows(g);
    const float *rows[g->kernelH + 1];
    ptrdiff_t image = -1, next = 0;    /* the ring holds input rows < next of `image` */
    for (ptrdiff_t r = row0; r < row1; r++) {
        const ptrdiff_t n = r / g->outH, oy = r % g->outH;
        if (n != image) {
            image = n;
            next = 0;
        }
        const int two = pairs && r + 1 < row1 && oy + 1 < g->outH;
        const ptrdiff_t top = oy * g->strideH - g->padTop, span = two ? K + 1 : K;
        ptrdiff_t lo = top < 0 ? 0 : top, hi = top + span < g->inH ? top + span : g->inH;
        if (next < lo) next = lo;
        /* The slot of row `next` held row next - R, which no output row from here on reads. */
        for (; next < hi; next++) fill(producer, n, next, ring + (next % R) * W * C);
        for (ptrdiff_t i = 0; i < span; i++) rows[i] = ring + (((top + i) % R + R) % R) * W * C;
        /* All channels in one pass: the rows just produced are in L1 and L2 already (passes over
           blocks of channels measured slower here). */
        if (two) {
            any_row2(g, rows, rows + 1, kernel, y + r * g->outW * C, y + (r + 1) * g->outW * C, oy, 0, C, C,
                     row_sums_in(0, e, r, C, 0, C), row_sums_in(1, e, r + 1, C, 0, C));
            r++;
            continue;
        }
        any_row(g, rows, kernel, y + r * g->outW * C, oy, 0, C, C, row_sums(e, r, C, 0, C));
    }
}

/// The producers' view of their call: the fused step and its input.
typedef struct {
    const void *fused;
    const float *x;
} producer_call;

/// Input row `inputRow` of image n expanded (1x1 product, its epilogue) into `slot`.
INLINE void expand_row(const void *producer, ptrdiff_t n, ptrdiff_t inputRow, float *slot) {
    const producer_call *call = producer;
    const ck_expand_depthwise *f = call->fused;
    const ck_depthwise_geometry *g = &f->depthwise;
    const ptrdiff_t C = g->channels, W = g->inW, panels = (C + 15) / 16;
    const float *in = call->x + (n * g->inH + inputRow) * W * f->inChannels;
    ck_epilogue e = f->expand;
    e.output = slot;
    if (f->expandPackedBF16)
        ck_pointwise_bf16_block_avx512(in, f->inChannels, f->inChannels, NULL, f->expandPackedBF16, C, slot, C, 0, W, 0,
                                       panels, &e);
    else
        ck_pointwise_block_avx512(in, f->inChannels, f->inChannels, f->expandPacked, C, slot, C, 0, W, 0, panels, &e);
}

AVX512 void ck_expand_depthwise_avx512(const ck_expand_depthwise *f, const float *x, float *y, float *ring,
                                       ptrdiff_t row0, ptrdiff_t row1) {
    const producer_call call = {f, x};
    ring_rows(&f->depthwise, f->depthwiseKernel, &f->depthwiseEpilogue, expand_row, &call, y, ring, row0, row1);
}

/// Row `inputRow` of image n of the convolution's output (its epilogue applied) into `slot`.
INLINE void conv_row(const void *producer, ptrdiff_t n, ptrdiff_t inputRow, float *slot) {
    const producer_call *call = producer;
    const ck_conv_depthwise *f = call->fused;
    ck_epilogue e = f->convEpilogue;
    e.output = slot;
    ck_direct_conv_row_avx512(&f->conv, call->x, f->convKernel, slot, n * f->conv.outH + inputRow, &e);
}

AVX512 void ck_conv_depthwise_avx512(const ck_conv_depthwise *f, const float *x, float *y, float *ring, ptrdiff_t row0,
                                     ptrdiff_t row1) {
    const producer_call call = {f, x};
    ring_rows(&f->depthwise, f->depthwiseKernel, &f->depthwiseEpilogue, conv_row, &call, y, ring, row0, row1);
}
AVX512 void ck_sum_products_avx512(const float *a, ptrdiff_t aStep, const float *b, ptrdiff_t bStep,
                                   ptrdiff_t count, ptrdiff_t width, float *out) {
    ptrdiff_t j = 0;
    for (; j + 64 <= width; j += 64) {
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
        const float *p = a + j, *q = b + j;
        for (ptrdiff_t k = 0; k < count; k++, p += aStep, q += bStep) {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(p), _mm512_loadu_ps(q), s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(p + 16), _mm512_loadu_ps(q + 16), s1);
            s2 = _mm512_fmadd_ps(_mm512_loadu_ps(p + 32), _mm512_loadu_ps(q + 32), s2);
            s3 = _mm512_fmadd_ps(_mm512_loadu_ps(p + 48), _mm512_loadu_ps(q + 48), s3);
        }
        _mm512_storeu_ps(out + j, _mm512_add_ps(_mm512_loadu_ps(out + j), s0));
        _mm512_storeu_ps(out + j + 16, _mm512_add_ps(_mm512_loadu_ps(out + j + 16), s1));
        _mm512_storeu_ps(out + j + 32, _mm512_add_ps(_mm512_loadu_ps(out + j + 32), s2));
        _mm512_storeu_ps(out + j + 48, _mm512_add_ps(_mm512_loadu_ps(out + j + 48), s3));
    }
    for (; j < width; j += 16) {
        const __mmask16 m = ck_lanes(width - j);
        __m512 s = _mm512_setzero_ps();
        const float *p = a + j, *q = b + j;
        for (ptrdiff_t k = 0; k < count; k++, p += aStep, q += bStep)
            s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p), _mm512_maskz_loadu_ps(m, q), s);
        _mm512_mask_storeu_ps(out + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, out + j), s));
    }
}
#else
#include "ckernels.h"
void ck_sum_products_avx512(const float *a, ptrdiff_t aStep, const float *b, ptrdiff_t bStep, ptrdiff_t count,
                            ptrdiff_t width, float *out) {
    (void)a; (void)aStep; (void)b; (void)bStep; (void)count; (void)width; (void)out;
}
void ck_depthwise_rows_avx512(const ck_depthwise_geometry *g, const float *x, const float *w, float *y,
                              ptrdiff_t row0, ptrdiff_t row1, ptrdiff_t c0, ptrdiff_t c1, const ck_epilogue *e) {
    (void)g; (void)x; (void)w; (void)y; (void)row0; (void)row1; (void)c0; (void)c1; (void)e;
}
void ck_expand_depthwise_avx512(const ck_expand_depthwise *f, const float *x, float *y, float *ring,
                                ptrdiff_t row0, ptrdiff_t row1) {
    (void)f; (void)x; (void)y; (void)ring; (void)row0; (void)row1;
}
void ck_conv_depthwise_avx512(const ck_conv_depthwise *f, const float *x, float *y, float *ring, ptrdiff_t row0,
                              ptrdiff_t row1) {
    (void)f; (void)x; (void)y; (void)ring; (void)row0; (void)row1;
}
#endif
