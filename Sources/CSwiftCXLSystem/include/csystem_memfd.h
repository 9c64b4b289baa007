#ifndef CSYSTEM_MEMFD_H
#define CSYSTEM_MEMFD_H
/* memfd_create(2) and file seals (fcntl F_ADD_SEALS / F_GET_SEALS): Glibc declares them only under _GNU_SOURCE,
 * which Swift's Glibc module does not define. */

/* A close-on-exec memfd of `size` bytes whose size can never change again: sealed with F_SEAL_SHRINK | F_SEAL_GROW |
 * F_SEAL_SEAL. The fd is handed to peers (a vfio-user client mmaps it through SCM_RIGHTS); without the seals a peer
 * could ftruncate it and every mapping of the pages past the new end, ours included, would SIGBUS on the next touch.
 * F_SEAL_SEAL stops a peer adding F_SEAL_FUTURE_WRITE to freeze our writes. Returns the fd, or -1 with errno set. */
int csystem_memfd_create_fixed(const char *name, unsigned long long size);

/* 1 when `fd` carries F_SEAL_SHRINK (its pages can be mapped without a peer being able to pull them away), else 0
 * (not a memfd, or not sealed). */
int csystem_fd_size_is_sealed(int fd);
#endif
