// Decode attention: one query position against the S cached positions, head by head (a product of 1 x Dh by
// Dh x S is too thin for a BLAS call to pay). Scores, the shifted exponentials (vector.c's kernel, bit-identical to
// Float.fastExp) and the weighted sum of the values, with AVX-512 dot products where the head dimension allows.
#include "moe_blas.h"

#include <math.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f"))) static float dot512(const float *a, const float *b, long n) {
    __m512 acc = _mm512_setzero_ps();
    for (long i = 0; i < n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx512f"))) static void axpy512(float *y, const float *x, float a, long n) {
    __m512 av = _mm512_set1_ps(a);
    for (long i = 0; i < n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
}
#endif

static float dot_portable(const float *a, const float *b, long n) {
    float s = 0;
    for (long i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_portable(float *y, const float *x, float a, long n) {
    for (long i = 0; i < n; i++) y[i] += a * x[i];
}

#if defined(__x86_64__)
// One head with dh = 64 in AVX-512 registers: four multiply-adds and a reduction per key for the scores, and the
// output's four vectors kept in registers across all keys (no load and store of it per key, no call per key: the
// helpers above are not inlined into code without the target attribute). 2-3x the per-key loop at depth 100-500.
// Written once for f32 caches and once for f16 ones, whose rows are widened as they are loaded (so an f16 cache
// gives the f32 kernel's result on the widened values, bit for bit).
//
// Each loop prefetches the row `attention_ahead` positions ahead (a head's 64 values, 2 cache lines in f16, 4 in
// f32): a head's rows are 128-256 bytes every hkv x dh values, so the hardware prefetcher barely follows them, and
// after the weights' passes the cache is cold. One thread over M1's 8 layers of an f16 cache (16 heads, 8 KV
// heads), a C loop with 4 MB of other reads between layers, medians of 60: at 576 positions 2548 us a token
// without, 1949 with 4 ahead, 1641 with 8, 1364 with 16; in a second run 1046-1122 us for 16 to 64 ahead; in a
// third 1513 without and 849 with 32. At 64 positions 145 without and 111 with 16; at 16 positions 36 and 38 (32).
// In `moe generate` of q4 at depths 512-590, token time 0.967 and 0.968 of that without (medians of 6
// alternating pairs each).
// `MOE_ATTENTION_PREFETCH=ROWS` overrides the distance (0: none).
static long attention_ahead = 32;
// (The address is formed as an integer: it may lie past the cache's end, where a prefetch is dropped.)
#define PREFETCH_ROW(row, KV, ld)                                                                                       \
    do {                                                                                                                \
        uintptr_t a_ = (uintptr_t)(row) + (uintptr_t)(attention_ahead * (ld) * (long)sizeof(KV));                      \
        for (long b_ = 0; b_ < (long)sizeof(KV) * 64; b_ += 64) _mm_prefetch((const char *)(a_ + b_), _MM_HINT_T0);     \
    } while (0)
#define LOAD_F32(p) _mm512_loadu_ps(p)
#define LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define HEAD64(NAME, KV, LOAD)                                                                                          \
    __attribute__((target("avx512f,f16c"))) static void NAME(const float *qh, const KV *kg, const KV *vg, long ld, long s, \
                                                             float scale, const float *sink, float *o, float *scratch) { \
        __m512 q0 = _mm512_loadu_ps(qh), q1 = _mm512_loadu_ps(qh + 16), q2 = _mm512_loadu_ps(qh + 32), q3 = _mm512_loadu_ps(qh + 48); \
        float m = -INFINITY;                                                                                            \
        for (long j = 0; j < s; j++) {                                                                                  \
            const KV *kj = kg + j * ld;                                                                                 \
            PREFETCH_ROW(kj, KV, ld);                                                                                   \
            __m512 a = _mm512_mul_ps(q0, LOAD(kj));                                                                     \
            __m512 b = _mm512_mul_ps(q1, LOAD(kj + 16));                                                                \
            a = _mm512_fmadd_ps(q2, LOAD(kj + 32), a);                                                                  \
            b = _mm512_fmadd_ps(q3, LOAD(kj + 48), b);                                                                  \
            float d = _mm512_reduce_add_ps(_mm512_add_ps(a, b)) * scale;                                                \
            scratch[j] = d;                                                                                             \
            if (d > m) m = d;                                                                                           \
        }                                                                                                               \
        if (sink && *sink > m) m = *sink;                                                                               \
        float sum = moe_exp_shifted_f32(scratch, scratch, s, m);                                                        \
        if (sink) sum += expf(*sink - m);                                                                               \
        __m512 o0 = _mm512_setzero_ps(), o1 = _mm512_setzero_ps(), o2 = _mm512_setzero_ps(), o3 = _mm512_setzero_ps(); \
        for (long j = 0; j < s; j++) {                                                                                  \
            const KV *vj = vg + j * ld;                                                                                 \
            PREFETCH_ROW(vj, KV, ld);                                                                                   \
            __m512 p = _mm512_set1_ps(scratch[j]);                                                                      \
            o0 = _mm512_fmadd_ps(p, LOAD(vj), o0);                                                                      \
            o1 = _mm512_fmadd_ps(p, LOAD(vj + 16), o1);                                                                 \
            o2 = _mm512_fmadd_ps(p, LOAD(vj + 32), o2);                                                                 \
            o3 = _mm512_fmadd_ps(p, LOAD(vj + 48), o3);                                                                 \
        }                                                                                                               \
        __m512 inv = _mm512_set1_ps(1.0f / sum);                                                                        \
        _mm512_storeu_ps(o, _mm512_mul_ps(o0, inv));                                                                    \
        _mm512_storeu_ps(o + 16, _mm512_mul_ps(o1, inv));                                                               \
        _mm512_storeu_ps(o + 32, _mm512_mul_ps(o2, inv));                                                               \
        _mm512_storeu_ps(o + 48, _mm512_mul_ps(o3, inv));                                                               \
    }
HEAD64(head64_512, float, LOAD_F32)
HEAD64(head64_f16_512, uint16_t, LOAD_F16)
#endif

__attribute__((constructor)) static void choose_attention_prefetch(void) {
#if defined(__x86_64__)
    moe_env_distance("MOE_ATTENTION_PREFETCH", 4096, &attention_ahead);
#endif
}

static int f16_register_path(long dh) {
#if defined(__x86_64__)
    return moe_cpu()->avx512f && moe_cpu()->f16c && dh == 64;
#else
    (void)dh;
    return 0;
#endif
}

long moe_attention_decode_f16_scratch(long s, long dh) { return f16_register_path(dh) ? s : s + 2 * s * dh; }

void moe_attention_decode_f16(const float *q, const uint16_t *k, const uint16_t *v, float *out, long s, long hq, long hkv, long dh,
                              float scale, const float *sinks, long h0, long h1, float *scratch) {
    long group = hq / hkv, ld = hkv * dh;
#if defined(__x86_64__)
    if (f16_register_path(dh)) {
        for (long h = h0; h < h1; h++)
            head64_f16_512(q + h * dh, k + (h / group) * dh, v + (h / group) * dh, ld, s, scale, sinks ? sinks + h : NULL, out + h * dh, scratch);
        return;
    }
#endif
    // Other head sizes: the f32 path on each head's keys and values widened into scratch, after its s scores
    // (moe_attention_decode_f16_scratch floats in all).
    float *kw = scratch + s, *vw = kw + s * dh;
    for (long h = h0; h < h1; h++) {
        long g = h / group;
        if (h == h0 || g != (h - 1) / group) {
            for (long j = 0; j < s; j++) {
                moe_widen_f16(k + j * ld + g * dh, kw + j * dh, dh);
                moe_widen_f16(v + j * ld + g * dh, vw + j * dh, dh);
            }
        }
        // One head as a query of 1 head against 1 KV head with row stride dh.
        moe_attention_decode(q + h * dh, kw, vw, out + h * dh, s, 1, 1, dh, scale, sinks ? sinks + h : NULL, 0, 1, scratch);
    }
}

void moe_attention_decode(const float *q, const float *k, const float *v, float *out, long s, long hq, long hkv, long dh,
                          float scale, const float *sinks, long h0, long h1, float *scratch) {
    long group = hq / hkv, ld = hkv * dh;
    int wide = 0;
#if defined(__x86_64__)
    wide = moe_cpu()->avx512f && dh % 16 == 0;
    if (wide && dh == 64) {
        for (long h = h0; h < h1; h++)
            head64_512(q + h * dh, k + (h / group) * dh, v + (h / group) * dh, ld, s, scale, sinks ? sinks + h : NULL, out + h * dh, scratch);
        return;
    }
#endif
    for (long h = h0; h < h1; h++) {
        const float *qh = q + h * dh, *kg = k + (h / group) * dh, *vg = v + (h / group) * dh;
        float m = -INFINITY;
        for (long j = 0; j < s; j++) {
#if defined(__x86_64__)
            float d = wide ? dot512(qh, kg + j * ld, dh) : dot_portable(qh, kg + j * ld, dh);
#else
            float d = dot_portable(qh, kg + j * ld, dh);
#endif
            scratch[j] = d * scale;
            if (scratch[j] > m) m = scratch[j];
        }
        // A sink (gpt-oss) joins the denominator only.
        if (sinks && sinks[h] > m) m = sinks[h];
        float sum = moe_exp_shifted_f32(scratch, scratch, s, m);
        if (sinks) sum += expf(sinks[h] - m);
        float *o = out + h * dh;
        for (long i = 0; i < dh; i++) o[i] = 0;
        for (long j = 0; j < s; j++) {
#if defined(__x86_64__)
            if (wide) { axpy512(o, vg + j * ld, scratch[j], dh); continue; }
#endif
            axpy_portable(o, vg + j * ld, scratch[j], dh);
        }
        float inv = 1.0f / sum;
        for (long i = 0; i < dh; i++) o[i] *= inv;
    }
}
