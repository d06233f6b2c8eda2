// Prefill's products on q4x8 and q8 weights: Y[T, rows] = X W^T with X's rows quantized per block as decode
// quantizes them (Q8_0-style codes xq and scales xd, per 64 for q4x8 with the scaled code sums xs for its minimums,
// per 32 for q8), the weights' codes multiplied as integers by AVX-512 VNNI. No BLAS does this: its products take
// f32 or BF16, and a q4 matrix widened to f32 for sgemm runs at sgemm's rate (on an Intel Xeon with AVX-512 VNNI,
// 146-151 GFLOP/s on M1's expert shapes, 128 tokens, two cores), while these integer products ran 211-242 on the
// same cores in the same process (q4x8; medians of 30 alternating passes over an expert's three matrices).
//
// Sixteen rows at a time are first rewritten, into a buffer that stays in L1/L2, as one 64-byte vector per four
// columns: row r's four codes of those columns at bytes 4r..4r+3, as unsigned bytes (q8's offset by 128). One VNNI
// instruction against the token's four activation codes (broadcast) then adds four products to each of the
// sixteen rows' lanes. q4's codes are packed two to a byte, so a q4x8 vector holds columns 4q..4q+3 of a group
// of 64 in its low nibbles and 32+4q.. in its high ones. A block's (q8: 32 columns, q4: 64) instructions leave,
// per row, its integer dot product, scaled once by s_row x_d (q4: offset by m_row x_s; q8: less 128 times the
// token's code sum first). Each rewritten block serves eight tokens per pass over its codes, and all T tokens
// before the next block.
#include "moe_blas.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Rows row0 ..< row0 + 16 of the q4x8 matrix w rewritten (rows at or past `end` as zeros): codes [cols/64][8][64]
// bytes, then scales and minimums [cols/64][16] as f32.
static void pack16_q4x8(const uint8_t *w, long row0, long end, long cols, uint8_t *codes, float *sc, float *mn) {
    long ng = cols / 64, rb = moe_q4_row_bytes(cols);
    for (long g = 0; g < ng; g++)
        for (int r = 0; r < 16; r++) {
            long row = row0 + r;
            if (row >= end) {
                for (int q = 0; q < 8; q++) memset(codes + (g * 8 + q) * 64 + 4 * r, 0, 4);
                sc[g * 16 + r] = 0;
                mn[g * 16 + r] = 0;
                continue;
            }
            const uint8_t *c = w + (row / 8) * 8 * rb + g * 288;
            for (int q = 0; q < 8; q++) memcpy(codes + (g * 8 + q) * 64 + 4 * r, c + 32 * (row % 8) + 4 * q, 4);
            uint16_t h[2];
            memcpy(h, c + 256 + 4 * (row % 8), 4);
            sc[g * 16 + r] = moe_f16_to_f32(h[0]);
            mn[g * 16 + r] = moe_f16_to_f32(h[1]);
        }
}

// Rows row0 ..< row0 + 16 of the q8 matrix w rewritten (rows at or past `end` as zeros): codes [cols/32][8][64]
// bytes, offset by 128 to unsigned, then scales [cols/32][16] as f32.
static void pack16_q8(const uint8_t *w, long row0, long end, long cols, uint8_t *codes, float *sc) {
    long nb = cols / 32, rb = moe_q8_row_bytes(cols);
    for (int r = 0; r < 16; r++) {
        long row = row0 + r;
        const uint8_t *src = w + (row < end ? row : 0) * rb;
        for (long b = 0; b < nb; b++) {
            for (int q = 0; q < 8; q++) {  // four codes at once, each offset by 128
                uint32_t four = 0;
                if (row < end) {
                    memcpy(&four, src + 32 * b + 4 * q, 4);
                    four ^= 0x80808080u;
                }
                memcpy(codes + (b * 8 + q) * 64 + 4 * r, &four, 4);
            }
            uint16_t h = 0;
            if (row < end) memcpy(&h, src + cols + 2 * b, 2);
            sc[b * 16 + r] = moe_f16_to_f32(h);
        }
    }
}

#if defined(__x86_64__)
#define TOKENS 8  // per pass over a packed block: 8 float and 8 integer accumulators (8 was 1.0-1.2x 4 and 12)

__attribute__((target("avx512f,avx512vl,avx512vnni,avx512bw,fma"))) static void block16_q4x8_512(
    const uint8_t *codes, const float *sc, const float *mn, long cols, const int8_t *xq, const float *xd, const float *xs, long tokens,
    float *y, long ldy, int rows) {
    long ng = cols / 64;
    const __m512i low = _mm512_set1_epi8(15);
    const __mmask16 keep = (__mmask16)((1u << rows) - 1);
    for (long t0 = 0; t0 < tokens; t0 += TOKENS) {
        int tn = tokens - t0 < TOKENS ? (int)(tokens - t0) : TOKENS;
        __m512 acc[TOKENS];
        for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
        for (long g = 0; g < ng; g++) {
            __m512i dot[TOKENS];
            for (int t = 0; t < TOKENS; t++) dot[t] = _mm512_setzero_si512();
            const uint8_t *cg = codes + g * 512;
            for (int q = 0; q < 8; q++) {
                __m512i raw = _mm512_loadu_si512(cg + 64 * q);
                __m512i lo = _mm512_and_si512(raw, low), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
                for (int t = 0; t < TOKENS; t++) {
                    if (t >= tn) break;
                    const int8_t *xt = xq + (t0 + t) * cols + g * 64 + 4 * q;
                    int32_t a, b;
                    memcpy(&a, xt, 4);
                    memcpy(&b, xt + 32, 4);
                    dot[t] = _mm512_dpbusd_epi32(dot[t], lo, _mm512_set1_epi32(a));
                    dot[t] = _mm512_dpbusd_epi32(dot[t], hi, _mm512_set1_epi32(b));
                }
            }
            __m512 sv = _mm512_loadu_ps(sc + g * 16), mv = _mm512_loadu_ps(mn + g * 16);
            for (int t = 0; t < TOKENS; t++) {
                if (t >= tn) break;
                long i = (t0 + t) * ng + g;
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), _mm512_mul_ps(sv, _mm512_set1_ps(xd[i])), acc[t]);
                acc[t] = _mm512_fmadd_ps(mv, _mm512_set1_ps(xs[i]), acc[t]);
            }
        }
        for (int t = 0; t < tn; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ldy, keep, acc[t]);
    }
}

__attribute__((target("avx512f,avx512vl,avx512vnni,avx512bw,fma"))) static void block16_q8_512(
    const uint8_t *codes, const float *sc, long cols, const int8_t *xq, const float *xd, const int32_t *xsum, long tokens, float *y,
    long ldy, int rows) {
    long nb = cols / 32;
    const __mmask16 keep = (__mmask16)((1u << rows) - 1);
    for (long t0 = 0; t0 < tokens; t0 += TOKENS) {
        int tn = tokens - t0 < TOKENS ? (int)(tokens - t0) : TOKENS;
        __m512 acc[TOKENS];
        for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
        for (long b = 0; b < nb; b++) {
            __m512i dot[TOKENS];
            for (int t = 0; t < TOKENS; t++) dot[t] = _mm512_setzero_si512();
            const uint8_t *cb = codes + b * 512;
            for (int q = 0; q < 8; q++) {
                __m512i v = _mm512_loadu_si512(cb + 64 * q);
                for (int t = 0; t < TOKENS; t++) {
                    if (t >= tn) break;
                    int32_t a;
                    memcpy(&a, xq + (t0 + t) * cols + b * 32 + 4 * q, 4);
                    dot[t] = _mm512_dpbusd_epi32(dot[t], v, _mm512_set1_epi32(a));
                }
            }
            __m512 sv = _mm512_loadu_ps(sc + b * 16);
            for (int t = 0; t < TOKENS; t++) {
                if (t >= tn) break;
                long i = (t0 + t) * nb + b;
                __m512i exact = _mm512_sub_epi32(dot[t], _mm512_set1_epi32(128 * xsum[i]));  // the offset's share
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(sv, _mm512_set1_ps(xd[i])), acc[t]);
            }
        }
        for (int t = 0; t < tn; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ldy, keep, acc[t]);
    }
}
#endif

static int gemm_vnni;

__attribute__((constructor)) static void choose_gemm_kernels(void) {
#if defined(__x86_64__)
    const moe_cpu_t *c = moe_cpu();
    gemm_vnni = c->avx512f && c->avx512vl && c->avx512bw && c->avx512vnni && c->fma;
#endif
}

int moe_gemm_int8_fast(void) { return gemm_vnni; }

void moe_gemm_q4x8(const uint8_t *w, long rows, long cols, long row0, long nrows, const int8_t *xq, const float *xd, const float *xs,
                   long tokens, float *y, long ldy) {
    if (!moe_gemm_int8_fast()) {
        moe_gemm_q4x8_portable(w, rows, cols, row0, nrows, xq, xd, xs, tokens, y, ldy);
        return;
    }
#if defined(__x86_64__)
    long ng = cols / 64, end = row0 + nrows < rows ? row0 + nrows : rows;
    uint8_t *codes = aligned_alloc(64, (size_t)(ng * 512 + 2 * ng * 64));
    float *sc = (float *)(codes + ng * 512), *mn = sc + ng * 16;
    for (long r = row0; r < end; r += 16) {
        pack16_q4x8(w, r, end, cols, codes, sc, mn);
        block16_q4x8_512(codes, sc, mn, cols, xq, xd, xs, tokens, y + (r - row0), ldy, (int)(end - r < 16 ? end - r : 16));
    }
    free(codes);
#endif
}

void moe_gemm_q4x8_portable(const uint8_t *w, long rows, long cols, long row0, long nrows, const int8_t *xq, const float *xd,
                            const float *xs, long tokens, float *y, long ldy) {
    long ng = cols / 64, end = row0 + nrows < rows ? row0 + nrows : rows;
    for (long t = 0; t < tokens; t++)
        moe_matvec_q4x8_portable(w, row0, xq + t * cols, xd + t * ng, xs + t * ng, y + t * ldy, end - row0, cols);
}

void moe_gemm_q8(const uint8_t *w, long rows, long cols, long row0, long nrows, const int8_t *xq, const float *xd, long tokens, float *y,
                 long ldy) {
    if (!moe_gemm_int8_fast()) {
        moe_gemm_q8_portable(w, rows, cols, row0, nrows, xq, xd, tokens, y, ldy);
        return;
    }
#if defined(__x86_64__)
    long nb = cols / 32, end = row0 + nrows < rows ? row0 + nrows : rows;
    uint8_t *codes = aligned_alloc(64, (size_t)(nb * 512 + nb * 64));
    float *sc = (float *)(codes + nb * 512);
    int32_t *xsum = malloc(sizeof(int32_t) * (size_t)(tokens * nb));  // each token's code sum per block
    for (long i = 0; i < tokens * nb; i++) {
        int32_t sum = 0;
        for (int k = 0; k < 32; k++) sum += xq[32 * i + k];
        xsum[i] = sum;
    }
    for (long r = row0; r < end; r += 16) {
        pack16_q8(w, r, end, cols, codes, sc);
        block16_q8_512(codes, sc, cols, xq, xd, xsum, tokens, y + (r - row0), ldy, (int)(end - r < 16 ? end - r : 16));
    }
    free(xsum);
    free(codes);
#endif
}

void moe_gemm_q8_portable(const uint8_t *w, long rows, long cols, long row0, long nrows, const int8_t *xq, const float *xd, long tokens,
                          float *y, long ldy) {
    long nb = cols / 32, end = row0 + nrows < rows ? row0 + nrows : rows;
    for (long t = 0; t < tokens; t++)
        moe_matvec_q8_portable(w + row0 * moe_q8_row_bytes(cols), xq + t * cols, xd + t * nb, y + t * ldy, end - row0, cols);
}
