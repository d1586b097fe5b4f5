// The transposed-A product of the weight gradients, C (+)= Aᵀ B, in 16-lane AVX-512: a tile of
// 12 rows of C (12 consecutive columns of A, so the 12 broadcasts per step read one or two cache
// lines) by 32 columns (two vectors of a row of B), accumulated over all k rows of A and B in 24
// registers, then added to or stored into C once. OpenBLAS's build here runs its AVX2 kernels on
// this CPU; this keeps the backward pass at the same width as the forward.
//
// The scaled variant reads A as a squeeze-and-excitation's multiply would have stored it,
// A[p, i] = X[p, i] * S[p / per, i] (the per-image channel scale), each product rounded as that
// multiply rounds it, so that a 1x1 convolution after the excite needs the multiply's output
// neither stored nor read back, and its weight gradient keeps the same bits. The products of a
// row tile's 12 columns are made once, for all k rows, into a dense panel (12 floats a row) that
// the tiles of every column strip then read: one multiply per row instead of one per product.
#if defined(__x86_64__)
#include <stdlib.h>
#include "ckernels.h"
#include "vec512.h"

INLINE void tile(const int R, const int V, const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, ptrdiff_t k,
                 __mmask16 m0, __mmask16 m1, float *c, ptrdiff_t ldc, int accumulate) {
    __m512 acc0[12], acc1[12];
    for (int r = 0; r < R; r++) {
        acc0[r] = _mm512_setzero_ps();
        acc1[r] = _mm512_setzero_ps();
    }
    for (ptrdiff_t p = 0; p < k; p++) {
        const float *ap = a + p * lda, *bp = b + p * ldb;
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, bp);
        const __m512 b1 = V == 2 ? _mm512_maskz_loadu_ps(m1, bp + 16) : _mm512_setzero_ps();
        for (int r = 0; r < R; r++) {
            const __m512 v = _mm512_set1_ps(ap[r]);
            acc0[r] = _mm512_fmadd_ps(v, b0, acc0[r]);
            if (V == 2) acc1[r] = _mm512_fmadd_ps(v, b1, acc1[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        float *row = c + r * ldc;
        if (accumulate) {
            acc0[r] = _mm512_add_ps(acc0[r], _mm512_maskz_loadu_ps(m0, row));
            if (V == 2) acc1[r] = _mm512_add_ps(acc1[r], _mm512_maskz_loadu_ps(m1, row + 16));
        }
        _mm512_mask_storeu_ps(row, m0, acc0[r]);
        if (V == 2) _mm512_mask_storeu_ps(row + 16, m1, acc1[r]);
    }
}

/// Rows i0..<i1 of C against columns j..j+31 (or j..j+15 when V is 1), masks for a partial end.
INLINE void rows(const int V, const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, ptrdiff_t k,
                 ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j, __mmask16 m0, __mmask16 m1, float *c, ptrdiff_t ldc,
                 int accumulate) {
    ptrdiff_t i = i0;
    for (; i + 12 <= i1; i += 12) tile(12, V, a + i, lda, b + j, ldb, k, m0, m1, c + i * ldc + j, ldc, accumulate);
#define TAIL(R) case R: tile(R, V, a + i, lda, b + j, ldb, k, m0, m1, c + i * ldc + j, ldc, accumulate); break;
    switch (i1 - i) {
        TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7) TAIL(8) TAIL(9) TAIL(10) TAIL(11)
        default: break;
    }
#undef TAIL
}

AVX512 void ck_gemm_at_block_avx512(const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *c,
                                    ptrdiff_t ldc, ptrdiff_t k, ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1,
                                    int accumulate) {
    // Column strips of 32 outermost: a strip of B (k x 32 floats) is reused by every row tile
    // while the columns of A stream past it.
    for (ptrdiff_t j = j0; j < j1; j += 32) {
        if (j1 - j > 16)
            rows(2, a, lda, b, ldb, k, i0, i1, j, 0xFFFF, ck_lanes(j1 - j - 16), c, ldc, accumulate);
        else
            rows(1, a, lda, b, ldb, k, i0, i1, j, ck_lanes(j1 - j), 0, c, ldc, accumulate);
    }
}

/// This thread's panel of at least `floats` floats (`ck_thread_buffer`).
static float *panel_buffer(ptrdiff_t floats) {
    static __thread void *buffer;
    static __thread ptrdiff_t capacity;
    return ck_thread_buffer(&buffer, &capacity, floats);
}

AVX512 void ck_gemm_at_scaled_block_avx512(const float *a, ptrdiff_t lda, const float *scale, ptrdiff_t per,
                                           const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, ptrdiff_t k,
                                           ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1, int accumulate) {
    if (k <= 0 || i1 <= i0) {
        ck_gemm_at_block_avx512(a, lda, b, ldb, c, ldc, k, i0, i1, j0, j1, accumulate);
        return;
    }
    float *panel = panel_buffer(k * 12 + 16);
    for (ptrdiff_t i = i0; i < i1; i += 12) {
        const ptrdiff_t r = i1 - i < 12 ? i1 - i : 12;
        const __mmask16 m = ck_lanes(r);
        for (ptrdiff_t p0 = 0; p0 < k; p0 += per) {
            const __m512 s = _mm512_maskz_loadu_ps(m, scale + (p0 / per) * lda + i);
            const ptrdiff_t p1 = p0 + per < k ? p0 + per : k;
            for (ptrdiff_t p = p0; p < p1; p++)
                _mm512_mask_storeu_ps(panel + p * 12, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + p * lda + i), s));
        }
        ck_gemm_at_block_avx512(panel, 12, b, ldb, c + i * ldc, ldc, k, 0, r, j0, j1, accumulate);
    }
}
#else
#include "ckernels.h"
void ck_gemm_at_block_avx512(const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
                             ptrdiff_t k, ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1, int accumulate) {
    (void)a; (void)lda; (void)b; (void)ldb; (void)c; (void)ldc; (void)k; (void)i0; (void)i1; (void)j0; (void)j1;
    (void)accumulate;
}
void ck_gemm_at_scaled_block_avx512(const float *a, ptrdiff_t lda, const float *scale, ptrdiff_t per, const float *b,
                                    ptrdiff_t ldb, float *c, ptrdiff_t ldc, ptrdiff_t k, ptrdiff_t i0, ptrdiff_t i1,
                                    ptrdiff_t j0, ptrdiff_t j1, int accumulate) {
    (void)a; (void)lda; (void)scale; (void)per; (void)b; (void)ldb; (void)c; (void)ldc; (void)k; (void)i0; (void)i1;
    (void)j0; (void)j1; (void)accumulate;
}
#endif
