// The worker threads of swift-moe's parallel regions (MoETensor's Parallel).
//
// Regions in training come every few microseconds to milliseconds, each a few tens of microseconds of work.
// A worker that sleeps between them (as libdispatch's do) takes 10-15 us to wake on this VM, more than some
// regions last; so a worker here spins for about 200 us after a region before it parks on a futex. The caller
// takes part in its own region; items are handed out one at a time from an atomic counter.
//
// Protocol: each worker has a mailbox (posted, acknowledged sequence numbers). The caller writes a region's
// fields only after every worker has acknowledged the previous region, then bumps each `posted`; a worker runs
// items until none is left, then sets `acknowledged = posted`. So no worker ever reads fields being written.
#define _GNU_SOURCE
#include "moe_blas.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define PAUSE() _mm_pause()
#else
#define PAUSE() ((void)0)
#endif

#define SPIN_NS 200000L
#define MAX_WORKERS 63

typedef struct {
    _Atomic uint32_t posted;        // futex word
    _Atomic uint32_t acknowledged;
    _Atomic int sleeping;
    char pad[64 - 12];
} mailbox_t;

static pthread_mutex_t owner = PTHREAD_MUTEX_INITIALIZER;  // one region at a time
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int pool_threads = 1, pool_workers = 0;
static mailbox_t boxes[MAX_WORKERS];
static moe_task_fn job_fn;
static void *job_ctx;
static long job_count;
static _Atomic long job_next, job_done;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void run_items(void) {
    moe_parallel_enter();
    for (;;) {
        long i = atomic_fetch_add_explicit(&job_next, 1, memory_order_relaxed);
        if (i >= job_count) break;
        job_fn(job_ctx, i);
        atomic_fetch_add_explicit(&job_done, 1, memory_order_release);
    }
    moe_parallel_leave();
}

static void *worker(void *arg) {
    mailbox_t *box = arg;
    uint32_t seen = 0;
    for (;;) {
        long start = now_ns();
        uint32_t p;
        int spins = 0;
        while ((p = atomic_load_explicit(&box->posted, memory_order_acquire)) == seen) {
            PAUSE();
            if (++spins % 64 == 0 && now_ns() - start > SPIN_NS) {
                atomic_store(&box->sleeping, 1);
                // Re-check after announcing: the caller wakes only announced sleepers.
                if (atomic_load(&box->posted) == seen)  // seq_cst with the caller's post and flag read
                    syscall(SYS_futex, &box->posted, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
                atomic_store(&box->sleeping, 0);
                start = now_ns();
            }
        }
        seen = p;
        run_items();
        atomic_store_explicit(&box->acknowledged, p, memory_order_release);
    }
    return NULL;
}

static void start_pool(void) {
    for (int i = 0; i < pool_threads - 1 && i < MAX_WORKERS; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, &boxes[i]) != 0) break;
        pthread_detach(t);
        pool_workers++;
    }
}

int moe_pool_run(int threads, long count, moe_task_fn fn, void *ctx) {
    if (pthread_mutex_trylock(&owner) != 0) return 0;
    if (pool_threads == 1) pool_threads = threads;
    pthread_once(&pool_once, start_pool);
    if (pool_workers == 0) {
        pthread_mutex_unlock(&owner);
        return 0;
    }
    // Every worker has left the previous region before its fields change.
    for (int w = 0; w < pool_workers; w++)
        while (atomic_load_explicit(&boxes[w].acknowledged, memory_order_acquire) != atomic_load_explicit(&boxes[w].posted, memory_order_relaxed))
            PAUSE();
    job_fn = fn;
    job_ctx = ctx;
    job_count = count;
    atomic_store_explicit(&job_next, 0, memory_order_relaxed);
    atomic_store_explicit(&job_done, 0, memory_order_relaxed);
    for (int w = 0; w < pool_workers; w++) {
        atomic_fetch_add(&boxes[w].posted, 1);  // seq_cst: pairs with the worker's flag store and re-check
        if (atomic_load(&boxes[w].sleeping)) syscall(SYS_futex, &boxes[w].posted, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    run_items();
    while (atomic_load_explicit(&job_done, memory_order_acquire) < count) PAUSE();
    pthread_mutex_unlock(&owner);
    return 1;
}
