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

/// e^x as Runtime's `expForLogistic` computes it (VectorMath.swift): x clamped to
/// [-87.34, 88.3], x = n ln2 + r, a degree-5 polynomial in r, n added into the exponent field.
INLINE __m512 ck_exp_logistic(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33654f)), _mm512_set1_ps(88.3f));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504f), magic);
    const __m512 nn = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fmadd_ps(nn, _mm512_set1_ps(-0.693359375f), x);
    r = _mm512_fmadd_ps(nn, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(8.312531746923923e-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.189012572169304e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6667114198207855e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.99992311000824e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const __m512i e = _mm512_slli_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000)), 23);
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e));
}

/// 1/y for y in [1, 2^127]: the 14-bit estimate and one Newton step (about 1 ulp). A divide
/// costs several times the multiply-adds of the epilogue it sits in, and with a short inner
/// product (EfficientNet's expansions have 16-40 input channels) the epilogue is a third of
/// the work.
INLINE __m512 ck_reciprocal(__m512 y) {
    const __m512 r = _mm512_rcp14_ps(y);
    return _mm512_fmadd_ps(_mm512_fnmadd_ps(y, r, _mm512_set1_ps(1.0f)), r, r);
}

INLINE __m512 ck_activate(__m512 v, const ck_epilogue *e) {
    switch (e->activation) {
    case CK_ACT_RELU:
        return _mm512_max_ps(v, _mm512_setzero_ps());
    case CK_ACT_RELU_CLIPPED:
        return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(e->clip));
    case CK_ACT_SIGMOID:
        return ck_reciprocal(_mm512_add_ps(_mm512_set1_ps(1.0f), ck_exp_logistic(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    case CK_ACT_SWISH:
        return _mm512_mul_ps(v, ck_reciprocal(_mm512_add_ps(_mm512_set1_ps(1.0f),
                                                            ck_exp_logistic(_mm512_sub_ps(_mm512_setzero_ps(), v)))));
    default:
        return v;
    }
}

/// Lanes `mask` of channels ch.. through the epilogue to dst (inside e->output's tensor).
INLINE void ck_emit(__m512 v, ptrdiff_t ch, float *dst, __mmask16 mask, const ck_epilogue *e) {
    if (!mask) return;
    if (e->scale) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, e->scale + ch));
    if (e->shift) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, e->shift + ch));
    if (e->residual) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, e->residual + (dst - e->output)));
    _mm512_mask_storeu_ps(dst, mask, ck_activate(v, e));
}

#endif
