// Depth-attention kernels for AVX2 + FMA (see include/CKernels.h for why they are C and how they are chosen).
// Every multiply-add below is written out (intrinsic or fmaf): contraction is off, so the compiler never fuses
// a product into a sum on its own and the rounding is the one this file spells, at every optimisation level.
#pragma STDC FP_CONTRACT OFF
#include "CKernels.h"
#include <math.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

int attnres_avx2_fma_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/// The 8 lanes summed as a tree: (0+4, 1+5, 2+6, 3+7), then pairs, then the last two.
AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Σ a[j]·b[j]: two 8-lane accumulators over 16 columns a step (two independent FMA chains), one more 8-lane step
/// when 8 ≤ the rest, the tree, then the tail in order.
AVX2 static inline float dot(const float *a, const float *b, long d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    long j = 0;
    for (; j + 16 <= d; j += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), s1);
    }
    if (j + 8 <= d) { s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0); j += 8; }
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; j < d; j++) s = fmaf(a[j], b[j], s);
    return s;
}

/// (Σ w[j]·x[j], Σ x[j]²) in one pass over x; the second is bitwise `attnres_avx2_sum_squares(x, d)` (same lanes,
/// tree and tail order), the first bitwise `dot(w, x, d)`.
AVX2 static inline void dot_and_squares(const float *w, const float *x, long d, float *wx, float *xx) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps();
    long j = 0;
    for (; j + 16 <= d; j += 16) {
        __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), x0, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 8), x1, s1);
        q0 = _mm256_fmadd_ps(x0, x0, q0);
        q1 = _mm256_fmadd_ps(x1, x1, q1);
    }
    if (j + 8 <= d) {
        __m256 x0 = _mm256_loadu_ps(x + j);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), x0, s0);
        q0 = _mm256_fmadd_ps(x0, x0, q0);
        j += 8;
    }
    float s = hsum(_mm256_add_ps(s0, s1)), q = hsum(_mm256_add_ps(q0, q1));
    for (; j < d; j++) { s = fmaf(w[j], x[j], s); q = fmaf(x[j], x[j], q); }
    *wx = s; *xx = q;
}

AVX2 void attnres_avx2_dot_and_squares(const float *w, const float *x, long d, float *wx, float *xx) {
    dot_and_squares(w, x, d, wx, xx);
}

AVX2 float attnres_avx2_sum_squares(const float *x, long d) {
    __m256 q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps();
    long j = 0;
    for (; j + 16 <= d; j += 16) {
        __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
        q0 = _mm256_fmadd_ps(x0, x0, q0);
        q1 = _mm256_fmadd_ps(x1, x1, q1);
    }
    if (j + 8 <= d) { __m256 x0 = _mm256_loadu_ps(x + j); q0 = _mm256_fmadd_ps(x0, x0, q0); j += 8; }
    float q = hsum(_mm256_add_ps(q0, q1));
    for (; j < d; j++) q = fmaf(x[j], x[j], q);
    return q;
}

/// 1 / √(ss/d + eps), eps = 1e-6 (RMSNorm.epsilon), the expression `DepthAttention.rstd(sumOfSquares:_:)` evaluates.
static inline float rstd_of(float ss, long d) { return 1.0f / sqrtf(ss / (float)d + 1e-6f); }

AVX2 void attnres_avx2_rstd_rows(const float *x, long n, long d, float *out) {
    for (long r = 0; r < n; r++) out[r] = rstd_of(attnres_avx2_sum_squares(x + r * d, d), d);
}

/// e^x for x = z − max z, skipping libm at the maximum (e⁰ = 1 exactly), as `_expShifted` in Swift.
static inline float exp_shifted(float x) { return x == 0 ? 1.0f : expf(x); }

/// out (+)= Σ_i coef[i] · rows[i][0..<d]: 32 columns a step in four accumulators, then 8, then the tail; sources
/// in order in every column.
AVX2 static inline void weighted_rows(const float *const *rows, const float *coef, long K, long d, float *out,
                                      int accumulate) {
    long j = 0;
    for (; j + 32 <= d; j += 32) {
        __m256 a0, a1, a2, a3;
        if (accumulate) {
            a0 = _mm256_loadu_ps(out + j); a1 = _mm256_loadu_ps(out + j + 8);
            a2 = _mm256_loadu_ps(out + j + 16); a3 = _mm256_loadu_ps(out + j + 24);
        } else {
            a0 = a1 = a2 = a3 = _mm256_setzero_ps();
        }
        for (long i = 0; i < K; i++) {
            const float *x = rows[i] + j;
            __m256 c = _mm256_set1_ps(coef[i]);
            a0 = _mm256_fmadd_ps(c, _mm256_loadu_ps(x), a0);
            a1 = _mm256_fmadd_ps(c, _mm256_loadu_ps(x + 8), a1);
            a2 = _mm256_fmadd_ps(c, _mm256_loadu_ps(x + 16), a2);
            a3 = _mm256_fmadd_ps(c, _mm256_loadu_ps(x + 24), a3);
        }
        _mm256_storeu_ps(out + j, a0); _mm256_storeu_ps(out + j + 8, a1);
        _mm256_storeu_ps(out + j + 16, a2); _mm256_storeu_ps(out + j + 24, a3);
    }
    for (; j + 8 <= d; j += 8) {
        __m256 a0 = accumulate ? _mm256_loadu_ps(out + j) : _mm256_setzero_ps();
        for (long i = 0; i < K; i++) a0 = _mm256_fmadd_ps(_mm256_set1_ps(coef[i]), _mm256_loadu_ps(rows[i] + j), a0);
        _mm256_storeu_ps(out + j, a0);
    }
    for (; j < d; j++) {
        float a = accumulate ? out[j] : 0.0f;
        for (long i = 0; i < K; i++) a = fmaf(coef[i], rows[i][j], a);
        out[j] = a;
    }
}

AVX2 void attnres_avx2_depth_forward(const float *w, const float *const *sources, long K, long n, long d,
                                     float *rstd, const unsigned char *known, float *logits, float *alpha,
                                     float *out) {
    const float *rows[K];
    float coef[K];
    for (long r = 0; r < n; r++) {
        float m = -INFINITY;
        for (long i = 0; i < K; i++) {
            const long k = i * n + r;
            rows[i] = sources[i] + r * d;
            float s, wx;
            if (known[i]) {
                s = rstd[k]; wx = dot(w, rows[i], d);
            } else {
                float xx;
                dot_and_squares(w, rows[i], d, &wx, &xx);
                s = rstd_of(xx, d); rstd[k] = s;
            }
            const float z = s * wx;
            logits[k] = z;
            m = fmaxf(m, z);
        }
        float sum = 0;
        for (long i = 0; i < K; i++) { const float e = exp_shifted(logits[i * n + r] - m); coef[i] = e; sum += e; }
        const float inv = 1 / sum;
        for (long i = 0; i < K; i++) { coef[i] *= inv; alpha[i * n + r] = coef[i]; }
        weighted_rows(rows, coef, K, d, out + r * d, 0);
    }
}

/// The backward of tokens [r0, r1); `accumulate` is a constant at both call sites, so each gets its own loop without
/// a branch per tile. ca, cc, cck: K floats of scratch.
AVX2 __attribute__((always_inline)) static inline void backward_tokens(
    const float *dh, const float *w, const float *const *sources, float *const *dsources, long K, long n, long d,
    const float *alpha, const float *rstd, const float *logits, float *dw, const int accumulate, float *ca, float *cc,
    float *cck) {
    const float invD = 1 / (float)d;
    for (long r = 0; r < n; r++) {
        const float *g = dh + r * d;
        const long off = r * d;
        float total = 0;
        for (long i = 0; i < K; i++) {  // dα_i, kept in cc until the softmax backward needs it
            const float da = dot(g, sources[i] + off, d);
            cc[i] = da;
            total = fmaf(alpha[i * n + r], da, total);
        }
        for (long i = 0; i < K; i++) {
            const long k = i * n + r;
            const float a = alpha[k], s = rstd[k], dz = a * (cc[i] - total);
            ca[i] = a; cc[i] = s * dz; cck[i] = logits[k] * invD * s;
        }
        long j = 0;
        for (; j + 16 <= d; j += 16) {
            const __m256 g0 = _mm256_loadu_ps(g + j), g1 = _mm256_loadu_ps(g + j + 8);
            const __m256 w0 = _mm256_loadu_ps(w + j), w1 = _mm256_loadu_ps(w + j + 8);
            __m256 dw0 = _mm256_loadu_ps(dw + j), dw1 = _mm256_loadu_ps(dw + j + 8);
            for (long i = 0; i < K; i++) {
                const float *x = sources[i] + off + j;
                float *o = dsources[i] + off + j;
                const __m256 a = _mm256_set1_ps(ca[i]), c = _mm256_set1_ps(cc[i]), ck = _mm256_set1_ps(cck[i]);
                const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
                // dv += α·dh + c·(w − ck·v)
                const __m256 u0 = _mm256_fmadd_ps(a, g0, _mm256_mul_ps(c, _mm256_fnmadd_ps(ck, x0, w0)));
                const __m256 u1 = _mm256_fmadd_ps(a, g1, _mm256_mul_ps(c, _mm256_fnmadd_ps(ck, x1, w1)));
                _mm256_storeu_ps(o, _mm256_add_ps(accumulate ? _mm256_loadu_ps(o) : _mm256_setzero_ps(), u0));
                _mm256_storeu_ps(o + 8, _mm256_add_ps(accumulate ? _mm256_loadu_ps(o + 8) : _mm256_setzero_ps(), u1));
                dw0 = _mm256_fmadd_ps(c, x0, dw0);
                dw1 = _mm256_fmadd_ps(c, x1, dw1);
            }
            _mm256_storeu_ps(dw + j, dw0); _mm256_storeu_ps(dw + j + 8, dw1);
        }
        if (j + 8 <= d) {
            const __m256 g0 = _mm256_loadu_ps(g + j), w0 = _mm256_loadu_ps(w + j);
            __m256 dw0 = _mm256_loadu_ps(dw + j);
            for (long i = 0; i < K; i++) {
                const __m256 c = _mm256_set1_ps(cc[i]);
                const __m256 x0 = _mm256_loadu_ps(sources[i] + off + j);
                float *o = dsources[i] + off + j;
                const __m256 u0 = _mm256_fmadd_ps(_mm256_set1_ps(ca[i]), g0,
                                                  _mm256_mul_ps(c, _mm256_fnmadd_ps(_mm256_set1_ps(cck[i]), x0, w0)));
                _mm256_storeu_ps(o, _mm256_add_ps(accumulate ? _mm256_loadu_ps(o) : _mm256_setzero_ps(), u0));
                dw0 = _mm256_fmadd_ps(c, x0, dw0);
            }
            _mm256_storeu_ps(dw + j, dw0);
            j += 8;
        }
        for (; j < d; j++) {
            float dwj = dw[j];
            for (long i = 0; i < K; i++) {
                const float x = sources[i][off + j];
                const float old = accumulate ? dsources[i][off + j] : 0.0f;
                dsources[i][off + j] = old + fmaf(ca[i], g[j], cc[i] * fmaf(-cck[i], x, w[j]));
                dwj = fmaf(cc[i], x, dwj);
            }
            dw[j] = dwj;
        }
    }
}

AVX2 void attnres_avx2_depth_backward(const float *dh, const float *w, const float *const *sources,
                                      float *const *dsources, long K, long n, long d, const float *alpha,
                                      const float *rstd, const float *logits, float *dw, int accumulate) {
    float ca[K], cc[K], cck[K];
    if (accumulate) backward_tokens(dh, w, sources, dsources, K, n, d, alpha, rstd, logits, dw, 1, ca, cc, cck);
    else backward_tokens(dh, w, sources, dsources, K, n, d, alpha, rstd, logits, dw, 0, ca, cc, cck);
}

AVX2 void attnres_avx2_depth_phase1(const float *queries, long S, const float *const *sources, const float *rstd,
                                    long K, long n, long d, float *weights, float *max, float *sum) {
    for (long r = 0; r < n; r++) {
        for (long s = 0; s < S; s++) {
            const float *q = queries + s * d;
            float *z = weights + s * K * n;
            float m = -INFINITY;
            for (long i = 0; i < K; i++) {
                const float zi = rstd[i * n + r] * dot(q, sources[i] + r * d, d);
                z[i * n + r] = zi;
                m = fmaxf(m, zi);
            }
            float l = 0;
            for (long i = 0; i < K; i++) { const float e = exp_shifted(z[i * n + r] - m); z[i * n + r] = e; l += e; }
            max[s * n + r] = m; sum[s * n + r] = l;
        }
    }
}

AVX2 void attnres_avx2_depth_mix(const float *const *sources, const float *weights, long K, long n, long d,
                                 float *out, int accumulate) {
    const float *rows[K];
    float coef[K];
    for (long r = 0; r < n; r++) {
        for (long i = 0; i < K; i++) { rows[i] = sources[i] + r * d; coef[i] = weights[i * n + r]; }
        weighted_rows(rows, coef, K, d, out + r * d, accumulate);
    }
}

AVX2 void attnres_avx2_depth_merge(const float *const *sources, const float *weights, const float *max,
                                   const float *sum, long K, long n, long d, const float *query, const float *partial,
                                   float *out) {
    const long R = K + (partial ? 1 : 0);
    const float *rows[R];
    float coef[R];
    for (long r = 0; r < n; r++) {
        float a, b = 0;
        if (partial) {
            float dot, ss;
            dot_and_squares(query, partial + r * d, d, &dot, &ss);
            const float z2 = rstd_of(ss, d) * dot, m = fmaxf(max[r], z2);
            const float e1 = exp_shifted(max[r] - m), e2 = exp_shifted(z2 - m), inv = 1 / (e1 * sum[r] + e2);
            a = e1 * inv; b = e2 * inv;
            rows[K] = partial + r * d; coef[K] = b;
        } else {
            a = 1 / sum[r];
        }
        for (long i = 0; i < K; i++) { rows[i] = sources[i] + r * d; coef[i] = weights[i * n + r] * a; }
        weighted_rows(rows, coef, R, d, out + r * d, 0);
    }
}

#else  // not x86-64: the baseline Swift kernels are the only ones; these are never called.

int attnres_avx2_fma_available(void) { return 0; }
float attnres_avx2_sum_squares(const float *x, long d) { (void)x; (void)d; return NAN; }
void attnres_avx2_rstd_rows(const float *x, long n, long d, float *out) { (void)x; (void)n; (void)d; (void)out; }
void attnres_avx2_dot_and_squares(const float *w, const float *x, long d, float *wx, float *xx) {
    (void)w; (void)x; (void)d; *wx = NAN; *xx = NAN;
}
void attnres_avx2_depth_forward(const float *w, const float *const *sources, long K, long n, long d, float *rstd,
                                const unsigned char *known, float *logits, float *alpha, float *out) {
    (void)w; (void)sources; (void)K; (void)n; (void)d; (void)rstd; (void)known; (void)logits; (void)alpha; (void)out;
}
void attnres_avx2_depth_backward(const float *dh, const float *w, const float *const *sources, float *const *dsources,
                                 long K, long n, long d, const float *alpha, const float *rstd, const float *logits,
                                 float *dw, int accumulate) {
    (void)dh; (void)w; (void)sources; (void)dsources; (void)K; (void)n; (void)d; (void)alpha; (void)rstd;
    (void)logits; (void)dw; (void)accumulate;
}
void attnres_avx2_depth_phase1(const float *queries, long S, const float *const *sources, const float *rstd, long K,
                               long n, long d, float *weights, float *max, float *sum) {
    (void)queries; (void)S; (void)sources; (void)rstd; (void)K; (void)n; (void)d; (void)weights; (void)max; (void)sum;
}
void attnres_avx2_depth_mix(const float *const *sources, const float *weights, long K, long n, long d, float *out,
                            int accumulate) {
    (void)sources; (void)weights; (void)K; (void)n; (void)d; (void)out; (void)accumulate;
}
void attnres_avx2_depth_merge(const float *const *sources, const float *weights, const float *max, const float *sum,
                              long K, long n, long d, const float *query, const float *partial, float *out) {
    (void)sources; (void)weights; (void)max; (void)sum; (void)K; (void)n; (void)d; (void)query; (void)partial; (void)out;
}
#endif
