#ifndef CSYSTEM_FS_H
#define CSYSTEM_FS_H
/* File-system calls Glibc does not import into Swift. */

/* rename(2) that never replaces: renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE). Where the file
 * system does not support the flag (EINVAL), falls back to link(2) + unlink(2), which fails the same way (EEXIST)
 * when `to` exists. Returns 0 or -1 with errno set. */
int csystem_rename_noreplace(const char *from, const char *to);

#endif
