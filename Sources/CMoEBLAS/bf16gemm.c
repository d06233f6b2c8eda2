// BF16 matrix products for prefill, through oneDNN (Debian's libdnnl2, oneDNN 2.x) opened at run time: its matmul
// runs AVX512_BF16's vdpbf16ps (f32 accumulation) at about 2.3x sgemm's rate on one core here (183-202 against
// 67-85 GFLOP/s on M1's expert shapes). The library is optional: without it, or on a CPU without AVX512_BF16,
// moe_bf16_gemm_available() says no and prefill stays on sgemm.
//
// oneDNN 2.x's C API is used without its headers: descriptors are opaque buffers larger than the library's
// (dnnl_memory_desc_t is 696 bytes, dnnl_matmul_desc_t 2800 in 2.6), and the few enum values are those of
// oneapi/dnnl/dnnl_types.h. oneDNN runs each product on the calling thread (OMP_NUM_THREADS=1 is set before it
// loads, unless the process set it): callers split the work across their own threads.
#include "moe_blas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef int64_t dims_t[12];
typedef struct { _Alignas(64) unsigned char bytes[2048]; } memory_desc_t;
typedef struct { _Alignas(64) unsigned char bytes[8192]; } matmul_desc_t;
typedef struct { int arg; void *memory; } exec_arg_t;

enum { DNNL_SUCCESS = 0, DNNL_BF16 = 2, DNNL_F32 = 3, DNNL_CPU = 1, DNNL_IN_ORDER = 1 };
enum { ARG_SRC = 1, ARG_DST = 17, ARG_WEIGHTS = 33 };

static struct {
    int (*engine_create)(void **, int, size_t);
    int (*stream_create)(void **, void *, unsigned);
    int (*md_by_strides)(memory_desc_t *, int, const dims_t, int, const dims_t);
    int (*matmul_desc)(matmul_desc_t *, const memory_desc_t *, const memory_desc_t *, const memory_desc_t *, const memory_desc_t *);
    int (*pd_create)(void **, const void *, const void *, void *, const void *);
    int (*pd_destroy)(void *);
    int (*prim_create)(void **, const void *);
    int (*memory_create)(void **, const memory_desc_t *, void *, void *);
    int (*memory_destroy)(void *);
    int (*execute)(const void *, void *, int, const exec_arg_t *);
    int (*stream_wait)(void *);
    void *engine;
} dn;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int ready = 0;

static void load(void) {
    if (!moe_cpu()->avx512bf16) return;
    setenv("OMP_NUM_THREADS", "1", 0);
    void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
#define SYM(field, name) *(void **)(&dn.field) = dlsym(h, name); if (!dn.field) return;
    SYM(engine_create, "dnnl_engine_create")
    SYM(stream_create, "dnnl_stream_create")
    SYM(md_by_strides, "dnnl_memory_desc_init_by_strides")
    SYM(matmul_desc, "dnnl_matmul_desc_init")
    SYM(pd_create, "dnnl_primitive_desc_create")
    SYM(pd_destroy, "dnnl_primitive_desc_destroy")
    SYM(prim_create, "dnnl_primitive_create")
    SYM(memory_create, "dnnl_memory_create")
    SYM(memory_destroy, "dnnl_memory_destroy")
    SYM(execute, "dnnl_primitive_execute")
    SYM(stream_wait, "dnnl_stream_wait")
#undef SYM
    if (dn.engine_create(&dn.engine, DNNL_CPU, 0) != DNNL_SUCCESS) return;
    ready = 1;
}

int moe_bf16_gemm_available(void) {
    pthread_once(&once, load);
    return ready;
}

// Whether prefill should take it. On AMD Zen 4, oneDNN's BF16 matmul ran 2.3x sgemm on M1's expert shapes (see
// above). On the Intel Xeon family 6 model 207 (AVX512_BF16, no AMX advertised), it ran 0.55-0.8x OpenBLAS's
// Cooperlake sgemm on one core (brg:avx512_core_bf16, 70-75 GFLOP/s, against 89-134 for 128 and 512 x 2816 x 1024),
// and M1 prefill from q4 and q8 weights 1.1-1.5x faster widened to f32 for sgemm. So: on AMD. (MOE_PREFILL, a
// user's explicit choice, is read where the choice is made: InferenceSession.PrefillArithmetic.automatic.)
int moe_bf16_gemm_preferred(void) { return moe_bf16_gemm_available() && moe_cpu_is_amd(moe_cpu()); }

// Primitives by shape: oneDNN builds (JIT-compiles) one per shape in a few hundred microseconds; a prompt's
// expert blocks repeat a few dozen shapes.
#define CACHE 512
static struct entry {
    long m, n, k, lda, ldb, ldc;
    void *prim;
} cache[CACHE];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void *primitive(long m, long n, long k, long lda, long ldb, long ldc, const memory_desc_t *a, const memory_desc_t *b,
                       const memory_desc_t *c) {
    unsigned long hsh = (unsigned long)(m * 1000003 ^ n * 10007 ^ k * 101 ^ lda * 7 ^ ldb * 13 ^ ldc * 17) % CACHE;
    pthread_mutex_lock(&cache_lock);
    for (int probe = 0; probe < CACHE; probe++) {
        struct entry *e = &cache[(hsh + probe) % CACHE];
        if (e->prim && e->m == m && e->n == n && e->k == k && e->lda == lda && e->ldb == ldb && e->ldc == ldc) {
            pthread_mutex_unlock(&cache_lock);
            return e->prim;
        }
        if (!e->prim) break;
    }
    pthread_mutex_unlock(&cache_lock);
    matmul_desc_t md;
    void *pd = NULL, *prim = NULL;
    if (dn.matmul_desc(&md, a, b, NULL, c) != DNNL_SUCCESS) return NULL;
    if (dn.pd_create(&pd, &md, NULL, dn.engine, NULL) != DNNL_SUCCESS) return NULL;
    int ok = dn.prim_create(&prim, pd) == DNNL_SUCCESS;
    dn.pd_destroy(pd);
    if (!ok) return NULL;
    pthread_mutex_lock(&cache_lock);
    for (int probe = 0; probe < CACHE; probe++) {
        struct entry *e = &cache[(hsh + probe) % CACHE];
        if (!e->prim) {
            *e = (struct entry){m, n, k, lda, ldb, ldc, prim};
            break;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return prim;  // a full table leaves the primitive uncached (and alive): correct, only slower
}

static __thread void *stream = NULL;

int moe_bf16_gemm(long m, long n, long k, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c, long ldc) {
    if (!moe_bf16_gemm_available()) return 0;
    if (!stream && dn.stream_create(&stream, dn.engine, DNNL_IN_ORDER) != DNNL_SUCCESS) return 0;
    memory_desc_t am, bm, cm;
    dims_t ad = {m, k}, as = {lda, 1}, bd = {k, n}, bs = {1, ldb}, cd = {m, n}, cs = {ldc, 1};
    if (dn.md_by_strides(&am, 2, ad, DNNL_BF16, as) || dn.md_by_strides(&bm, 2, bd, DNNL_BF16, bs) ||
        dn.md_by_strides(&cm, 2, cd, DNNL_F32, cs))
        return 0;
    void *prim = primitive(m, n, k, lda, ldb, ldc, &am, &bm, &cm);
    if (!prim) return 0;
    void *amem = NULL, *bmem = NULL, *cmem = NULL;
    int ok = dn.memory_create(&amem, &am, dn.engine, (void *)a) == DNNL_SUCCESS &&
             dn.memory_create(&bmem, &bm, dn.engine, (void *)b) == DNNL_SUCCESS &&
             dn.memory_create(&cmem, &cm, dn.engine, c) == DNNL_SUCCESS;
    if (ok) {
        exec_arg_t args[3] = {{ARG_SRC, amem}, {ARG_WEIGHTS, bmem}, {ARG_DST, cmem}};
        ok = dn.execute(prim, stream, 3, args) == DNNL_SUCCESS && dn.stream_wait(stream) == DNNL_SUCCESS;
    }
    if (amem) dn.memory_destroy(amem);
    if (bmem) dn.memory_destroy(bmem);
    if (cmem) dn.memory_destroy(cmem);
    return ok;
}
