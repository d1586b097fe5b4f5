// The kernel gradient of a depthwise convolution (multiplier 1) for one output row and one
// kernel row, all of that row's taps at once, in 16-lane AVX-512:
//   out[kx, c] += sum over output columns ox of x[ox*sW - padL + kx*dW, c] * dy[ox, c]
// for the taps kx whose input column lies inside the row. The sum over the row's pixels runs
// per tap in registers, and each dy vector is loaded once for all the kernel's taps instead of
// once per tap (one tap at a time, two loads fed each product: the pass was load-bound). Each
// tap's sum still adds the same products in the same order (ox ascending, from zero, then onto
// out), so the result is the one-tap-at-a-time result bit for bit.
#if defined(__x86_64__)
#include "ckernels.h"
#include "vec512.h"

/// Channels j..j+31 (V = 2) or j..j+15 (V = 1) under masks m0, m1, for a KW-wide kernel row.
INLINE void taps(const int KW, const int V, const float *x, const float *dy, ptrdiff_t C, ptrdiff_t outW,
                 ptrdiff_t inW, ptrdiff_t sW, ptrdiff_t padL, ptrdiff_t dW, ptrdiff_t j, __mmask16 m0, __mmask16 m1,
                 float *out) {
    __m512 a0[8], a1[8];
    for (int k = 0; k < KW; k++) {
        a0[k] = _mm512_setzero_ps();
        a1[k] = _mm512_setzero_ps();
    }
    for (ptrdiff_t ox = 0; ox < outW; ox++) {
        const float *d = dy + ox * C + j;
        const __m512 d0 = _mm512_maskz_loadu_ps(m0, d);
        const __m512 d1 = V == 2 ? _mm512_maskz_loadu_ps(m1, d + 16) : _mm512_setzero_ps();
        const ptrdiff_t ix0 = ox * sW - padL;
        for (int k = 0; k < KW; k++) {
            const ptrdiff_t ix = ix0 + k * dW;
            if ((size_t)ix >= (size_t)inW) continue;
            const float *p = x + ix * C + j;
            a0[k] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, p), d0, a0[k]);
            if (V == 2) a1[k] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, p + 16), d1, a1[k]);
        }
    }
    for (int k = 0; k < KW; k++) {
        float *o = out + k * C + j;
        _mm512_mask_storeu_ps(o, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, o), a0[k]));
        if (V == 2) _mm512_mask_storeu_ps(o + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, o + 16), a1[k]));
    }
}

INLINE void all_channels(const int KW, const float *x, const float *dy, ptrdiff_t C, ptrdiff_t outW, ptrdiff_t inW,
                         ptrdiff_t sW, ptrdiff_t padL, ptrdiff_t dW, float *out) {
    ptrdiff_t j = 0;
    for (; j + 32 <= C; j += 32) taps(KW, 2, x, dy, C, outW, inW, sW, padL, dW, j, 0xFFFF, 0xFFFF, out);
    if (C - j > 16) taps(KW, 2, x, dy, C, outW, inW, sW, padL, dW, j, 0xFFFF, ck_lanes(C - j - 16), out);
    else if (C > j) taps(KW, 1, x, dy, C, outW, inW, sW, padL, dW, j, ck_lanes(C - j), 0, out);
}

AVX512 int ck_depthwise_kernel_grad_row_avx512(const float *x, const float *dy, ptrdiff_t C, ptrdiff_t outW,
                                               ptrdiff_t inW, ptrdiff_t kernelW, ptrdiff_t strideW, ptrdiff_t padLeft,
                                               ptrdiff_t dilationW, float *out) {
    switch (kernelW) {
#define CASE(K) case K: all_channels(K, x, dy, C, outW, inW, strideW, padLeft, dilationW, out); return 1;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
        default: return 0;
    }
}
#else
#include "ckernels.h"
int ck_depthwise_kernel_grad_row_avx512(const float *x, const float *dy, ptrdiff_t C, ptrdiff_t outW, ptrdiff_t inW,
                                        ptrdiff_t kernelW, ptrdiff_t strideW, ptrdiff_t padLeft, ptrdiff_t dilationW,
                                        float *out) {
    (void)x; (void)dy; (void)C; (void)outW; (void)inW; (void)kernelW; (void)strideW; (void)padLeft; (void)dilationW;
    (void)out;
    return 0;
}
#endif
