// The packed pointwise (1x1) product of Runtime/Kernels/PointwiseConv.swift in 16-lane AVX-512.
// Same packing, same blocking by the Swift caller (it hands over rows r0..<r1 and panels
// p0..<p1); what changes is the register tile: two panels (32 output channels) by up to 12
// rows is 24 zmm accumulators, fed per input channel by two weight loads and 12 broadcasts that
// the multiply-adds take straight from memory. AVX-512 doubles the lanes per instruction and the
// register file, so where the AVX2 tile spends one load per two multiply-adds this one spends
// one per 3.4. The epilogue (scale, shift, residual, activation) runs on the accumulators
// before the single store; masks handle partial panels, and an 8-wide last panel gets 256-bit
// accumulators (tile_narrow). The weights are
// prefetched a few input channels ahead (see PREFETCH). Swish and linear epilogues get tiles of
// their own (ACT, see ck_activate_as): with the activation read at run time, every tile carried
// the code, constants and branches of all of them, and the compiler spilled the accumulators
// around its loop; EfficientNet's early expansions (k = 16-40, where the epilogue is a large
// share of the work) ran 8-12% faster alone, the same sums to the bit.
#if defined(__x86_64__)
#include "ckernels.h"
#include "vec512.h"

/// Input channels ahead at which each weight panel is prefetched. Late in EfficientNet a kernel
/// (1-1.6 MB) arrives from L3 or memory once per image, and the hardware prefetcher left the
/// tile waiting for it: 24 rows ahead took the coldest products from 100 to 180 GFLOP/s.
#define PREFETCH 24

/* Each pair of panels starts cold, though: the first PREFETCH input channels of every pair were
   fetched by nobody, and a late expansion (64 x 192 x 1152: 36 pairs of 192 channels) waited
   on L3 at each pair's start. So the first row tile of a pair also prefetches the next pair, two
   lines per input channel (`ahead`): with the weights in L3 (twenty such products, 17.7 MB of
   weights, in turn) 64 x 192 x 1152 went from 145 to 117 us and 64 x 320 x 1280 from 251 to
   217 us, against 116 and 209 us with the same weights every time (L1/L2). */

/// Up to 12 rows (R, a constant after inlining) times one or two panels (V): w0 s0 floats a row (16,
/// or 8 for a last panel alone), w1 16; `ahead`, when not NULL, is the next pair of panels,
/// prefetched over the k steps (32 floats a step).
INLINE void tile(const int ACT, const int R, const int V, const float *x, ptrdiff_t lda, ptrdiff_t k,
                 const float *w0, ptrdiff_t s0, const float *w1, float *out, ptrdiff_t ldc, ptrdiff_t ch,
                 __mmask16 m0, __mmask16 m1, const ck_epilogue *e, const float *ahead) {
    __m512 acc0[12], acc1[12];
    for (int i = 0; i < R; i++) {
        acc0[i] = _mm512_setzero_ps();
        acc1[i] = _mm512_setzero_ps();
        ck_prefetch_store(out + i * ldc, V == 2 ? 32 : s0);
    }
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        _mm_prefetch((const char *)(w0 + (kk + PREFETCH) * s0), _MM_HINT_T0);
        if (V == 2) _mm_prefetch((const char *)(w1 + (kk + PREFETCH) * 16), _MM_HINT_T0);
        if (ahead) {
            _mm_prefetch((const char *)(ahead + kk * 32), _MM_HINT_T0);
            _mm_prefetch((const char *)(ahead + kk * 32 + 16), _MM_HINT_T0);
        }
        const __m512 b0 = _mm512_maskz_loadu_ps(s0 == 8 ? 0x00FF : 0xFFFF, w0 + kk * s0);
        const __m512 b1 = V == 2 ? _mm512_loadu_ps(w1 + kk * 16) : _mm512_setzero_ps();
        for (int i = 0; i < R; i++) {
            const __m512 v = _mm512_set1_ps(x[i * lda + kk]);
            acc0[i] = _mm512_fmadd_ps(v, b0, acc0[i]);
            if (V == 2) acc1[i] = _mm512_fmadd_ps(v, b1, acc1[i]);
        }
    }
    /* A copy the compiler can keep in registers: the stores below cannot change it. */
    const ck_epilogue ec = *e;
    for (int i = 0; i < R; i++) {
        ck_emit_as(ACT, acc0[i], ch, out + i * ldc, m0, &ec);
        if (V == 2) ck_emit_as(ACT, acc1[i], ch + 16, out + i * ldc + 16, m1, &ec);
    }
}

/// `tile` for a pair whose second panel is 8 wide (n = 24, 40, ...): that panel's eight channels
/// of two rows share one register (row i in lanes 0-7, row i + 1 in lanes 8-15, the weights
/// repeated in both halves), so it takes R / 2 multiply-adds per input channel instead of R with
/// half their lanes idle (a blend builds the pair's broadcast). The same products summed in the
/// same order. EfficientNet's block2a/2b projections (n = 24) alone: 3249 x 96 x 24 79 -> 69 us,
/// 3249 x 144 x 24 116 -> 103 us, on a CPU with full-width 512-bit multiply-adds; where they are
/// split in two (ck_fma512_split) `tile_narrow` is faster.
INLINE void tile_half(const int ACT, const int R, const float *x, ptrdiff_t lda, ptrdiff_t k, const float *w0,
                      const float *w1, float *out, ptrdiff_t ldc, ptrdiff_t ch, __mmask16 m0, __mmask16 m1,
                      const ck_epilogue *e, const float *ahead) {
    __m512 acc0[12], acc1[6];
    for (int i = 0; i < R; i++) {
        acc0[i] = _mm512_setzero_ps();
        ck_prefetch_store(out + i * ldc, 24);
    }
    for (int j = 0; j < (R + 1) / 2; j++) acc1[j] = _mm512_setzero_ps();
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        _mm_prefetch((const char *)(w0 + (kk + PREFETCH) * 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(w1 + (kk + PREFETCH) * 8), _MM_HINT_T0);
        if (ahead) {
            _mm_prefetch((const char *)(ahead + kk * 32), _MM_HINT_T0);
            _mm_prefetch((const char *)(ahead + kk * 32 + 16), _MM_HINT_T0);
        }
        const __m512 b0 = _mm512_loadu_ps(w0 + kk * 16);
        const __m512 b1 = _mm512_broadcast_f32x8(_mm256_loadu_ps(w1 + kk * 8));
        for (int i = 0; i < R; i += 2) {
            const __m512 v0 = _mm512_set1_ps(x[i * lda + kk]);
            acc0[i] = _mm512_fmadd_ps(v0, b0, acc0[i]);
            __m512 pair = v0;
            if (i + 1 < R) {
                const __m512 v1 = _mm512_set1_ps(x[(i + 1) * lda + kk]);
                acc0[i + 1] = _mm512_fmadd_ps(v1, b0, acc0[i + 1]);
                pair = _mm512_mask_blend_ps(0xFF00, v0, v1);
            }
            acc1[i / 2] = _mm512_fmadd_ps(pair, b1, acc1[i / 2]);
        }
    }
    const ck_epilogue ec = *e;    /* the stores below cannot change it */
    for (int i = 0; i < R; i++) {
        ck_emit_as(ACT, acc0[i], ch, out + i * ldc, m0, &ec);
        if (i % 2 == 0) ck_emit_as(ACT, acc1[i / 2], ch + 16, out + i * ldc + 16, m1, &ec);
        else ck_emit_as(ACT, _mm512_shuffle_f32x4(acc1[i / 2], acc1[i / 2], 0xEE), ch + 16, out + i * ldc + 16, m1, &ec);
    }
}

/// `tile` where the last panel is 8 wide (n = 24, 40, ...; V = 2: a 16-wide panel w0 at channel ch
/// and the 8-wide w8 at ch + 16; V = 1: only w8, at ch): the 8-wide panel's accumulators are 256-bit
/// registers. For CPUs that split a 512-bit multiply-add in two (ck_fma512_split: AMD Zen 4 runs
/// two 256-bit multiply-adds a cycle against one 512-bit one), an 8-wide panel then costs half a
/// 16-wide one, where a masked 512-bit multiply-add cost as much as a full one, and `tile_half`'s
/// blends took the multiply-add pipes' time. The same products summed in the same order. EfficientNet's projections
/// alone (one thread, minimum of 40): 3249 x 96 x 24 206 -> 156 us, 3249 x 144 x 24 309 -> 229 us,
/// 841 x 144 x 40 104 -> 91 us, 841 x 240 x 40 172 -> 150 us.
INLINE void tile_narrow(const int ACT, const int R, const int V, const float *x, ptrdiff_t lda, ptrdiff_t k,
                        const float *w0, const float *w8, float *out, ptrdiff_t ldc, ptrdiff_t ch, __mmask16 m0,
                        __mmask16 m8, const ck_epilogue *e, const float *ahead) {
    __m512 acc0[12];
    __m256 acc8[12];
    for (int i = 0; i < R; i++) {
        acc0[i] = _mm512_setzero_ps();
        acc8[i] = _mm256_setzero_ps();
        ck_prefetch_store(out + i * ldc, V == 2 ? 24 : 8);
    }
    for (ptrdiff_t kk = 0; kk < k; kk++) {
        if (V == 2) _mm_prefetch((const char *)(w0 + (kk + PREFETCH) * 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(w8 + (kk + PREFETCH) * 8), _MM_HINT_T0);
        if (ahead) {
            _mm_prefetch((const char *)(ahead + kk * 32), _MM_HINT_T0);
            _mm_prefetch((const char *)(ahead + kk * 32 + 16), _MM_HINT_T0);
        }
        const __m512 b0 = V == 2 ? _mm512_loadu_ps(w0 + kk * 16) : _mm512_setzero_ps();
        const __m256 b8 = _mm256_loadu_ps(w8 + kk * 8);
        for (int i = 0; i < R; i++) {
            if (V == 2) acc0[i] = _mm512_fmadd_ps(_mm512_set1_ps(x[i * lda + kk]), b0, acc0[i]);
            acc8[i] = _mm256_fmadd_ps(_mm256_set1_ps(x[i * lda + kk]), b8, acc8[i]);
        }
    }
    const ck_epilogue ec = *e;    /* the stores below cannot change it */
    const ptrdiff_t c8 = V == 2 ? ch + 16 : ch;
    for (int i = 0; i < R; i++) {
        if (V == 2) ck_emit_as(ACT, acc0[i], ch, out + i * ldc, m0, &ec);
        ck_emit_as(ACT, _mm512_zextps256_ps512(acc8[i]), c8, out + i * ldc + (c8 - ch), m8, &ec);
    }
}

/// Which register tile `rows` runs: `tile`, `tile_half` (w1 the 8-wide panel) or `tile_narrow`
/// (w1 the 8-wide panel and m1 its lanes; with V = 1, w0 and m0 are not read).
enum { TILE_FULL, TILE_HALF, TILE_NARROW };

/// All rows of r0..<r1 against one or two panels in tiles of kind KIND (a constant after
/// inlining, as ACT, V and R are): 12-row tiles, then one tile of the rest; the first tile
/// prefetches `ahead` (see PREFETCH).
INLINE void rows(const int KIND, const int ACT, const int V, const float *a, ptrdiff_t lda, ptrdiff_t k, ptrdiff_t r0,
                 ptrdiff_t r1, const float *w0, ptrdiff_t s0, const float *w1, float *c, ptrdiff_t ldc, ptrdiff_t ch,
                 __mmask16 m0, __mmask16 m1, const ck_epilogue *e, const float *ahead) {
#define TILE(R, X, OUT, AHEAD)                                                                              \
    switch (KIND) {                                                                                         \
    case TILE_FULL: tile(ACT, R, V, X, lda, k, w0, s0, w1, OUT, ldc, ch, m0, m1, e, AHEAD); break;          \
    case TILE_HALF: tile_half(ACT, R, X, lda, k, w0, w1, OUT, ldc, ch, m0, m1, e, AHEAD); break;            \
    default: tile_narrow(ACT, R, V, X, lda, k, w0, w1, OUT, ldc, ch, m0, m1, e, AHEAD); break;              \
    }
    ptrdiff_t r = r0;
    for (; r + 12 <= r1; r += 12, ahead = NULL) TILE(12, a + r * lda, c + r * ldc + ch, ahead)
    const float *x = a + r * lda;
    float *out = c + r * ldc + ch;
#define TAIL(R) case R: TILE(R, x, out, ahead) break;
    switch (r1 - r) {
        TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7) TAIL(8) TAIL(9) TAIL(10) TAIL(11)
        default: break;
    }
#undef TAIL
#undef TILE
}

/// The panels of p0..<p1 in pairs (then one), all rows of r0..<r1 against each; a last panel 8 wide
/// through `tile_narrow` when `split` (ck_fma512_split), else `tile_half` or a masked `tile`.
INLINE void panels(const int ACT, const float *a, ptrdiff_t lda, ptrdiff_t k, const float *packed, ptrdiff_t n,
                   float *c, ptrdiff_t ldc, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t p0, ptrdiff_t p1,
                   const ck_epilogue *e, int split) {
    ptrdiff_t p = p0;
    while (p < p1) {
        const ptrdiff_t c0 = p * 16;
        const __mmask16 m0 = ck_lanes(n - c0);
        const float *w0 = packed + c0 * k;
        if (p + 1 < p1) {
            const ptrdiff_t c1 = c0 + 16;
            if (n - c1 <= 8 && split)
                rows(TILE_NARROW, ACT, 2, a, lda, k, r0, r1, w0, 16, w0 + 16 * k, c, ldc, c0, m0, ck_lanes(n - c1), e,
                     p + 2 < p1 ? w0 + 32 * k : NULL);
            else if (n - c1 <= 8)
                rows(TILE_HALF, ACT, 2, a, lda, k, r0, r1, w0, 16, w0 + 16 * k, c, ldc, c0, m0, ck_lanes(n - c1), e,
                     p + 2 < p1 ? w0 + 32 * k : NULL);
            else
                rows(TILE_FULL, ACT, 2, a, lda, k, r0, r1, w0, 16, w0 + 16 * k, c, ldc, c0, m0, ck_lanes(n - c1), e,
                     p + 2 < p1 ? w0 + 32 * k : NULL);
            p += 2;
        } else if (n - c0 <= 8 && split) {
            rows(TILE_NARROW, ACT, 1, a, lda, k, r0, r1, w0, 8, w0, c, ldc, c0, 0, m0, e, NULL);
            p += 1;
        } else {
            rows(TILE_FULL, ACT, 1, a, lda, k, r0, r1, w0, n - c0 <= 8 ? 8 : 16, w0, c, ldc, c0, m0, 0, e, NULL);
            p += 1;
        }
    }
}

AVX512 void ck_pointwise_block_avx512(const float *a, ptrdiff_t lda, ptrdiff_t k, const float *packed, ptrdiff_t n,
                                      float *c, ptrdiff_t ldc, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t p0, ptrdiff_t p1,
                                      const ck_epilogue *e) {
    /* EfficientNet's products end in swish or nothing: those two get tiles of their own. */
    const int split = ck_fma512_split();
    switch (e->activation) {
    case CK_ACT_SWISH: panels(CK_ACT_SWISH, a, lda, k, packed, n, c, ldc, r0, r1, p0, p1, e, split); break;
    case CK_ACT_LINEAR: panels(CK_ACT_LINEAR, a, lda, k, packed, n, c, ldc, r0, r1, p0, p1, e, split); break;
    default: panels(-1, a, lda, k, packed, n, c, ldc, r0, r1, p0, p1, e, split); break;
    }
}
#else
void ck_pointwise_block_avx512(const float *a, ptrdiff_t lda, ptrdiff_t k, const float *packed, ptrdiff_t n,
                               float *c, ptrdiff_t ldc, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t p0, ptrdiff_t p1,
                               const ck_epilogue *e) {
    (void)a; (void)lda; (void)k; (void)packed; (void)n; (void)c; (void)ldc; (void)r0; (void)r1; (void)p0; (void)p1;
    (void)e;
}
#endif
