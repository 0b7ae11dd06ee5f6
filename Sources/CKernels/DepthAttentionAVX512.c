// Depth-attention kernels for AVX-512F (see include/CKernels.h for why they are C and how they are chosen).
// Every multiply-add below is written out (intrinsic or fmaf): contraction is off, so the compiler never fuses
// a product into a sum on its own and the rounding is the one this file spells, at every optimisation level.
//
// Layout of every pass over a row of d floats: column blocks of 64 (four zmm registers, all of d = 64), then one
// masked block for the rest (a masked-off lane loads 0 and is never stored), so any d runs the code of d = 64 and no
// scalar tail. Each block is an always-inline function of its masks: the full blocks pass constant all-ones masks,
// which compile to plain loads and stores.
// Sums over a row keep four 16-lane accumulators (chunk q of every block into accumulator q), combined as
// (s0 + s1) + (s2 + s3) and then reduced as a tree (`hsum`): one fixed order per d, shared by `dot`, `sum_squares`
// and `dot_and_squares`, so a cached key statistic equals a recomputed one bit for bit.
#pragma STDC FP_CONTRACT OFF
#include "CKernels.h"
#include <math.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

int attnres_avx512_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

/// Lanes [0, count) of a 16-lane chunk (count ≤ 0: none, ≥ 16: all).
static inline __mmask16 lanes(long count) {
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1);
}

/// The masks of the four chunks of a column block: all ones for a full block, else those of the last columns.
typedef struct { __mmask16 m[4]; } block_masks;
static const block_masks full_block = {{0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF}};
static inline block_masks masks_at(long j, long d) {
    block_masks b = {{lanes(d - j), lanes(d - j - 16), lanes(d - j - 32), lanes(d - j - 48)}};
    return b;
}

#define INLINE __attribute__((always_inline)) static inline

/// Runs BLOCK(j, masks) over the column blocks of a row of d floats: full ones, then the masked rest.
#define FOR_BLOCKS(d, BLOCK)                                   \
    do {                                                       \
        long j_ = 0;                                           \
        for (; j_ + 64 <= (d); j_ += 64) BLOCK(j_, full_block); \
        if (j_ < (d)) BLOCK(j_, masks_at(j_, (d)));            \
    } while (0)

/// The 16 lanes summed as a tree: (j, j+8), then (j, j+4), (j, j+2), (j, j+1).
AVX512 INLINE float hsum(__m512 v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX512 INLINE float combine(__m512 s0, __m512 s1, __m512 s2, __m512 s3) {
    return hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

AVX512 INLINE void dot_block(const float *a, const float *b, block_masks k, __m512 *s) {
    for (int q = 0; q < 4; q++)
        s[q] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k.m[q], a + 16 * q), _mm512_maskz_loadu_ps(k.m[q], b + 16 * q), s[q]);
}

/// (Σ w[j]·x[j], Σ x[j]²) in one pass over x, in the row order described at the top: the second bitwise
/// `attnres_avx512_sum_squares(x, d)`, both bitwise the lanes of `dots16` / `dots_and_squares16`.
AVX512 INLINE void dot_and_squares_block(const float *w, const float *x, block_masks k, __m512 *s, __m512 *q) {
    for (int c = 0; c < 4; c++) {
        const __m512 xc = _mm512_maskz_loadu_ps(k.m[c], x + 16 * c);
        s[c] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k.m[c], w + 16 * c), xc, s[c]);
        q[c] = _mm512_fmadd_ps(xc, xc, q[c]);
    }
}

AVX512 INLINE void dot_and_squares(const float *w, const float *x, long d, float *wx, float *xx) {
    __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    __m512 q[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
#define DS_BLOCK(j, k) dot_and_squares_block(w + (j), x + (j), (k), s, q)
    FOR_BLOCKS(d, DS_BLOCK);
#undef DS_BLOCK
    *wx = combine(s[0], s[1], s[2], s[3]);
    *xx = combine(q[0], q[1], q[2], q[3]);
}

/// The 16 vectors v[0..<16] reduced at once to one vector whose lane t is hsum(v[t]), bit for bit: the same pairs
/// (j, j+8), (j, j+4), (j, j+2), (j, j+1) as `hsum`, each stage adding two shuffles of two vectors (a transpose as it
/// sums), then one permutation back to row order. About 3 instructions a row instead of hsum's 8.
AVX512 INLINE __m512 hsum16(const __m512 *v) {
    __m512 a[8], b[4], c[2];
    for (int p = 0; p < 8; p++)  // lanes 0-7: v[2p]_j + v[2p]_{j+8}; lanes 8-15: the same of v[2p+1]
        a[p] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int p = 0; p < 4; p++)  // 128-bit lane q: 4 partial sums of row 4p + q, pairs (j, j+4)
        b[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int p = 0; p < 2; p++) {  // pairs (j, j+2): lane q holds rows 8p + q and 8p + 4 + q, two partial sums each
        const __m512d x = _mm512_castps_pd(b[2 * p]), y = _mm512_castps_pd(b[2 * p + 1]);
        c[p] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    // pairs (j, j+1): lane 4q + k is row q + 4k
    const __m512 t = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i rowOrder = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(rowOrder, t);
}

/// Lane t < T: Σ_j a_t[j]·b_t[j] with a_t = a + t·astride, b_t = b + t·d (rows of d floats), in the row order at the top
/// (bitwise the first sum of `dot_and_squares(a_t, b_t)`); lanes ≥ T: 0. One vector of a tile's logits or dα without a horizontal sum per row.
AVX512 INLINE __m512 dots16(const float *a, long astride, const float *b, long d, long T) {
    __m512 v[16];
    for (long t = 0; t < 16; t++) {
        __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        if (t < T) {
            const float *at = a + t * astride, *bt = b + t * d;
#define DOT16_BLOCK(j, k) dot_block(at + (j), bt + (j), (k), s)
            FOR_BLOCKS(d, DOT16_BLOCK);
#undef DOT16_BLOCK
        }
        v[t] = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
    }
    return hsum16(v);
}

/// `dots16` of w with the T rows of x, and Σ x_t[j]² of each: bitwise `dot_and_squares` row by row.
AVX512 INLINE void dots_and_squares16(const float *w, const float *x, long d, long T, __m512 *wx, __m512 *xx) {
    __m512 v[16], u[16];
    for (long t = 0; t < 16; t++) {
        __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        __m512 q[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        if (t < T) {
            const float *xt = x + t * d;
#define DS16_BLOCK(j, k) dot_and_squares_block(w + (j), xt + (j), (k), s, q)
            FOR_BLOCKS(d, DS16_BLOCK);
#undef DS16_BLOCK
        }
        v[t] = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
        u[t] = _mm512_add_ps(_mm512_add_ps(q[0], q[1]), _mm512_add_ps(q[2], q[3]));
    }
    *wx = hsum16(v);
    *xx = hsum16(u);
}

/// 1 / √(ss/d + eps) on 16 lanes, eps = 1e-6 (RMSNorm.epsilon): the expression `DepthAttention.rstd(sumOfSquares:_:)`
/// evaluates, in IEEE division and square root, so bitwise the scalar form.
AVX512 INLINE __m512 rstd16(__m512 ss, long d) {
    const __m512 x = _mm512_add_ps(_mm512_div_ps(ss, _mm512_set1_ps((float)d)), _mm512_set1_ps(1e-6f));
    return _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_sqrt_ps(x));
}

/// 16 rows at a time: each row's squares are `dots16` of the rows with themselves (bitwise
/// `attnres_avx512_sum_squares` per row), then `rstd16`, bitwise the scalar expression.
AVX512 void attnres_avx512_rstd_rows(const float *x, long n, long d, float *out) {
    for (long r0 = 0; r0 < n; r0 += 16) {
        const long T = n - r0 < 16 ? n - r0 : 16;
        const float *rows = x + r0 * d;
        _mm512_mask_storeu_ps(out + r0, lanes(T), rstd16(dots16(rows, d, rows, d, T), d));
    }
}

AVX512 float attnres_avx512_sum_squares(const float *x, long d) {
    __m512 q[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
#define SS_BLOCK(j, k) dot_block(x + (j), x + (j), (k), q)
    FOR_BLOCKS(d, SS_BLOCK);
#undef SS_BLOCK
    return combine(q[0], q[1], q[2], q[3]);
}

AVX512 void attnres_avx512_dot_and_squares(const float *w, const float *x, long d, float *wx, float *xx) {
    dot_and_squares(w, x, d, wx, xx);
}

/// e^x on 16 lanes without libm: x clamped to [-87, 88], x = k·ln2 + r with k = round(x/ln2) and ln2 split in two
/// (Cody–Waite), e^r by its degree-7 Taylor polynomial (|r| ≤ ln2/2: truncation < 1e-8 relative), times 2^k by
/// `scalef`. Relative error a few ulp (tested against libm); e^0 = 1 exactly (k = 0, r = 0, the polynomial is 1).
AVX512 INLINE __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

AVX512 void attnres_avx512_exp(const float *x, long count, float *out) {
    for (long i = 0; i < count; i += 16) {
        const __mmask16 m = lanes(count - i);
        _mm512_mask_storeu_ps(out + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/// Tokens per tile: 16 (one per lane), fewer when the tile's K rows would not stay in L1 (48 KiB on the CPUs at hand,
/// half of it budgeted) between the pass that reads them for the logits and the one that reads them again for the
/// weighted sum or the gradient: T·K·d floats ≤ 6144.
static inline long tile_tokens(long K, long d) {
    const long t = 6144 / (K * d);
    return t >= 16 ? 16 : t < 1 ? 1 : t;
}

/// out (+)= Σ_i coef[i·stride] · rows[i][0..<d]: per column block four accumulators over the sources in order.
AVX512 INLINE void weighted_block(const float *const *rows, const float *coef, long stride, long K, long j, float *out,
                                  int accumulate, block_masks k) {
    __m512 a[4];
    for (int q = 0; q < 4; q++) a[q] = accumulate ? _mm512_maskz_loadu_ps(k.m[q], out + j + 16 * q) : _mm512_setzero_ps();
    for (long i = 0; i < K; i++) {
        const float *x = rows[i] + j;
        const __m512 c = _mm512_set1_ps(coef[i * stride]);
        for (int q = 0; q < 4; q++) a[q] = _mm512_fmadd_ps(c, _mm512_maskz_loadu_ps(k.m[q], x + 16 * q), a[q]);
    }
    for (int q = 0; q < 4; q++) _mm512_mask_storeu_ps(out + j + 16 * q, k.m[q], a[q]);
}

/// `weighted_block` of two tokens at once (rows0/rows1, coef0/coef1, out0/out1), with written outputs: two independent
/// chains of FMAs, so one token's sum over the sources runs while the other's waits on its latency. Each token's
/// operations and their order are those of `weighted_block`, so its result is bitwise the same.
AVX512 INLINE void weighted_block2(const float *const *rows0, const float *const *rows1, const float *coef0,
                                   const float *coef1, long stride, long K, long j, float *out0, float *out1,
                                   block_masks k) {
    __m512 a[4], b[4];
    for (int q = 0; q < 4; q++) { a[q] = _mm512_setzero_ps(); b[q] = _mm512_setzero_ps(); }
    for (long i = 0; i < K; i++) {
        const float *x = rows0[i] + j, *y = rows1[i] + j;
        const __m512 c = _mm512_set1_ps(coef0[i * stride]), e = _mm512_set1_ps(coef1[i * stride]);
        for (int q = 0; q < 4; q++) {
            a[q] = _mm512_fmadd_ps(c, _mm512_maskz_loadu_ps(k.m[q], x + 16 * q), a[q]);
            b[q] = _mm512_fmadd_ps(e, _mm512_maskz_loadu_ps(k.m[q], y + 16 * q), b[q]);
        }
    }
    for (int q = 0; q < 4; q++) {
        _mm512_mask_storeu_ps(out0 + j + 16 * q, k.m[q], a[q]);
        _mm512_mask_storeu_ps(out1 + j + 16 * q, k.m[q], b[q]);
    }
}

/// The weighted sums of a tile's T tokens, written: token t's rows are rows[i] + t·d, its coefficients coef[t + 16·i]
/// (lanes = tokens), its output out + t·d. Tokens go in pairs (`weighted_block2`), the odd one alone.
AVX512 INLINE void weighted_tile(const float *const *sources, long K, long r0, long T, long d, const float *coef,
                                 float *out, const float **rows0, const float **rows1) {
    long t = 0;
    for (; t + 2 <= T; t += 2) {
        for (long i = 0; i < K; i++) { rows0[i] = sources[i] + (r0 + t) * d; rows1[i] = rows0[i] + d; }
        float *o0 = out + (r0 + t) * d, *o1 = o0 + d;
#define W2_BLOCK(j, k) weighted_block2(rows0, rows1, coef + t, coef + t + 1, 16, K, (j), o0, o1, (k))
        FOR_BLOCKS(d, W2_BLOCK);
#undef W2_BLOCK
    }
    if (t < T) {
        for (long i = 0; i < K; i++) rows0[i] = sources[i] + (r0 + t) * d;
        float *o0 = out + (r0 + t) * d;
#define W1_BLOCK(j, k) weighted_block(rows0, coef + t, 16, K, (j), o0, 0, (k))
        FOR_BLOCKS(d, W1_BLOCK);
#undef W1_BLOCK
    }
}

AVX512 INLINE void weighted_rows(const float *const *rows, const float *coef, long stride, long K, long d, float *out,
                                 int accumulate) {
#define W_BLOCK(j, k) weighted_block(rows, coef, stride, K, (j), out, accumulate, (k))
    FOR_BLOCKS(d, W_BLOCK);
#undef W_BLOCK
}

/// Tokens go in tiles of up to 16 (`tile_tokens`), one token per lane: (A) source by source, each row's logit (and uncached key statistic)
/// with the row loops above, reduced 16 rows at once into one vector per source (`dots16`); (B) the softmax over the sources for
/// all the tile's tokens at once, lanes = tokens (vector max, `exp16`, sum in source order: no horizontal reductions, no
/// serial chain per token); (C) token by token, h[r] = Σ_i α_i v_i[r] with the tile's rows still in L1.
AVX512 void attnres_avx512_depth_forward(const float *w, const float *const *sources, long K, long n, long d,
                                         float *rstd, const unsigned char *known, float *logits, float *alpha,
                                         float *out) {
    __m512 zt[K];
    float at[K * 16];
    const float *rows[K], *rows1[K];
    const long tile = tile_tokens(K, d);
    for (long r0 = 0; r0 < n; r0 += tile) {
        const long T = n - r0 < tile ? n - r0 : tile;
        const __mmask16 tm = lanes(T);
        for (long i = 0; i < K; i++) {  // (A)
            const float *v = sources[i] + r0 * d;
            const long k0 = i * n + r0;
            __m512 sv, wxv;
            if (known[i]) {
                sv = _mm512_maskz_loadu_ps(tm, rstd + k0);
                wxv = dots16(w, 0, v, d, T);
            } else {
                __m512 xx;
                dots_and_squares16(w, v, d, T, &wxv, &xx);
                sv = rstd16(xx, d);
                _mm512_mask_storeu_ps(rstd + k0, tm, sv);
            }
            zt[i] = _mm512_mul_ps(sv, wxv);
            _mm512_mask_storeu_ps(logits + k0, tm, zt[i]);
        }
        __m512 mv = zt[0];  // (B)
        for (long i = 1; i < K; i++) mv = _mm512_max_ps(mv, zt[i]);
        __m512 sum = _mm512_setzero_ps();
        for (long i = 0; i < K; i++) { zt[i] = exp16(_mm512_sub_ps(zt[i], mv)); sum = _mm512_add_ps(sum, zt[i]); }
        const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
        for (long i = 0; i < K; i++) {
            const __m512 a = _mm512_mul_ps(zt[i], inv);
            _mm512_mask_storeu_ps(alpha + i * n + r0, tm, a);
            _mm512_storeu_ps(at + i * 16, a);
        }
        weighted_tile(sources, K, r0, T, d, at, out, rows, rows1);  // (C)
    }
}

/// One column block of one token's backward: dh[r], w and dw in registers while every source's dv[r] += α·dh + c·w
/// − cx·v (three FMAs) and dw += c·v; source i's coefficients are ca[16·i], cc[16·i], cx[16·i]. accumulate = 0 starts each dv from 0 instead of loading it: bitwise the same
/// as into zero-filled buffers.
AVX512 INLINE void backward_block(const float *g, const float *w, const float *const *sources, float *const *dsources,
                                  long K, long off, float *dw, const int accumulate, const float *ca, const float *cc,
                                  const float *cx, block_masks k) {
    __m512 gv[4], wv[4], dwv[4];
    for (int q = 0; q < 4; q++) {
        gv[q] = _mm512_maskz_loadu_ps(k.m[q], g + 16 * q);
        wv[q] = _mm512_maskz_loadu_ps(k.m[q], w + 16 * q);
        dwv[q] = _mm512_maskz_loadu_ps(k.m[q], dw + 16 * q);
    }
    for (long i = 0; i < K; i++) {
        const float *x = sources[i] + off;
        float *o = dsources[i] + off;
        const __m512 a = _mm512_set1_ps(ca[16 * i]), c = _mm512_set1_ps(cc[16 * i]), ck = _mm512_set1_ps(cx[16 * i]);
        for (int q = 0; q < 4; q++) {
            const __m512 xq = _mm512_maskz_loadu_ps(k.m[q], x + 16 * q);
            const __m512 old = accumulate ? _mm512_maskz_loadu_ps(k.m[q], o + 16 * q) : _mm512_setzero_ps();
            // dv += α·dh + c·w − cx·v
            const __m512 u = _mm512_fnmadd_ps(ck, xq, _mm512_fmadd_ps(c, wv[q], _mm512_fmadd_ps(a, gv[q], old)));
            _mm512_mask_storeu_ps(o + 16 * q, k.m[q], u);
            dwv[q] = _mm512_fmadd_ps(c, xq, dwv[q]);
        }
    }
    for (int q = 0; q < 4; q++) _mm512_mask_storeu_ps(dw + 16 * q, k.m[q], dwv[q]);
}

/// `backward_block` of two tokens at once (offsets off0, off1 = off0 + d; coefficients ca[16·i] and ca[16·i + 1]):
/// their updates are independent, so each source's rows of the two tokens are in flight together; dw takes token
/// off0's term and then off1's for each source in turn.
AVX512 INLINE void backward_block2(const float *g, long d, const float *w, const float *const *sources,
                                   float *const *dsources, long K, long off, float *dw, const int accumulate,
                                   const float *ca, const float *cc, const float *cx, block_masks k) {
    __m512 gv[4], hv[4], wv[4], dwv[4];
    for (int q = 0; q < 4; q++) {
        gv[q] = _mm512_maskz_loadu_ps(k.m[q], g + 16 * q);
        hv[q] = _mm512_maskz_loadu_ps(k.m[q], g + d + 16 * q);
        wv[q] = _mm512_maskz_loadu_ps(k.m[q], w + 16 * q);
        dwv[q] = _mm512_maskz_loadu_ps(k.m[q], dw + 16 * q);
    }
    for (long i = 0; i < K; i++) {
        const float *x = sources[i] + off, *y = x + d;
        float *o = dsources[i] + off, *p = o + d;
        const __m512 a = _mm512_set1_ps(ca[16 * i]), c = _mm512_set1_ps(cc[16 * i]), ck = _mm512_set1_ps(cx[16 * i]);
        const __m512 b = _mm512_set1_ps(ca[16 * i + 1]), e = _mm512_set1_ps(cc[16 * i + 1]);
        const __m512 ek = _mm512_set1_ps(cx[16 * i + 1]);
        __m512 xq[4], yq[4], u[4], v[4];
        for (int q = 0; q < 4; q++) {
            xq[q] = _mm512_maskz_loadu_ps(k.m[q], x + 16 * q);
            yq[q] = _mm512_maskz_loadu_ps(k.m[q], y + 16 * q);
            u[q] = accumulate ? _mm512_maskz_loadu_ps(k.m[q], o + 16 * q) : _mm512_setzero_ps();
            v[q] = accumulate ? _mm512_maskz_loadu_ps(k.m[q], p + 16 * q) : _mm512_setzero_ps();
        }
        for (int q = 0; q < 4; q++) {
            u[q] = _mm512_fnmadd_ps(ck, xq[q], _mm512_fmadd_ps(c, wv[q], _mm512_fmadd_ps(a, gv[q], u[q])));
            v[q] = _mm512_fnmadd_ps(ek, yq[q], _mm512_fmadd_ps(e, wv[q], _mm512_fmadd_ps(b, hv[q], v[q])));
            _mm512_mask_storeu_ps(o + 16 * q, k.m[q], u[q]);
            _mm512_mask_storeu_ps(p + 16 * q, k.m[q], v[q]);
            dwv[q] = _mm512_fmadd_ps(e, yq[q], _mm512_fmadd_ps(c, xq[q], dwv[q]));
        }
    }
    for (int q = 0; q < 4; q++) _mm512_mask_storeu_ps(dw + 16 * q, k.m[q], dwv[q]);
}

/// The backward of all n tokens, in tiles like the forward; `accumulate` is a constant at both call sites, so
/// each gets its own loop. (A) source by source, dα_i = dh[r]·v_i[r] of each token of the tile, one vector per source;
/// (B) for the tile's tokens at once, the softmax backward dz = α(dα − Σ_t α_t dα_t) and per source a = α, c = rstd·dz,
/// cx = c·(z/d·rstd); (C) two tokens at a time, `backward_block2` per column block (the odd one `backward_block`).
AVX512 __attribute__((always_inline)) static inline void backward_tokens(
    const float *dh, const float *w, const float *const *sources, float *const *dsources, long K, long n, long d,
    const float *alpha, const float *rstd, const float *logits, float *dw, const int accumulate, __m512 *da,
    float *ca, float *cc, float *cx) {
    const __m512 invD = _mm512_set1_ps(1 / (float)d);
    const long tile = tile_tokens(K, d);
    for (long r0 = 0; r0 < n; r0 += tile) {
        const long T = n - r0 < tile ? n - r0 : tile;
        const __mmask16 tm = lanes(T);
        for (long i = 0; i < K; i++) {  // (A)
            const float *v = sources[i] + r0 * d, *g = dh + r0 * d;
            da[i] = dots16(g, d, v, d, T);
        }
        __m512 total = _mm512_setzero_ps();  // (B)
        for (long i = 0; i < K; i++) total = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, alpha + i * n + r0), da[i], total);
        for (long i = 0; i < K; i++) {
            const long k0 = i * n + r0;
            const __m512 a = _mm512_maskz_loadu_ps(tm, alpha + k0), s = _mm512_maskz_loadu_ps(tm, rstd + k0);
            const __m512 c = _mm512_mul_ps(s, _mm512_mul_ps(a, _mm512_sub_ps(da[i], total)));
            const __m512 ck = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(tm, logits + k0), invD), s);
            _mm512_storeu_ps(ca + i * 16, a); _mm512_storeu_ps(cc + i * 16, c);
            _mm512_storeu_ps(cx + i * 16, _mm512_mul_ps(c, ck));
        }
        long t = 0;
        for (; t + 2 <= T; t += 2) {  // (C), two tokens at a time
            const long off = (r0 + t) * d;
            const float *g = dh + off;
#define B2_BLOCK(j, k) backward_block2(g + (j), d, w + (j), sources, dsources, K, off + (j), dw + (j), accumulate, \
                                       ca + t, cc + t, cx + t, (k))
            FOR_BLOCKS(d, B2_BLOCK);
#undef B2_BLOCK
        }
        if (t < T) {
            const long off = (r0 + t) * d;
            const float *g = dh + off;
#define B_BLOCK(j, k) backward_block(g + (j), w + (j), sources, dsources, K, off + (j), dw + (j), accumulate, \
                                     ca + t, cc + t, cx + t, (k))
            FOR_BLOCKS(d, B_BLOCK);
#undef B_BLOCK
        }
    }
}

AVX512 void attnres_avx512_depth_backward(const float *dh, const float *w, const float *const *sources,
                                          float *const *dsources, long K, long n, long d, const float *alpha,
                                          const float *rstd, const float *logits, float *dw, int accumulate) {
    __m512 da[K];
    float ca[K * 16], cc[K * 16], cx[K * 16];
    if (accumulate) backward_tokens(dh, w, sources, dsources, K, n, d, alpha, rstd, logits, dw, 1, da, ca, cc, cx);
    else backward_tokens(dh, w, sources, dsources, K, n, d, alpha, rstd, logits, dw, 0, da, ca, cc, cx);
}

/// In tiles of up to 16 tokens, one per lane, like the forward: per query the logits of each source as one vector, then the
/// max, e^{z − m} and their sum for the tile's tokens at once.
AVX512 void attnres_avx512_depth_phase1(const float *queries, long S, const float *const *sources, const float *rstd,
                                        long K, long n, long d, float *weights, float *max, float *sum) {
    __m512 zt[K];
    const long tile = tile_tokens(K, d);
    for (long r0 = 0; r0 < n; r0 += tile) {
        const long T = n - r0 < tile ? n - r0 : tile;
        const __mmask16 tm = lanes(T);
        for (long s = 0; s < S; s++) {
            const float *q = queries + s * d;
            for (long i = 0; i < K; i++) {
                const float *v = sources[i] + r0 * d;
                zt[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(tm, rstd + i * n + r0), dots16(q, 0, v, d, T));
            }
            __m512 mv = zt[0];
            for (long i = 1; i < K; i++) mv = _mm512_max_ps(mv, zt[i]);
            __m512 l = _mm512_setzero_ps();
            float *out = weights + s * K * n;
            for (long i = 0; i < K; i++) {
                const __m512 e = exp16(_mm512_sub_ps(zt[i], mv));
                _mm512_mask_storeu_ps(out + i * n + r0, tm, e);
                l = _mm512_add_ps(l, e);
            }
            _mm512_mask_storeu_ps(max + s * n + r0, tm, mv);
            _mm512_mask_storeu_ps(sum + s * n + r0, tm, l);
        }
    }
}

AVX512 void attnres_avx512_depth_mix(const float *const *sources, const float *weights, long K, long n, long d,
                                     float *out, int accumulate) {
    const float *rows[K];
    float coef[K];
    for (long r = 0; r < n; r++) {
        for (long i = 0; i < K; i++) { rows[i] = sources[i] + r * d; coef[i] = weights[i * n + r]; }
        weighted_rows(rows, coef, 1, K, d, out + r * d, accumulate);
    }
}

/// Two-phase phase 2 of one layer, in tiles of up to 16 tokens like phase 1: with a partial, per token z2 = rstd(partial)·
/// (w·partial) (`dot_and_squares`), m = max(m1, z2), a = e^{m1−m} / (e^{m1−m}·ℓ + e^{z2−m}), b = e^{z2−m} / (…) for the
/// tile's tokens at once; without one, a = 1/ℓ, b = 0. Then token by token out[r] = Σ_i (weights_i[r]·a) v_i[r] + b·partial[r].
AVX512 void attnres_avx512_depth_merge(const float *const *sources, const float *weights, const float *max,
                                       const float *sum, long K, long n, long d, const float *query,
                                       const float *partial, float *out) {
    const long R = K + (partial ? 1 : 0);
    float ct[R * 16];
    const float *all[R], *rows[R], *rows1[R];
    for (long i = 0; i < K; i++) all[i] = sources[i];
    if (partial) all[K] = partial;
    const long tile = tile_tokens(K, d);
    for (long r0 = 0; r0 < n; r0 += tile) {
        const long T = n - r0 < tile ? n - r0 : tile;
        const __mmask16 tm = lanes(T);
        const __m512 m1 = _mm512_maskz_loadu_ps(tm, max + r0), l1 = _mm512_mask_loadu_ps(_mm512_set1_ps(1), tm, sum + r0);
        __m512 a, b;
        if (partial) {
            __m512 wx, ss;
            dots_and_squares16(query, partial + r0 * d, d, T, &wx, &ss);
            const __m512 z2 = _mm512_mul_ps(rstd16(ss, d), wx), m = _mm512_max_ps(m1, z2);
            const __m512 e1 = exp16(_mm512_sub_ps(m1, m)), e2 = exp16(_mm512_sub_ps(z2, m));
            const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1), _mm512_fmadd_ps(e1, l1, e2));
            a = _mm512_mul_ps(e1, inv); b = _mm512_mul_ps(e2, inv);
            _mm512_storeu_ps(ct + K * 16, b);
        } else {
            a = _mm512_div_ps(_mm512_set1_ps(1), l1); b = _mm512_setzero_ps();
        }
        for (long i = 0; i < K; i++)
            _mm512_storeu_ps(ct + i * 16, _mm512_mul_ps(_mm512_maskz_loadu_ps(tm, weights + i * n + r0), a));
        weighted_tile(all, R, r0, T, d, ct, out, rows, rows1);
    }
}

#else  // not x86-64: the baseline Swift kernels are the only ones; these are never called.

int attnres_avx512_available(void) { return 0; }
float attnres_avx512_sum_squares(const float *x, long d) { (void)x; (void)d; return NAN; }
void attnres_avx512_rstd_rows(const float *x, long n, long d, float *out) { (void)x; (void)n; (void)d; (void)out; }
void attnres_avx512_dot_and_squares(const float *w, const float *x, long d, float *wx, float *xx) {
    (void)w; (void)x; (void)d; *wx = NAN; *xx = NAN;
}
void attnres_avx512_exp(const float *x, long count, float *out) { (void)x; (void)count; (void)out; }
void attnres_avx512_depth_forward(const float *w, const float *const *sources, long K, long n, long d, float *rstd,
                                  const unsigned char *known, float *logits, float *alpha, float *out) {
    (void)w; (void)sources; (void)K; (void)n; (void)d; (void)rstd; (void)known; (void)logits; (void)alpha; (void)out;
}
void attnres_avx512_depth_backward(const float *dh, const float *w, const float *const *sources,
                                   float *const *dsources, long K, long n, long d, const float *alpha,
                                   const float *rstd, const float *logits, float *dw, int accumulate) {
    (void)dh; (void)w; (void)sources; (void)dsources; (void)K; (void)n; (void)d; (void)alpha; (void)rstd;
    (void)logits; (void)dw; (void)accumulate;
}
void attnres_avx512_depth_phase1(const float *queries, long S, const float *const *sources, const float *rstd, long K,
                                 long n, long d, float *weights, float *max, float *sum) {
    (void)queries; (void)S; (void)sources; (void)rstd; (void)K; (void)n; (void)d; (void)weights; (void)max; (void)sum;
}
void attnres_avx512_depth_mix(const float *const *sources, const float *weights, long K, long n, long d, float *out,
                              int accumulate) {
    (void)sources; (void)weights; (void)K; (void)n; (void)d; (void)out; (void)accumulate;
}
void attnres_avx512_depth_merge(const float *const *sources, const float *weights, const float *max, const float *sum,
                                long K, long n, long d, const float *query, const float *partial, float *out) {
    (void)sources; (void)weights; (void)max; (void)sum; (void)K; (void)n; (void)d; (void)query; (void)partial; (void)out;
}
#endif
