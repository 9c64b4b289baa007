#define _GNU_SOURCE
#include <sys/mman.h>
#include "csystem_memfd.h"

int csystem_memfd_create(const char *name, unsigned int flags) {
    return memfd_create(name, flags);
}
