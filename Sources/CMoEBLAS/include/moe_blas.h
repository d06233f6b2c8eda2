// swift-moe's view of the machine: what the CPU can execute (CPUID), the BLAS loaded to match it, and a
// register-only FMA probe that measures the vector peak without any BLAS.
//
// Why the BLAS is loaded at run time: OpenBLAS picks its kernels once, in its library constructor, from the
// CPU *model* it recognizes (or OPENBLAS_CORETYPE). On a CPU newer than the library it falls back to its SSE3
// "Prescott" kernels, 3-6x slower. Linking it normally runs that constructor before any of our code can act, so
// the library is instead opened with dlopen after OPENBLAS_CORETYPE has been chosen from the CPU's *features*
// (unless the user set it). Every program that links MoETensor (the `moe` tool, the tests) goes through here.
#ifndef MOE_BLAS_H
#define MOE_BLAS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- CPU --------------------------------------------------------------------------------------------------

enum {
    MOE_ISA_SSE2 = 0,     // the x86-64 baseline
    MOE_ISA_SSE4 = 1,     // SSSE3 + SSE4.1/4.2
    MOE_ISA_AVX = 2,      // AVX, no FMA/AVX2
    MOE_ISA_AVX2 = 3,     // AVX2 + FMA
    MOE_ISA_AVX512 = 4,   // AVX-512 F, CD, BW, DQ, VL (with the OS saving ZMM state)
    MOE_ISA_OTHER = -1,   // not x86-64
};

typedef struct {
    char vendor[16];          // "GenuineIntel", "AuthenticAMD", ...
    char brand[64];           // the processor brand string
    int family, model, stepping;
    // Features, each 1 only when the CPU has it *and* the OS saves the registers it needs (XGETBV).
    int sse3, ssse3, sse41, sse42, avx, fma, f16c, avx2;
    int avx512f, avx512cd, avx512bw, avx512dq, avx512vl, avx512vnni, avx512bf16, avx512fp16, avxvnni;
    int amx_advertised;       // CPUID lists AMX-TILE (it may still trap: see amx_permitted)
    int amx_permitted;        // the kernel granted AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM); never executed here
    int isa;                  // MOE_ISA_*: the widest vector ISA usable
    int vector_bits;          // 128, 256 or 512
    double clock_ghz;         // from /proc/cpuinfo "cpu MHz" (nominal on a VM; turbo may run higher), 0 if unknown
    int isa_cap;              // MOE_ISA_* level set by MOE_MAX_ISA (features above it are off), -1 when not capped
} moe_cpu_t;

/// The CPU this process runs on, read once. MOE_MAX_ISA=sse2|sse4|avx|avx2|avx512 caps the features used.
const moe_cpu_t *moe_cpu(void);
/// A one-line message when MOE_MAX_ISA is invalid (NULL otherwise).
const char *moe_cpu_error(void);
/// 1 for AMD's (and Hygon's, AMD-derived) x86 CPUs: kernels and BLAS core types tuned per vendor ask this.
int moe_cpu_is_amd(const moe_cpu_t *c);
/// A kernel's tuning distance from the environment variable `name` (an integer, clamped to 0...most): 1 and *out
/// set when the variable is set, else 0 and *out untouched. The kernels' MOE_*_PREFETCH overrides read it.
int moe_env_distance(const char *name, long most, long *out);

/// The OpenBLAS core types that suit `cpu`, best first, each a name OPENBLAS_CORETYPE accepts. Writes at most
/// `max` pointers to static strings into `out` and returns how many. Exposed for tests.
int moe_openblas_cores_for(const moe_cpu_t *cpu, const char **out, int max);

/// The core types compiled into the OpenBLAS file at `path` (its exported `gotoblas_<CORE>` tables that hold
/// data), as a comma-separated upper-case list into `out`. Returns the count, or -1 when the file cannot be read
/// as an ELF shared library (then `out` holds the reason).
int moe_openblas_known_cores(const char *path, char *out, size_t outlen);

// ---- BLAS -------------------------------------------------------------------------------------------------

enum { MOE_BLAS_OPENBLAS = 1, MOE_BLAS_BLIS = 2 };
enum {
    MOE_CORE_FROM_USER = 0,    // OPENBLAS_CORETYPE was set by the user and is respected
    MOE_CORE_FROM_CPUID = 1,   // chosen here from the CPU's features and the cores the library knows
    MOE_CORE_FROM_LIBRARY = 2, // the library chose (BLIS selects by features itself; or no suitable core known)
};

typedef struct {
    int kind;                  // MOE_BLAS_*
    char path[512];            // the file actually loaded
    char version[256];         // openblas_get_config() or BLIS's version string
    char kernel[64];           // the kernel it runs: openblas_get_corename() or bli_arch_string()
    char requested[64];        // the core asked for through OPENBLAS_CORETYPE ("" if none)
    int core_source;           // MOE_CORE_FROM_*
    char known_cores[512];     // cores the OpenBLAS file knows, comma-separated ("" if unknown)
    char warning[512];         // non-empty when something is off (the kernel differs from the one asked for)
    int own_threads;           // 1: the library threads its own calls (MOE_BLAS_OWN_THREADS=1); 0: single-threaded
} moe_blas_info_t;

typedef struct {
    void (*sgemm)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
    void (*dgemm)(int, int, int, int, int, int, double, const double *, int, const double *, int, double, double *, int);
    void (*sgemv)(int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
    void (*dgemv)(int, int, int, int, double, const double *, int, const double *, int, double, double *, int);
    void (*set_threads)(int);
    int (*get_threads)(void);
    // LAPACK's symmetric eigensolver (OpenBLAS ships LAPACK); NULL when the library has none (BLIS).
    void (*dsyevd)(const char *, const char *, const int *, double *, const int *, double *, double *, const int *, int *,
                   const int *, int *);
} moe_blas_table_t;

/// Loads the BLAS (once; later calls return the first result). Returns 0 on success; otherwise writes a one-line
/// message naming the problem and the fix into `err` and returns -1.
/// The library is MOE_BLAS_LIBRARY when set (an OpenBLAS or BLIS file), else OpenBLAS (libopenblas.so.0). It is
/// made single-threaded: swift-moe splits products across its own threads (unless MOE_BLAS_OWN_THREADS=1).
int moe_blas_load(char *err, size_t errlen);

/// What was loaded (valid after a successful moe_blas_load).
const moe_blas_info_t *moe_blas_info(void);

extern const moe_blas_table_t *volatile moe_blas_ready;
/// Loads the BLAS or, if that fails, prints the message to stderr and exits with status 1: nothing can be
/// computed without it. Programs that want a typed error call moe_blas_load first.
const moe_blas_table_t *moe_blas_load_or_exit(void);

static inline const moe_blas_table_t *moe_blas(void) {
    const moe_blas_table_t *t = __atomic_load_n(&moe_blas_ready, __ATOMIC_ACQUIRE);
    return t ? t : moe_blas_load_or_exit();
}

// Row-major products; trans flags are 0 (no) or 1 (yes). CBLAS constants: RowMajor 101, NoTrans 111, Trans 112.
static inline void moe_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                             const float *b, int ldb, float beta, float *c, int ldc) {
    moe_blas()->sgemm(101, ta ? 112 : 111, tb ? 112 : 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
static inline void moe_dgemm(int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda,
                             const double *b, int ldb, double beta, double *c, int ldc) {
    moe_blas()->dgemm(101, ta ? 112 : 111, tb ? 112 : 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
/// y = alpha op(A) x + beta y with A row-major [rows, cols].
static inline void moe_sgemv(int ta, int rows, int cols, float alpha, const float *a, int lda, const float *x,
                             int incx, float beta, float *y, int incy) {
    moe_blas()->sgemv(101, ta ? 112 : 111, rows, cols, alpha, a, lda, x, incx, beta, y, incy);
}
static inline void moe_dgemv(int ta, int rows, int cols, double alpha, const double *a, int lda, const double *x,
                             int incx, double beta, double *y, int incy) {
    moe_blas()->dgemv(101, ta ? 112 : 111, rows, cols, alpha, a, lda, x, incx, beta, y, incy);
}
/// Eigenvalues (ascending, into w[n]) and eigenvectors of the symmetric n x n matrix a (row-major; one triangle
/// is read), by LAPACK's dsyevd: on return column j of a (row-major) is the unit eigenvector of w[j]. Returns 0,
/// LAPACK's positive info when it did not converge, -1 when the loaded library has no LAPACK, -2 without memory.
int moe_dsyevd(int n, double *a, double *w);
static inline void moe_blas_set_threads(int n) { moe_blas()->set_threads(n); }
static inline int moe_blas_get_threads(void) { return moe_blas()->get_threads(); }

// ---- parallel regions -------------------------------------------------------------------------------------

/// How many of swift-moe's parallel regions enclose the calling thread (thread-local): a product inside one
/// runs on this thread alone instead of splitting again.
int moe_parallel_depth(void);
void moe_parallel_enter(void);
void moe_parallel_leave(void);

/// A region's item: fn(ctx, index).
typedef void (*moe_task_fn)(void *ctx, long index);
/// Runs fn(ctx, i) for every i in [0, count) on the caller and the pool's `threads - 1` workers (started at the
/// first call), returning when all are done. Returns 0 without running anything when the pool is busy with
/// another caller's region (or has no workers): the caller then runs the items some other way.
int moe_pool_run(int threads, long count, moe_task_fn fn, void *ctx);

// ---- row kernels (Float) ----------------------------------------------------------------------------------

/// The largest element of x[0..<n] (NaNs skipped; -infinity when empty), with the widest usable vector ISA.
float moe_max_f32(const float *x, long n);
/// y[j] = Float.fastExp(x[j] - shift), bit-identical to MoETensor's scalar definition; returns the sum of y.
float moe_exp_shifted_f32(const float *x, float *y, long n, float shift);
/// The same, without vector instructions (the reference the tests hold the vector kernels to).
float moe_max_f32_portable(const float *x, long n);
float moe_exp_shifted_f32_portable(const float *x, float *y, long n, float shift);
/// out[j] = g[j] / (1 + exp(-g[j])) u[j] (SwiGLU), with the exponential of moe_exp_shifted_f32: bit-identical to
/// the portable version and to Swift's `g / (1 + Float.fastExp(-g)) * u`.
void moe_swiglu_f32(const float *g, const float *u, float *out, long n);
void moe_swiglu_f32_portable(const float *g, const float *u, float *out, long n);

/// y[i] = x[i] s with non-temporal (streaming) stores where y is aligned: for outputs larger than the caches.
void moe_scale_stream_f32(const float *x, float *y, long n, float s);

/// AdamW's update of n elements (see MoETraining's AdamW), each lane equal to the scalar formula.
void moe_adamw_f32(float *p, float *m, float *v, const float *g, long n, float decay, float lr, float b1, float b2, float c1,
                   float c2, float eps);
void moe_adamw_f32_portable(float *p, float *m, float *v, const float *g, long n, float decay, float lr, float b1, float b2,
                            float c1, float c2, float eps);

// ---- the vector FMA peak, without BLAS ----------------------------------------------------------------------

/// Runs `iterations` rounds of independent vector FMAs (16 with AVX-512, 12 with AVX2; without FMA 6 multiplies
/// and 6 adds in independent chains) on the calling thread with the widest usable ISA, and returns the
/// single-precision FLOPs done (2 per lane per FMA, 1 per lane per multiply or add).
double moe_fma_probe(long iterations);
/// The same for AVX-512 VNNI's int8 dot product (vpdpbusd) and AVX512_BF16's (vdpbf16ps): the operations done
/// (2 per multiply-add), or 0 where the CPU lacks the instruction.
double moe_int8_probe(long iterations);
double moe_bf16_probe(long iterations);
/// The maximum of x[0..<n), read as `streams` (1-8) equal contiguous parts advanced together: the read-bandwidth
/// probe (a core's one sequential stream can read less than memory delivers).
float moe_read_streams_f32(const float *x, long n, int streams);

/// Decode attention for one query position: out[h] = softmax(scale q[h] . K_g) V_g for query heads h in [h0, h1),
/// g = h / (hq / hkv); q and out [hq, dh], k and v the cache rows [s, hkv dh]; scratch holds s floats. `sinks` [hq]
/// (or NULL): a logit per head in the softmax's denominator only (gpt-oss). A sliding window is the caller's k and
/// v pointers advanced to the first visible row.
void moe_attention_decode(const float *q, const float *k, const float *v, float *out, long s, long hq, long hkv, long dh,
                          float scale, const float *sinks, long h0, long h1, float *scratch);
/// The same on an f16 cache (k and v [s, hkv dh] halves): the f32 result on the widened values, bit for bit. Head
/// dims other than 64 widen a KV head at a time into scratch, which must hold moe_attention_decode_f16_scratch(s,
/// dh) floats (s on the AVX-512 path for dh 64, s + 2 s dh otherwise).
long moe_attention_decode_f16_scratch(long s, long dh);
void moe_attention_decode_f16(const float *q, const uint16_t *k, const uint16_t *v, float *out, long s, long hq, long hkv, long dh,
                              float scale, const float *sinks, long h0, long h1, float *scratch);

/// Makes SIGBUS (a read of a memory-mapped file that was truncated under the mapping) print `text` as one line
/// on stderr and exit with status 1 instead of dying silently.
void moe_install_mapped_file_guard(const char *text);

// ---- weights as stored: 16-bit floats and block-quantized rows (matvec.c) -------------------------------------

float moe_f16_to_f32(uint16_t h);
/// Round to nearest even; overflow gives infinity.
uint16_t moe_f32_to_f16(float f);
/// Bytes of one row of `cols` weights in swift-moe's q8 (Q8_0-style, 32 per block) and q4 (affine, 64 per group)
/// row-planar formats; `cols` must be a multiple of 32 (q8) or 64 (q4).
long moe_q8_row_bytes(long cols);
long moe_q4_row_bytes(long cols);
void moe_quantize_row_q8(const float *x, uint8_t *out, long cols);
void moe_quantize_row_q4(const float *x, uint8_t *out, long cols);
void moe_dequantize_row_q8(const uint8_t *in, float *y, long cols);
void moe_dequantize_row_q4(const uint8_t *in, float *y, long cols);
void moe_widen_bf16(const uint16_t *in, float *y, long n);
void moe_widen_f16(const uint16_t *in, float *y, long n);
/// The same conversions without vector instructions (the tests' reference).
void moe_dequantize_row_q8_portable(const uint8_t *in, float *y, long cols);
void moe_dequantize_row_q4_portable(const uint8_t *in, float *y, long cols);
void moe_widen_bf16_portable(const uint16_t *in, float *y, long n);
void moe_widen_f16_portable(const uint16_t *in, float *y, long n);
/// Per block of `block` (32 for q8 weights, 64 for q4): d[b] = max|x|/127, q = round(x/d), sums[b] = d[b] * (sum of
/// the block's codes). n % block == 0.
void moe_quantize_activation(const float *x, int8_t *q, float *d, float *sums, long n, long block);
void moe_quantize_activation_portable(const float *x, int8_t *q, float *d, float *sums, long n, long block);
/// y[r] = W[r, :] . x for r in [0, rows): W row-major as stored, x in f32 (16-bit) or quantized (q8, q4).
/// f32 weights with AVX-512 (returns 1), or nothing (returns 0: use the BLAS's sgemv).
int moe_matvec_f32(const float *w, const float *x, float *y, long rows, long cols);
/// The same through one kernel: `streams` 1 (a row at a time) or 4 (four rows at once); for tests.
int moe_matvec_f32_streams(int streams, const float *w, const float *x, float *y, long rows, long cols);
void moe_matvec_bf16(const uint16_t *w, const float *x, float *y, long rows, long cols);
void moe_matvec_f16(const uint16_t *w, const float *x, float *y, long rows, long cols);
/// q8 also takes the activation's scaled block sums xs (the vector kernel offsets the weights to unsigned).
void moe_matvec_q8(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols);
/// q4 also takes the activation packed for its 512-bit kernel by moe_pack_activation_q4 (a buffer of
/// moe_q4_packed_bytes(cols) bytes).
void moe_matvec_q4(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, const void *packed, float *y, long rows,
                   long cols);
long moe_q4_packed_bytes(long n);
/// q4x8 (matvec.c has the layout): eight q4 rows (row-planar, consecutive) rewritten as one interleaved block.
void moe_interleave_q4x8(const uint8_t *rows, uint8_t *block, long cols);
/// Row `row` of the q4x8 matrix at w (its first row's block), dequantized.
void moe_dequantize_row_q4x8(const uint8_t *w, long row, float *y, long cols);
void moe_dequantize_row_q4x8_portable(const uint8_t *w, long row, float *y, long cols);
/// y[i] = W[row0 + i, :] . x for i in [0, rows), W the q4x8 matrix at w; x quantized in blocks of 64 (no packing).
void moe_matvec_q4x8(const uint8_t *w, long row0, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols);
void moe_matvec_q4x8_portable(const uint8_t *w, long row0, const int8_t *xq, const float *xd, const float *xs, float *y, long rows,
                              long cols);
/// Prefill's products on q4x8 and q8 weights (intgemm.c): y[t * ldy + (r - row0)] = W[r, :] . x_t for t in
/// [0, tokens) and r in [row0, min(rows, row0 + nrows)), W the matrix at w ([rows, cols]), x_t quantized per block
/// as for the matrix-vector products (q4x8: per 64, xq [tokens, cols], xd and xs [tokens, cols/64]; q8: per 32,
/// xd [tokens, cols/32]). row0 is a multiple of 16. The values of moe_matvec_q4x8_portable / moe_matvec_q8_portable
/// token by token, up to the order of float rounding; AVX-512 VNNI when moe_gemm_int8_fast() says so, else those
/// portable loops.
int moe_gemm_int8_fast(void);
void moe_gemm_q4x8(const uint8_t *w, long rows, long cols, long row0, long nrows, const int8_t *xq, const float *xd, const float *xs,
                   long tokens, float *y, long ldy);
void moe_gemm_q4x8_portable(const uint8_t *w, long rows, long cols, long row0, long nrows, const int8_t *xq, const float *xd,
                            const float *xs, long tokens, float *y, long ldy);
void moe_gemm_q8(const uint8_t *w, long rows, long cols, long row0, long nrows, const int8_t *xq, const float *xd, long tokens, float *y,
                 long ldy);
void moe_gemm_q8_portable(const uint8_t *w, long rows, long cols, long row0, long nrows, const int8_t *xq, const float *xd, long tokens,
                          float *y, long ldy);
/// Per pair of groups of 64: the codes as [first halves of both | second halves of both] (the kernel reads the
/// scales and sums as moe_quantize_activation wrote them).
void moe_pack_activation_q4(const int8_t *xq, long n, void *out);
/// The same products without vector instructions (the tests' reference).
void moe_matvec_bf16_portable(const uint16_t *w, const float *x, float *y, long rows, long cols);
void moe_matvec_f16_portable(const uint16_t *w, const float *x, float *y, long rows, long cols);
void moe_matvec_q8_portable(const uint8_t *w, const int8_t *xq, const float *xd, float *y, long rows, long cols);
/// BF16 products through oneDNN (libdnnl.so.2, opened at first use; bf16gemm.c): c[m, n] (row stride ldc, f32) =
/// a[m, k] (row stride lda) b[n, k]^T (row stride ldb), bf16 inputs, f32 accumulation, on the calling thread.
/// Returns 0 (and writes nothing) when oneDNN, the CPU's AVX512_BF16, or the product is unavailable. (MOE_PREFILL
/// is read where the arithmetic is chosen, InferenceSession.PrefillArithmetic.automatic, not here.)
int moe_bf16_gemm_available(void);
/// Whether prefill should use them by default: available, and faster than sgemm on this CPU (AMD).
int moe_bf16_gemm_preferred(void);
int moe_bf16_gemm(long m, long n, long k, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c, long ldc);
/// f32 -> bf16, rounding to nearest even (NaN stays NaN).
void moe_narrow_bf16(const float *x, uint16_t *y, long n);
void moe_narrow_bf16_portable(const float *x, uint16_t *y, long n);
/// x rounded to f16 (nearest even; NaN -> quiet NaN of x's sign), as moe_f32_to_f16 element by element.
void moe_narrow_f16(const float *x, uint16_t *y, long n);
void moe_narrow_f16_portable(const float *x, uint16_t *y, long n);

/// MXFP4 (gpt-oss's experts): `blocks` [rows, cols/2] codes and `scales` [rows, cols/32] E8M0 bytes; x quantized in
/// blocks of 32 as for q8. Dequantization is exact: y[j] = fp4(code j) 2^(s - 127).
void moe_dequantize_row_mxfp4(const uint8_t *blocks, const uint8_t *scales, float *y, long cols);
/// The vector kernel takes the block sums xs and the activation packed by moe_pack_activation_mxfp4 (n bytes).
void moe_matvec_mxfp4(const uint8_t *blocks, const uint8_t *scales, const int8_t *xq, const float *xd, const float *xs,
                      const void *packed, float *y, long rows, long cols);
void moe_pack_activation_mxfp4(const int8_t *xq, long n, void *out);
void moe_matvec_mxfp4_portable(const uint8_t *blocks, const uint8_t *scales, const int8_t *xq, const float *xd, float *y, long rows,
                               long cols);
void moe_matvec_q4_portable(const uint8_t *w, const int8_t *xq, const float *xd, const float *xs, float *y, long rows, long cols);

#ifdef __cplusplus
}
#endif
#endif
