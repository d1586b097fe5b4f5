// Shared pieces of the AVX-512 kernels: the target attribute, lane masks, the exponential the
// logistic activations use and the epilogue. Every function carries the AVX-512 target itself,
// so the library compiles for the baseline CPU and nothing here runs unless the Swift side has
// seen `ck_avx512_usable()` return 1.
#ifndef CKERNELS_VEC512_H
#define CKERNELS_VEC512_H

#include <immintrin.h>
#include <stddef.h>
#include "ckernels.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define INLINE AVX512 static inline __attribute__((always_inline))

/// The first min(max(count, 0), 16) lanes.
INLINE __mmask16 ck_lanes(ptrdiff_t count) {
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1);
}

/// First tap k (0..<kernel) whose input index o*stride - pad + k*dilation is >= 0, and one past
/// the last that is < size (Runtime's Conv2DGeometry.validTaps).
static inline void ck_valid_taps(ptrdiff_t o, ptrdiff_t stride, ptrdiff_t pad, ptrdiff_t dilation, ptrdiff_t kernel,
                                 ptrdiff_t size, ptrdiff_t *lo, ptrdiff_t *hi) {
    const ptrdiff_t start = o * stride - pad;
    const ptrdiff_t l = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
    ptrdiff_t h = size - start > 0 ? (size - start + dilation - 1) / dilation : 0;
    if (h > kernel) h = kernel;
    *lo = l;
    *hi = h > l ? h : l;
}

/// e^-v for the logistic functions: -v = n ln2 + r with n = round(-v log2 e) (ln2 split in two
/// for exactness), e^r by the degree-5 polynomial of Runtime's `expForLogistic` (VectorMath.swift;
/// 2e-7 relative) evaluated at r = -s with alternating signs, and 2^n applied by scalef: three
/// instructions fewer than the AVX2 path's bit arithmetic, in the epilogue of every swish layer.
INLINE __m512 ck_exp_neg(__m512 v) {
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(-1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 s = _mm512_fmadd_ps(n, _mm512_set1_ps(0.693359375f), v);        /* s = v + n ln2 = -r */
    s = _mm512_fmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), s);
    __m512 p = _mm512_set1_ps(-8.312531746923923e-3f);
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(4.189012572169304e-2f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-1.6667114198207855e-1f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(4.99992311000824e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, s), s, _mm512_sub_ps(_mm512_set1_ps(1.0f), s));
    return _mm512_scalef_ps(p, n);
}

/// 1/(1 + e^-v) for v in [-87, 88.3] (callers clamp): the 14-bit reciprocal estimate and one
/// Newton step (about 1 ulp). A divide costs several times the multiply-adds of the epilogue it
/// sits in, and with a short inner product (EfficientNet's expansions have 16-40 input channels)
/// the epilogue is a third of the work. Within that range e^-v and 1 + e^-v stay finite normals.
INLINE __m512 ck_logistic(__m512 v) {
    const __m512 y = _mm512_add_ps(_mm512_set1_ps(1.0f), ck_exp_neg(v));
    const __m512 r = _mm512_rcp14_ps(y);
    return _mm512_fmadd_ps(_mm512_fnmadd_ps(y, r, _mm512_set1_ps(1.0f)), r, r);
}

/// v raised to -87 (NaN kept: max returns its second operand when one is NaN). Below -87
/// sigmoid(v) < 1.7e-38 and swish(v) > -1.5e-36: both come out as that bound instead.
INLINE __m512 ck_logistic_floor(__m512 v) { return _mm512_max_ps(_mm512_set1_ps(-87.0f), v); }

/// v lowered to 88.3, past which sigmoid(v) is 1 in float (NaN kept).
INLINE __m512 ck_logistic_ceiling(__m512 v) { return _mm512_min_ps(_mm512_set1_ps(88.3f), v); }

INLINE __m512 ck_activate(__m512 v, const ck_epilogue *e) {
    switch (e->activation) {
    case CK_ACT_RELU:
        return _mm512_max_ps(v, _mm512_setzero_ps());
    case CK_ACT_RELU_CLIPPED:
        return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(e->clip));
    case CK_ACT_SIGMOID:
        return ck_logistic(ck_logistic_ceiling(ck_logistic_floor(v)));
    case CK_ACT_SWISH: {
        const __m512 lo = ck_logistic_floor(v);
        return _mm512_mul_ps(lo, ck_logistic(ck_logistic_ceiling(lo)));
    }
    case CK_ACT_HARD_SILU:
        return _mm512_div_ps(_mm512_mul_ps(v, _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, _mm512_set1_ps(3.0f)),
                                                                         _mm512_setzero_ps()), _mm512_set1_ps(6.0f))),
                             _mm512_set1_ps(6.0f));
    case CK_ACT_HARD_SIGMOID:
        return _mm512_min_ps(_mm512_max_ps(_mm512_fmadd_ps(v, _mm512_set1_ps(e->clip), _mm512_set1_ps(0.5f)),
                                           _mm512_setzero_ps()), _mm512_set1_ps(1.0f));
    default:
        return v;
    }
}

/// Lanes `mask` of channels ch.. through the epilogue (not the channel sums) to dst (inside
/// e->output's tensor); returns the values stored.
INLINE __m512 ck_store(__m512 v, ptrdiff_t ch, float *dst, __mmask16 mask, const ck_epilogue *e) {
    if (e->scale) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, e->scale + ch));
    if (e->shift) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, e->shift + ch));
    if (e->residual) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, e->residual + (dst - e->output)));
    v = ck_activate(v, e);
    _mm512_mask_storeu_ps(dst, mask, v);
    return v;
}

/// Adds `total` (values of channels ch.. already stored) into the channel sums, if any.
INLINE void ck_add_sums(__m512 total, ptrdiff_t ch, __mmask16 mask, const ck_epilogue *e) {
    if (e->channel_sums)
        _mm512_mask_storeu_ps(e->channel_sums + ch, mask,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(mask, e->channel_sums + ch), total));
}

/// `ck_store`, and the values into the channel sums.
INLINE void ck_emit(__m512 v, ptrdiff_t ch, float *dst, __mmask16 mask, const ck_epilogue *e) {
    if (!mask) return;
    ck_add_sums(ck_store(v, ch, dst, mask, e), ch, mask, e);
}

#endif
