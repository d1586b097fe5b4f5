// AVX-512 kernels for the Runtime's hottest loops, chosen at run time (see Runtime/Kernels/ISA.swift).
// The Swift kernels are compiled for AVX2 (Package.swift: -target-cpu haswell) because Swift has no
// per-function target attribute; C does, so the 16-lane versions live here and the same binary runs
// on an AVX2-only machine, where `ck_avx512_usable` returns 0 and these are never called.
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU has AVX-512 F/BW/DQ/VL and the OS saves the 512-bit registers, else 0.
int ck_avx512_usable(void);

/// 1 when `ck_avx512_usable` and the CPU has AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16), else 0.
int ck_avx512_bf16_usable(void);

/// 1 when the CPU splits a 512-bit multiply-add in two 256-bit halves, running two 256-bit ones in
/// the time of one 512-bit one (AMD Zen 4: family 19h with AVX-512), else 0.
int ck_fma512_split(void);

/// Activations the AVX-512 kernels apply in registers (the others run as a pass afterwards).
enum {
    CK_ACT_LINEAR = 0,
    CK_ACT_RELU = 1,
    CK_ACT_RELU_CLIPPED = 2,    /* min(max(x, 0), clip) */
    CK_ACT_SIGMOID = 3,
    CK_ACT_SWISH = 4,
    CK_ACT_HARD_SILU = 5,       /* x * min(max(x + 3, 0), 6) / 6 */
    CK_ACT_HARD_SIGMOID = 6,    /* min(max(clip * x + 0.5, 0), 1): clip holds the slope */
};

/// y = act(acc * scale[c] + shift[c] + residual[i]) with i the element's offset from `output`
/// (the residual is laid out like the output). Absent parts are NULL.
typedef struct {
    const float *scale;
    const float *shift;
    const float *residual;
    const float *output;
    int activation;
    float clip;
    /// Depthwise kernels only, else NULL: per output row r (over batch x outH), the row's results
    /// summed per channel into channel_sums + r * C (a global average pool's sums, made while
    /// the values are in registers).
    float *channel_sums;
} ck_epilogue;

/// Rows r0..<r1 times panels p0..<p1 of a pointwise product whose kernel is packed as
/// Runtime's `packPointwise` packs it: panel p (output channels 16p..<16p+16) is k rows of 16
/// floats, except a last panel of at most 8 channels, which is k rows of 8.
///   a [m, k] rows lda apart; c [m, n] rows ldc apart.
void ck_pointwise_block_avx512(const float *a, ptrdiff_t lda, ptrdiff_t k, const float *packed, ptrdiff_t n,
                               float *c, ptrdiff_t ldc, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t p0, ptrdiff_t p1,
                               const ck_epilogue *e);

/// `ck_pointwise_block_avx512` with bfloat16 operands and float32 accumulation. The kernel is
/// packed as Runtime's `packPointwiseBF16` packs it: panel p (output channels 16p..<16p+16, zeros
/// past n; every panel 16 wide) is (k + 1) / 2 rows of 16 dwords, the dword of channel j in row q
/// holding bf16(kernel[2q, j]) in its low half and bf16(kernel[2q + 1, j]) (0 past k) in its high
/// half. The float32 rows of `a` (times kscale[0..<k] when not NULL) are rounded to bf16 on the fly.
void ck_pointwise_bf16_block_avx512(const float *a, ptrdiff_t lda, ptrdiff_t k, const float *kscale,
                                    const uint32_t *packed, ptrdiff_t n, float *c, ptrdiff_t ldc, ptrdiff_t r0,
                                    ptrdiff_t r1, ptrdiff_t p0, ptrdiff_t p1, const ck_epilogue *e);

/// The calling thread's buffer for ck_bf16_pairs_avx512, at least `dwords` long (kept and reused
/// by the thread's later products; distinct from the per-thread buffer the block above uses, so
/// the caller can run blocks itself while its workers read this one).
uint32_t *ck_bf16_pairs_buffer(ptrdiff_t dwords);

/// Rows r0..<r1 of `a` (times kscale when not NULL) rounded to bf16 pairs as the block above rounds
/// them, into x + r * ((k + 1) / 2): the input of a product whose panels are shared among workers,
/// converted once instead of once per worker's panel group.
void ck_bf16_pairs_avx512(const float *a, ptrdiff_t lda, ptrdiff_t k, const float *kscale, uint32_t *x,
                          ptrdiff_t r0, ptrdiff_t r1);

/// `ck_pointwise_bf16_block_avx512` over rows already converted by ck_bf16_pairs_avx512 (row r at
/// x + r * ((k + 1) / 2)): the same tiles, the same sums.
void ck_pointwise_bf16_pairs_block_avx512(const uint32_t *x, ptrdiff_t k, const uint32_t *packed, ptrdiff_t n,
                                          float *c, ptrdiff_t ldc, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t p0,
                                          ptrdiff_t p1, const ck_epilogue *e);

/// A depthwise convolution's geometry (Runtime's Conv2DGeometry; depth multiplier 1).
typedef struct {
    ptrdiff_t inH, inW, channels, outH, outW;
    ptrdiff_t kernelH, kernelW, strideH, strideW, dilationH, dilationW, padTop, padLeft;
} ck_depthwise_geometry;

/// Output rows row0..<row1 (counted over batch x outH), channels c0..<c1, of a depthwise
/// convolution, multiplier 1: x [batch, inH, inW, C], w [kernelH, kernelW, C], y [batch, outH, outW, C].
void ck_depthwise_rows_avx512(const ck_depthwise_geometry *g, const float *x, const float *w, float *y,
                              ptrdiff_t row0, ptrdiff_t row1, ptrdiff_t c0, ptrdiff_t c1, const ck_epilogue *e);

/// C[i, j] (+)= sum over p < k of A[p, i] * B[p, j] for rows i0..<i1 and columns j0..<j1 of C:
/// the weight gradients (A the layer's input [k, m] rows lda apart, B the output gradient [k, n]
/// rows ldb apart, C [m, n] rows ldc apart). `accumulate` adds into C, else overwrites it.
void ck_gemm_at_block_avx512(const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
                             ptrdiff_t k, ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1, int accumulate);

/// The same with A[p, i] = a[p * lda + i] * scale[(p / per) * lda + i], each product rounded
/// before it is used (a squeeze-and-excitation's multiply, never stored: A = x times its image's
/// channel scale, `per` rows an image), so the same bits as the product over the stored multiply.
void ck_gemm_at_scaled_block_avx512(const float *a, ptrdiff_t lda, const float *scale, ptrdiff_t per,
                                    const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, ptrdiff_t k,
                                    ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1, int accumulate);

/// A convolution's geometry (Runtime's Conv2DGeometry).
typedef struct {
    ptrdiff_t inH, inW, inC, outH, outW, outC;
    ptrdiff_t kernelH, kernelW, strideH, strideW, dilationH, dilationW, padTop, padLeft;
} ck_conv_geometry;

/// Output rows row0..<row1 (over batch x outH) of a Conv2D computed directly, for few input
/// channels (image stems) and dilationW 1: x [batch, inH, inW, inC], w HWIO, y NHWC.
void ck_direct_conv_rows_avx512(const ck_conv_geometry *g, const float *x, const float *w, float *y,
                                ptrdiff_t row0, ptrdiff_t row1, const ck_epilogue *e);

/// Output row r (over batch x outH) of the same convolution, stored at outRow (outW x outC floats
/// anywhere: the conv + depthwise fusion writes it into a ring slot). Same sums as the call above.
void ck_direct_conv_row_avx512(const ck_conv_geometry *g, const float *x, const float *w, float *outRow, ptrdiff_t r,
                               const ck_epilogue *e);

/// out[j] += sum over k < count of a[k * aStep + j] * b[k * bStep + j], for j < width: a depthwise
/// kernel gradient's sum over one output row's pixels for one tap (multiplier 1).
void ck_sum_products_avx512(const float *a, ptrdiff_t aStep, const float *b, ptrdiff_t bStep, ptrdiff_t count,
                            ptrdiff_t width, float *out);

/// out[kx * C + c] += sum over ox < outW of x[(ox*strideW - padLeft + kx*dilationW) * C + c] * dy[ox * C + c]
/// for every tap kx < kernelW whose input column is in 0..<inW: one output row's contribution to
/// one kernel row of a depthwise kernel gradient (multiplier 1). The same sums in the same order as
/// ck_sum_products_avx512 per tap. Returns 0 (and does nothing) for kernelW > 8.
int ck_depthwise_kernel_grad_row_avx512(const float *x, const float *dy, ptrdiff_t C, ptrdiff_t outW, ptrdiff_t inW,
                                        ptrdiff_t kernelW, ptrdiff_t strideW, ptrdiff_t padLeft, ptrdiff_t dilationW,
                                        float *out);

/// Rows r0..<r1 of [rows, C] of the first pass of an affine (batch norm, conv epilogue) backward
/// with a swish after it: z = (x - center) a + b, dz = dy swish'(z); dx = dz dxScale when dx is
/// not null (added into dx when `accumulate`); sums[c] += dz and sums[C + c] += dz (x - center)
/// row by row when sums is not null.
void ck_affine_swish_grad_rows_avx512(const float *x, const float *dy, ptrdiff_t C, ptrdiff_t r0, ptrdiff_t r1,
                                      const float *center, const float *a, const float *b, const float *dxScale,
                                      float *dx, int accumulate, float *sums);

/// `ck_affine_swish_grad_rows_avx512` with dy = dyExcite * scale[n] + poolTerm[n] for row r of
/// image n = r / pixels (scale and poolTerm [images, C]): the gradient of a squeeze-and-excitation
/// block's input (excite's part, then the pool's, dPool / pixels), made in registers.
void ck_affine_swish_grad_excite_rows_avx512(const float *x, const float *dyExcite, const float *scale,
                                             const float *poolTerm, ptrdiff_t pixels, ptrdiff_t C, ptrdiff_t r0,
                                             ptrdiff_t r1, const float *center, const float *a, const float *b,
                                             const float *dxScale, float *dx, int accumulate, float *sums);

/// Panels p0..<p1 of w [k, n] packed as Runtime's packPointwise packs it (no row scale).
void ck_pack_panels_avx512(const float *w, ptrdiff_t k, ptrdiff_t n, ptrdiff_t p0, ptrdiff_t p1, float *dst);

/// Panels p0..<p1 of the transpose of w [rows, cols] packed as Runtime's packPointwise packs a
/// [k = cols, n = rows] kernel (16 channels a panel, a last one of 1-8 channels 8 wide, zeros past rows).
void ck_pack_transposed_panels_avx512(const float *w, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t p0, ptrdiff_t p1,
                                      float *dst);

/// A 1x1 expansion (with its epilogue) feeding a depthwise convolution (multiplier 1, dilation 1
/// in height), fused: the expanded tensor is never stored whole, only the kernelH input rows the
/// current output row reads, in a ring the expansion fills just ahead of the depthwise pass.
typedef struct {
    ck_depthwise_geometry depthwise;   /* channels = the expansion's output channels */
    ptrdiff_t inChannels;
    const float *expandPacked;         /* packed as for ck_pointwise_block_avx512 */
    const uint32_t *expandPackedBF16;  /* when not NULL, used instead: packed as for the bf16 block */
    ck_epilogue expand;                /* residual unused; `output` is set per row */
    const float *depthwiseKernel;      /* [kernelH, kernelW, channels] */
    ck_epilogue depthwiseEpilogue;     /* `output` = y */
} ck_expand_depthwise;

/// Output rows row0..<row1 (over batch x outH) of the fused pair: x [batch, inH, inW, inChannels],
/// y [batch, outH, outW, channels], `ring` (kernelH + 1) x inW x channels floats of scratch (one per
/// concurrent caller). The ring restarts at row0 and at each new image.
void ck_expand_depthwise_avx512(const ck_expand_depthwise *f, const float *x, float *y, float *ring,
                                ptrdiff_t row0, ptrdiff_t row1);

/// Output row `r` of scipy's order-1 affine_transform of an HWC image (channels 1 or 3, height
/// and width >= 2) for fill mode reflect (`reflect` 1) or nearest (0), with m = {m00, m01, m10,
/// m11, offset0, offset1}, written to `out_row` (mirrored when `flip_horizontal`): the values of
/// Runtime's affineResample bit for bit. Returns 0, having written part of the row or none, when
/// a sample point lies where it does not apply; the caller then computes the row itself.
int ck_affine_row_avx512(const float *src, ptrdiff_t height, ptrdiff_t width, ptrdiff_t channels,
                         const double *m, int reflect, ptrdiff_t r, int flip_horizontal, float *out_row);

/// A convolution computed directly (few input channels: an image stem, see
/// ck_direct_conv_rows_avx512) feeding a depthwise convolution (multiplier 1, dilation 1 in
/// height), fused as ck_expand_depthwise is: the convolution's output rows go into a ring of
/// kernelH rows just ahead of the depthwise row that reads them, so its map is never stored whole.
typedef struct {
    ck_conv_geometry conv;             /* outH, outW, outC = the depthwise's inH, inW, channels */
    const float *convKernel;           /* HWIO */
    ck_epilogue convEpilogue;          /* residual unused; `output` is set per row */
    ck_depthwise_geometry depthwise;
    const float *depthwiseKernel;      /* [kernelH, kernelW, channels] */
    ck_epilogue depthwiseEpilogue;     /* `output` = y */
} ck_conv_depthwise;

/// Output rows row0..<row1 (over batch x outH) of the fused pair: x the convolution's input
/// [batch, inH, inW, inC], y [batch, outH, outW, channels], `ring` (kernelH + 1) x conv.outW x channels
/// floats of scratch (one per concurrent caller). The ring restarts at row0 and at each new image.
void ck_conv_depthwise_avx512(const ck_conv_depthwise *f, const float *x, float *y, float *ring, ptrdiff_t row0,
                              ptrdiff_t row1);

/// A task of `ck_pool_for`: `task` in 0..<tasks, run by `worker` in 0..<workers.
typedef void (*ck_task_fn)(void *context, int worker, long task);

/// Runs fn(context, worker, task) for every task in 0..<tasks on `workers` threads: the caller
/// (worker 0) and workers - 1 threads of a process-wide pool, which take the next task as they
/// finish one. Pool threads spin a little after each job before they sleep, so the next layer's
/// job starts in well under a microsecond instead of after a wake-up through the scheduler.
/// Runs inline on the caller (worker 0) when workers <= 1, when called from inside a task, or
/// while another thread is using the pool.
void ck_pool_for(int workers, long tasks, ck_task_fn fn, void *context);

/// 1 on a thread that is running a `ck_pool_for` task (the caller included), else 0.
int ck_pool_inside(void);

/// Work for the pool's threads when they would otherwise spin: `fn(context)` does one small unit
/// (returning 1) or finds none (0). A pool thread waiting for the next job and a caller waiting
/// for another thread's last task call it while `ck_pool_offer_idle_work(1)` stands, each call
/// marked as inside a task (a `ck_pool_for` within it runs inline). A job a pool thread misses
/// meanwhile is run by the others, as for a descheduled thread. One provider at a time: returns
/// 1 if it is now this one, 0 if another holds the place.
typedef int (*ck_idle_fn)(void *context);
int ck_pool_set_idle_work(ck_idle_fn fn, void *context);

/// Whether provider `context` has a unit to give now (cheap to read while spinning); set it
/// under the provider's own lock, so that a unit found missing and a unit added never cross.
void ck_pool_offer_idle_work(void *context, int available);

/// Withdraws `context`'s idle work (if it is the provider) and returns once no thread is inside
/// its `fn` any more: the context may then be freed.
void ck_pool_clear_idle_work(void *context);

#ifdef __cplusplus
}
#endif
#endif
