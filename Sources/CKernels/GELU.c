// GELU (tanh form) forward and backward for AVX-512F and for AVX2 + FMA machines: the Swift loops of
// Sources/Numerics/GELU.swift (with `VectorKernels.exp`) operation for operation, so every kernel gives the same bits
// as the baseline Swift code and a pipeline stays bitwise equal to one process whatever the CPUs choose. Only the
// vector width differs: the package's Swift is built for baseline x86-64 (4-wide SSE2), these functions are compiled
// for the wider instruction sets and vectorised by the compiler (plain multiplies and adds: contraction is off, and
// no FMA is ever formed, because the Swift code has none).
#pragma STDC FP_CONTRACT OFF
#include "CKernels.h"
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))

#define INLINE __attribute__((always_inline)) static inline

/// Swift's `max(x, y)` and `min(x, y)` for Float: `y >= x ? y : x`, `y < x ? y : x` (NaN in x goes through).
INLINE float swift_max(float x, float y) { return y >= x ? y : x; }
INLINE float swift_min(float x, float y) { return y < x ? y : x; }

INLINE uint32_t bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
INLINE float from_bits(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/// `VectorKernels.exp`, step for step.
INLINE float vexp(float x) {
    const float xc = swift_min(swift_max(x, -87.0f), 88.0f);
    const float magic = 12582912.0f;
    const float t = xc * 1.442695041f + magic;
    const float k = t - magic;
    const float r = (xc - k * 0.693145752f) - k * 1.42860677e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const float scale = from_bits((bits(t) - bits(magic) + 127u) << 23);
    return p * scale;
}

static const float gelu_c = 0.7978845608028654f;  // √(2/π)

/// `GELU.forward`'s loop body: th = fastTanh(c·(v + 0.044715·v·v·v)), y = 0.5·v·(1 + th).
#define GELU_FORWARD_BODY                                                        \
    for (long i = 0; i < count; i++) {                                           \
        const float v = x[i];                                                    \
        const float u = gelu_c * (v + 0.044715f * v * v * v);                    \
        const float w = swift_min(swift_max(u, -15.0f), 15.0f);                  \
        const float th = 1.0f - 2.0f / (vexp(2.0f * w) + 1.0f);                  \
        tanh_out[i] = th;                                                        \
        y[i] = 0.5f * v * (1.0f + th);                                           \
    }

/// `GELU.backward`'s loop body: dx += dy · (0.5·(1 + t) + 0.5·v·(1 − t²)·c·(1 + 3·0.044715·v²)).
#define GELU_BACKWARD_BODY                                                       \
    for (long i = 0; i < count; i++) {                                           \
        const float v = x[i], t = tanh_in[i];                                    \
        const float du = gelu_c * (1.0f + 3.0f * 0.044715f * v * v);             \
        dx[i] += dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);   \
    }

/// Both functions of one instruction set: the loops above compiled for the target `isa`.
#define GELU_KERNELS(name, isa)                                                                              \
    __attribute__((target(isa))) void attnres_##name##_gelu_forward(const float *restrict x, long count,     \
                                                                       float *restrict y,                       \
                                                                       float *restrict tanh_out) {              \
        GELU_FORWARD_BODY                                                                                       \
    }                                                                                                           \
    __attribute__((target(isa))) void attnres_##name##_gelu_backward(const float *restrict dy,               \
                                                                        const float *restrict x,                \
                                                                        const float *restrict tanh_in,          \
                                                                        long count, float *restrict dx) {       \
        GELU_BACKWARD_BODY                                                                                      \
    }

GELU_KERNELS(avx512, "avx512f")
GELU_KERNELS(avx2, "avx2,fma")

#else  // not x86-64: the Swift loops are the only ones; these are never called.

void attnres_avx512_gelu_forward(const float *x, long count, float *y, float *tanh_out) { (void)x; (void)count; (void)y; (void)tanh_out; }
void attnres_avx512_gelu_backward(const float *dy, const float *x, const float *tanh_in, long count, float *dx) {
    (void)dy; (void)x; (void)tanh_in; (void)count; (void)dx;
}
void attnres_avx2_gelu_forward(const float *x, long count, float *y, float *tanh_out) { (void)x; (void)count; (void)y; (void)tanh_out; }
void attnres_avx2_gelu_backward(const float *dy, const float *x, const float *tanh_in, long count, float *dx) {
    (void)dy; (void)x; (void)tanh_in; (void)count; (void)dx;
}
#endif
