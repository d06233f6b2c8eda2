// Float kernels Swift does not vectorize here: the row maximum (a compare-select reduction), the shifted
// exponential with its sum (Swift's scalar Float.fastExp loop ran at about 2 cycles per element), AdamW's update
// (a square root per element) and a scale with streaming stores. Each has an AVX-512 and an AVX2 version, chosen
// once at load from CPUID, and a portable one.
//
// The exponential is Float.fastExp of MoETensor/TensorScalar.swift, operation for operation (Cephes' expf
// polynomial, separate multiplies and adds, no contraction), so every y[j] is bit-identical to it.
#include "moe_blas.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float exp_scalar(float x) {
    float xc = x < -87.33654f ? -87.33654f : x;  // Swift.max(x, lo) keeps a NaN x
    if (x != x) xc = x;
    xc = xc > 88.72283f ? 88.72283f : xc;
    float t = xc * 1.442695041f + 12582912.0f;
    float n = t - 12582912.0f;
    int32_t tb;
    memcpy(&tb, &t, 4);
    int32_t ni = tb - 0x4B400000;
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float er = p * r * r + r + 1;
    int32_t half = ni >> 1;
    uint32_t b1 = (uint32_t)(half + 127) << 23, b2 = (uint32_t)(ni - half + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    float y = er * s1 * s2;
    return x < -87.33654f ? 0 : y;
}

static float max_portable(const float *x, long n) {
    float m = -INFINITY;
    for (long i = 0; i < n; i++) if (x[i] > m) m = x[i];
    return m;
}

static float exp_portable(const float *x, float *y, long n, float shift) {
    float s = 0;
    for (long i = 0; i < n; i++) { y[i] = exp_scalar(x[i] - shift); s += y[i]; }
    return s;
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f"))) static float max512(const float *x, long n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    long i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(_mm512_loadu_ps(x + i), m);  // a NaN element keeps m
    float r = _mm512_reduce_max_ps(m);
    for (; i < n; i++) if (x[i] > r) r = x[i];
    return r;
}

__attribute__((target("avx2"))) static float max256(const float *x, long n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
    float r = -INFINITY;
    for (int j = 0; j < 8; j++) if (lanes[j] > r) r = lanes[j];
    for (; i < n; i++) if (x[i] > r) r = x[i];
    return r;
}

#define EXP_BODY(V, SET1, ADD, SUB, MUL, MAX, MIN, CASTI, CASTF, SUBI, ADDI, SRAI, SLLI, SET1I, CMPLT_BLEND)      \
    V xc = MIN(SET1(88.72283f), MAX(SET1(-87.33654f), x)); /* max(lo, x) and min(hi, xc) return a NaN x */     \
    V t = ADD(MUL(xc, SET1(1.442695041f)), SET1(12582912.0f));                                                   \
    V nn = SUB(t, SET1(12582912.0f));                                                                           \
    VI ni = SUBI(CASTI(t), SET1I(0x4B400000));                                                                  \
    V r = ADD(SUB(xc, MUL(nn, SET1(0.693359375f))), MUL(nn, SET1(2.12194440e-4f)));                             \
    V p = SET1(1.9875691500e-4f);                                                                               \
    p = ADD(MUL(p, r), SET1(1.3981999507e-3f));                                                                 \
    p = ADD(MUL(p, r), SET1(8.3334519073e-3f));                                                                 \
    p = ADD(MUL(p, r), SET1(4.1665795894e-2f));                                                                 \
    p = ADD(MUL(p, r), SET1(1.6666665459e-1f));                                                                 \
    p = ADD(MUL(p, r), SET1(5.0000001201e-1f));                                                                 \
    V er = ADD(ADD(MUL(MUL(p, r), r), r), SET1(1.0f));                                                          \
    VI half = SRAI(ni, 1);                                                                                      \
    V s1 = CASTF(SLLI(ADDI(half, SET1I(127)), 23));                                                             \
    V s2 = CASTF(SLLI(ADDI(SUBI(ni, half), SET1I(127)), 23));                                                   \
    V y = MUL(MUL(er, s1), s2);                                                                                 \
    y = CMPLT_BLEND(x, y);

__attribute__((target("avx512f"))) static inline __m512 exp512(__m512 x) {
    typedef __m512 V;
    typedef __m512i VI;
#define BLEND512(x, y) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_LT_OQ), y, _mm512_setzero_ps())
    EXP_BODY(V, _mm512_set1_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps, _mm512_max_ps, _mm512_min_ps, _mm512_castps_si512,
             _mm512_castsi512_ps, _mm512_sub_epi32, _mm512_add_epi32, _mm512_srai_epi32, _mm512_slli_epi32, _mm512_set1_epi32, BLEND512)
    return y;
}

__attribute__((target("avx2"))) static inline __m256 exp256(__m256 x) {
    typedef __m256 V;
    typedef __m256i VI;
#define BLEND256(x, y) _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ))
    EXP_BODY(V, _mm256_set1_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps, _mm256_max_ps, _mm256_min_ps, _mm256_castps_si256,
             _mm256_castsi256_ps, _mm256_sub_epi32, _mm256_add_epi32, _mm256_srai_epi32, _mm256_slli_epi32, _mm256_set1_epi32, BLEND256)
    return y;
}

__attribute__((target("avx512f"))) static float exp_shift512(const float *x, float *y, long n, float shift) {
    __m512 acc = _mm512_setzero_ps(), sh = _mm512_set1_ps(shift);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), sh));
        _mm512_storeu_ps(y + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    float s = _mm512_reduce_add_ps(acc);
    for (; i < n; i++) { y[i] = exp_scalar(x[i] - shift); s += y[i]; }
    return s;
}

__attribute__((target("avx2"))) static float exp_shift256(const float *x, float *y, long n, float shift) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, sh = _mm256_set1_ps(shift);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 e0 = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
        __m256 e1 = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), sh));
        _mm256_storeu_ps(y + i, e0);
        _mm256_storeu_ps(y + i + 8, e1);
        a0 = _mm256_add_ps(a0, e0);
        a1 = _mm256_add_ps(a1, e1);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(a0, a1));
    float s = 0;
    for (int j = 0; j < 8; j++) s += lanes[j];
    for (; i < n; i++) { y[i] = exp_scalar(x[i] - shift); s += y[i]; }
    return s;
}

__attribute__((target("avx512f"))) static void swiglu512(const float *g, const float *u, float *out, long n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(g + i);
        __m512 e = exp512(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), sign)));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++) out[i] = g[i] / (1 + exp_scalar(-g[i])) * u[i];
}
#endif

static void swiglu_portable(const float *g, const float *u, float *out, long n) {
    for (long i = 0; i < n; i++) out[i] = g[i] / (1 + exp_scalar(-g[i])) * u[i];
}

// ---- AdamW ------------------------------------------------------------------------------------------------
// p = p decay; m = b1 m + (1 - b1) g; v = b2 v + ((1 - b2) g) g; p = p - (lr (m / c1)) / (sqrt(v / c2) + eps),
// in that order, as MoETraining's AdamW writes it (Swift's SIMD square root runs lane by lane, so the update
// is here). Division and square root are correctly rounded, so each lane equals the scalar result.

static void adamw_portable(float *p, float *m, float *v, const float *g, long n, const float k[8]) {
    const float decay = k[0], lr = k[1], b1 = k[2], b2 = k[3], c1 = k[4], c2 = k[5], eps = k[6];
    const float a1 = 1 - b1, a2 = 1 - b2;
    for (long i = 0; i < n; i++) {
        float pi = p[i] * decay;
        float mi = b1 * m[i] + a1 * g[i];
        float vi = b2 * v[i] + a2 * g[i] * g[i];
        pi = pi - lr * (mi / c1) / (sqrtf(vi / c2) + eps);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

#if defined(__x86_64__)
#define ADAMW_BODY(V, W, LOAD, STORE, SET1, ADD, SUB, MUL, DIV, SQRT)                                               \
    const V decay = SET1(k[0]), lr = SET1(k[1]), b1 = SET1(k[2]), b2 = SET1(k[3]), c1 = SET1(k[4]), c2 = SET1(k[5]), \
            eps = SET1(k[6]), a1 = SET1(1 - k[2]), a2 = SET1(1 - k[3]);                                          \
    long i = 0;                                                                                                 \
    for (; i + W <= n; i += W) {                                                                                \
        V gi = LOAD(g + i);                                                                                     \
        V pi = MUL(LOAD(p + i), decay);                                                                         \
        V mi = ADD(MUL(b1, LOAD(m + i)), MUL(a1, gi));                                                          \
        V vi = ADD(MUL(b2, LOAD(v + i)), MUL(MUL(a2, gi), gi));                                                 \
        pi = SUB(pi, DIV(MUL(lr, DIV(mi, c1)), ADD(SQRT(DIV(vi, c2)), eps)));                                    \
        STORE(p + i, pi);                                                                                       \
        STORE(m + i, mi);                                                                                       \
        STORE(v + i, vi);                                                                                       \
    }                                                                                                           \
    adamw_portable(p + i, m + i, v + i, g + i, n - i, k);

__attribute__((target("avx512f"))) static void adamw512(float *p, float *m, float *v, const float *g, long n, const float k[8]) {
    ADAMW_BODY(__m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps,
               _mm512_div_ps, _mm512_sqrt_ps)
}

__attribute__((target("avx2"))) static void adamw256(float *p, float *m, float *v, const float *g, long n, const float k[8]) {
    ADAMW_BODY(__m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps,
               _mm256_div_ps, _mm256_sqrt_ps)
}
#endif

static void (*adamw_impl)(float *, float *, float *, const float *, long, const float[8]) = adamw_portable;

// ---- y = s x with streaming stores -----------------------------------------------------------------------------
// For outputs too large for any cache (a softmax over a big tensor): ordinary stores first read each output line
// for ownership, a third memory transfer per element; non-temporal stores write it without reading, as memcpy does
// for large copies. Falls back to ordinary stores when y is not 64-byte aligned.
static void scale_portable(const float *x, float *y, long n, float s) {
    for (long i = 0; i < n; i++) y[i] = x[i] * s;
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void scale_stream512(const float *x, float *y, long n, float s) {
    if (((uintptr_t)y & 63) != 0) { scale_portable(x, y, n, s); return; }
    __m512 v = _mm512_set1_ps(s);
    long i = 0;
    for (; i + 16 <= n; i += 16) _mm512_stream_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), v));
    for (; i < n; i++) y[i] = x[i] * s;
    _mm_sfence();
}

__attribute__((target("avx2"))) static void scale_stream256(const float *x, float *y, long n, float s) {
    if (((uintptr_t)y & 31) != 0) { scale_portable(x, y, n, s); return; }
    __m256 v = _mm256_set1_ps(s);
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), v));
    for (; i < n; i++) y[i] = x[i] * s;
    _mm_sfence();
}
#endif

static void (*scale_stream_impl)(const float *, float *, long, float) = scale_portable;

static float (*max_impl)(const float *, long) = max_portable;
static float (*exp_impl)(const float *, float *, long, float) = exp_portable;
static void (*swiglu_impl)(const float *, const float *, float *, long) = swiglu_portable;

__attribute__((constructor)) static void choose_vector_kernels(void) {
#if defined(__x86_64__)
    const moe_cpu_t *cpu = moe_cpu();
    if (cpu->isa >= MOE_ISA_AVX512) {
        max_impl = max512;
        exp_impl = exp_shift512;
        swiglu_impl = swiglu512;
        adamw_impl = adamw512;
        scale_stream_impl = scale_stream512;
    } else if (cpu->isa >= MOE_ISA_AVX2) {
        scale_stream_impl = scale_stream256;
        max_impl = max256;
        exp_impl = exp_shift256;
        adamw_impl = adamw256;
    }
#endif
}

float moe_max_f32(const float *x, long n) { return max_impl(x, n); }
float moe_exp_shifted_f32(const float *x, float *y, long n, float shift) { return exp_impl(x, y, n, shift); }
float moe_max_f32_portable(const float *x, long n) { return max_portable(x, n); }
float moe_exp_shifted_f32_portable(const float *x, float *y, long n, float shift) { return exp_portable(x, y, n, shift); }
void moe_adamw_f32(float *p, float *m, float *v, const float *g, long n, float decay, float lr, float b1, float b2, float c1,
                   float c2, float eps) {
    const float k[8] = {decay, lr, b1, b2, c1, c2, eps, 0};
    adamw_impl(p, m, v, g, n, k);
}
void moe_adamw_f32_portable(float *p, float *m, float *v, const float *g, long n, float decay, float lr, float b1, float b2,
                            float c1, float c2, float eps) {
    const float k[8] = {decay, lr, b1, b2, c1, c2, eps, 0};
    adamw_portable(p, m, v, g, n, k);
}
void moe_scale_stream_f32(const float *x, float *y, long n, float s) { scale_stream_impl(x, y, n, s); }
void moe_swiglu_f32(const float *g, const float *u, float *out, long n) { swiglu_impl(g, u, out, n); }
void moe_swiglu_f32_portable(const float *g, const float *u, float *out, long n) { swiglu_portable(g, u, out, n); }
