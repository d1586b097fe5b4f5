// The pointwise (1x1) product of pointwise_avx512.c with bfloat16 operands (AVX512_BF16):
// `vdpbf16ps` multiplies two pairs of bf16 per 32-bit lane and adds both products to a float32
// accumulator, so one instruction does the work of two fused multiply-adds on half the bytes.
// The weights arrive packed once, at plan build, as bf16 pairs (see ck_pointwise_bf16_block_avx512
// in ckernels.h); the activations stay float32 in memory and a block's rows are rounded to bf16
// (round to nearest even, vcvtne2ps2bf16) into a per-thread buffer just before the block's tiles
// read them, optionally multiplied by a per-input-channel scale on the way (squeeze-and-
// excitation's excite, folded in for free). Accumulation, epilogue and stores are float32, as
// in the float32 kernel: same blocking, same 12-row x two-panel register tile, same epilogue,
// and as there, tiles of their own for swish and linear epilogues (alone, one thread:
// 12996x16x96 swish 298 -> 252 us, 3249x24x144 swish 118 -> 103 us, the same sums).
#if defined(__x86_64__)
#include <stdint.h>
#include <stdlib.h>
#include "ckernels.h"
#include "vec512.h"

#define BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))
#define BF16_INLINE BF16 static inline __attribute__((always_inline))

/// Weight pairs ahead at which each panel is prefetched (the float32 kernel's 24 input
/// channels, in pairs of the same byte distance: one bf16 pair is one float).
#define PREFETCH 24

/// Dwords (bf16 pairs) of a thread's conversion buffer at most; a block with more rows than
/// fit is converted and multiplied in slices of rows.
#define SCRATCH_LIMIT (1 << 16)

/// `k` floats of x (times scale[j] when given) as (k + 1) / 2 bf16 pairs, the odd tail padded with 0.
BF16_INLINE void to_pairs(const float *x, ptrdiff_t k, const float *scale, uint32_t *dst) {
    ptrdiff_t j = 0;
    for (; j + 32 <= k; j += 32) {
        __m512 lo = _mm512_loadu_ps(x + j), hi = _mm512_loadu_ps(x + j + 16);
        if (scale) {
            lo = _mm512_mul_ps(lo, _mm512_loadu_ps(scale + j));
            hi = _mm512_mul_ps(hi, _mm512_loadu_ps(scale + j + 16));
        }
        _mm512_storeu_si512((void *)(dst + j / 2), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
    if (j < k) {
        const __mmask16 m0 = ck_lanes(k - j), m1 = ck_lanes(k - j - 16);
        __m512 lo = _mm512_maskz_loadu_ps(m0, x + j), hi = _mm512_maskz_loadu_ps(m1, x + j + 16);
        if (scale) {
            lo = _mm512_mul_ps(lo, _mm512_maskz_loadu_ps(m0, scale + j));
            hi = _mm512_mul_ps(hi, _mm512_maskz_loadu_ps(m1, scale + j + 16));
        }
        _mm512_mask_storeu_epi32(dst + j / 2, ck_lanes((k - j + 1) / 2), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
}

/// Up to 12 rows (R) of bf16 pairs, kp pairs each, rows ldx dwords apart, times one or two
/// panels (V) of kp rows of 16 pairs; `ahead`, when not NULL, is the next pair of panels,
/// prefetched over the steps as in the float32 kernel (the pairs start cold otherwise).
BF16_INLINE void tile(const int ACT, const int R, const int V, const uint32_t *x, ptrdiff_t ldx, ptrdiff_t kp, const uint32_t *w0,
                      const uint32_t *w1, float *out, ptrdiff_t ldc, ptrdiff_t ch, __mmask16 m0, __mmask16 m1,
                      const ck_epilogue *e, const uint32_t *ahead) {
    __m512 acc0[12], acc1[12];
    for (int i = 0; i < R; i++) {
        acc0[i] = _mm512_setzero_ps();
        acc1[i] = _mm512_setzero_ps();
        ck_prefetch_store(out + i * ldc, V == 2 ? 32 : 16);
    }
    for (ptrdiff_t kk = 0; kk < kp; kk++) {
        _mm_prefetch((const char *)(w0 + (kk + PREFETCH) * 16), _MM_HINT_T0);
        if (V == 2) _mm_prefetch((const char *)(w1 + (kk + PREFETCH) * 16), _MM_HINT_T0);
        if (ahead) {
            _mm_prefetch((const char *)(ahead + kk * 32), _MM_HINT_T0);
            _mm_prefetch((const char *)(ahead + kk * 32 + 16), _MM_HINT_T0);
        }
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(w0 + kk * 16));
        const __m512bh b1 = V == 2 ? (__m512bh)_mm512_loadu_si512((const void *)(w1 + kk * 16)) : b0;
        for (int i = 0; i < R; i++) {
            const __m512bh v = (__m512bh)_mm512_set1_epi32((int)x[i * ldx + kk]);
            acc0[i] = _mm512_dpbf16_ps(acc0[i], v, b0);
            if (V == 2) acc1[i] = _mm512_dpbf16_ps(acc1[i], v, b1);
        }
    }
    const ck_epilogue ec = *e;    /* the stores below cannot change it */
    for (int i = 0; i < R; i++) {
        ck_emit_as(ACT, acc0[i], ch, out + i * ldc, m0, &ec);
        if (V == 2) ck_emit_as(ACT, acc1[i], ch + 16, out + i * ldc + 16, m1, &ec);
    }
}

/// Rows 0..<rows of the converted slice against one or two panels: 12-row tiles, then the rest.
BF16_INLINE void rows(const int ACT, const int V, const uint32_t *x, ptrdiff_t kp, ptrdiff_t count, const uint32_t *w0,
                      const uint32_t *w1, float *c, ptrdiff_t ldc, ptrdiff_t ch, __mmask16 m0, __mmask16 m1,
                      const ck_epilogue *e, const uint32_t *ahead) {
    ptrdiff_t r = 0;
    for (; r + 12 <= count; r += 12, ahead = NULL)
        tile(ACT, 12, V, x + r * kp, kp, kp, w0, w1, c + r * ldc + ch, ldc, ch, m0, m1, e, ahead);
    const uint32_t *xr = x + r * kp;
    float *out = c + r * ldc + ch;
#define TAIL(R) case R: tile(ACT, R, V, xr, kp, kp, w0, w1, out, ldc, ch, m0, m1, e, ahead); break;
    switch (count - r) {
        TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7) TAIL(8) TAIL(9) TAIL(10) TAIL(11)
        default: break;
    }
#undef TAIL
}

/// This thread's conversion buffer of at least `dwords` (`ck_thread_buffer`: reused by every
/// later product on the thread).
static uint32_t *scratch(ptrdiff_t dwords) {
    static __thread void *buffer;
    static __thread ptrdiff_t capacity;
    return ck_thread_buffer(&buffer, &capacity, dwords);
}

/// Rows 0..<count of converted pairs (rows kp dwords apart) times panels p0..<p1, into c's rows
/// 0..<count (ldc apart): two panels per pass while there are two.
BF16_INLINE void panels_as(const int ACT, const uint32_t *x, ptrdiff_t kp, ptrdiff_t count, const uint32_t *packed,
                           ptrdiff_t n, float *c, ptrdiff_t ldc, ptrdiff_t p0, ptrdiff_t p1, const ck_epilogue *e) {
    for (ptrdiff_t p = p0; p < p1;) {
        const ptrdiff_t c0 = p * 16;
        const uint32_t *w0 = packed + p * 16 * kp;
        if (p + 1 < p1) {
            rows(ACT, 2, x, kp, count, w0, w0 + 16 * kp, c, ldc, c0, ck_lanes(n - c0), ck_lanes(n - c0 - 16), e,
                 p + 2 < p1 ? w0 + 32 * kp : NULL);
            p += 2;
        } else {
            rows(ACT, 1, x, kp, count, w0, w0, c, ldc, c0, ck_lanes(n - c0), 0, e, NULL);
            p += 1;
        }
    }
}

/// `panels_as` with swish and linear epilogues in tiles of their own (see pointwise_avx512.c).
BF16_INLINE void panels(const uint32_t *x, ptrdiff_t kp, ptrdiff_t count, const uint32_t *packed, ptrdiff_t n,
                        float *c, ptrdiff_t ldc, ptrdiff_t p0, ptrdiff_t p1, const ck_epilogue *e) {
    switch (e->activation) {
    case CK_ACT_SWISH: panels_as(CK_ACT_SWISH, x, kp, count, packed, n, c, ldc, p0, p1, e); break;
    case CK_ACT_LINEAR: panels_as(CK_ACT_LINEAR, x, kp, count, packed, n, c, ldc, p0, p1, e); break;
    default: panels_as(-1, x, kp, count, packed, n, c, ldc, p0, p1, e); break;
    }
}

BF16 void ck_pointwise_bf16_block_avx512(const float *a, ptrdiff_t lda, ptrdiff_t k, const float *kscale,
                                         const uint32_t *packed, ptrdiff_t n, float *c, ptrdiff_t ldc, ptrdiff_t r0,
                                         ptrdiff_t r1, ptrdiff_t p0, ptrdiff_t p1, const ck_epilogue *e) {
    if (r1 <= r0 || p1 <= p0) return;
    const ptrdiff_t kp = (k + 1) / 2;
    // Rows per slice: the whole block when its pairs fit the limit, else a multiple of 12.
    ptrdiff_t slice = r1 - r0;
    if (slice * kp > SCRATCH_LIMIT) {
        slice = SCRATCH_LIMIT / (kp > 0 ? kp : 1) / 12 * 12;
        if (slice < 12) slice = 12;
    }
    uint32_t *x = scratch(slice * (kp > 0 ? kp : 1));
    for (ptrdiff_t s = r0; s < r1; s += slice) {
        const ptrdiff_t count = r1 - s < slice ? r1 - s : slice;
        for (ptrdiff_t r = 0; r < count; r++) to_pairs(a + (s + r) * lda, k, kscale, x + r * kp);
        panels(x, kp, count, packed, n, c + s * ldc, ldc, p0, p1, e);
    }
}

uint32_t *ck_bf16_pairs_buffer(ptrdiff_t dwords) {
    static __thread uint32_t *buffer;
    static __thread ptrdiff_t capacity;
    if (capacity < dwords) {
        free(buffer);
        buffer = aligned_alloc(64, (size_t)((dwords + 15) / 16 * 64));
        if (!buffer) abort();    /* the product's input as pairs (half its floats): out of memory */
        capacity = dwords;
    }
    return buffer;
}

BF16 void ck_bf16_pairs_avx512(const float *a, ptrdiff_t lda, ptrdiff_t k, const float *kscale, uint32_t *x,
                               ptrdiff_t r0, ptrdiff_t r1) {
    const ptrdiff_t kp = (k + 1) / 2;
    for (ptrdiff_t r = r0; r < r1; r++) to_pairs(a + r * lda, k, kscale, x + r * kp);
}

BF16 void ck_pointwise_bf16_pairs_block_avx512(const uint32_t *x, ptrdiff_t k, const uint32_t *packed, ptrdiff_t n,
                                               float *c, ptrdiff_t ldc, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t p0,
                                               ptrdiff_t p1, const ck_epilogue *e) {
    if (r1 <= r0 || p1 <= p0) return;
    const ptrdiff_t kp = (k + 1) / 2;
    panels(x + r0 * kp, kp, r1 - r0, packed, n, c + r0 * ldc, ldc, p0, p1, e);
}
#else
#include <stdint.h>
#include "ckernels.h"
void ck_pointwise_bf16_block_avx512(const float *a, ptrdiff_t lda, ptrdiff_t k, const float *kscale,
                                    const uint32_t *packed, ptrdiff_t n, float *c, ptrdiff_t ldc, ptrdiff_t r0,
                                    ptrdiff_t r1, ptrdiff_t p0, ptrdiff_t p1, const ck_epilogue *e) {
    (void)a; (void)lda; (void)k; (void)kscale; (void)packed; (void)n; (void)c; (void)ldc; (void)r0; (void)r1;
    (void)p0; (void)p1; (void)e;
}
uint32_t *ck_bf16_pairs_buffer(ptrdiff_t dwords) {
    (void)dwords;
    return NULL;
}
void ck_bf16_pairs_avx512(const float *a, ptrdiff_t lda, ptrdiff_t k, const float *kscale, uint32_t *x,
                          ptrdiff_t r0, ptrdiff_t r1) {
    (void)a; (void)lda; (void)k; (void)kscale; (void)x; (void)r0; (void)r1;
}
void ck_pointwise_bf16_pairs_block_avx512(const uint32_t *x, ptrdiff_t k, const uint32_t *packed, ptrdiff_t n,
                                          float *c, ptrdiff_t ldc, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t p0,
                                          ptrdiff_t p1, const ck_epilogue *e) {
    (void)x; (void)k; (void)packed; (void)n; (void)c; (void)ldc; (void)r0; (void)r1; (void)p0; (void)p1; (void)e;
}
#endif
