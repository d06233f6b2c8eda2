// Matrix-vector products on weights kept as stored: 16-bit floats and swift-moe's block-quantized rows. These
// are decode's products (one token: every weight is read once, so they run at memory speed when the arithmetic
// keeps up). f32 weights go to the BLAS's sgemv instead. Each kernel has an AVX-512 version, chosen once from
// CPUID, and a portable one that the tests hold it to.
//
// Block formats (row-planar: a row's codes, then its scales, so a row is one contiguous stream):
//   q8 (as ggml's Q8_0): blocks of 32 signed 8-bit codes with an f16 scale d: w = d q.
//       row bytes = cols + 2 cols/32 (8.5 bits per weight)
//   q4 (affine, as MLX's 4-bit with group 64): codes 0..15 in groups of 64 with an f16 scale s and minimum m:
//       w = s q + m. The quantizer picks per group the affine or the symmetric (Q4_0-like) coding, both w = s q + m. Within a group, byte j (0..31) holds element j (low nibble) and element j + 32 (high nibble),
//       so the low nibbles are the group's first 32 elements in order and the high ones its last 32.
//       row bytes = cols/2 + 4 cols/64 (4.5 bits per weight, as Q4_0)
//   q4x8 (q4 with eight rows interleaved, what `moe quantize --to q4` writes for matrices of 8k rows): the same
//       codes, scales and minimums, stored per block of eight rows group by group: for each group of 64 columns a
//       chunk of 288 bytes, the eight rows' 32 code bytes in turn (256 bytes) and then their eight (s, m) pairs as
//       f16 (32 bytes). A block is cols/64 chunks, 8 q4 rows' bytes. The decode kernel reads one chunk per group and
//       multiplies two rows per 512-bit register against the group's activation, so every load is a full 64
//       bytes and one scale conversion serves eight rows.
//   mxfp4 (OCP microscaling FP4, as the released gpt-oss checkpoints store experts): blocks of 32 E2M1 codes, two
//       per byte (element 2i in the low nibble of byte i, 2i + 1 in the high one), and a separate E8M0 scale byte
//       per block: w = fp4(code) 2^(s - 127). Codes and scales are two tensors (cols/2 and cols/32 bytes a row).
//       The products use the codes doubled, {0, 1, 2, 3, 4, 6, 8, 12} with a sign bit, as 8-bit integers, and
//       scale each block by 2^(s - 128) (4.25 bits per weight).
// Activations for the integer products are quantized per block (Q8_0-style: d = max|x|/127, q = round(x/d)) of
// the weights' block: 32 for q8, 64 for q4, whose groups then need one scale product each; the scaled sum of a
// block's codes is kept for q4's minimum term.
#include "moe_blas.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// ---- f16 <-> f32 (exact widening; round-to-nearest-even narrowing) ----------------------------------------

float moe_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else {
            float v = (float)mant * 5.9604644775390625e-8f;  // mant 2^-24
            memcpy(&bits, &v, 4);
            bits |= sign;
        }
    } else if (exp == 31) bits = sign | 0x7F800000u | (mant << 13);
    else bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t moe_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return (uint16_t)(sign | 0x7C00 | (ax > 0x7F800000u ? 0x200 : 0));
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);  // rounds to >= 65520: infinity
    if (ax < 0x38800000u) {                                   // below the smallest normal half: subnormal
        float a;
        memcpy(&a, &ax, 4);
        float scaled = a * 16777216.0f;                        // units of 2^-24
        uint32_t m = (uint32_t)lrintf(scaled);                 // round to nearest even
        return (uint16_t)(sign | m);
    }
    uint32_t mant = ax & 0x7FFFFF, e = (ax >> 23) - 127 + 15;
    uint32_t h = (e << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

long moe_q8_row_bytes(long cols) { return cols + 2 * (cols / 32); }
long moe_q4_row_bytes(long cols) { return cols / 2 + 4 * (cols / 64); }

// ---- weight quantization (moe quantize) -------------------------------------------------------------------

void moe_quantize_row_q8(const float *x, uint8_t *out, long cols) {
    int8_t *q = (int8_t *)out;
    uint16_t *scales = (uint16_t *)(out + cols);
    for (long b = 0; b < cols / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        uint16_t dh = moe_f32_to_f16(amax / 127.0f);
        float d = moe_f16_to_f32(dh), inv = d > 0 ? 1.0f / d : 0;
        for (int j = 0; j < 32; j++) {
            long v = lrintf(x[b * 32 + j] * inv);
            q[b * 32 + j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        memcpy(scales + b, &dh, 2);
    }
}

// Squared error of coding v[0..<64] with scale s and minimum m (codes rounded and clamped to 0..15).
static float q4_error(const float *v, float s, float m) {
    float inv = s != 0 ? 1.0f / s : 0, e = 0;
    for (int j = 0; j < 64; j++) {
        long q = lrintf((v[j] - m) * inv);
        q = q < 0 ? 0 : q > 15 ? 15 : q;
        float d = v[j] - (s * (float)q + m);
        e += d * d;
    }
    return e;
}

// Each group takes the coding with the smallest squared error among a few candidates: the affine one (the group's
// range in 15 steps, as MLX's), the same range narrowed about its centre by 5-30% (outliers clipped, the rest
// coded finer: a short version of ggml's scale search), and the symmetric one (ggml Q4_0's: the value of largest
// magnitude at code 0 or 15 about a zero at code 8). The kernel runs them all: each is w = s q + m.
void moe_quantize_row_q4(const float *x, uint8_t *out, long cols) {
    uint16_t *sm = (uint16_t *)(out + cols / 2);
    for (long g = 0; g < cols / 64; g++) {
        const float *v = x + g * 64;
        float lo = v[0], hi = v[0];
        for (int j = 1; j < 64; j++) { lo = fminf(lo, v[j]); hi = fmaxf(hi, v[j]); }
        uint16_t sh = moe_f32_to_f16((hi - lo) / 15.0f), mh = moe_f32_to_f16(lo);
        float s = moe_f16_to_f32(sh), m = moe_f16_to_f32(mh), best = q4_error(v, s, m);
        for (int k = 0; k < 7; k++) {
            uint16_t cs, cm;
            if (k < 6) {  // the range narrowed by 5% ... 30% about its centre
                float f = 1.0f - 0.05f * (float)(k + 1), c = 0.5f * (lo + hi), h = 0.5f * (hi - lo) * f;
                cs = moe_f32_to_f16(2 * h / 15.0f);
                cm = moe_f32_to_f16(c - h);
            } else {  // symmetric: the value of largest magnitude at code 0 (negative) or 15 (positive)
                float big = fabsf(lo) > fabsf(hi) ? lo : hi;
                cs = moe_f32_to_f16(big < 0 ? -big / 8.0f : big / 7.0f);
                cm = moe_f32_to_f16(-8.0f * moe_f16_to_f32(cs));
            }
            float ts = moe_f16_to_f32(cs), tm = moe_f16_to_f32(cm);
            if (!(ts > 0)) continue;
            float e = q4_error(v, ts, tm);
            if (e < best) { best = e; s = ts; m = tm; sh = cs; mh = cm; }
        }
        float inv = s > 0 ? 1.0f / s : 0;
        uint8_t *bytes = out + g * 32;
        for (int j = 0; j < 32; j++) {
            long a = lrintf((v[j] - m) * inv), b = lrintf((v[j + 32] - m) * inv);
            a = a < 0 ? 0 : a > 15 ? 15 : a;
            b = b < 0 ? 0 : b > 15 ? 15 : b;
            bytes[j] = (uint8_t)(a | (b << 4));
        }
        memcpy(sm + 2 * g, &sh, 2);
        memcpy(sm + 2 * g + 1, &mh, 2);
    }
}

static void dequantize_row_q8_scalar(const uint8_t *in, float *y, long cols) {
    const int8_t *q = (const int8_t *)in;
    const uint8_t *scales = in + cols;
    for (long b = 0; b < cols / 32; b++) {
        uint16_t dh;
        memcpy(&dh, scales + 2 * b, 2);
        float d = moe_f16_to_f32(dh);
        for (int j = 0; j < 32; j++) y[b * 32 + j] = d * (float)q[b * 32 + j];
    }
}

// A q4 row's groups: group g's 32 code bytes at codes + g cstride, its f16 (s, m) at sm + g sstride (row-planar q4:
// strides 32 and 4; a row of a q4x8 block: 288 and 288).
static inline void q4_group_scale(const uint8_t *sm, long sstride, long g, float *s, float *m) {
    uint16_t h[2];
    memcpy(h, sm + g * sstride, 4);
    *s = moe_f16_to_f32(h[0]);
    *m = moe_f16_to_f32(h[1]);
}

static void dequantize_q4_groups_scalar(const uint8_t *codes, long cstride, const uint8_t *sm, long sstride, float *y, long ng) {
    for (long g = 0; g < ng; g++) {
        float s, m;
        q4_group_scale(sm, sstride, g, &s, &m);
        const uint8_t *bytes = codes + g * cstride;
        float *e = y + g * 64;
        for (int j = 0; j < 32; j++) {
            e[j] = s * (float)(bytes[j] & 15) + m;
            e[j + 32] = s * (float)(bytes[j] >> 4) + m;
        }
    }
}

static void widen_bf16_scalar(const uint16_t *in, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = bf16_to_f32(in[i]);
}

static void widen_f16_scalar(const uint16_t *in, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = moe_f16_to_f32(in[i]);
}

// ---- activation quantization ------------------------------------------------------------------------------

static void quantize_activation_scalar(const float *x, int8_t *q, float *d, float *sums, long n, long block) {
    for (long b = 0; b < n / block; b++) {
        const float *xb = x + b * block;
        float amax = 0;
        for (long j = 0; j < block; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float db = amax / 127.0f, inv = db > 0 ? 1.0f / db : 0;
        int s = 0;
        for (long j = 0; j < block; j++) {
            long v = lrintf(xb[j] * inv);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            q[b * block + j] = (int8_t)v;
            s += (int)v;
        }
        d[b] = db;
        sums[b] = db * (float)s;
    }
}

static void narrow_bf16_scalar(const float *x, uint16_t *y, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, x + i, 4);
        y[i] = (b & 0x7fffffff) > 0x7f800000 ? (uint16_t)((b >> 16) | 0x40) : (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
    }
}

static void narrow_f16_scalar(const float *x, uint16_t *y, long n) {
    for (long i = 0; i < n; i++) y[i] = moe_f32_to_f16(x[i]);
}

// ---- MXFP4 -------------------------------------------------------------------------------------------------

// The FP4 (E2M1) values doubled, so that they are integers; the sign is the code's top bit.
static const int8_t mxfp4_doubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// The same plus 12: unsigned, for VNNI's u8 x s8 product.
static const int8_t mxfp4_offset[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};

// 2^(s - 128): an E8M0 scale halved (the doubled codes' other half), built from its bits (ldexpf is a library
// call per block: it made the product 10x slower). s = 0 gives the subnormal 2^-128.
static inline float mxfp4_scale(uint8_t s) {
    uint32_t bits = s >= 1 ? (uint32_t)(s - 1) << 23 : 1u << 21;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void moe_dequantize_row_mxfp4(const uint8_t *blocks, const uint8_t *scales, float *y, long cols) {
    for (long b = 0; b < cols / 32; b++) {
        float d = mxfp4_scale(scales[b]);
        for (int i = 0; i < 16; i++) {
            uint8_t v = blocks[b * 16 + i];
            y[b * 32 + 2 * i] = (float)mxfp4_doubled[v & 15] * d;
            y[b * 32 + 2 * i + 1] = (float)mxfp4_doubled[v >> 4] * d;
        }
    }
}

static void mxfp4_portable(const uint8_t *blocks, const uint8_t *scales, const int8_t *xq, const float *xd, float *y, long rows,
                           long cols) {
    long nb = cols / 32;
    for (long r = 0; r < rows; r++) {
        const uint8_t *q = blocks + r * cols / 2, *sc = scales + r * nb;
        float s = 0;
        for (long b = 0; b < nb; b++) {
            int dot = 0;
            for (int i = 0; i < 16; i++) {
                uint8_t v = q[b * 16 + i];
                dot += (int)mxfp4_doubled[v & 15] * (int)xq[b * 32 + 2 * i] + (int)mxfp4_doubled[v >> 4] * (int)xq[b * 32 + 2 * i + 1];
            }
            s += (float)dot * (mxfp4_scale(sc[b]) * xd[b]);
        }
        y[r] = s;
    }
}

// ---- portable products (the reference the vector kernels are tested against) -------------------------------

static void bf16_portable(const uint16_t *w, const float *x, float *y, long rows, long cols) {
    for (long r = 0; r < rows; r++) {
        const uint16_t *row = w + r * cols;
        float s = 0;
        for (long c = 0; c < cols; c++) s += bf16_to_f32(row[c]) * x[c];
        y[r] = s;
    }
}

static void f16_portable(const uint16_t *w, const float *x, float *y, long rows, long cols) {
    for (long r = 0; r < rows; r++) {
        const uint16_t *row = w + r * cols;
        float s = 0;
        for (long c = 0; c < cols; c++) s += moe_f16_to_f32(row[c]) * x[c];
        y[r] = s;
    }
}

static void q8_portable(const uint8_t *w, const int8_t *xq, const float *xd, float *y, long rows, long cols) {
    long rb = moe_q8_row_bytes(cols);
    for (long r = 0; r < rows; r++) {
        const int8_t *q = (const int8_t *)(w + r * rb);
        const uint8_t *scales = w + r * rb + cols;
        float s = 0;
        for (long b = 0; b < cols / 32; b++) {
            int dot = 0;
            for (int j = 0; j < 32; j++) dot += (int)q[b * 32 + j] * (int)xq[b * 32 + j];
            uint16_t dh;
            memcpy(&dh, scales + 2 * b, 2);
            s += (float)dot * (moe_f16_to_f32(dh) * xd[b]);
        }
        y[r] = s;
    }
}

// One q4 row's product, its groups laid out as for dequantize_q4_groups_scalar.
static float q4_dot_scalar(const uint8_t *codes, long cstride, const uint8_t *sm, long sstride, const int8_t *xq, const float *xd,
                           const float *xs, long ng) {
    float s = 0;
    for (long g = 0; g < ng; g++) {
        float sc, mn;
        q4_group_scale(sm, sstride, g, &sc, &mn);
        const uint8_t *bytes = codes + g * cstride;
        const int8_t *xb = xq + g * 64;
        int dot = 0;
        for (int j = 0; j < 32; j++) dot += (int)(bytes[j] & 15) * xb[j] + (int)(bytes[j] >> 4) * xb[j + 32];
        s += (float)dot * (sc * xd[g]) + mn * xs[g];
    }
    return s;
}

static void q4_portable(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols) {
    long rb = moe_q4_row_bytes(cols);
    for (long r = 0; r < rows; r++) y[r] = q4_dot_scalar(w + r * rb, 32, w + r * rb + cols / 2, 4, xq, xd, xs, cols / 64);
}

// The block of row `row` of the q4x8 matrix at `w`; in each of its chunks the row's codes are at 32 k and its (s, m)
// at 256 + 4 k, k = row % 8.
static inline const uint8_t *q4x8_block(const uint8_t *w, long row, long cols) { return w + (row / 8) * 8 * moe_q4_row_bytes(cols); }

static float q4x8_dot_scalar(const uint8_t *w, long row, const int8_t *xq, const float *xd, const float *xs, long cols) {
    const uint8_t *b = q4x8_block(w, row, cols);
    long k = row % 8;
    return q4_dot_scalar(b + 32 * k, 288, b + 256 + 4 * k, 288, xq, xd, xs, cols / 64);
}

// Whole blocks of eight rows (`blocks` of them from w), portable.
static void q4x8_blocks_portable(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, float *y, long blocks, long cols) {
    for (long r = 0; r < 8 * blocks; r++) y[r] = q4x8_dot_scalar(w, r, xq, xd, xs, cols);
}

// ---- AVX-512 products ---------------------------------------------------------------------------------------

#if defined(__x86_64__)
#include <immintrin.h>

// Rows prefetched ahead by the decode kernels (see q8_512 for the measurements behind the choice).
static long mv_ahead = 4, mv_short = 1L << 40;
static inline long prefetch_rows(long rb) { return rb < mv_short ? mv_ahead : 0; }
// Rows prefetched ahead by the BF16 and F16 kernels: 2 on Intel, none on AMD. On the Xeon (family 6 model 207),
// a C replay of an M1 token's 16-bit passes (393 MB, 2 threads, alternating token by token, medians of 40-60
// tokens): BF16 1.27-1.32x and F16 1.25x faster with the row 2 ahead prefetched (1, 2 and 4 ahead within 4% of
// one another; 8 slower); on Zen 4, BF16 ran 1.16-1.23x slower with it (see q8_512). f32 gains nothing on either
// (Xeon: 0.94-1.02x for 1 to 4 rows ahead). MOE_MATVEC_PREFETCH_16=N (0-64) overrides the choice.
static long mv16_ahead = 2;
// Bytes ahead in a q4x8 stream prefetched at each 288-byte chunk: 2048 on Intel, none on AMD (where the kernel
// reached 0.83-0.85 of the copy bound without it; not measured with it). On the Xeon (family 6 model 207), `moe
// bench model` on M1 q4, 64 tokens at depth 0, alternating runs: 2048 ahead 1.5-1.9x none (six pairs: 214 against
// 113 tok/s, 180/130, 157/132, 229/153, 176/104, 177/96), 1024 and 4096 ahead less and less steadily (0.83-1.47x),
// 3072 1.09-2.04x. MOE_MATVEC_PREFETCH_Q4X8=N (bytes, 0-65536) overrides the choice.
static long q4x8_ahead = 2048;
static inline void prefetch_row(const void *row, long bytes) {
    for (long off = 0; off < bytes; off += 64) _mm_prefetch((const char *)row + off, _MM_HINT_T0);
}

// BF16 rows of up to BF16_EO_COLS columns: each 32-column block of x is first split into its 16 even and 16 odd
// elements (once per call, on the stack); then one 512-bit load holds 32 weights, whose even elements are the
// low halves of its 32-bit lanes (a shift by 16 makes them floats) and the odd ones the high halves (a mask does):
// seven instructions per 64 bytes against ten with zero-extending loads of 16 weights, and no shuffles. On
// the Intel Xeon (family 6 model 207), a C replay of an M1 BF16 token's passes (393 MB, 2 threads, token after
// token, the variants alternating): 1.06x the widening kernel with both prefetching. Longer rows take that kernel.
#define BF16_EO_COLS 16384
__attribute__((target("avx512f"))) static void bf16_widening_512(const uint16_t *w, const float *x, float *y, long rows, long cols) {
    long ahead = mv16_ahead;
    for (long r = 0; r < rows; r++) {
        const uint16_t *row = w + r * cols;
        if (ahead) prefetch_row(row + ahead * cols, 2 * cols);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        long c = 0;
        for (; c + 32 <= cols; c += 32) {
            __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(row + c)));
            __m512i hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(row + c + 16)));
            a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(lo, 16)), _mm512_loadu_ps(x + c), a0);
            a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(hi, 16)), _mm512_loadu_ps(x + c + 16), a1);
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        for (; c < cols; c++) s += bf16_to_f32(row[c]) * x[c];
        y[r] = s;
    }
}

__attribute__((target("avx512f"))) static void bf16_512(const uint16_t *w, const float *x, float *y, long rows, long cols) {
    if (cols > BF16_EO_COLS) {
        bf16_widening_512(w, x, y, rows, cols);
        return;
    }
    long nb = cols / 32, ahead = mv16_ahead;
    float split[BF16_EO_COLS] __attribute__((aligned(64)));
    const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
    for (long b = 0; b < nb; b++) {
        __m512 lo = _mm512_loadu_ps(x + 32 * b), hi = _mm512_loadu_ps(x + 32 * b + 16);
        _mm512_store_ps(split + 32 * b, _mm512_permutex2var_ps(lo, evens, hi));
        _mm512_store_ps(split + 32 * b + 16, _mm512_permutex2var_ps(lo, odds, hi));
    }
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    for (long r = 0; r < rows; r++) {
        const uint16_t *row = w + r * cols;
        if (ahead) prefetch_row(row + ahead * cols, 2 * cols);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        long b = 0;
        for (; b + 2 <= nb; b += 2) {
            __m512i v0 = _mm512_loadu_si512(row + 32 * b), v1 = _mm512_loadu_si512(row + 32 * b + 32);
            a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_load_ps(split + 32 * b), a0);
            a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, high)), _mm512_load_ps(split + 32 * b + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), _mm512_load_ps(split + 32 * b + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v1, high)), _mm512_load_ps(split + 32 * b + 48), a3);
        }
        if (b < nb) {
            __m512i v0 = _mm512_loadu_si512(row + 32 * b);
            a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_load_ps(split + 32 * b), a0);
            a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, high)), _mm512_load_ps(split + 32 * b + 16), a1);
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        for (long c = nb * 32; c < cols; c++) s += bf16_to_f32(row[c]) * x[c];
        y[r] = s;
    }
}

__attribute__((target("avx512f,f16c"))) static void f16_512(const uint16_t *w, const float *x, float *y, long rows, long cols) {
    long ahead = mv16_ahead;
    for (long r = 0; r < rows; r++) {
        const uint16_t *row = w + r * cols;
        if (ahead) prefetch_row(row + ahead * cols, 2 * cols);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        long c = 0;
        for (; c + 32 <= cols; c += 32) {
            __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + c)));
            __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + c + 16)));
            a0 = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x + c), a0);
            a1 = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + c + 16), a1);
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        for (; c < cols; c++) s += moe_f16_to_f32(row[c]) * x[c];
        y[r] = s;
    }
}

// One row at a time, 64 floats per step in four accumulators: the matrix is read as one sequential stream, which
// the hardware prefetcher follows best (one thread from memory: 20-23 GB/s, against 17 for four rows interleaved).
__attribute__((target("avx512f"))) static void f32_512(const float *w, const float *x, float *y, long rows, long cols) {
    for (long r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        long c = 0;
        for (; c + 64 <= cols; c += 64) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c), _mm512_loadu_ps(x + c), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c + 16), _mm512_loadu_ps(x + c + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c + 32), _mm512_loadu_ps(x + c + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c + 48), _mm512_loadu_ps(x + c + 48), a3);
        }
        for (; c + 16 <= cols; c += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c), _mm512_loadu_ps(x + c), a0);
        float s0 = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        for (; c < cols; c++) s0 += row[c] * x[c];
        y[r] = s0;
    }
}

// Four rows at a time, 32 floats of each per step (x loaded once for the four): four streams per core. On the
// Intel Xeon (family 6 model 207), a C replay of an M1 f32 token's passes (785 MB, 2 threads, the kernels alternating
// token by token, medians of 30-40 tokens each, five runs): 1.06-1.12x the one-row kernel (e.g. 22.2 against 20.9 GB/s,
// 22.9 against 20.4); eight rows of 16 floats ran as four. Not measured on AMD, which keeps the one-row kernel.
// MOE_MATVEC_F32_ROWS=1|4 overrides the choice.
__attribute__((target("avx512f"))) static void f32_rows4_512(const float *w, const float *x, float *y, long rows, long cols) {
    long r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float *p0 = w + r * cols, *p1 = p0 + cols, *p2 = p1 + cols, *p3 = p2 + cols;
        __m512 a0 = _mm512_setzero_ps(), b0 = _mm512_setzero_ps(), c0 = _mm512_setzero_ps(), d0 = _mm512_setzero_ps();
        __m512 a1 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps(), d1 = _mm512_setzero_ps();
        long c = 0;
        for (; c + 32 <= cols; c += 32) {
            __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(p0 + c), x0, a0);
            b0 = _mm512_fmadd_ps(_mm512_loadu_ps(p1 + c), x0, b0);
            c0 = _mm512_fmadd_ps(_mm512_loadu_ps(p2 + c), x0, c0);
            d0 = _mm512_fmadd_ps(_mm512_loadu_ps(p3 + c), x0, d0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(p0 + c + 16), x1, a1);
            b1 = _mm512_fmadd_ps(_mm512_loadu_ps(p1 + c + 16), x1, b1);
            c1 = _mm512_fmadd_ps(_mm512_loadu_ps(p2 + c + 16), x1, c1);
            d1 = _mm512_fmadd_ps(_mm512_loadu_ps(p3 + c + 16), x1, d1);
        }
        for (; c + 16 <= cols; c += 16) {
            __m512 x0 = _mm512_loadu_ps(x + c);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(p0 + c), x0, a0);
            b0 = _mm512_fmadd_ps(_mm512_loadu_ps(p1 + c), x0, b0);
            c0 = _mm512_fmadd_ps(_mm512_loadu_ps(p2 + c), x0, c0);
            d0 = _mm512_fmadd_ps(_mm512_loadu_ps(p3 + c), x0, d0);
        }
        float s0 = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)), s1 = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
        float s2 = _mm512_reduce_add_ps(_mm512_add_ps(c0, c1)), s3 = _mm512_reduce_add_ps(_mm512_add_ps(d0, d1));
        for (; c < cols; c++) {
            s0 += p0[c] * x[c];
            s1 += p1[c] * x[c];
            s2 += p2[c] * x[c];
            s3 += p3[c] * x[c];
        }
        y[r] = s0;
        y[r + 1] = s1;
        y[r + 2] = s2;
        y[r + 3] = s3;
    }
    if (r < rows) f32_512(w + r * cols, x, y + r, rows - r, cols);
}

__attribute__((target("avx2"))) static inline float hsum256(__m256 v) {
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
}

__attribute__((target("avx2"))) static inline float hsum128(__m128 s4) {
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
}

// q8 with the weights offset to unsigned (w + 128, one xor): VNNI's u8 x s8 product then needs no sign trick, and
// the offset's term, 128 d_w sum(x) per block, comes off once per row from the activation's block sums. Two blocks
// per 512-bit step, sixteen blocks' scales converted at once: in cache 1.6x the sign-trick kernel (32 against 20
// GB/s, one thread), from memory 1.3x. Blocks past the last sixteen run one at a time in 256-bit registers.
//
// Software prefetch: on the Intel Xeon where these kernels were tuned (family 6 model 207) the row `mv_ahead` = 4
// ahead is prefetched, since rows of about a kilobyte end before the hardware prefetcher ramps up. On AMD Zen 4 it
// depends on the kernel and the row's length (two threads from memory, 200 MB, passes with and without it
// alternating in one process, median of 50-60 paired ratios): q8 rows of 1088 bytes ran 1.19-1.34x faster with it
// and q4 rows of 576 1.11-1.15x, q4 rows of 1584 bytes 1.03-1.08x, but q8 rows of 2992 bytes 1.04-1.13x slower
// (and BF16 rows 1.16-1.23x slower with it at 2048 and 5632 bytes). A long stream is not
// the whole story: with the leftover q4 pairs vectorized, rows of 1584 bytes ran 1.23-1.25x faster without it in
// one long pass, but 1.00-1.06x faster with it in a C replay of a decoded token's 33 passes (2 to 16 pieces of
// 0.6 to 18 MB; medians of 30-40 paired tokens, four runs), which is what decode runs. So on AMD only rows
// shorter than `mv_short` = 2 KB are prefetched. MOE_MATVEC_PREFETCH=N (rows ahead, 0-64, for every row length)
// overrides the choice for such measurements.
__attribute__((target("avx512f,avx512vl,avx512vnni,avx512bw,avx2,f16c,fma"))) static void q8_512(
    const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols) {
    long rb = moe_q8_row_bytes(cols), nb = cols / 32, ahead = prefetch_rows(rb);
    const __m512i flip = _mm512_set1_epi8((char)0x80), two = _mm512_set1_epi32(2);
    const __m256i flip256 = _mm256_set1_epi8((char)0x80);
    const __m512i first = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (long r = 0; r < rows; r++) {
        const uint8_t *q = w + r * rb;
        const uint16_t *scales = (const uint16_t *)(w + r * rb + cols);
        if (ahead) prefetch_row(q + ahead * rb, rb);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), corr = _mm512_setzero_ps();
        long b = 0;
        for (; b + 16 <= nb; b += 16) {
            __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + b)));
            __m512 ds = _mm512_mul_ps(dw, _mm512_loadu_ps(xd + b));
            corr = _mm512_fmadd_ps(dw, _mm512_loadu_ps(xs + b), corr);
            __m512i idx = first;  // lanes 0-7 take block k's scale, 8-15 block k + 1's
            for (int k = 0; k < 16; k += 4) {
                __m512i w0 = _mm512_xor_si512(_mm512_loadu_si512(q + (b + k) * 32), flip);
                __m512i w1 = _mm512_xor_si512(_mm512_loadu_si512(q + (b + k + 2) * 32), flip);
                __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, _mm512_loadu_si512(xq + (b + k) * 32));
                __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w1, _mm512_loadu_si512(xq + (b + k + 2) * 32));
                a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), _mm512_permutexvar_ps(idx, ds), a0);
                idx = _mm512_add_epi32(idx, two);
                a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), _mm512_permutexvar_ps(idx, ds), a1);
                idx = _mm512_add_epi32(idx, two);
            }
        }
        __m256 tail = _mm256_setzero_ps();
        float tcorr = 0;
        for (; b < nb; b++) {
            float dw = _cvtsh_ss(scales[b]);
            __m256i wv = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(q + b * 32)), flip256);
            __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, _mm256_loadu_si256((const __m256i *)(xq + b * 32)));
            tail = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw * xd[b]), tail);
            tcorr += dw * xs[b];
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + hsum256(tail) - 128.0f * (_mm512_reduce_add_ps(corr) + tcorr);
    }
}

// Two blocks per step: their 32 code bytes split into low and high nibbles (the even and the odd elements of
// both), looked up as doubled FP4 values offset by 12 to be unsigned (0..24), and multiplied with VNNI against
// the activation packed the same way (moe_pack_activation_mxfp4); the offset's term, 12 d_w sum(x) per block,
// comes off once per row. Eight blocks' scales are built from their exponent bytes at once. A last odd block runs
// in the portable loop.
__attribute__((target("avx512f,avx512vl,avx512vnni,avx2,fma"))) static void mxfp4_512(
    const uint8_t *blocks, const uint8_t *scales, const int8_t *xq, const float *xd, const float *xs, const int8_t *packed,
    float *y, long rows, long cols) {
    long nb = cols / 32, rb = cols / 2, ahead = prefetch_rows(rb + nb);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)mxfp4_offset));
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi32(1), tiny = _mm256_set1_epi32(1 << 21);
    const __m256i firstPair = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0), two = _mm256_set1_epi32(2);
    for (long r = 0; r < rows; r++) {
        const uint8_t *q = blocks + r * rb, *sc = scales + r * nb;
        if (ahead) {
            prefetch_row(q + ahead * rb, rb);
            _mm_prefetch((const char *)(sc + ahead * nb), _MM_HINT_T0);
        }
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), corr = _mm256_setzero_ps();
        long b = 0;
        for (; b + 8 <= nb; b += 8) {
            // 2^(s - 128) as float bits (s - 1) << 23; s = 0 is the subnormal 2^-128.
            __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sc + b)));
            __m256 dw = _mm256_castsi256_ps(
                _mm256_blendv_epi8(_mm256_slli_epi32(_mm256_sub_epi32(e, one), 23), tiny, _mm256_cmpeq_epi32(e, _mm256_setzero_si256())));
            __m256 ds = _mm256_mul_ps(dw, _mm256_loadu_ps(xd + b));
            corr = _mm256_fmadd_ps(dw, _mm256_loadu_ps(xs + b), corr);
            __m256i idx = firstPair;
            for (int k = 0; k < 8; k += 4) {
                __m256i r0 = _mm256_loadu_si256((const __m256i *)(q + (b + k) * 16));
                __m256i r1 = _mm256_loadu_si256((const __m256i *)(q + (b + k + 2) * 16));
                const int8_t *x0 = packed + (b + k) * 32, *x1 = packed + (b + k + 2) * 32;
                __m256i d0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_shuffle_epi8(lut, _mm256_and_si256(r0, m4)),
                                                 _mm256_loadu_si256((const __m256i *)x0));
                d0 = _mm256_dpbusd_epi32(d0, _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(r0, 4), m4)),
                                         _mm256_loadu_si256((const __m256i *)(x0 + 32)));
                __m256i d1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_shuffle_epi8(lut, _mm256_and_si256(r1, m4)),
                                                 _mm256_loadu_si256((const __m256i *)x1));
                d1 = _mm256_dpbusd_epi32(d1, _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(r1, 4), m4)),
                                         _mm256_loadu_si256((const __m256i *)(x1 + 32)));
                a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_permutevar8x32_ps(ds, idx), a0);
                idx = _mm256_add_epi32(idx, two);
                a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_permutevar8x32_ps(ds, idx), a1);
                idx = _mm256_add_epi32(idx, two);
            }
        }
        float total = hsum256(_mm256_add_ps(a0, a1)) - 12.0f * hsum256(corr);
        if (b < nb) {
            float rest;
            mxfp4_portable(q + b * 16, sc + b, xq + b * 32, xd + b, &rest, 1, cols - b * 32);
            total += rest;
        }
        y[r] = total;
    }
}

// Codes 0..15 are unsigned, so VNNI multiplies them by the signed activation codes directly. Two groups (128
// weights, 64 bytes) per step in 512-bit registers: the low nibbles against the packed activation's first halves
// of both groups, the high nibbles against their second halves, into 16 integer lanes (8 per group), scaled by
// [s_g d_g] x 8 | [s_g+1 d_g+1] x 8. The scales and minimums of sixteen groups are converted at once, and the
// minimums' term (m_g times the activation's block sum) is one multiply-add per sixteen groups; so a step is ten
// instructions where it was fourteen (one thread in cache: 23-26 GB/s before). One row at a time reads the matrix
// as one sequential stream (on the Xeon, one thread from memory: 12.1 GB/s for 1 row, 10.9 for 2, 9.7 for 4 rows
// at a time, measured on the earlier kernel; on Zen 4 four rows at a time ran 0.67x from memory), with the row
// mv_ahead ahead prefetched where that helps (see q8). Leftover pairs (fewer than eight) take the same step on
// masked loads of their scales, one pair at a time; an odd last group runs in 256-bit registers.
__attribute__((target("avx512f,avx512vl,avx512vnni,avx512bw,avx2,f16c,fma"))) static void q4_512(
    const uint8_t *w, const int8_t *packed, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols) {
    long rb = moe_q4_row_bytes(cols), ng = cols / 64, np = ng / 2, ahead = prefetch_rows(rb);
    const __m512i low = _mm512_set1_epi8(15), two = _mm512_set1_epi32(2);
    const __m256i low256 = _mm256_set1_epi8(15);
    const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
    const __m512i firstPair = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (long r = 0; r < rows; r++) {
        const uint8_t *c = w + r * rb;
        const uint16_t *sm = (const uint16_t *)(c + cols / 2);
        if (ahead) prefetch_row(c + ahead * rb, rb);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), mins = _mm512_setzero_ps();
        long p = 0;
        for (; p + 8 <= np; p += 8) {
            long g = 2 * p;
            __m512 v0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sm + 2 * g)));       // s m of groups g..g+7
            __m512 v1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sm + 2 * g + 16)));  // and g+8..g+15
            __m512 ds = _mm512_mul_ps(_mm512_permutex2var_ps(v0, evens, v1), _mm512_loadu_ps(xd + g));
            mins = _mm512_fmadd_ps(_mm512_permutex2var_ps(v0, odds, v1), _mm512_loadu_ps(xs + g), mins);
            __m512i idx = firstPair;
            for (int k = 0; k < 8; k += 2) {
                __m512i b0 = _mm512_loadu_si512(c + (p + k) * 64), b1 = _mm512_loadu_si512(c + (p + k + 1) * 64);
                const int8_t *x0 = packed + (p + k) * 128, *x1 = x0 + 128;
                __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(b0, low), _mm512_loadu_si512(x0));
                d0 = _mm512_dpbusd_epi32(d0, _mm512_and_si512(_mm512_srli_epi16(b0, 4), low), _mm512_loadu_si512(x0 + 64));
                __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(b1, low), _mm512_loadu_si512(x1));
                d1 = _mm512_dpbusd_epi32(d1, _mm512_and_si512(_mm512_srli_epi16(b1, 4), low), _mm512_loadu_si512(x1 + 64));
                a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), _mm512_permutexvar_ps(idx, ds), a0);
                idx = _mm512_add_epi32(idx, two);
                a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), _mm512_permutexvar_ps(idx, ds), a1);
                idx = _mm512_add_epi32(idx, two);
            }
        }
        // Leftover pairs (a row of 2816 has 22: 16 above, 6 here): the same step on masked loads of the scales,
        // minimums and activation scales (masked-off lanes are zero), one pair at a time. Before, each leftover pair
        // converted its four scalars one by one: rows of 2816 ran at 21 GB/s from memory on two Zen 4 cores, where
        // rows of 1024 ran at 28 and a plain read at 30.
        if (p < np) {
            long g = 2 * p, left = np - p, halves = 4 * left;  // f16 values: s m per group, two groups per pair
            __mmask16 k0 = halves >= 16 ? 0xFFFF : (__mmask16)((1u << halves) - 1);
            __mmask16 k1 = halves <= 16 ? 0 : (__mmask16)((1u << (halves - 16)) - 1);
            __mmask16 kg = (__mmask16)((1u << (2 * left)) - 1);
            __m512 v0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k0, sm + 2 * g));
            __m512 v1 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k1, sm + 2 * g + 16));
            __m512 ds = _mm512_mul_ps(_mm512_permutex2var_ps(v0, evens, v1), _mm512_maskz_loadu_ps(kg, xd + g));
            mins = _mm512_fmadd_ps(_mm512_permutex2var_ps(v0, odds, v1), _mm512_maskz_loadu_ps(kg, xs + g), mins);
            __m512i idx = firstPair;
            for (long k = 0; k < left; k++) {
                __m512i b0 = _mm512_loadu_si512(c + (p + k) * 64);
                const int8_t *x0 = packed + (p + k) * 128;
                __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(b0, low), _mm512_loadu_si512(x0));
                d0 = _mm512_dpbusd_epi32(d0, _mm512_and_si512(_mm512_srli_epi16(b0, 4), low), _mm512_loadu_si512(x0 + 64));
                a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), _mm512_permutexvar_ps(idx, ds), a0);
                idx = _mm512_add_epi32(idx, two);
            }
        }
        float total = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), mins));
        for (long g = 2 * np; g < ng; g++) {  // an odd last group
            __m256i bytes = _mm256_loadu_si256((const __m256i *)(c + g * 32));
            __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_and_si256(bytes, low256),
                                              _mm256_loadu_si256((const __m256i *)(xq + g * 64)));
            dot = _mm256_dpbusd_epi32(dot, _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low256),
                                      _mm256_loadu_si256((const __m256i *)(xq + g * 64 + 32)));
            total += hsum256(_mm256_cvtepi32_ps(dot)) * _cvtsh_ss(sm[2 * g]) * xd[g] + _cvtsh_ss(sm[2 * g + 1]) * xs[g];
        }
        y[r] = total;
    }
}

// The same rounding in integer lanes (AVX512_BF16's vcvtneps2bf16 would be one instruction, but it flushes
// subnormal inputs to zero, so it would not match the scalar rounding the tests pin this to).
__attribute__((target("avx512f"))) static void narrow_bf16_512(const float *x, uint16_t *y, long n) {
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), quiet = _mm512_set1_epi32(0x40),
                  abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i b = _mm512_loadu_si512(x + i);
        __m512i hi = _mm512_srli_epi32(b, 16);
        __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, bias), _mm512_and_si512(hi, one)), 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, abs), inf);
        __m512i r = _mm512_mask_or_epi32(rounded, nan, hi, quiet);
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtepi32_epi16(r));
    }
    narrow_bf16_scalar(x + i, y + i, n - i);
}

// Decode quantizes each product's input: the scalar loop above in 16 lanes for blocks of a multiple of 16, value
// for value the same (max ignores NaNs as fmaxf does; vcvtps2dq rounds to nearest even as lrintf does, and both
// turn NaN and out-of-range values into the most negative integer, which the clamp makes -127).
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void quantize_activation_512(const float *x, int8_t *q, float *d, float *sums,
                                                                                       long n, long block) {
    const __m512i hi = _mm512_set1_epi32(127), lo = _mm512_set1_epi32(-127);
    for (long b = 0; b < n / block; b++) {
        const float *xb = x + b * block;
        __m512 m = _mm512_setzero_ps();
        for (long j = 0; j < block; j += 16) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb + j)), m);  // a NaN lane keeps m
        float amax = _mm512_reduce_max_ps(m);
        float db = amax / 127.0f, inv = db > 0 ? 1.0f / db : 0;
        __m512 vinv = _mm512_set1_ps(inv);
        __m512i total = _mm512_setzero_si512();
        for (long j = 0; j < block; j += 16) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + j), vinv));
            v = _mm512_max_epi32(_mm512_min_epi32(v, hi), lo);
            _mm_storeu_si128((__m128i *)(q + b * block + j), _mm512_cvtepi32_epi8(v));
            total = _mm512_add_epi32(total, v);
        }
        d[b] = db;
        sums[b] = db * (float)_mm512_reduce_add_epi32(total);
    }
}

// F16C's rounding is IEEE's (nearest even, subnormals kept, overflow to infinity); only its NaNs keep payload
// bits, so NaN lanes are set to moe_f32_to_f16's quiet NaN.
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) static void narrow_f16_512(const float *x, uint16_t *y, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        if (nan) {
            __m512i q = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(v), 16), _mm512_set1_epi32(0x8000)),
                                        _mm512_set1_epi32(0x7E00));
            h = _mm256_mask_blend_epi16(nan, h, _mm512_cvtepi32_epi16(q));
        }
        _mm256_storeu_si256((__m256i *)(y + i), h);
    }
    narrow_f16_scalar(x + i, y + i, n - i);
}

// Prefill widens every expert's weights once per prompt chunk: vector versions of the conversions.
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"))) static void dequantize_q8_512(const uint8_t *in, float *y, long cols) {
    const int8_t *q = (const int8_t *)in;
    const uint16_t *scales = (const uint16_t *)(in + cols);
    for (long b = 0; b < cols / 32; b++) {
        __m512 d = _mm512_set1_ps(_cvtsh_ss(scales[b]));
        __m512i lo = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + b * 32)));
        __m512i hi = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + b * 32 + 16)));
        _mm512_storeu_ps(y + b * 32, _mm512_mul_ps(d, _mm512_cvtepi32_ps(lo)));
        _mm512_storeu_ps(y + b * 32 + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(hi)));
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"))) static void dequantize_q4_groups_512(const uint8_t *codes, long cstride,
                                                                                                const uint8_t *sm, long sstride, float *y,
                                                                                                long ng) {
    const __m128i low = _mm_set1_epi8(15);
    for (long g = 0; g < ng; g++) {
        const uint16_t *h = (const uint16_t *)(sm + g * sstride);
        __m512 s = _mm512_set1_ps(_cvtsh_ss(h[0])), m = _mm512_set1_ps(_cvtsh_ss(h[1]));
        for (int half = 0; half < 2; half++) {
            __m128i bytes = _mm_loadu_si128((const __m128i *)(codes + g * cstride + half * 16));
            __m512i lo = _mm512_cvtepu8_epi32(_mm_and_si128(bytes, low));                     // elements j
            __m512i hi = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(bytes, 4), low));  // elements j + 32
            _mm512_storeu_ps(y + g * 64 + half * 16, _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(lo), m));
            _mm512_storeu_ps(y + g * 64 + 32 + half * 16, _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(hi), m));
        }
    }
}

// q4x8, whole blocks of eight rows. Per group: the chunk's four 64-byte loads each hold two rows' codes; VNNI
// multiplies their low nibbles against the group's first 32 activation codes and their high nibbles against the
// last 32, both broadcast to the two 256-bit halves, so each 32-bit lane sums eight products of one row. Four
// accumulators, one per row pair, take the count times (s_row x_d) from one vector of the eight scales; the
// minimums' term m_row xs[g] gathers in a 256-bit register. The halves are summed once per block. In a C replay of
// an M1 q4 token's 33 passes (two Zen 4 cores, medians of paired tokens, three runs) this ran 1.11-1.20x faster
// than q4_512 on the same codes row-planar; the down passes (rows of 2816) went from 23.7 to 29.5 GB/s.
__attribute__((target("avx512f,avx512vl,avx512vnni,avx512bw,avx2,f16c,fma"))) static void q4x8_512(
    const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, float *y, long blocks, long cols) {
    long ng = cols / 64;
    const __m512i low = _mm512_set1_epi8(15);
    const __m512i evens = _mm512_set_epi32(14, 12, 10, 8, 6, 4, 2, 0, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
    __m512i pair[4];  // lanes 0-7 pick row 2p's scale, lanes 8-15 row 2p + 1's
    for (int p = 0; p < 4; p++)
        pair[p] = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(2 * p), _mm512_set1_epi32(2 * p + 1));
    for (long b = 0; b < blocks; b++) {
        const uint8_t *blk = w + b * ng * 288;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        __m256 mins = _mm256_setzero_ps();
        for (long g = 0; g < ng; g++) {
            const uint8_t *c = blk + g * 288;
            if (q4x8_ahead)
                for (int l = 0; l < 5; l++) _mm_prefetch((const char *)(c + q4x8_ahead + 64 * l), _MM_HINT_T0);
            __m512 sm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(c + 256)));  // s0 m0 s1 m1 ... s7 m7
            __m512 ds = _mm512_mul_ps(_mm512_permutexvar_ps(evens, sm), _mm512_set1_ps(xd[g]));
            mins = _mm256_fmadd_ps(_mm512_castps512_ps256(_mm512_permutexvar_ps(odds, sm)), _mm256_set1_ps(xs[g]), mins);
            __m512i xlo = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xq + g * 64)));
            __m512i xhi = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xq + g * 64 + 32)));
            for (int p = 0; p < 4; p++) {
                __m512i v = _mm512_loadu_si512(c + 64 * p);
                __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v, low), xlo);
                d = _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(v, 4), low), xhi);
                acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(pair[p], ds), acc[p]);
            }
        }
        float m8[8];
        _mm256_storeu_ps(m8, mins);
        for (int p = 0; p < 4; p++) {
            __m256 upper = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[p]), 1));
            y[b * 8 + 2 * p] = hsum256(_mm512_castps512_ps256(acc[p])) + m8[2 * p];
            y[b * 8 + 2 * p + 1] = hsum256(upper) + m8[2 * p + 1];
        }
    }
}

__attribute__((target("avx512f"))) static void widen_bf16_512(const uint16_t *in, float *y, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(in + i)));
        _mm512_storeu_si512(y + i, _mm512_slli_epi32(v, 16));
    }
    for (; i < n; i++) y[i] = bf16_to_f32(in[i]);
}

__attribute__((target("avx512f,f16c"))) static void widen_f16_512(const uint16_t *in, float *y, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(in + i))));
    for (; i < n; i++) y[i] = moe_f16_to_f32(in[i]);
}
#endif

// Each entry point calls the kernel chosen once at load from CPUID (as vector.c's are), or its portable version.
static void q4_portable_entry(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, const void *packed, float *y,
                              long rows, long cols) {
    (void)packed;
    q4_portable(w, xq, xd, xs, y, rows, cols);
}

#if defined(__x86_64__)
static void q4_512_entry(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, const void *packed, float *y,
                         long rows, long cols) {
    q4_512(w, (const int8_t *)packed, xq, xd, xs, y, rows, cols);
}
#endif

static void (*dequantize_q8_impl)(const uint8_t *, float *, long) = dequantize_row_q8_scalar;
static void (*dequantize_q4_impl)(const uint8_t *, long, const uint8_t *, long, float *, long) = dequantize_q4_groups_scalar;
static void (*q4x8_impl)(const uint8_t *, const int8_t *, const float *, const float *, float *, long, long) = q4x8_blocks_portable;
static void (*widen_bf16_impl)(const uint16_t *, float *, long) = widen_bf16_scalar;
static void (*narrow_bf16_impl)(const float *, uint16_t *, long) = narrow_bf16_scalar;
static void (*narrow_f16_impl)(const float *, uint16_t *, long) = narrow_f16_scalar;
static void (*quantize_activation_impl)(const float *, int8_t *, float *, float *, long, long) = quantize_activation_scalar;
static void (*widen_f16_impl)(const uint16_t *, float *, long) = widen_f16_scalar;
static void (*f32_impl)(const float *, const float *, float *, long, long) = NULL;  // NULL: the BLAS's sgemv
static void (*bf16_impl)(const uint16_t *, const float *, float *, long, long) = bf16_portable;
static void (*f16_impl)(const uint16_t *, const float *, float *, long, long) = f16_portable;
static void q8_portable_entry(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols) {
    (void)xs;
    q8_portable(w, xq, xd, y, rows, cols);
}
static void mxfp4_portable_entry(const uint8_t *blocks, const uint8_t *scales, const int8_t *xq, const float *xd, const float *xs,
                                 const int8_t *packed, float *y, long rows, long cols) {
    (void)xs;
    (void)packed;
    mxfp4_portable(blocks, scales, xq, xd, y, rows, cols);
}
static void (*q8_impl)(const uint8_t *, const int8_t *, const float *, const float *, float *, long, long) = q8_portable_entry;
static void (*mxfp4_impl)(const uint8_t *, const uint8_t *, const int8_t *, const float *, const float *, const int8_t *, float *, long,
                          long) = mxfp4_portable_entry;
static void (*q4_impl)(const uint8_t *, const int8_t *, const float *, const float *, const void *, float *, long, long) =
    q4_portable_entry;

__attribute__((constructor)) static void choose_matvec_kernels(void) {
#if defined(__x86_64__)
    const moe_cpu_t *c = moe_cpu();
    if (moe_cpu_is_amd(c)) {
        mv_short = 2048;
        mv16_ahead = 0;
        q4x8_ahead = 0;
    }
    if (moe_env_distance("MOE_MATVEC_PREFETCH", 64, &mv_ahead)) mv_short = 1L << 40;
    moe_env_distance("MOE_MATVEC_PREFETCH_16", 64, &mv16_ahead);
    moe_env_distance("MOE_MATVEC_PREFETCH_Q4X8", 65536, &q4x8_ahead);
    if (c->avx512f && c->f16c) {
        widen_bf16_impl = widen_bf16_512;
        narrow_bf16_impl = narrow_bf16_512;
        if (c->avx512bw && c->avx512vl) narrow_f16_impl = narrow_f16_512;
        widen_f16_impl = widen_f16_512;
        f32_impl = moe_cpu_is_amd(c) ? f32_512 : f32_rows4_512;
        const char *rows = getenv("MOE_MATVEC_F32_ROWS");
        if (rows && strcmp(rows, "1") == 0) f32_impl = f32_512;
        if (rows && strcmp(rows, "4") == 0) f32_impl = f32_rows4_512;
        bf16_impl = bf16_512;
        f16_impl = f16_512;
    }
    if (c->avx512f && c->avx512bw && c->avx512vl && c->f16c) {
        dequantize_q8_impl = dequantize_q8_512;
        quantize_activation_impl = quantize_activation_512;
        dequantize_q4_impl = dequantize_q4_groups_512;
    }
    if (c->avx512f && c->avx512vl && c->avx512vnni && c->avx2 && c->f16c) {
        mxfp4_impl = mxfp4_512;
        if (c->avx512bw) {
            q8_impl = q8_512;
            q4_impl = q4_512_entry;
            q4x8_impl = q4x8_512;
        }
    }
#endif
}

void moe_dequantize_row_q8(const uint8_t *in, float *y, long cols) { dequantize_q8_impl(in, y, cols); }
void moe_dequantize_row_q4(const uint8_t *in, float *y, long cols) { dequantize_q4_impl(in, 32, in + cols / 2, 4, y, cols / 64); }
void moe_dequantize_row_q4x8(const uint8_t *w, long row, float *y, long cols) {
    const uint8_t *b = q4x8_block(w, row, cols);
    long k = row % 8;
    dequantize_q4_impl(b + 32 * k, 288, b + 256 + 4 * k, 288, y, cols / 64);
}
void moe_widen_bf16(const uint16_t *in, float *y, long n) { widen_bf16_impl(in, y, n); }
void moe_narrow_bf16(const float *x, uint16_t *y, long n) { narrow_bf16_impl(x, y, n); }
void moe_quantize_activation(const float *x, int8_t *q, float *d, float *sums, long n, long block) {
    if (block % 16 == 0) quantize_activation_impl(x, q, d, sums, n, block);
    else quantize_activation_scalar(x, q, d, sums, n, block);
}
void moe_quantize_activation_portable(const float *x, int8_t *q, float *d, float *sums, long n, long block) {
    quantize_activation_scalar(x, q, d, sums, n, block);
}
void moe_narrow_bf16_portable(const float *x, uint16_t *y, long n) { narrow_bf16_scalar(x, y, n); }
void moe_narrow_f16(const float *x, uint16_t *y, long n) { narrow_f16_impl(x, y, n); }
void moe_narrow_f16_portable(const float *x, uint16_t *y, long n) { narrow_f16_scalar(x, y, n); }
void moe_widen_f16(const uint16_t *in, float *y, long n) { widen_f16_impl(in, y, n); }

void moe_dequantize_row_q8_portable(const uint8_t *in, float *y, long cols) { dequantize_row_q8_scalar(in, y, cols); }
void moe_dequantize_row_q4_portable(const uint8_t *in, float *y, long cols) {
    dequantize_q4_groups_scalar(in, 32, in + cols / 2, 4, y, cols / 64);
}
void moe_dequantize_row_q4x8_portable(const uint8_t *w, long row, float *y, long cols) {
    const uint8_t *b = q4x8_block(w, row, cols);
    long k = row % 8;
    dequantize_q4_groups_scalar(b + 32 * k, 288, b + 256 + 4 * k, 288, y, cols / 64);
}
void moe_widen_bf16_portable(const uint16_t *in, float *y, long n) { widen_bf16_scalar(in, y, n); }
void moe_widen_f16_portable(const uint16_t *in, float *y, long n) { widen_f16_scalar(in, y, n); }

int moe_matvec_f32(const float *w, const float *x, float *y, long rows, long cols) {
    if (!f32_impl) return 0;
    f32_impl(w, x, y, rows, cols);
    return 1;
}

int moe_matvec_f32_streams(int streams, const float *w, const float *x, float *y, long rows, long cols) {
#if defined(__x86_64__)
    if (!f32_impl) return 0;
    (streams == 4 ? f32_rows4_512 : f32_512)(w, x, y, rows, cols);
    return 1;
#else
    (void)streams, (void)w, (void)x, (void)y, (void)rows, (void)cols;
    return 0;
#endif
}

void moe_matvec_bf16(const uint16_t *w, const float *x, float *y, long rows, long cols) { bf16_impl(w, x, y, rows, cols); }
void moe_matvec_f16(const uint16_t *w, const float *x, float *y, long rows, long cols) { f16_impl(w, x, y, rows, cols); }
void moe_matvec_q8(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols) {
    q8_impl(w, xq, xd, xs, y, rows, cols);
}
void moe_matvec_q4(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, const void *packed, float *y, long rows,
                   long cols) {
    q4_impl(w, xq, xd, xs, packed, y, rows, cols);
}

void moe_interleave_q4x8(const uint8_t *rows, uint8_t *block, long cols) {
    long rb = moe_q4_row_bytes(cols);
    for (long g = 0; g < cols / 64; g++) {
        for (long k = 0; k < 8; k++) {
            memcpy(block + g * 288 + 32 * k, rows + k * rb + g * 32, 32);
            memcpy(block + g * 288 + 256 + 4 * k, rows + k * rb + cols / 2 + g * 4, 4);
        }
    }
}

// Rows before the first whole block and after the last one (a range that does not start or end on a block's
// edge) are computed one at a time.
static void q4x8_range(void (*blocks)(const uint8_t *, const int8_t *, const float *, const float *, float *, long, long), const uint8_t *w,
                       long row0, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols) {
    long r = row0, end = row0 + rows;
    for (; r < end && r % 8 != 0; r++) y[r - row0] = q4x8_dot_scalar(w, r, xq, xd, xs, cols);
    long whole = (end - r) / 8;
    if (whole > 0) blocks(q4x8_block(w, r, cols), xq, xd, xs, y + (r - row0), whole, cols);
    for (r += 8 * whole; r < end; r++) y[r - row0] = q4x8_dot_scalar(w, r, xq, xd, xs, cols);
}

void moe_matvec_q4x8(const uint8_t *w, long row0, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols) {
    q4x8_range(q4x8_impl, w, row0, xq, xd, xs, y, rows, cols);
}

void moe_matvec_q4x8_portable(const uint8_t *w, long row0, const int8_t *xq, const float *xd, const float *xs, float *y, long rows,
                              long cols) {
    q4x8_range(q4x8_blocks_portable, w, row0, xq, xd, xs, y, rows, cols);
}

long moe_q4_packed_bytes(long n) {
    return (n / 128) * 128 + 64;
}

void moe_pack_activation_q4(const int8_t *xq, long n, void *out) {
    long np = n / 128;
    int8_t *codes = (int8_t *)out;
    for (long p = 0; p < np; p++) {
        const int8_t *g0 = xq + p * 128, *g1 = g0 + 64;
        memcpy(codes + p * 128, g0, 32);
        memcpy(codes + p * 128 + 32, g1, 32);
        memcpy(codes + p * 128 + 64, g0 + 32, 32);
        memcpy(codes + p * 128 + 96, g1 + 32, 32);
    }
}

void moe_matvec_bf16_portable(const uint16_t *w, const float *x, float *y, long rows, long cols) { bf16_portable(w, x, y, rows, cols); }
void moe_matvec_f16_portable(const uint16_t *w, const float *x, float *y, long rows, long cols) { f16_portable(w, x, y, rows, cols); }
void moe_matvec_mxfp4(const uint8_t *blocks, const uint8_t *scales, const int8_t *xq, const float *xd, const float *xs,
                      const void *packed, float *y, long rows, long cols) {
    mxfp4_impl(blocks, scales, xq, xd, xs, (const int8_t *)packed, y, rows, cols);
}
void moe_pack_activation_mxfp4(const int8_t *xq, long n, void *out) {
    int8_t *o = (int8_t *)out;
    long nb = n / 32;
    for (long b = 0; b + 2 <= nb; b += 2) {
        // Blocks b and b + 1: their even elements (16 + 16), then their odd ones, as the codes' nibbles split.
        for (int h = 0; h < 2; h++) {
            for (int i = 0; i < 16; i++) {
                o[b * 32 + h * 16 + i] = xq[(b + h) * 32 + 2 * i];
                o[b * 32 + 32 + h * 16 + i] = xq[(b + h) * 32 + 2 * i + 1];
            }
        }
    }
}
void moe_matvec_mxfp4_portable(const uint8_t *blocks, const uint8_t *scales, const int8_t *xq, const float *xd, float *y, long rows,
                               long cols) {
    mxfp4_portable(blocks, scales, xq, xd, y, rows, cols);
}
void moe_matvec_q8_portable(const uint8_t *w, const int8_t *xq, const float *xd, float *y, long rows, long cols) {
    q8_portable(w, xq, xd, y, rows, cols);
}
void moe_matvec_q4_portable(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols) {
    q4_portable(w, xq, xd, xs, y, rows, cols);
}
