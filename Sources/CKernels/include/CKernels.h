#ifndef ATTNRES_CKERNELS_H
#define ATTNRES_CKERNELS_H

#include "SpanClock.h"

/// Depth-attention kernels for x86-64-v3 (AVX2 + FMA: 8 lanes, fused multiply-add, 16 ymm registers,
/// DepthAttentionAVX2.c) and for AVX-512F (16 lanes, 32 zmm registers, masked loads and stores for any d,
/// DepthAttentionAVX512.c).
///
/// Why C: Swift has no per-function target attribute, and the package is built for baseline x86-64 (SSE2, the
/// only instruction set every CI machine has). These functions carry `__attribute__((target(...)))`, so the rest
/// of the build stays baseline and `attnres_avx2_fma_available` / `attnres_avx512_available` decide at run time
/// whether they may be called (Numerics' `DepthKernel` does, once per process). On other architectures they are
/// absent and the checks return 0. The formulas are those of `DepthAttention` (Sources/Numerics/DepthAttention.swift);
/// only the summation order differs (lanes and accumulators reduced as a tree, FMA; AVX-512 also its own exp), which
/// is deterministic for a given shape, so every process of a pipeline that selects a kernel computes the same bits.

/// 1 when the CPU (and the OS, for the ymm state) supports AVX2 and FMA, else 0.
int attnres_avx2_fma_available(void);

/// Σ x[j]² over d elements, in the order every AVX2 kernel uses for a key statistic (so a cached reciprocal
/// RMS equals a recomputed one bit for bit).
float attnres_avx2_sum_squares(const float *x, long d);

/// (Σ w[j]·x[j], Σ x[j]²) in one pass: bitwise the logit dot and the key statistic the fused forward computes for an
/// uncached source (two-phase inference's merge uses it for the partial).
void attnres_avx2_dot_and_squares(const float *w, const float *x, long d, float *wx, float *xx);

/// The key statistics of a whole block: out[r] = 1 / √(Σ_j x[r·d + j]² / d + 1e-6) for its n rows, bitwise
/// `sum_squares` of each row followed by `DepthAttention.rstd(sumOfSquares:_:)` (AVX-512: 16 rows at once).
void attnres_avx2_rstd_rows(const float *x, long n, long d, float *out);

/// Fused depth-attention forward, token by token: logits z = rstd·(w·v_i[r]) (rstd[i·n+r] read when known[i],
/// else computed and written), the softmax over the K sources, and out[r] = Σ_i α_i v_i[r] with the K rows in L1.
/// sources: K pointers to [n, d]; rstd, logits, alpha: [K·n] source-major; out: [n, d] (written, not read).
void attnres_avx2_depth_forward(const float *w, const float *const *sources, long K, long n, long d,
                                float *rstd, const unsigned char *known, float *logits, float *alpha, float *out);

/// Depth-attention backward in one pass per token: dα_i = dh[r]·v_i[r], dz = α(dα − Σ α_t dα_t), then for every
/// source dv_i[r] += α·dh[r] + c·(w − ck·v_i[r]) and dw += c·v_i[r] with c = rstd·dz, ck = z/d·rstd; the K rows of
/// v and dv of token r are read and written while in L1, dh[r], w and dw once per column tile. accumulate = 0: dv is
/// written (0 + increment, bitwise as into zeros), not read.
void attnres_avx2_depth_backward(const float *dh, const float *w, const float *const *sources,
                                 float *const *dsources, long K, long n, long d, const float *alpha,
                                 const float *rstd, const float *logits, float *dw, int accumulate);

/// Two-phase phase 1 straight from the completed blocks: for each of the S queries (rows of `queries`, [S, d]) and token
/// r, the logits z_i = rstd[i·n+r]·(q · v_i[r]) over the K sources, their max m and normaliser ℓ = Σ_i e^{z_i − m},
/// and the unnormalised weights e^{z_i − m}. Outputs: weights [S][K·n] (source-major per query), max and sum [S][n].
/// The rows of token r are read once per query while in L1; no normalised copy of the keys is made.
void attnres_avx2_depth_phase1(const float *queries, long S, const float *const *sources, const float *rstd, long K,
                               long n, long d, float *weights, float *max, float *sum);

/// out[r] (+)= Σ_i weights[i·n+r] · v_i[r], sources in order (accumulate = 0: the sums start from 0 and out is
/// only written). The weighted value sum of two-phase inference's phase 2.
void attnres_avx2_depth_mix(const float *const *sources, const float *weights, long K, long n, long d, float *out,
                            int accumulate);

/// Two-phase phase 2 of one layer from phase 1's statistics (weights [K·n], max and sum [n]): with a partial ([n, d])
/// its logit z2 = rstd(partial)·(query·partial[r]) merged by an online softmax, m = max(m1, z2),
/// out[r] = Σ_i weights_i[r]·a·v_i[r] + b·partial[r] with a = e^{m1−m}/(e^{m1−m}ℓ + e^{z2−m}), b = e^{z2−m}/(…);
/// without one (partial NULL, the block's first layer) a = 1/ℓ. out [n, d] is written.
void attnres_avx2_depth_merge(const float *const *sources, const float *weights, const float *max, const float *sum,
                              long K, long n, long d, const float *query, const float *partial, float *out);

/// 1 when the CPU (and the OS, for the zmm and mask state) supports AVX-512F, else 0.
int attnres_avx512_available(void);

/// The AVX-512 forms of the functions above, same contracts. Rows are read in column blocks of 64 (four zmm
/// registers; the last block masked), sums kept in four 16-lane accumulators combined as a tree; the softmax's
/// e^x is `attnres_avx512_exp` (polynomial, 16 lanes) instead of libm's expf.
float attnres_avx512_sum_squares(const float *x, long d);
void attnres_avx512_dot_and_squares(const float *w, const float *x, long d, float *wx, float *xx);
void attnres_avx512_rstd_rows(const float *x, long n, long d, float *out);
void attnres_avx512_depth_forward(const float *w, const float *const *sources, long K, long n, long d,
                                  float *rstd, const unsigned char *known, float *logits, float *alpha, float *out);
void attnres_avx512_depth_backward(const float *dh, const float *w, const float *const *sources,
                                   float *const *dsources, long K, long n, long d, const float *alpha,
                                   const float *rstd, const float *logits, float *dw, int accumulate);
void attnres_avx512_depth_phase1(const float *queries, long S, const float *const *sources, const float *rstd, long K,
                                 long n, long d, float *weights, float *max, float *sum);
void attnres_avx512_depth_mix(const float *const *sources, const float *weights, long K, long n, long d, float *out,
                              int accumulate);
void attnres_avx512_depth_merge(const float *const *sources, const float *weights, const float *max, const float *sum,
                                long K, long n, long d, const float *query, const float *partial, float *out);
/// out[i] = e^{x[i]} for count floats, the exponential the AVX-512 softmax uses (exposed for its accuracy test).
void attnres_avx512_exp(const float *x, long count, float *out);

/// GELU (tanh form, `GELU` in Sources/Numerics/GELU.swift) over count floats, vectorised for the kernel's instruction
/// set and bitwise the Swift loops (GELU.c). forward: y = GELU(x) and the tanh backward reuses; backward:
/// dx += dy · GELU'(x). x, y, tanh and dx must not overlap.
void attnres_avx512_gelu_forward(const float *x, long count, float *y, float *tanh_out);
void attnres_avx512_gelu_backward(const float *dy, const float *x, const float *tanh_in, long count, float *dx);
void attnres_avx2_gelu_forward(const float *x, long count, float *y, float *tanh_out);
void attnres_avx2_gelu_backward(const float *dy, const float *x, const float *tanh_in, long count, float *dx);

/// One kernel's functions, so Swift calls whichever `DepthKernel` chose through one table (the GELU ones too: the
/// same instruction set, chosen once).
typedef struct attnres_depth_kernels {
    float (*sum_squares)(const float *x, long d);
    void (*dot_and_squares)(const float *w, const float *x, long d, float *wx, float *xx);
    void (*forward)(const float *w, const float *const *sources, long K, long n, long d, float *rstd,
                    const unsigned char *known, float *logits, float *alpha, float *out);
    void (*backward)(const float *dh, const float *w, const float *const *sources, float *const *dsources, long K,
                     long n, long d, const float *alpha, const float *rstd, const float *logits, float *dw,
                     int accumulate);
    void (*phase1)(const float *queries, long S, const float *const *sources, const float *rstd, long K, long n,
                   long d, float *weights, float *max, float *sum);
    void (*mix)(const float *const *sources, const float *weights, long K, long n, long d, float *out, int accumulate);
    void (*merge)(const float *const *sources, const float *weights, const float *max, const float *sum, long K, long n,
                  long d, const float *query, const float *partial, float *out);
    void (*rstd_rows)(const float *x, long n, long d, float *out);
    void (*gelu_forward)(const float *x, long count, float *y, float *tanh_out);
    void (*gelu_backward)(const float *dy, const float *x, const float *tanh_in, long count, float *dx);
} attnres_depth_kernels;

/// The tables of the AVX2 + FMA and the AVX-512 kernels (call only when the matching check above returned 1).
extern const attnres_depth_kernels attnres_avx2_kernels;
extern const attnres_depth_kernels attnres_avx512_kernels;

#endif
