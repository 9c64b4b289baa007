#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include "csystem_guard.h"

/* The guarded copy in progress on this thread, if any. */
struct guard {
    sigjmp_buf resume;
    uintptr_t dst, dst_end, src, src_end;
    volatile sig_atomic_t active;
};
static _Thread_local struct guard current;

static struct sigaction replaced;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_errno;

static int inside(uintptr_t a, uintptr_t lo, uintptr_t hi) { return a >= lo && a < hi; }

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    struct guard *g = &current;
    uintptr_t a = (uintptr_t)info->si_addr;
    if (g->active && info->si_code > 0 && (inside(a, g->src, g->src_end) || inside(a, g->dst, g->dst_end))) {
        g->active = 0;
        siglongjmp(g->resume, 1);
    }
    /* Not ours: as the replaced disposition would have it. */
    if ((replaced.sa_flags & SA_SIGINFO) && replaced.sa_sigaction != NULL) {
        replaced.sa_sigaction(sig, info, context);
    } else if (replaced.sa_handler != SIG_DFL && replaced.sa_handler != SIG_IGN) {
        replaced.sa_handler(sig);
    } else {
        /* Default (and, for a fault, SIG_IGN too: the kernel does not let a faulting thread ignore it): die of the
         * signal. A fault re-executes the access on return and is delivered again; one sent with kill() is raised. */
        signal(SIGBUS, SIG_DFL);
        if (info->si_code <= 0)
            raise(SIGBUS);
    }
}

static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    /* SA_NODEFER: leaving by siglongjmp from sigsetjmp(.., 0) does not restore the mask, so SIGBUS must not be
     * blocked while the handler runs (a second fault while it is blocked kills the process). */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &replaced) != 0)
        install_errno = errno ? errno : EINVAL;
}

int csystem_guarded_copy(void *dst, const void *src, size_t n) {
    pthread_once(&install_once, install);
    if (install_errno != 0) {
        errno = install_errno;
        return -1;
    }
    if (n == 0)
        return 0;
    struct guard *g = &current;
    g->dst = (uintptr_t)dst;
    g->dst_end = (uintptr_t)dst + n;
    g->src = (uintptr_t)src;
    g->src_end = (uintptr_t)src + n;
    if (sigsetjmp(g->resume, 0) != 0) {
        errno = EFAULT;
        return -1;
    }
    g->active = 1;
    /* The compiler may not move the copy's accesses across these: a fault must see `active` set. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    memcpy(dst, src, n);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    g->active = 0;
    return 0;
}
