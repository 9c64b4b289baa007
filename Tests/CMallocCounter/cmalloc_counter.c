#define _GNU_SOURCE
#include "cmalloc_counter.h"
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static void *(*next_malloc)(size_t);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static void (*next_free)(void *);
static int (*next_posix_memalign)(void **, size_t, size_t);
static void *(*next_aligned_alloc)(size_t, size_t);
static void *(*next_memalign)(size_t, size_t);

static __thread int tracked;
static _Atomic uint64_t total;
static _Atomic int seen;
static int resolving;

/* dlsym may allocate (calloc for its error state) before the real allocator is known: serve that from here. */
static _Alignas(16) char boot[8192];
static size_t boot_used;

static void *boot_alloc(size_t n) {
    size_t at = (boot_used + 15) & ~(size_t)15;
    if (at + n > sizeof(boot)) return NULL;
    boot_used = at + n;
    return boot + at;
}

static int in_boot(void *p) { return (char *)p >= boot && (char *)p < boot + sizeof(boot); }

static void resolve(void) {
    if (next_malloc || resolving) return;
    resolving = 1;
    next_calloc = dlsym(RTLD_NEXT, "calloc");
    next_realloc = dlsym(RTLD_NEXT, "realloc");
    next_free = dlsym(RTLD_NEXT, "free");
    next_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    next_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    next_memalign = dlsym(RTLD_NEXT, "memalign");
    next_malloc = dlsym(RTLD_NEXT, "malloc");
    resolving = 0;
}

/* Per tag (1-15): two counting tests running at once (in different suites) each read only their own threads'. */
static _Atomic uint64_t tagged[16];

static inline void count(void) {
    if (tracked) {
        atomic_fetch_add_explicit(&total, 1, memory_order_relaxed);
        if (tracked > 0 && tracked < 16) atomic_fetch_add_explicit(&tagged[tracked], 1, memory_order_relaxed);
        atomic_store_explicit(&seen, 1, memory_order_relaxed);
    }
}

void cmalloc_counter_track_this_thread(int on) { tracked = on; }
uint64_t cmalloc_counter_total(void) { return atomic_load(&total); }
uint64_t cmalloc_counter_total_for(int tag) { return tag > 0 && tag < 16 ? atomic_load(&tagged[tag]) : 0; }
int cmalloc_counter_active(void) { return next_malloc != NULL && atomic_load(&seen); }

void *malloc(size_t n) {
    if (!next_malloc) { resolve(); if (!next_malloc) return boot_alloc(n); }
    count();
    return next_malloc(n);
}

void *calloc(size_t a, size_t b) {
    if (!next_calloc) {
        resolve();
        if (!next_calloc) { void *p = boot_alloc(a * b); if (p) memset(p, 0, a * b); return p; }
    }
    count();
    return next_calloc(a, b);
}

void *realloc(void *p, size_t n) {
    if (!next_realloc) resolve();
    if (in_boot(p)) {
        void *q = malloc(n);
        size_t left = (size_t)(boot + sizeof(boot) - (char *)p);
        if (q && p) memcpy(q, p, n < left ? n : left);
        return q;
    }
    count();
    return next_realloc(p, n);
}

void free(void *p) {
    if (p == NULL || in_boot(p)) return;
    if (!next_free) resolve();
    next_free(p);
}

int posix_memalign(void **out, size_t align, size_t n) {
    if (!next_posix_memalign) resolve();
    count();
    return next_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n) {
    if (!next_aligned_alloc) resolve();
    count();
    return next_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n) {
    if (!next_memalign) resolve();
    count();
    return next_memalign(align, n);
}
