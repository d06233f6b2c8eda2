// CPUID and XGETBV: what this CPU can execute, and which OpenBLAS core types suit it.
#include "moe_blas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

// Linux asks a process to request the AMX tile-data state before it may execute tile instructions; on a VM
// that does not pass AMX through, the request fails and any tile instruction would trap (SIGILL).
static int amx_request_permission(void) {
#ifdef SYS_arch_prctl
    const int ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}
#endif

static double read_clock_ghz(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    char line[512];
    double mhz = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "cpu MHz", 7) == 0) {
            const char *colon = strchr(line, ':');
            if (colon) mhz = atof(colon + 1);
            break;
        }
    }
    fclose(f);
    return mhz / 1000;
}

static moe_cpu_t the_cpu;
static char cpu_error[256];
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static void read_cpu(void) {
    moe_cpu_t *c = &the_cpu;
    memset(c, 0, sizeof *c);
    c->isa = MOE_ISA_OTHER;
    c->isa_cap = -1;
#if defined(__x86_64__)
    unsigned a, b, cx, d;
    __cpuid(0, a, b, cx, d);
    unsigned maxLeaf = a;
    memcpy(c->vendor, &b, 4);
    memcpy(c->vendor + 4, &d, 4);
    memcpy(c->vendor + 8, &cx, 4);

    __cpuid(1, a, b, cx, d);
    unsigned baseFamily = (a >> 8) & 0xf, baseModel = (a >> 4) & 0xf;
    c->family = (int)(baseFamily == 0xf ? baseFamily + ((a >> 20) & 0xff) : baseFamily);
    c->model = (int)((baseFamily == 0x6 || baseFamily == 0xf) ? (((a >> 16) & 0xf) << 4) | baseModel : baseModel);
    c->stepping = (int)(a & 0xf);
    int osxsave = (cx >> 27) & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    int osYMM = (xcr0 & 0x6) == 0x6;             // SSE and AVX state
    int osZMM = osYMM && (xcr0 & 0xe0) == 0xe0;  // opmask, upper ZMM0-15, ZMM16-31
    c->sse3 = cx & 1;
    c->ssse3 = (cx >> 9) & 1;
    c->sse41 = (cx >> 19) & 1;
    c->sse42 = (cx >> 20) & 1;
    c->avx = osYMM && ((cx >> 28) & 1);
    c->fma = c->avx && ((cx >> 12) & 1);
    c->f16c = c->avx && ((cx >> 29) & 1);

    if (maxLeaf >= 7) {
        __cpuid_count(7, 0, a, b, cx, d);
        unsigned maxSub = a;
        c->avx2 = c->avx && ((b >> 5) & 1);
        c->avx512f = osZMM && ((b >> 16) & 1);
        c->avx512dq = c->avx512f && ((b >> 17) & 1);
        c->avx512cd = c->avx512f && ((b >> 28) & 1);
        c->avx512bw = c->avx512f && ((b >> 30) & 1);
        c->avx512vl = c->avx512f && ((b >> 31) & 1);
        c->avx512vnni = c->avx512f && ((cx >> 11) & 1);
        c->avx512fp16 = c->avx512f && ((d >> 23) & 1);
        c->amx_advertised = (d >> 24) & 1;
        if (maxSub >= 1) {
            __cpuid_count(7, 1, a, b, cx, d);
            c->avxvnni = c->avx && ((a >> 4) & 1);
            c->avx512bf16 = c->avx512f && ((a >> 5) & 1);
        }
    }
    if (c->amx_advertised) c->amx_permitted = amx_request_permission();

    __cpuid(0x80000000, a, b, cx, d);
    if (a >= 0x80000004) {
        unsigned regs[12];
        for (unsigned i = 0; i < 3; i++) __cpuid(0x80000002 + i, regs[4 * i], regs[4 * i + 1], regs[4 * i + 2], regs[4 * i + 3]);
        memcpy(c->brand, regs, 48);
        c->brand[48] = 0;
        // trim the leading and trailing blanks some vendors pad with
        char *s = c->brand;
        while (*s == ' ') s++;
        memmove(c->brand, s, strlen(s) + 1);
        for (size_t n = strlen(c->brand); n > 0 && c->brand[n - 1] == ' '; n--) c->brand[n - 1] = 0;
    }

    // MOE_MAX_ISA caps what this process uses (to run and test the portable paths on any machine).
    const char *cap = getenv("MOE_MAX_ISA");
    if (cap && *cap) {
        static const char *names[] = {"sse2", "sse4", "avx", "avx2", "avx512"};
        int level = -1;
        for (int i = 0; i < 5; i++) if (strcmp(cap, names[i]) == 0) level = i;
        if (level < 0) {
            snprintf(cpu_error, sizeof cpu_error, "invalid MOE_MAX_ISA=%s: use sse2, sse4, avx, avx2 or avx512, or unset it", cap);
        } else {
            c->isa_cap = level;
            if (level < MOE_ISA_AVX512) c->avx512f = c->avx512cd = c->avx512bw = c->avx512dq = c->avx512vl = c->avx512vnni = c->avx512bf16 = c->avx512fp16 = 0;
            if (level < MOE_ISA_AVX2) c->avx2 = c->fma = c->avxvnni = 0;
            if (level < MOE_ISA_AVX) c->avx = c->f16c = 0;
            if (level < MOE_ISA_SSE4) c->sse41 = c->sse42 = c->ssse3 = 0;
        }
    }

    if (c->avx512f && c->avx512cd && c->avx512bw && c->avx512dq && c->avx512vl) c->isa = MOE_ISA_AVX512;
    else if (c->avx2 && c->fma) c->isa = MOE_ISA_AVX2;
    else if (c->avx) c->isa = MOE_ISA_AVX;
    else if (c->ssse3 && c->sse42) c->isa = MOE_ISA_SSE4;
    else c->isa = MOE_ISA_SSE2;
    c->vector_bits = c->isa >= MOE_ISA_AVX512 ? 512 : c->isa >= MOE_ISA_AVX ? 256 : 128;
#endif
    c->clock_ghz = read_clock_ghz();
}

const moe_cpu_t *moe_cpu(void) {
    pthread_once(&cpu_once, read_cpu);
    return &the_cpu;
}

const char *moe_cpu_error(void) {
    moe_cpu();
    return cpu_error[0] ? cpu_error : NULL;
}

int moe_cpu_is_amd(const moe_cpu_t *c) { return strcmp(c->vendor, "AuthenticAMD") == 0 || strcmp(c->vendor, "HygonGenuine") == 0; }

int moe_env_distance(const char *name, long most, long *out) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    long n = strtol(v, NULL, 10);
    *out = n < 0 ? 0 : n > most ? most : n;
    return 1;
}

int moe_openblas_cores_for(const moe_cpu_t *c, const char **out, int max) {
    // Best first. OpenBLAS's Cooperlake adds BF16 kernels to SkylakeX's AVX-512 ones; Zen and Haswell are both
    // AVX2 + FMA (Zen with AMD's cache parameters); Sandybridge is AVX; Nehalem SSE4; Core2 SSSE3; Prescott SSE3.
    // SapphireRapids is never asked for: its extra kernels are AMX, which may trap (and which swift-moe never needs).
    const char *list[8];
    int n = 0;
    if (c->isa >= MOE_ISA_AVX512 && c->avx512bf16) list[n++] = "Cooperlake";
    if (c->isa >= MOE_ISA_AVX512) list[n++] = "SkylakeX";
    if (c->isa >= MOE_ISA_AVX2) {
        if (moe_cpu_is_amd(c)) list[n++] = "Zen";
        list[n++] = "Haswell";
    }
    if (c->isa >= MOE_ISA_AVX) list[n++] = "Sandybridge";
    if (c->isa >= MOE_ISA_SSE4) list[n++] = "Nehalem";
    if (c->isa >= MOE_ISA_SSE4 || (c->isa >= MOE_ISA_SSE2 && c->ssse3)) list[n++] = "Core2";
    if (c->isa >= MOE_ISA_SSE2) list[n++] = "Prescott";
    int k = n < max ? n : max;
    for (int i = 0; i < k; i++) out[i] = list[i];
    return k;
}
