#define _GNU_SOURCE
#include "csystem.h"
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/futex.h>

int csystem_placeholder(void) { return 0; }

void csystem_rlock_wait(csystem_rlock *lock) {
    uint32_t c = __atomic_exchange_n(&lock->state, 2, __ATOMIC_ACQUIRE);
    while (c != 0) {
        syscall(SYS_futex, &lock->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        c = __atomic_exchange_n(&lock->state, 2, __ATOMIC_ACQUIRE);
    }
}

void csystem_rlock_wake(csystem_rlock *lock) {
    syscall(SYS_futex, &lock->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

ssize_t csystem_sendmsg_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    union {
        char buf[CMSG_SPACE(sizeof(int) * CSYSTEM_MAX_FDS)];
        struct cmsghdr align;
    } u;
    if (nfds < 0 || nfds > CSYSTEM_MAX_FDS) { errno = EINVAL; return -1; }
    if (nfds > 0) {
        memset(&u, 0, sizeof(u));
        msg.msg_control = u.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n;
}

/* The per-message calls go to the kernel with syscall(2): libc's send and recvmsg are thread cancellation points,
 * and switching asynchronous cancellation on and off around each call is a tenth of the user time of a vfio-user
 * message. Nothing in this project cancels threads. */
ssize_t csystem_send(int sock, const void *buf, size_t len) {
    ssize_t n;
    do { n = (ssize_t)syscall(SYS_sendto, sock, buf, len, MSG_NOSIGNAL, NULL, 0); } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t csystem_send3(int sock, const void *a, size_t na, const void *b, size_t nb, const void *c, size_t nc) {
    const void *bases[3] = { a, b, c };
    size_t lens[3] = { na, nb, nc };
    return csystem_sendv(sock, bases, lens, 3);
}

ssize_t csystem_sendv(int sock, const void *const *bases, const size_t *lens, int n) {
    if (n < 0 || n > 1024) { errno = EINVAL; return -1; }
    struct iovec iov[n > 0 ? n : 1];
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] == 0) continue;
        iov[k].iov_base = (void *)bases[i];
        iov[k].iov_len = lens[i];
        k++;
    }
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)k;
    ssize_t r;
    do { r = (ssize_t)syscall(SYS_sendmsg, sock, &msg, MSG_NOSIGNAL); } while (r < 0 && errno == EINTR);
    return r;
}

ssize_t csystem_recvmsg_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated) {
    return csystem_recvmsg_fds_nb(sock, buf, len, fds, maxfds, nfds, truncated, 0);
}

static ssize_t recvmsg_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated,
                           int nonblocking, int retry);

ssize_t csystem_recvmsg_fds_nb(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated,
                               int nonblocking) {
    return recvmsg_fds(sock, buf, len, fds, maxfds, nfds, truncated, nonblocking, 1);
}

ssize_t csystem_recvmsg_fds_once(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated,
                                 int nonblocking) {
    return recvmsg_fds(sock, buf, len, fds, maxfds, nfds, truncated, nonblocking, 0);
}

int csystem_set_recv_timeout(int sock, int milliseconds) {
    struct timeval tv = { .tv_sec = milliseconds / 1000, .tv_usec = (milliseconds % 1000) * 1000 };
    return setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static ssize_t recvmsg_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated,
                           int nonblocking, int retry) {
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg;
    union {
        char buf[CMSG_SPACE(sizeof(int) * CSYSTEM_MAX_FDS)];
        struct cmsghdr align;
    } u;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof(u.buf);
    *nfds = 0;
    *truncated = 0;
    ssize_t n;
    int flags = MSG_CMSG_CLOEXEC | (nonblocking ? MSG_DONTWAIT : 0);
    do { n = (ssize_t)syscall(SYS_recvmsg, sock, &msg, flags); } while (n < 0 && errno == EINTR && retry);
    if (n < 0) return n;
    if (msg.msg_flags & MSG_CTRUNC) *truncated = 1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *data = (int *)CMSG_DATA(c);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, data + i, sizeof(int));
            if (*nfds < maxfds) {
                fds[(*nfds)++] = fd;
            } else {
                close(fd);
                *truncated = 1;
            }
        }
    }
    return n;
}

int csystem_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }


int csystem_efd_cloexec(void) { return EFD_CLOEXEC; }
int csystem_efd_nonblock(void) { return EFD_NONBLOCK; }

int csystem_accept_cloexec(int sock) {
    int fd;
    do { fd = accept4(sock, NULL, NULL, SOCK_CLOEXEC); } while (fd < 0 && errno == EINTR);
    return fd;
}
