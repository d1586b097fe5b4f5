// Two memory passes of the training step's backward, in 16-lane AVX-512:
//
// - The first pass of a batch norm's (or conv epilogue's) backward with a swish after it:
//       z = (x - center) a + b,   dz = dy * swish'(z) = dy * s (1 + z (1 - s)),  s = sigmoid(z)
//       dx = dz * dxScale (optional),  sums[c] += dz,  sums[C + c] += dz * (x - center)
//   Its eight-lane Swift form took four times the CPU time of the batch norm's second pass over
//   nearly the same bytes (the sigmoid's exponential and a divide per vector); this one takes
//   about a quarter less than the Swift form in the unfrozen EfficientNetB0 step (profiled CPU
//   samples), the rest being memory. The sigmoid is the forward epilogue's (vec512.h: a table
//   exponential and a divide), so the derivative differs from the Swift one by float32
//   rounding only. When the swish's output fed a squeeze-and-excitation block, dy itself is
//   made in registers from the excite's gradient and the pool's (see the excite variant), so
//   that gradient is never stored and read back.
//
// - The transposed weights a 1x1 convolution's input gradient multiplies by (dX = dY Wᵀ),
//   packed in the forward's 16-channel panels: 16 x 16 blocks transposed in registers instead
//   of one strided scalar read per element; and the weights themselves, for the training
//   forward, whose weights change every step: 16-float rows instead of a copy call per row.
#if defined(__x86_64__)
#include "ckernels.h"
#include "vec512.h"

INLINE __m512 swish_derivative(__m512 z) {
    const __m512 s = ck_logistic_div(_mm512_set1_ps(1.0f), ck_logistic_clamp(z));   /* NaN z stays in the product */
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_mul_ps(s, _mm512_fmadd_ps(z, _mm512_sub_ps(one, s), one));
}

INLINE void swish_grad_vector(const float *xr, __m512 dy, ptrdiff_t j, __mmask16 m, const float *center,
                              const float *a, const float *b, const float *dxScale, float *dxr, int accumulate,
                              float *sums, ptrdiff_t C) {
    const __m512 xc = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + j), _mm512_maskz_loadu_ps(m, center + j));
    const __m512 z = _mm512_fmadd_ps(xc, _mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j));
    const __m512 dz = _mm512_mul_ps(dy, swish_derivative(z));
    if (dxr) {
        __m512 g = _mm512_mul_ps(dz, _mm512_maskz_loadu_ps(m, dxScale + j));
        if (accumulate) g = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dxr + j), g);
        _mm512_mask_storeu_ps(dxr + j, m, g);
    }
    if (sums) {
        _mm512_mask_storeu_ps(sums + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, sums + j), dz));
        _mm512_mask_storeu_ps(sums + C + j, m, _mm512_fmadd_ps(dz, xc, _mm512_maskz_loadu_ps(m, sums + C + j)));
    }
}

AVX512 void ck_affine_swish_grad_rows_avx512(const float *x, const float *dy, ptrdiff_t C, ptrdiff_t r0, ptrdiff_t r1,
                                             const float *center, const float *a, const float *b,
                                             const float *dxScale, float *dx, int accumulate, float *sums) {
    for (ptrdiff_t r = r0; r < r1; r++) {
        const float *xr = x + r * C, *dyr = dy + r * C;
        float *dxr = dx ? dx + r * C : 0;
        ptrdiff_t j = 0;
        for (; j + 16 <= C; j += 16)
            swish_grad_vector(xr, _mm512_loadu_ps(dyr + j), j, 0xFFFF, center, a, b, dxScale, dxr, accumulate, sums, C);
        if (j < C) {
            const __mmask16 m = ck_lanes(C - j);
            swish_grad_vector(xr, _mm512_maskz_loadu_ps(m, dyr + j), j, m, center, a, b, dxScale, dxr, accumulate, sums,
                              C);
        }
    }
}

/// The gradient squeeze-and-excitation's input x gets, dy_excite * scale + dPool / pixels, in
/// registers: what channelScaleAndPoolBackward would store (the same product, the same sum).
INLINE __m512 excite_grad(const float *dyr, const float *sn, const float *pn, ptrdiff_t j, __mmask16 m) {
    return _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, dyr + j), _mm512_maskz_loadu_ps(m, sn + j)),
                         _mm512_maskz_loadu_ps(m, pn + j));
}

AVX512 void ck_affine_swish_grad_excite_rows_avx512(const float *x, const float *dyExcite, const float *scale,
                                                    const float *poolTerm, ptrdiff_t pixels, ptrdiff_t C, ptrdiff_t r0,
                                                    ptrdiff_t r1, const float *center, const float *a, const float *b,
                                                    const float *dxScale, float *dx, int accumulate, float *sums) {
    for (ptrdiff_t r = r0; r < r1; r++) {
        const ptrdiff_t n = r / pixels;
        const float *xr = x + r * C, *dyr = dyExcite + r * C, *sn = scale + n * C, *pn = poolTerm + n * C;
        float *dxr = dx ? dx + r * C : 0;
        ptrdiff_t j = 0;
        for (; j + 16 <= C; j += 16)
            swish_grad_vector(xr, excite_grad(dyr, sn, pn, j, 0xFFFF), j, 0xFFFF, center, a, b, dxScale, dxr,
                              accumulate, sums, C);
        if (j < C) {
            const __mmask16 m = ck_lanes(C - j);
            swish_grad_vector(xr, excite_grad(dyr, sn, pn, j, m), j, m, center, a, b, dxScale, dxr, accumulate, sums, C);
        }
    }
}

/// The 16 x 16 transpose: row i of the result is lane i of every input row.
INLINE void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        const __m512d t0 = _mm512_castps_pd(t[4 * i]), t1 = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d t2 = _mm512_castps_pd(t[4 * i + 2]), t3 = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    // Now r[4g + q] holds, in each 128-bit lane L, elements q of rows 4g..4g+3 at columns 4L + q.
    for (int g = 0; g < 2; g++)
        for (int q = 0; q < 4; q++) {
            t[8 * g + q] = _mm512_shuffle_f32x4(r[8 * g + q], r[8 * g + 4 + q], 0x88);
            t[8 * g + 4 + q] = _mm512_shuffle_f32x4(r[8 * g + q], r[8 * g + 4 + q], 0xDD);
        }
    for (int q = 0; q < 8; q++) {
        r[q] = _mm512_shuffle_f32x4(t[q], t[8 + q], 0x88);
        r[8 + q] = _mm512_shuffle_f32x4(t[q], t[8 + q], 0xDD);
    }
}

AVX512 void ck_pack_transposed_panels_avx512(const float *w, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t p0,
                                             ptrdiff_t p1, float *dst) {
    for (ptrdiff_t p = p0; p < p1; p++) {
        const ptrdiff_t c0 = 16 * p, valid = rows - c0 < 16 ? rows - c0 : 16;
        const int width = rows - c0 <= 8 ? 8 : 16;
        float *out = dst + c0 * cols;     // every panel before the last is 16 wide
        for (ptrdiff_t kk = 0; kk < cols; kk += 16) {
            const ptrdiff_t n = cols - kk < 16 ? cols - kk : 16;
            const __mmask16 m = ck_lanes(n);
            __m512 r[16];
            for (int l = 0; l < 16; l++)
                r[l] = l < valid ? _mm512_maskz_loadu_ps(m, w + (c0 + l) * cols + kk) : _mm512_setzero_ps();
            transpose16(r);
            for (ptrdiff_t i = 0; i < n; i++) {
                if (width == 16) _mm512_storeu_ps(out + (kk + i) * 16, r[i]);
                else _mm256_storeu_ps(out + (kk + i) * 8, _mm512_castps512_ps256(r[i]));
            }
        }
    }
}

AVX512 void ck_pack_panels_avx512(const float *w, ptrdiff_t k, ptrdiff_t n, ptrdiff_t p0, ptrdiff_t p1, float *dst) {
    for (ptrdiff_t p = p0; p < p1; p++) {
        const ptrdiff_t c0 = 16 * p;
        const __mmask16 m = ck_lanes(n - c0);     // the masked-off lanes load as the panel's zeros
        float *out = dst + c0 * k;
        if (n - c0 <= 8)
            for (ptrdiff_t kk = 0; kk < k; kk++)
                _mm256_storeu_ps(out + kk * 8, _mm512_castps512_ps256(_mm512_maskz_loadu_ps(m, w + kk * n + c0)));
        else
            for (ptrdiff_t kk = 0; kk < k; kk++) _mm512_storeu_ps(out + kk * 16, _mm512_maskz_loadu_ps(m, w + kk * n + c0));
    }
}
#else
#include "ckernels.h"
void ck_pack_panels_avx512(const float *w, ptrdiff_t k, ptrdiff_t n, ptrdiff_t p0, ptrdiff_t p1, float *dst) {
    (void)w; (void)k; (void)n; (void)p0; (void)p1; (void)dst;
}
void ck_affine_swish_grad_rows_avx512(const float *x, const float *dy, ptrdiff_t C, ptrdiff_t r0, ptrdiff_t r1,
                                      const float *center, const float *a, const float *b, const float *dxScale,
                                      float *dx, int accumulate, float *sums) {
    (void)x; (void)dy; (void)C; (void)r0; (void)r1; (void)center; (void)a; (void)b; (void)dxScale; (void)dx;
    (void)accumulate; (void)sums;
}
void ck_pack_transposed_panels_avx512(const float *w, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t p0, ptrdiff_t p1,
                                      float *dst) {
    (void)w; (void)rows; (void)cols; (void)p0; (void)p1; (void)dst;
}
void ck_affine_swish_grad_excite_rows_avx512(const float *x, const float *dyExcite, const float *scale,
                                             const float *poolTerm, ptrdiff_t pixels, ptrdiff_t C, ptrdiff_t r0,
                                             ptrdiff_t r1, const float *center, const float *a, const float *b,
                                             const float *dxScale, float *dx, int accumulate, float *sums) {
    (void)x; (void)dyExcite; (void)scale; (void)poolTerm; (void)pixels; (void)C; (void)r0; (void)r1; (void)center;
    (void)a; (void)b; (void)dxScale; (void)dx; (void)accumulate; (void)sums;
}
#endif
