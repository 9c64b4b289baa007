#ifndef CSYSTEM_MEMFD_H
#define CSYSTEM_MEMFD_H
/* memfd_create(2): Glibc declares it only under _GNU_SOURCE, which Swift's Glibc
 * module does not define. Returns a file descriptor or -1 with errno set. */
int csystem_memfd_create(const char *name, unsigned int flags);
/* MFD_CLOEXEC and MFD_ALLOW_SEALING, for callers that cannot see <linux/memfd.h>. */
#define CSYSTEM_MFD_CLOEXEC 0x0001U
#define CSYSTEM_MFD_ALLOW_SEALING 0x0002U
#endif
