// Decode attention: one query position against the S cached positions, head by head (a product of 1 x Dh by
// Dh x S is too thin for a BLAS call to pay). Scores, the shifted exponentials (vector.c's kernel, bit-identical to
// Float.fastExp) and the weighted sum of the values, with AVX-512 dot products where the head dimension allows.
#include "moe_blas.h"

#include <math.h>

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

void moe_attention_decode(const float *q, const float *k, const float *v, float *out, long s, long hq, long hkv, long dh,
                          float scale, const float *sinks, long h0, long h1, float *scratch) {
    long group = hq / hkv, ld = hkv * dh;
    int wide = 0;
#if defined(__x86_64__)
    wide = moe_cpu()->avx512f && dh % 16 == 0;
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
