// One output row of scipy.ndimage.affine_transform(order=1) over an HWC float image, for the
// fill modes reflect and nearest: Runtime/Augment/AffineResample.swift's per-pixel loop with the
// sample points, their boundary mapping, taps and weights computed eight pixels at a time in
// AVX-512 doubles, then each pixel's bilinear sum with its channels in one 4-lane double vector.
// Every value is the same IEEE operation, in the same order, as the Swift loop (which is scipy's
// order), so the results are equal bit for bit; a lane whose mapped point falls outside the range
// the mapping guarantees for finite input makes the whole row return 0 and Swift redoes it.
#if defined(__x86_64__)
#include "ckernels.h"
#include "vec512.h"

// No multiply-add may be fused: the Swift loop rounds every product and every sum.
#pragma clang fp contract(off)

/// scipy's map_coordinate (reflect: half-sample symmetric, period 2 len) of sample points `v`
/// on an axis of `len` >= 2, as mapCoordinate does it: points inside stay as they are.
INLINE __m512d map_reflect(__m512d v, double len) {
    const __m512d sz2 = _mm512_set1_pd(2 * len), one = _mm512_set1_pd(1.0);
    const __mmask8 low = _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_LT_OQ);
    const __mmask8 high = _mm512_cmp_pd_mask(v, _mm512_set1_pd(len - 1), _CMP_GT_OQ);
    // v < 0: if v < -sz2 { v = sz2 * trunc(-v / sz2) + v }; v = v < -len ? v + sz2 : (v > -1e-15 ? 1e-15 : -v) - 1
    __m512d a = v;
    const __mmask8 far_low = _mm512_mask_cmp_pd_mask(low, a, _mm512_sub_pd(_mm512_setzero_pd(), sz2), _CMP_LT_OQ);
    if (far_low) {
        const __m512d neg = _mm512_sub_pd(_mm512_setzero_pd(), a);
        const __m512d t = _mm512_roundscale_pd(_mm512_div_pd(neg, sz2), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        a = _mm512_mask_add_pd(a, far_low, _mm512_mul_pd(sz2, t), a);
    }
    const __mmask8 wrap_low = _mm512_cmp_pd_mask(a, _mm512_set1_pd(-len), _CMP_LT_OQ);
    const __m512d negA = _mm512_sub_pd(_mm512_setzero_pd(), a);
    const __mmask8 tiny = _mm512_cmp_pd_mask(a, _mm512_set1_pd(-1e-15), _CMP_GT_OQ);
    const __m512d mirrored = _mm512_sub_pd(_mm512_mask_blend_pd(tiny, negA, _mm512_set1_pd(1e-15)), one);
    const __m512d lowResult = _mm512_mask_blend_pd(wrap_low, mirrored, _mm512_add_pd(a, sz2));
    // v > len - 1: if v >= sz2 { v -= sz2 * trunc(v / sz2) }; if v >= len { v = sz2 - v - 1 }
    __m512d b = v;
    const __mmask8 far_high = _mm512_mask_cmp_pd_mask(high, b, sz2, _CMP_GE_OQ);
    if (far_high) {
        const __m512d t = _mm512_roundscale_pd(_mm512_div_pd(b, sz2), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        b = _mm512_mask_sub_pd(b, far_high, b, _mm512_mul_pd(sz2, t));
    }
    const __mmask8 over = _mm512_cmp_pd_mask(b, _mm512_set1_pd(len), _CMP_GE_OQ);
    b = _mm512_mask_sub_pd(b, over, _mm512_sub_pd(sz2, b), one);
    __m512d r = _mm512_mask_blend_pd(high, v, b);
    return _mm512_mask_blend_pd(low, r, lowResult);
}

/// One axis's two taps (element offsets times `stride`) and order-1 weights for sample points
/// `v` (AxisTaps). Lanes in `valid` whose taps the fast rules below do not cover are added to
/// *bad.
INLINE void axis_taps(__m512d v, ptrdiff_t length, int reflect, __mmask8 valid, ptrdiff_t stride,
                      __m256i *t0, __m256i *t1, __m512d *w0, __m512d *w1, __mmask8 *bad) {
    const double len = (double)length;
    __m512d cc;
    if (reflect) {
        cc = map_reflect(v, len);
        // The mapping keeps finite points in (-1, len): then the start is in [-1, len - 1] and
        // the taps outside are -1 -> 0 and len -> len - 1 (scipy's reflect on integer taps).
        *bad |= _mm512_mask_cmp_pd_mask(valid, cc, _mm512_set1_pd(-1.0), _CMP_NGT_UQ)
              | _mm512_mask_cmp_pd_mask(valid, cc, _mm512_set1_pd(len), _CMP_NLT_UQ);
    } else {
        // nearest: no mapping; taps clamped to the edge. Start clamped to [-1, len - 1] first
        // (the same taps) so that it converts to 32 bits; the weights use the unclamped floor.
        cc = _mm512_min_pd(_mm512_max_pd(v, _mm512_set1_pd(-1e15)), _mm512_set1_pd(1e15));
        *bad |= _mm512_mask_cmp_pd_mask(valid, v, v, _CMP_UNORD_Q);
    }
    cc = _mm512_mask_blend_pd(valid, _mm512_setzero_pd(), cc);
    const __m512d f = _mm512_roundscale_pd(cc, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512d fc = _mm512_min_pd(_mm512_max_pd(f, _mm512_set1_pd(-1.0)), _mm512_set1_pd(len - 1));
    const __m256i start = _mm512_cvttpd_epi32(fc);
    const __m256i zero = _mm256_setzero_si256(), last = _mm256_set1_epi32((int)(length - 1));
    const __m256i a = _mm256_max_epi32(start, zero);
    const __m256i b = _mm256_min_epi32(_mm256_add_epi32(start, _mm256_set1_epi32(1)), last);
    const __m256i s = _mm256_set1_epi32((int)stride);
    *t0 = _mm256_mullo_epi32(a, s);
    *t1 = _mm256_mullo_epi32(b, s);
    const __m512d x = _mm512_sub_pd(cc, f);
    *w0 = _mm512_sub_pd(_mm512_set1_pd(1.0), x);
    *w1 = _mm512_sub_pd(_mm512_set1_pd(1.0), *w0);
}

AVX512
int ck_affine_row_avx512(const float *src, ptrdiff_t height, ptrdiff_t width, ptrdiff_t channels,
                         const double *m, int reflect, ptrdiff_t r, int flip_horizontal, float *out_row) {
    if (height < 2 || width < 2 || (channels != 1 && channels != 3)) return 0;
    const double rowPart0 = (double)r * m[0], rowPart1 = (double)r * m[2];
    const __m512d iota = _mm512_set_pd(7, 6, 5, 4, 3, 2, 1, 0);
    for (ptrdiff_t q0 = 0; q0 < width; q0 += 8) {
        const ptrdiff_t n = width - q0 < 8 ? width - q0 : 8;
        const __mmask8 valid = (__mmask8)((1u << n) - 1);
        const __m512d q = _mm512_add_pd(_mm512_set1_pd((double)q0), iota);
        // y = (r * m00 + q * m01) + offset0, x = (r * m10 + q * m11) + offset1
        const __m512d y = _mm512_add_pd(_mm512_add_pd(_mm512_set1_pd(rowPart0), _mm512_mul_pd(q, _mm512_set1_pd(m[1]))),
                                        _mm512_set1_pd(m[4]));
        const __m512d x = _mm512_add_pd(_mm512_add_pd(_mm512_set1_pd(rowPart1), _mm512_mul_pd(q, _mm512_set1_pd(m[3]))),
                                        _mm512_set1_pd(m[5]));
        __m256i y0, y1, x0, x1;
        __m512d wy0, wy1, wx0, wx1;
        __mmask8 bad = 0;
        axis_taps(y, height, reflect, valid, width * channels, &y0, &y1, &wy0, &wy1, &bad);
        axis_taps(x, width, reflect, valid, channels, &x0, &x1, &wx0, &wx1, &bad);
        if (bad) return 0;
        int32_t o00[8], o01[8], o10[8], o11[8];
        double wy0s[8], wy1s[8], wx0s[8], wx1s[8];
        _mm256_storeu_si256((__m256i *)o00, _mm256_add_epi32(y0, x0));
        _mm256_storeu_si256((__m256i *)o01, _mm256_add_epi32(y0, x1));
        _mm256_storeu_si256((__m256i *)o10, _mm256_add_epi32(y1, x0));
        _mm256_storeu_si256((__m256i *)o11, _mm256_add_epi32(y1, x1));
        _mm512_storeu_pd(wy0s, wy0);
        _mm512_storeu_pd(wy1s, wy1);
        _mm512_storeu_pd(wx0s, wx0);
        _mm512_storeu_pd(wx1s, wx1);
        if (channels == 1) {
            // t = p00 * wy0 * wx0 + p01 * wy0 * wx1 + p10 * wy1 * wx0 + p11 * wy1 * wx1, left to right
            const __m512d p00 = _mm512_cvtps_pd(_mm256_i32gather_ps(src, _mm256_loadu_si256((const __m256i *)o00), 4));
            const __m512d p01 = _mm512_cvtps_pd(_mm256_i32gather_ps(src, _mm256_loadu_si256((const __m256i *)o01), 4));
            const __m512d p10 = _mm512_cvtps_pd(_mm256_i32gather_ps(src, _mm256_loadu_si256((const __m256i *)o10), 4));
            const __m512d p11 = _mm512_cvtps_pd(_mm256_i32gather_ps(src, _mm256_loadu_si256((const __m256i *)o11), 4));
            __m512d t = _mm512_mul_pd(_mm512_mul_pd(p00, wy0), wx0);
            t = _mm512_add_pd(t, _mm512_mul_pd(_mm512_mul_pd(p01, wy0), wx1));
            t = _mm512_add_pd(t, _mm512_mul_pd(_mm512_mul_pd(p10, wy1), wx0));
            t = _mm512_add_pd(t, _mm512_mul_pd(_mm512_mul_pd(p11, wy1), wx1));
            float v[8];
            _mm256_storeu_ps(v, _mm512_cvtpd_ps(t));
            for (ptrdiff_t i = 0; i < n; i++) {
                const ptrdiff_t col = flip_horizontal ? width - 1 - (q0 + i) : q0 + i;
                out_row[col] = v[i];
            }
            continue;
        }
        for (ptrdiff_t i = 0; i < n; i++) {
            // The three channels of a tap in lanes 0-2 of one vector; the fourth lane (the next
            // pixel's red, or nothing past the image's last pixel) is loaded as 0 and dropped.
            const __mmask8 keep3 = 0x7;
            const float *p00 = src + o00[i], *p01 = src + o01[i], *p10 = src + o10[i], *p11 = src + o11[i];
            const __m256d v00 = _mm256_cvtps_pd(_mm_maskz_loadu_ps(keep3, p00));
            const __m256d v01 = _mm256_cvtps_pd(_mm_maskz_loadu_ps(keep3, p01));
            const __m256d v10 = _mm256_cvtps_pd(_mm_maskz_loadu_ps(keep3, p10));
            const __m256d v11 = _mm256_cvtps_pd(_mm_maskz_loadu_ps(keep3, p11));
            const __m256d by0 = _mm256_set1_pd(wy0s[i]), by1 = _mm256_set1_pd(wy1s[i]);
            const __m256d bx0 = _mm256_set1_pd(wx0s[i]), bx1 = _mm256_set1_pd(wx1s[i]);
            __m256d t = _mm256_mul_pd(_mm256_mul_pd(v00, by0), bx0);
            t = _mm256_add_pd(t, _mm256_mul_pd(_mm256_mul_pd(v01, by0), bx1));
            t = _mm256_add_pd(t, _mm256_mul_pd(_mm256_mul_pd(v10, by1), bx0));
            t = _mm256_add_pd(t, _mm256_mul_pd(_mm256_mul_pd(v11, by1), bx1));
            const ptrdiff_t col = flip_horizontal ? width - 1 - (q0 + i) : q0 + i;
            _mm_mask_storeu_ps(out_row + col * 3, keep3, _mm256_cvtpd_ps(t));
        }
    }
    return 1;
}
#endif
