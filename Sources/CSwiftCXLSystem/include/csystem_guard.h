#ifndef CSYSTEM_GUARD_H
#define CSYSTEM_GUARD_H
/* Copies through shared mappings that a peer can pull pages out of.
 *
 * A vfio-user client hands the server its guest memory as fds (DMA_MAP with SCM_RIGHTS), and the server maps them.
 * QEMU does not seal guest RAM, so the client can ftruncate such a file later: the pages past the new end are gone,
 * and the server's next touch of them is a SIGBUS that would kill it, and every device it serves. A copy through
 * csystem_guarded_copy turns that SIGBUS into an error return: a SIGBUS handler, installed once (it hands every
 * fault that is not inside a guarded copy's two ranges on to the disposition it replaced), jumps back out of the
 * copy. Faults are synchronous, so the per-thread state the handler reads is that of the thread that faulted. */
#include <stddef.h>

/* Copies `n` bytes from `src` to `dst` (memcpy: the ranges must not overlap). Returns 0; or -1 with errno EFAULT
 * when a page of either range raised SIGBUS (the file behind a mapping shrank), in which case the bytes of `dst`
 * are partly written; or -1 with errno set when the handler could not be installed (nothing copied). */
int csystem_guarded_copy(void *dst, const void *src, size_t n);
#endif
