// The vector FMA peak of one core, measured without any BLAS: 16 independent accumulators (enough to cover
// the FMA latency times the FMA ports of any current x86 core) updated in registers, nothing read from memory.
// A BLAS-independent ceiling: if even the best BLAS kernel runs far below it, the benchmark says so.
#include "moe_blas.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define ACC16(T, SET) T a0 = SET, a1 = SET, a2 = SET, a3 = SET, a4 = SET, a5 = SET, a6 = SET, a7 = SET, \
    a8 = SET, a9 = SET, a10 = SET, a11 = SET, a12 = SET, a13 = SET, a14 = SET, a15 = SET
#define STEP16(OP) a0 = OP(a0); a1 = OP(a1); a2 = OP(a2); a3 = OP(a3); a4 = OP(a4); a5 = OP(a5); a6 = OP(a6); \
    a7 = OP(a7); a8 = OP(a8); a9 = OP(a9); a10 = OP(a10); a11 = OP(a11); a12 = OP(a12); a13 = OP(a13); a14 = OP(a14); a15 = OP(a15)
#define SUM16(ADD) ADD(ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7))), \
    ADD(ADD(ADD(a8, a9), ADD(a10, a11)), ADD(ADD(a12, a13), ADD(a14, a15))))

static volatile float sink;

__attribute__((target("avx512f"))) static double probe512(long iters) {
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    ACC16(__m512, _mm512_set1_ps(1.0f));
#define F512(x) _mm512_fmadd_ps(x, m, c)
    for (long i = 0; i < iters; i++) { STEP16(F512); }
    sink = _mm512_reduce_add_ps(SUM16(_mm512_add_ps));
    return (double)iters * 16 * 16 * 2;
}

// Below AVX-512 there are 16 vector registers: 12 accumulators and the two constants fit without spilling
// (16 accumulators did not, and the probe measured the spills: half the FMA rate).
#define ACC12(T, SET) T a0 = SET, a1 = SET, a2 = SET, a3 = SET, a4 = SET, a5 = SET, a6 = SET, a7 = SET, \
    a8 = SET, a9 = SET, a10 = SET, a11 = SET
#define STEP12(OP) a0 = OP(a0); a1 = OP(a1); a2 = OP(a2); a3 = OP(a3); a4 = OP(a4); a5 = OP(a5); a6 = OP(a6); \
    a7 = OP(a7); a8 = OP(a8); a9 = OP(a9); a10 = OP(a10); a11 = OP(a11)
#define SUM12(ADD) ADD(ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7))), ADD(ADD(a8, a9), ADD(a10, a11)))

__attribute__((target("avx2,fma"))) static double probe256(long iters) {
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    ACC12(__m256, _mm256_set1_ps(1.0f));
#define F256(x) _mm256_fmadd_ps(x, m, c)
    for (long i = 0; i < iters; i++) { STEP12(F256); }
    float out[8];
    _mm256_storeu_ps(out, SUM12(_mm256_add_ps));
    sink = out[0] + out[7];
    return (double)iters * 12 * 8 * 2;
}

// Without FMA the peak is multiplies and adds in separate pipes: six multiply chains and six add chains,
// independent of each other (a multiply feeding an add would measure their latency instead). One FLOP per lane
// per operation. The multiplier keeps values within a few e-folds of 1 over a probe's ~1e8 iterations.
#define MUL_ADD_12(MUL, ADD, m, c) \
    a0 = MUL(a0, m); a1 = MUL(a1, m); a2 = MUL(a2, m); a3 = MUL(a3, m); a4 = MUL(a4, m); a5 = MUL(a5, m); \
    a6 = ADD(a6, c); a7 = ADD(a7, c); a8 = ADD(a8, c); a9 = ADD(a9, c); a10 = ADD(a10, c); a11 = ADD(a11, c)

__attribute__((target("avx"))) static double probeAVX(long iters) {
    const __m256 m = _mm256_set1_ps(0.99999994f), c = _mm256_set1_ps(1e-7f);
    ACC12(__m256, _mm256_set1_ps(1.0f));
    for (long i = 0; i < iters; i++) { MUL_ADD_12(_mm256_mul_ps, _mm256_add_ps, m, c); }
    float out[8];
    _mm256_storeu_ps(out, SUM12(_mm256_add_ps));
    sink = out[0] + out[7];
    return (double)iters * 12 * 8;
}

static double probe128(long iters) {
    const __m128 m = _mm_set1_ps(0.99999994f), c = _mm_set1_ps(1e-7f);
    ACC12(__m128, _mm_set1_ps(1.0f));
    for (long i = 0; i < iters; i++) { MUL_ADD_12(_mm_mul_ps, _mm_add_ps, m, c); }
    float out[4];
    _mm_storeu_ps(out, SUM12(_mm_add_ps));
    sink = out[0] + out[3];
    return (double)iters * 12 * 4;
}

// The peaks of the narrow dot-product instructions, the ceilings of the prompt products that run in them: AVX-512
// VNNI's vpdpbusd (64 u8 x s8 multiply-adds into 16 int32 lanes) and AVX512_BF16's vdpbf16ps (32 BF16 pairs
// into 16 f32 lanes). 16 independent accumulators, as the FMA probe; operations counted as FLOPs are (2 per
// multiply-add), so a rate compares with sgemm's directly.
__attribute__((target("avx512f,avx512vnni"))) static double vnni512(long iters) {
    const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
    ACC16(__m512i, _mm512_setzero_si512());
#define DPBUSD(x) _mm512_dpbusd_epi32(x, u, s)
    for (long i = 0; i < iters; i++) { STEP16(DPBUSD); }
    sink = (float)_mm512_reduce_add_epi32(SUM16(_mm512_add_epi32));
    return (double)iters * 16 * 64 * 2;
}

__attribute__((target("avx512f,avx512bf16"))) static double bf16dot512(long iters) {
    const __m512bh u = (__m512bh)_mm512_set1_epi16(0x3f80), s = (__m512bh)_mm512_set1_epi16((short)0xb380);  // 1, -6e-8
    ACC16(__m512, _mm512_set1_ps(1.0f));
#define DPBF16(x) _mm512_dpbf16_ps(x, u, s)
    for (long i = 0; i < iters; i++) { STEP16(DPBF16); }
    sink = _mm512_reduce_add_ps(SUM16(_mm512_add_ps));
    return (double)iters * 16 * 32 * 2;
}

// The read probe: the maximum of x[0..<n) read as `streams` equal contiguous parts advanced together, 128 bytes of
// each per step. On the Intel Xeon (family 6 model 207), 2 threads over 256 MB handed out in 4 MB chunks as the
// probe does, six runs: one stream a chunk read 14.4-19.2 GB/s, four 22.2-26.8, eight 22.7-25.5 (each half read
// whole, five runs: one 22.7-24.5, four 21.1-30.6). A core's one sequential stream does not reach what the memory
// delivers, and a decode kernel reading four rows at once gets more than it.
__attribute__((target("avx512f"))) static float read_streams512(const float *x, long n, int streams) {
    long part = n / streams / 32 * 32;
    __m512 m[8];
    for (int s = 0; s < 8; s++) m[s] = _mm512_set1_ps(-INFINITY);
    for (long c = 0; c < part; c += 32) {
        for (int s = 0; s < streams; s++) {
            m[s] = _mm512_max_ps(m[s], _mm512_loadu_ps(x + s * part + c));
            m[s] = _mm512_max_ps(m[s], _mm512_loadu_ps(x + s * part + c + 16));
        }
    }
    float out = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(_mm512_max_ps(m[0], m[1]), _mm512_max_ps(m[2], m[3])),
                                                   _mm512_max_ps(_mm512_max_ps(m[4], m[5]), _mm512_max_ps(m[6], m[7]))));
    if (streams * part < n) {
        float rest = moe_max_f32(x + streams * part, n - streams * part);
        out = rest > out ? rest : out;
    }
    return out;
}

// Without AVX-512, one stream (the vectorized maximum).
float moe_read_streams_f32(const float *x, long n, int streams) {
    if (streams < 1) streams = 1;
    if (streams > 8) streams = 8;
    return moe_cpu()->avx512f ? read_streams512(x, n, streams) : moe_max_f32(x, n);
}

double moe_int8_probe(long iterations) {
    const moe_cpu_t *cpu = moe_cpu();
    return cpu->avx512f && cpu->avx512vnni ? vnni512(iterations) : 0;
}

double moe_bf16_probe(long iterations) {
    const moe_cpu_t *cpu = moe_cpu();
    return cpu->avx512f && cpu->avx512bf16 ? bf16dot512(iterations) : 0;
}

double moe_fma_probe(long iterations) {
    const moe_cpu_t *cpu = moe_cpu();
    switch (cpu->isa) {
    case MOE_ISA_AVX512: return probe512(iterations);
    case MOE_ISA_AVX2: return probe256(iterations);
    case MOE_ISA_AVX: return probeAVX(iterations);
    default: return probe128(iterations);
    }
}
#else
double moe_fma_probe(long iterations) {
    float a[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    for (long i = 0; i < iterations; i++)
        for (int j = 0; j < 16; j++) a[j] = a[j] * 0.999999f + 1e-7f;
    volatile float s = a[0] + a[15];
    (void)s;
    return (double)iterations * 16 * 2;
}
double moe_int8_probe(long iterations) { (void)iterations; return 0; }
float moe_read_streams_f32(const float *x, long n, int streams) {
    (void)streams;
    return moe_max_f32(x, n);
}
double moe_bf16_probe(long iterations) { (void)iterations; return 0; }
#endif
