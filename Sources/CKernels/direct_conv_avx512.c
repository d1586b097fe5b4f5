// Conv2D for inputs with few channels (image stems: RGB) in 16-lane AVX-512, computed directly as
// Runtime/Kernels/Conv2DDirect.swift does: each tap broadcasts one input value against a
// contiguous row of weights (32 output channels, two vectors). Interior pixels go in strips of 8
// (then 4) that share each weight load; border pixels one at a time with their valid taps. With
// dilation 1 across, a kernel row's taps read kernelW x inC consecutive input floats against
// consecutive weight rows, so the tap loop is one flat loop. Swish (EfficientNet's stem) gets
// pixels of its own, and the epilogue is read into a local copy the stores cannot alias (see
// pointwise_avx512.c): 155 -> 146 us for EfficientNetB0's stem alone, the same values.
#if defined(__x86_64__)
#include "ckernels.h"
#include "vec512.h"

/// P output pixels StrideW apart in the input (`origin` = first pixel's tap (0, kxLo)), taps
/// ky in kyLo..<kyHi and kx in kxLo..<kxHi, all output channels 32 at a time.
INLINE void pixels(const int ACT, const int P, const ck_conv_geometry *g, const float *origin, ptrdiff_t kyLo,
                   ptrdiff_t kyHi, ptrdiff_t kxLo, ptrdiff_t kxHi, const float *w, float *out, const ck_epilogue *e) {
    const ptrdiff_t ci = g->inC, co = g->outC;
    const ptrdiff_t rowStep = g->dilationH * g->inW * ci, pixelStep = g->strideW * ci;
    const ptrdiff_t flat = (kxHi - kxLo) * ci;
    for (ptrdiff_t c = 0; c < co; c += 32) {
        const __mmask16 m0 = ck_lanes(co - c), m1 = ck_lanes(co - c - 16);
        __m512 a0[8], a1[8];
        for (int j = 0; j < P; j++) {
            a0[j] = _mm512_setzero_ps();
            a1[j] = _mm512_setzero_ps();
            ck_prefetch_store(out + j * co + c, co - c < 32 ? co - c : 32);
        }
        for (ptrdiff_t i = kyLo; i < kyHi; i++) {
            const float *p = origin + i * rowStep;
            const float *q = w + ((i * g->kernelW + kxLo) * ci) * co + c;
            for (ptrdiff_t t = 0; t < flat; t++, q += co) {
                const __m512 w0 = _mm512_maskz_loadu_ps(m0, q), w1 = _mm512_maskz_loadu_ps(m1, q + 16);
                for (int j = 0; j < P; j++) {
                    const __m512 v = _mm512_set1_ps(p[j * pixelStep + t]);
                    a0[j] = _mm512_fmadd_ps(v, w0, a0[j]);
                    a1[j] = _mm512_fmadd_ps(v, w1, a1[j]);
                }
            }
        }
        const ck_epilogue ec = *e;    /* the stores below cannot change it */
        for (int j = 0; j < P; j++) {
            ck_emit_as(ACT, a0[j], c, out + j * co + c, m0, &ec);
            ck_emit_as(ACT, a1[j], c + 16, out + j * co + c + 16, m1, &ec);
        }
    }
}

/// Output rows row0..<row1 (row row0's first value at `y`), the activation `ACT` as in ck_activate_as.
INLINE void rows_as(const int ACT, const ck_conv_geometry *g, const float *x, const float *w, float *y, ptrdiff_t row0,
                    ptrdiff_t row1, const ck_epilogue *e) {
    const ptrdiff_t ci = g->inC, co = g->outC;
    // Interior columns: every horizontal tap inside the input.
    const ptrdiff_t span = g->kernelW - 1;
    ptrdiff_t oxLo = (g->padLeft + g->strideW - 1) / g->strideW;
    if (oxLo > g->outW) oxLo = g->outW;
    ptrdiff_t oxHi = g->inW - 1 - span + g->padLeft >= 0 ? (g->inW - 1 - span + g->padLeft) / g->strideW + 1 : 0;
    if (oxHi > g->outW) oxHi = g->outW;
    if (oxHi < oxLo) oxHi = oxLo;
    for (ptrdiff_t r = row0; r < row1; r++) {
        const ptrdiff_t n = r / g->outH, oy = r % g->outH;
        ptrdiff_t kyLo, kyHi;
        ck_valid_taps(oy, g->strideH, g->padTop, g->dilationH, g->kernelH, g->inH, &kyLo, &kyHi);
        const float *row = x + (n * g->inH + oy * g->strideH - g->padTop) * g->inW * ci;
        float *outRow = y + (r - row0) * g->outW * co;
        ptrdiff_t ox = 0;
        while (ox < g->outW) {
            const ptrdiff_t ix0 = ox * g->strideW - g->padLeft;
            float *out = outRow + ox * co;
            if (ox >= oxLo && ox + 8 <= oxHi) {
                pixels(ACT, 8, g, row + ix0 * ci, kyLo, kyHi, 0, g->kernelW, w, out, e);
                ox += 8;
            } else if (ox >= oxLo && ox + 4 <= oxHi) {
                pixels(ACT, 4, g, row + ix0 * ci, kyLo, kyHi, 0, g->kernelW, w, out, e);
                ox += 4;
            } else {
                ptrdiff_t kxLo, kxHi;
                ck_valid_taps(ox, g->strideW, g->padLeft, 1, g->kernelW, g->inW, &kxLo, &kxHi);
                pixels(ACT, 1, g, row + (ix0 + kxLo) * ci, kyLo, kyHi, kxLo, kxHi, w, out, e);
                ox += 1;
            }
        }
    }
}

AVX512 void ck_direct_conv_rows_avx512(const ck_conv_geometry *g, const float *x, const float *w, float *y,
                                       ptrdiff_t row0, ptrdiff_t row1, const ck_epilogue *e) {
    y += row0 * g->outW * g->outC;
    switch (e->activation) {
    case CK_ACT_SWISH: rows_as(CK_ACT_SWISH, g, x, w, y, row0, row1, e); break;
    default: rows_as(-1, g, x, w, y, row0, row1, e); break;
    }
}

AVX512 void ck_direct_conv_row_avx512(const ck_conv_geometry *g, const float *x, const float *w, float *outRow,
                                      ptrdiff_t r, const ck_epilogue *e) {
    switch (e->activation) {
    case CK_ACT_SWISH: rows_as(CK_ACT_SWISH, g, x, w, outRow, r, r + 1, e); break;
    default: rows_as(-1, g, x, w, outRow, r, r + 1, e); break;
    }
}
#else
#include "ckernels.h"
void ck_direct_conv_rows_avx512(const ck_conv_geometry *g, const float *x, const float *w, float *y,
                                ptrdiff_t row0, ptrdiff_t row1, const ck_epilogue *e) {
    (void)g; (void)x; (void)w; (void)y; (void)row0; (void)row1; (void)e;
}
void ck_direct_conv_row_avx512(const ck_conv_geometry *g, const float *x, const float *w, float *outRow, ptrdiff_t r,
                               const ck_epilogue *e) {
    (void)g; (void)x; (void)w; (void)outRow; (void)r; (void)e;
}
#endif
