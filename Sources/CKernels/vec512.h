// Shared pieces of the AVX-512 kernels: the target attribute, lane masks, the exponential the
// logistic activations use and the epilogue. Every function carries the AVX-512 target itself,
// so the library compiles for the baseline CPU and nothing here runs unless the Swift side has
// seen `ck_avx512_usable()` return 1.
#ifndef CKERNELS_VEC512_H
#define CKERNELS_VEC512_H

#include <immintrin.h>
#include <stddef.h>
#include <stdlib.h>
#include "ckernels.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define INLINE AVX512 static inline __attribute__((always_inline))

/// A buffer of at least `count` 4-byte elements on 64 bytes, from a caller's thread-local pair
/// (`*buffer`, `*capacity`): grown when too small, never shrunk, kept for the thread's life (the
/// pool's threads live as long as the process), so every later call on the thread reuses it. Out
/// of memory (a buffer is at most a slice of a product's rows) aborts.
static inline void *ck_thread_buffer(void **buffer, ptrdiff_t *capacity, ptrdiff_t count) {
    if (*capacity < count) {
        free(*buffer);
        *buffer = aligned_alloc(64, (size_t)((count + 15) / 16 * 64));
        if (!*buffer) abort();
        *capacity = count;
    }
    return *buffer;
}

/// Asks for the cache lines of the `count` floats at p (count >= 1) in the state a store needs
/// (prefetchw, which every CPU with AVX-512 has), for a register tile to call before its loop
/// over k: a store to a line that is not in the core's caches waits for the line to be read
/// first, and a tile's epilogue stores 12-24 lines at once, which filled the store queue and
/// stopped the tile until they came. Asked for up front, the lines arrive while the tile
/// multiplies. Products whose output is not in L2 (the network's activations between layers, a
/// training batch's maps) gained 5-25% alone (12996 x 16 x 96: 852 -> 643 us; 225 x 112 x 672
/// in a sequence of the network's late products: 388 -> 353 us); the values are the same.
/// (The instruction is written out: the compilers emit it for a write prefetch only under a
/// target feature of its own, which every caller would then need.)
INLINE void ck_prefetch_store(const float *p, ptrdiff_t count) {
    for (ptrdiff_t o = 0; o < count; o += 16) __asm__ volatile("prefetchw %0" : : "m"(p[o]));
    __asm__ volatile("prefetchw %0" : : "m"(p[count - 1]));
}

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

/// e^-v for the logistic functions, v in [-1e4, 1e4] (callers clamp). -v = (n + j/32) ln2 + r
/// with n + j/32 the nearest multiple of 1/32 to -v log2 e (found by the magic-number addition,
/// whose low mantissa bits are then j: valid while |v log2 e| < 2^17), 2^(j/32) from a table of
/// 32 (two registers, one permute), e^r for |r| <= ln2/64 by a degree-2 polynomial (fitted for
/// relative error: 5e-8), and 2^n applied by scalef, which saturates to 0 or +inf instead of
/// wrapping. Against the degree-5 polynomial over |r| <= ln2/2 this is three instructions fewer
/// in every swish epilogue. ln2 is split in two: with one float the error (n times 1.9e-9) took
/// sigmoid and swish from 2.6e-7 to 3.9e-7 relative at worst, one multiply-add saved.
INLINE __m512 ck_exp_neg(__m512 v) {
    const __m512 hi = _mm512_set_ps(
        0x1.F50766p+0f, 0x1.EA4AFAp+0f, 0x1.DFC974p+0f, 0x1.D5818Ep+0f, 0x1.CB720Ep+0f, 0x1.C199BEp+0f,
        0x1.B7F770p+0f, 0x1.AE89FAp+0f, 0x1.A5503Cp+0f, 0x1.9C4918p+0f, 0x1.93737Cp+0f, 0x1.8ACE54p+0f,
        0x1.82589Ap+0f, 0x1.7A1148p+0f, 0x1.71F75Ep+0f, 0x1.6A09E6p+0f);   /* 2^(j/32), j = 31 .. 16 */
    const __m512 lo = _mm512_set_ps(
        0x1.6247ECp+0f, 0x1.5AB07Ep+0f, 0x1.5342B6p+0f, 0x1.4BFDAEp+0f, 0x1.44E086p+0f, 0x1.3DEA64p+0f,
        0x1.371A74p+0f, 0x1.306FE0p+0f, 0x1.29E9E0p+0f, 0x1.2387A6p+0f, 0x1.1D4874p+0f, 0x1.172B84p+0f,
        0x1.11301Ep+0f, 0x1.0B5586p+0f, 0x1.059B0Ep+0f, 0x1.000000p+0f);   /* j = 15 .. 0 */
    const __m512 magic = _mm512_set1_ps(0x1.8p18f);   /* 1.5 * 2^18: its ulp is 1/32 */
    __m512 n = _mm512_fmadd_ps(v, _mm512_set1_ps(-0x1.715476p0f), magic);
    const __m512 l = _mm512_permutex2var_ps(lo, _mm512_castps_si512(n), hi);
    n = _mm512_sub_ps(n, magic);                                           /* n + j/32 */
    __m512 s = _mm512_fmadd_ps(n, _mm512_set1_ps(0x1.62E430p-1f), v);
    s = _mm512_fmadd_ps(n, _mm512_set1_ps(-0x1.05C610p-29f), s);        /* s = -r */
    /* e^r = 1 + c1 r + c2 r^2 = 1 + s (c2 s - c1) */
    const __m512 p = _mm512_mul_ps(_mm512_fmsub_ps(_mm512_set1_ps(0x1.000026p-1f), s, _mm512_set1_ps(0x1.0000F6p+0f)), s);
    /* scalef multiplies by 2^floor(n + j/32) = 2^n */
    return _mm512_scalef_ps(_mm512_fmadd_ps(l, p, l), n);
}

/// v clamped to [-1e4, 1e4] in one instruction (the smaller magnitude of v and 1e4, v's sign),
/// which keeps `ck_exp_neg` inside its range; NaN comes out as +-1e4, so callers that must keep
/// NaN carry v itself into the result.
INLINE __m512 ck_logistic_clamp(__m512 v) { return _mm512_range_ps(v, _mm512_set1_ps(1e4f), 0x02); }

/// x / (1 + e^-v) for v = `ck_logistic_clamp`(x) (swish when x = v, sigmoid when x = 1). Past
/// |v| = 104 e^-v is 0 or +inf, so the quotient is x or +-0 (x = -inf gives NaN, as x times
/// sigmoid(x) does). A divide, not the reciprocal estimate and its Newton step: on this CPU
/// (AMD EPYC with AVX-512) the divider runs beside the multiply-add pipes, and the epilogue of
/// swish took 1.35 ns per 16 lanes alone against 2.3 before (1.8 with the old polynomial and the
/// divide); it is also correctly rounded.
INLINE __m512 ck_logistic_div(__m512 x, __m512 v) {
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), ck_exp_neg(v)));
}

INLINE __m512 ck_activate(__m512 v, const ck_epilogue *e) {
    switch (e->activation) {
    case CK_ACT_RELU:
        return _mm512_max_ps(v, _mm512_setzero_ps());
    case CK_ACT_RELU_CLIPPED:
        return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(e->clip));
    case CK_ACT_SIGMOID:
        /* max and min keep NaN (they return their second operand when one is NaN) */
        return ck_logistic_div(_mm512_set1_ps(1.0f),
                               _mm512_min_ps(_mm512_set1_ps(1e4f), _mm512_max_ps(_mm512_set1_ps(-1e4f), v)));
    case CK_ACT_SWISH:
        return ck_logistic_div(v, ck_logistic_clamp(v));
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

/// `ck_activate` with the activation a constant `act` (a CK_ACT_ code) where the caller knows it,
/// or -1 to read it from e: a kernel specialised for its activation keeps no other epilogue's
/// code, constants or branches around its tile (the same arithmetic, so the same results).
INLINE __m512 ck_activate_as(const int act, __m512 v, const ck_epilogue *e) {
    if (act < 0) return ck_activate(v, e);
    ck_epilogue c = *e;
    c.activation = act;
    return ck_activate(v, &c);
}

/// Lanes `mask` of channels ch.. through the epilogue (not the channel sums) to dst (inside
/// e->output's tensor), the activation `act` as in `ck_activate_as`; returns the values stored.
INLINE __m512 ck_store_as(const int act, __m512 v, ptrdiff_t ch, float *dst, __mmask16 mask, const ck_epilogue *e) {
    if (e->scale && e->shift)
        v = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mask, e->scale + ch), _mm512_maskz_loadu_ps(mask, e->shift + ch));
    else if (e->scale)
        v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, e->scale + ch));
    else if (e->shift)
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, e->shift + ch));
    if (e->residual) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, e->residual + (dst - e->output)));
    v = ck_activate_as(act, v, e);
    _mm512_mask_storeu_ps(dst, mask, v);
    return v;
}

/// `ck_store_as` with the epilogue's own activation.
INLINE __m512 ck_store(__m512 v, ptrdiff_t ch, float *dst, __mmask16 mask, const ck_epilogue *e) {
    return ck_store_as(-1, v, ch, dst, mask, e);
}

/// Adds `total` (values of channels ch.. already stored) into the channel sums, if any.
INLINE void ck_add_sums(__m512 total, ptrdiff_t ch, __mmask16 mask, const ck_epilogue *e) {
    if (e->channel_sums)
        _mm512_mask_storeu_ps(e->channel_sums + ch, mask,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(mask, e->channel_sums + ch), total));
}

/// `ck_store_as`, and the values into the channel sums.
INLINE void ck_emit_as(const int act, __m512 v, ptrdiff_t ch, float *dst, __mmask16 mask, const ck_epilogue *e) {
    if (!mask) return;
    ck_add_sums(ck_store_as(act, v, ch, dst, mask, e), ch, mask, e);
}

/// `ck_emit_as` with the epilogue's own activation.
INLINE void ck_emit(__m512 v, ptrdiff_t ch, float *dst, __mmask16 mask, const ck_epilogue *e) {
    ck_emit_as(-1, v, ch, dst, mask, e);
}

#endif
