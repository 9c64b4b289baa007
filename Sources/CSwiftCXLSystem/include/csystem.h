#ifndef CSYSTEM_H
#define CSYSTEM_H
/* What Glibc does not import into Swift: SCM_RIGHTS control messages (the CMSG_* macros),
 * eventfd (memfd_create lives in csystem_memfd.h, the SIGBUS-guarded copy in csystem_guard.h), and a few small helpers.
 * Every header of the target is included here, so that a header added later changes this one and an existing
 * build's cached module is rebuilt (the module map is the include directory, whose new files clang does not notice). */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "csystem_fs.h"
#include "csystem_vfio.h"
#include "csystem_lock.h"
#include "csystem_memfd.h"
#include "csystem_guard.h"
#include "csystem_affinity.h"

int csystem_placeholder(void);

/* Maximum number of fds csystem_recvmsg_fds accepts in one control message. */
#define CSYSTEM_MAX_FDS 253

/* sendmsg() with `nfds` descriptors attached as one SCM_RIGHTS cmsg. MSG_NOSIGNAL is used.
 * Returns bytes sent or -1 (errno set). */
ssize_t csystem_sendmsg_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);
/* send(2) with MSG_NOSIGNAL, retried on EINTR: the same as csystem_sendmsg_fds without descriptors, one system
 * call that does not copy a msghdr in (the reply path of every vfio-user message). */
ssize_t csystem_send(int sock, const void *buf, size_t len);
/* One sendmsg(2) (MSG_NOSIGNAL, retried on EINTR) of up to three byte ranges in order, empty ones skipped: a message
 * whose header is in one buffer and whose data is in another leaves without copying the data next to the header. */
ssize_t csystem_send3(int sock, const void *a, size_t na, const void *b, size_t nb, const void *c, size_t nc);
/* One sendmsg (MSG_NOSIGNAL, EINTR retried) of the `n` ranges bases[i], lens[i] gathered in order (n <= 1024,
 * else EINVAL): a batch of messages whose headers are built in a buffer and whose data stay where they are. */
ssize_t csystem_sendv(int sock, const void *const *bases, const size_t *lens, int n);

/* recvmsg() into `buf`; received descriptors (opened O_CLOEXEC) are stored in `fds` (up to `maxfds`), their count in
 * *nfds. *truncated is set to 1 when the kernel reported MSG_CTRUNC (descriptors were dropped) or when more than
 * `maxfds` arrived (the excess are closed). Returns bytes read, 0 on EOF or -1 (errno set). */
ssize_t csystem_recvmsg_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated);
/* The same; with `nonblocking` set, MSG_DONTWAIT: -1 with errno EAGAIN when nothing is queued. */
ssize_t csystem_recvmsg_fds_nb(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated,
                               int nonblocking);

/* The same as csystem_recvmsg_fds_nb but one recvmsg(2) only: EINTR is returned (-1, errno EINTR) instead of retried,
 * so a caller blocked with SO_RCVTIMEO can look at a stop flag after a signal. `nonblocking` adds MSG_DONTWAIT. */
ssize_t csystem_recvmsg_fds_once(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated,
                                 int nonblocking);
/* setsockopt(SO_RCVTIMEO) in milliseconds (0 = block forever). Returns 0 or -1 (errno set). */
int csystem_set_recv_timeout(int sock, int milliseconds);

/* eventfd(2). */
int csystem_eventfd(unsigned int initval, int flags);
/* accept4(sock, NULL, NULL, SOCK_CLOEXEC), retried on EINTR. */
int csystem_accept_cloexec(int sock);
/* Constants for Swift. */
int csystem_efd_cloexec(void);
int csystem_efd_nonblock(void);

#endif
