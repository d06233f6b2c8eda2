// Loading the BLAS at run time, after choosing OpenBLAS's kernels from the CPU's features (see moe_blas.h).
#define _GNU_SOURCE
#include "moe_blas.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <elf.h>
#endif

// ---- which cores an OpenBLAS file knows ----------------------------------------------------------------------

// A DYNAMIC_ARCH OpenBLAS exports one parameter table per core type, `gotoblas_HASWELL`, `gotoblas_SKYLAKEX`, ...
// Tables of cores compiled in hold data; the others are zero-filled placeholders in .bss. Reading the dynamic
// symbol table tells which cores the installed version knows without loading it (loading runs its constructor,
// which is the one moment it reads OPENBLAS_CORETYPE).
int moe_openblas_known_cores(const char *path, char *out, size_t outlen) {
    if (outlen) out[0] = 0;
#if defined(__linux__)
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { snprintf(out, outlen, "cannot open %s: %s", path, strerror(errno)); return -1; }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        close(fd);
        snprintf(out, outlen, "%s is too small to be a shared library", path);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    const unsigned char *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED) { snprintf(out, outlen, "cannot map %s: %s", path, strerror(errno)); return -1; }
    int count = -1;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_shentsize != sizeof(Elf64_Shdr)
        || eh->e_shoff > size || (size - eh->e_shoff) / sizeof(Elf64_Shdr) < eh->e_shnum) {
        snprintf(out, outlen, "%s is not a 64-bit ELF shared library", path);
        goto done;
    }
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(base + eh->e_shoff);
    count = 0;
    size_t used = 0;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh->e_shnum) continue;
        const Elf64_Shdr *strs = &sh[sh[i].sh_link];
        if (sh[i].sh_offset > size || sh[i].sh_size > size - sh[i].sh_offset || strs->sh_offset > size
            || strs->sh_size > size - strs->sh_offset || sh[i].sh_entsize != sizeof(Elf64_Sym)) continue;
        const Elf64_Sym *syms = (const Elf64_Sym *)(base + sh[i].sh_offset);
        size_t nsyms = sh[i].sh_size / sizeof(Elf64_Sym);
        const char *names = (const char *)(base + strs->sh_offset);
        for (size_t s = 0; s < nsyms; s++) {
            if (syms[s].st_name >= strs->sh_size || ELF64_ST_TYPE(syms[s].st_info) != STT_OBJECT) continue;
            if (syms[s].st_shndx == SHN_UNDEF || syms[s].st_shndx >= eh->e_shnum) continue;
            if (sh[syms[s].st_shndx].sh_type == SHT_NOBITS) continue;  // a placeholder: this core is not built in
            const char *name = names + syms[s].st_name;
            size_t maxlen = strs->sh_size - syms[s].st_name;
            if (strnlen(name, maxlen) == maxlen || strncmp(name, "gotoblas_", 9) != 0) continue;
            const char *core = name + 9;
            int upper = *core != 0;
            for (const char *p = core; *p; p++) if (!(isupper((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_')) upper = 0;
            if (!upper) continue;
            size_t len = strlen(core);
            if (used + len + 2 > outlen) continue;
            if (used) out[used++] = ',';
            memcpy(out + used, core, len + 1);
            used += len;
            count++;
        }
    }
done:
    munmap((void *)base, size);
    return count;
#else
    snprintf(out, outlen, "not an ELF platform");
    return -1;
#endif
}

static int core_in_list(const char *core, const char *list) {
    size_t n = strlen(core);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncasecmp(p, core, n) == 0) return 1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

// ---- loading ------------------------------------------------------------------------------------------------

const moe_blas_table_t *volatile moe_blas_ready = NULL;
static moe_blas_table_t table;
static moe_blas_info_t info;
static char load_error[1024];
static int load_status = 1;  // 1 = not tried, 0 = loaded, -1 = failed
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

static void (*blis_set)(long);  // kept for the int-taking wrappers below
static long (*blis_get)(void);
static void blis_set_threads(int n) { blis_set((long)n); }
static int blis_get_threads(void) { long n = blis_get(); return n < 1 ? 1 : (int)n; }

static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(load_error, sizeof load_error, fmt, ap);
    va_end(ap);
    return -1;
}

// The OpenBLAS file the dynamic loader would open for its soname: LD_LIBRARY_PATH first, then the usual
// library directories. Found by path so that the file scanned for its cores is the file loaded.
static int find_openblas(char *out, size_t outlen) {
    const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
    const char *dirs[] = {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                          "/usr/local/lib", "/lib/x86_64-linux-gnu", "/lib64"};
    const char *ld = getenv("LD_LIBRARY_PATH");
    if (ld && *ld) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", ld);
        for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save))
            for (size_t n = 0; n < 2; n++) {
                snprintf(out, outlen, "%s/%s", d, names[n]);
                if (access(out, R_OK) == 0) return 1;
            }
    }
    for (size_t d = 0; d < sizeof dirs / sizeof *dirs; d++)
        for (size_t n = 0; n < 2; n++) {
            snprintf(out, outlen, "%s/%s", dirs[d], names[n]);
            if (access(out, R_OK) == 0) return 1;
        }
    return 0;
}

static int load_locked(void) {
    const char *custom = getenv("MOE_BLAS_LIBRARY");
    char path[1024];
    int found;
    if (custom && *custom) {
        snprintf(path, sizeof path, "%s", custom);
        found = 1;
    } else {
        found = find_openblas(path, sizeof path);
        if (!found) snprintf(path, sizeof path, "libopenblas.so.0");
    }

    // Choose OpenBLAS's core before the library's constructor runs (it runs inside dlopen).
    const moe_cpu_t *cpu = moe_cpu();
    if (moe_cpu_error()) return fail("%s", moe_cpu_error());
    const char *user = getenv("OPENBLAS_CORETYPE");
    int setHere = 0;
    info.known_cores[0] = 0;
    if (found) {
        char known[512];
        if (moe_openblas_known_cores(path, known, sizeof known) > 0) snprintf(info.known_cores, sizeof info.known_cores, "%s", known);
    }
    if (user && *user) {
        info.core_source = MOE_CORE_FROM_USER;
        snprintf(info.requested, sizeof info.requested, "%s", user);
    } else if (info.known_cores[0]) {
        const char *cands[8];
        int n = moe_openblas_cores_for(cpu, cands, 8);
        info.core_source = MOE_CORE_FROM_LIBRARY;
        for (int i = 0; i < n; i++)
            if (core_in_list(cands[i], info.known_cores)) {
                snprintf(info.requested, sizeof info.requested, "%s", cands[i]);
                info.core_source = MOE_CORE_FROM_CPUID;
                setenv("OPENBLAS_CORETYPE", cands[i], 1);
                setHere = 1;
                break;
            }
    } else {
        // Not a DYNAMIC_ARCH OpenBLAS file we could read (a single-target build, or BLIS): it keeps its own choice.
        info.core_source = MOE_CORE_FROM_LIBRARY;
    }

    // swift-moe splits products across its own threads (MoETensor's Parallel), so the BLAS runs single-threaded:
    // an OpenBLAS worker left spinning (sched_yield) after a threaded call takes a core from those threads, which
    // on a 2-core machine halved their speed. OPENBLAS_NUM_THREADS=1 at load means no worker threads at all.
    // MOE_BLAS_OWN_THREADS=1 keeps the library's own threading (the ceiling measurement compares the two).
    const char *own = getenv("MOE_BLAS_OWN_THREADS");
    info.own_threads = own && strcmp(own, "1") == 0;
    char *savedThreads = getenv("OPENBLAS_NUM_THREADS") ? strdup(getenv("OPENBLAS_NUM_THREADS")) : NULL;
    if (!info.own_threads) setenv("OPENBLAS_NUM_THREADS", "1", 1);

    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (setHere) unsetenv("OPENBLAS_CORETYPE");  // child processes choose for themselves
    if (!info.own_threads) {
        if (savedThreads) setenv("OPENBLAS_NUM_THREADS", savedThreads, 1);
        else unsetenv("OPENBLAS_NUM_THREADS");
    }
    free(savedThreads);
    if (!h) {
        const char *why = dlerror();
        if (custom && *custom)
            return fail("cannot load the BLAS library MOE_BLAS_LIBRARY=%s (%s); point MOE_BLAS_LIBRARY at an OpenBLAS or BLIS "
                        "shared library, or unset it to use OpenBLAS", custom, why ? why : "unknown error");
        return fail("cannot load OpenBLAS (%s); install it with `apt-get install libopenblas0-pthread` (scripts/setup.sh does), "
                    "or point MOE_BLAS_LIBRARY at an OpenBLAS or BLIS shared library", why ? why : "libopenblas.so.0 not found");
    }

    table.sgemm = (void (*)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int))dlsym(h, "cblas_sgemm");
    table.dgemm = (void (*)(int, int, int, int, int, int, double, const double *, int, const double *, int, double, double *, int))dlsym(h, "cblas_dgemm");
    table.sgemv = (void (*)(int, int, int, int, float, const float *, int, const float *, int, float, float *, int))dlsym(h, "cblas_sgemv");
    table.dgemv = (void (*)(int, int, int, int, double, const double *, int, const double *, int, double, double *, int))dlsym(h, "cblas_dgemv");
    table.dsyevd = (void (*)(const char *, const char *, const int *, double *, const int *, double *, double *, const int *, int *,
                             const int *, int *))dlsym(h, "dsyevd_");
    if (!table.sgemm || !table.dgemm || !table.sgemv || !table.dgemv)
        return fail("the BLAS library %s has no CBLAS interface (cblas_sgemm, cblas_dgemm, cblas_sgemv, cblas_dgemv); "
                    "use OpenBLAS or BLIS built with CBLAS", path);

    char *(*corename)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
    char *(*config)(void) = (char *(*)(void))dlsym(h, "openblas_get_config");
    void (*openblas_set)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    int (*openblas_get)(void) = (int (*)(void))dlsym(h, "openblas_get_num_threads");
    long (*blisArch)(void) = (long (*)(void))dlsym(h, "bli_arch_query_id");
    const char *(*blisArchName)(long) = (const char *(*)(long))dlsym(h, "bli_arch_string");
    const char *(*blisVersion)(void) = (const char *(*)(void))dlsym(h, "bli_info_get_version_str");
    blis_set = (void (*)(long))dlsym(h, "bli_thread_set_num_threads");
    blis_get = (long (*)(void))dlsym(h, "bli_thread_get_num_threads");

    if (corename && openblas_set && openblas_get) {
        info.kind = MOE_BLAS_OPENBLAS;
        table.set_threads = openblas_set;
        table.get_threads = openblas_get;
        snprintf(info.kernel, sizeof info.kernel, "%s", corename());
        snprintf(info.version, sizeof info.version, "%s", config ? config() : "OpenBLAS");
    } else if (blisArch && blisArchName && blis_set && blis_get) {
        info.kind = MOE_BLAS_BLIS;
        table.set_threads = blis_set_threads;
        table.get_threads = blis_get_threads;
        snprintf(info.kernel, sizeof info.kernel, "%s", blisArchName(blisArch()));
        snprintf(info.version, sizeof info.version, "BLIS %s", blisVersion ? blisVersion() : "");
        info.requested[0] = 0;
        info.core_source = MOE_CORE_FROM_LIBRARY;
        if (info.own_threads) {
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            blis_set(cores > 0 ? cores : 1);
        } else {
            blis_set(1);
        }
    } else {
        return fail("cannot tell which kernel the BLAS library %s runs (it is neither OpenBLAS, with openblas_get_corename, "
                    "nor BLIS, with bli_arch_string); use OpenBLAS or BLIS, or unset MOE_BLAS_LIBRARY", path);
    }

    if (!info.own_threads) table.set_threads(1);

    Dl_info where;
    char real[PATH_MAX];
    if (dladdr((void *)table.sgemm, &where) && where.dli_fname) {
        if (realpath(where.dli_fname, real)) snprintf(info.path, sizeof info.path, "%s", real);
        else snprintf(info.path, sizeof info.path, "%s", where.dli_fname);
    } else {
        snprintf(info.path, sizeof info.path, "%s", path);
    }

    info.warning[0] = 0;
    if (info.kind == MOE_BLAS_OPENBLAS && info.requested[0] && strcasecmp(info.requested, info.kernel) != 0)
        snprintf(info.warning, sizeof info.warning, "OpenBLAS runs its %s kernels, not the %s kernels asked for through OPENBLAS_CORETYPE",
                 info.kernel, info.requested);
    else if (info.kind == MOE_BLAS_OPENBLAS && info.core_source == MOE_CORE_FROM_LIBRARY && cpu->isa >= MOE_ISA_AVX2
             && (strcasecmp(info.kernel, "Prescott") == 0 || strcasecmp(info.kernel, "Core2") == 0 || strcasecmp(info.kernel, "Nehalem") == 0)) {
        const char *best[8];
        moe_openblas_cores_for(cpu, best, 8);  // non-empty from AVX2 on
        snprintf(info.warning, sizeof info.warning, "OpenBLAS chose its %s kernels on a CPU with %s: matrix products run several times "
                 "below the machine's speed; set OPENBLAS_CORETYPE=%s", info.kernel, cpu->isa >= MOE_ISA_AVX512 ? "AVX-512" : "AVX2",
                 best[0]);
    }
    return 0;
}

int moe_blas_load(char *err, size_t errlen) {
    pthread_mutex_lock(&load_lock);
    if (load_status == 1) {
        load_status = load_locked();
        if (load_status == 0) __atomic_store_n(&moe_blas_ready, &table, __ATOMIC_RELEASE);
    }
    int status = load_status;
    pthread_mutex_unlock(&load_lock);
    if (status != 0 && err && errlen) snprintf(err, errlen, "%s", load_error);
    return status;
}

const moe_blas_info_t *moe_blas_info(void) { return &info; }

const moe_blas_table_t *moe_blas_load_or_exit(void) {
    char err[1024];
    if (moe_blas_load(err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        exit(1);
    }
    return &table;
}

// ---- the depth of swift-moe's parallel regions on this thread ------------------------------------------------

static __thread int parallel_depth;
int moe_parallel_depth(void) { return parallel_depth; }
void moe_parallel_enter(void) { parallel_depth++; }
void moe_parallel_leave(void) { parallel_depth--; }

// LAPACK is column-major: a row-major symmetric matrix is its own transpose, so it goes in as it is, and the
// eigenvectors come back as LAPACK's columns, i.e. rows of the row-major buffer; they are transposed in place so
// that column j holds the eigenvector of w[j], as a row-major reader expects.
int moe_dsyevd(int n, double *a, double *w) {
    const moe_blas_table_t *t = moe_blas();
    if (!t->dsyevd) return -1;
    if (n <= 0) return 0;
    int lwork = -1, liwork = -1, info = 0, iq = 0;
    double wq = 0;
    t->dsyevd("V", "U", &n, a, &n, w, &wq, &lwork, &iq, &liwork, &info);  // workspace query
    if (info != 0) return info;
    lwork = (int)wq;
    liwork = iq;
    double *work = malloc(sizeof(double) * (size_t)(lwork > 1 ? lwork : 1));
    int *iwork = malloc(sizeof(int) * (size_t)(liwork > 1 ? liwork : 1));
    if (!work || !iwork) {
        free(work);
        free(iwork);
        return -2;
    }
    t->dsyevd("V", "U", &n, a, &n, w, work, &lwork, iwork, &liwork, &info);
    free(work);
    free(iwork);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double x = a[(size_t)i * n + j];
            a[(size_t)i * n + j] = a[(size_t)j * n + i];
            a[(size_t)j * n + i] = x;
        }
    return info;
}
