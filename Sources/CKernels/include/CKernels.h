#ifndef ATTNRES_CKERNELS_H
#define ATTNRES_CKERNELS_H

#include "SpanClock.h"

/// Depth-attention kernels for x86-64-v3 (AVX2 + FMA: 8 lanes, fused multiply-add, 16 ymm registers).
///
/// Why C: Swift has no per-function target attribute, and the package is built for baseline x86-64 (SSE2, the
/// only instruction set every CI machine has). These functions carry `__attribute__((target("avx2,fma")))`, so
/// the rest of the build stays baseline and `attnres_avx2_fma_available` decides at run time whether they may be
/// called (Numerics' `DepthKernel` does, once per process). On other architectures they are absent and the
/// check returns 0. The formulas are those of `DepthAttention` (Sources/Numerics/DepthAttention.swift); only the
/// summation order differs (8 lanes × 2 accumulators reduced as a tree, FMA), which is deterministic for a given
/// shape, so every process of a pipeline that selects this kernel computes the same bits.

/// 1 when the CPU (and the OS, for the ymm state) supports AVX2 and FMA, else 0.
int attnres_avx2_fma_available(void);

/// Σ x[j]² over d elements, in the order every AVX2 kernel uses for a key statistic (so a cached reciprocal
/// RMS equals a recomputed one bit for bit).
float attnres_avx2_sum_squares(const float *x, long d);

/// (Σ w[j]·x[j], Σ x[j]²) in one pass: bitwise the logit dot and the key statistic the fused forward computes for an
/// uncached source (two-phase inference's merge uses it for the partial).
void attnres_avx2_dot_and_squares(const float *w, const float *x, long d, float *wx, float *xx);

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

#endif
