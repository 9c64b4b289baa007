#ifndef CMALLOC_COUNTER_H
#define CMALLOC_COUNTER_H
/* Test-only allocation counter (issue 14): this target defines malloc, calloc, realloc, posix_memalign,
 * aligned_alloc, memalign and free, forwarding each to the next definition (libc, or a sanitizer's) found with
 * dlsym(RTLD_NEXT). Allocations are counted only on threads that asked for it, so tests running in parallel in
 * the same process do not disturb a count. Linked into the test executable only, never into a product. */
#include <stdint.h>

/* Count (a tag 1-15) or stop counting (0) the allocations of the calling thread. */
void cmalloc_counter_track_this_thread(int on);
/* Allocations made so far by tracked threads (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign). */
uint64_t cmalloc_counter_total(void);
/* The same, by the threads tracked with `tag` only: counting tests that may run at the same time (they are in
 * different suites) use different tags, so one's connection set-up or deliberate allocations never land in the
 * other's count. */
uint64_t cmalloc_counter_total_for(int tag);
/* 1 once the interposer has resolved the real allocator and counted at least one call: the counter is live. */
int cmalloc_counter_active(void);
#endif
