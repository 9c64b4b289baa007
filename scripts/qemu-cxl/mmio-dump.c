/* mmio-dump FILE OFFSET LENGTH
 * Copies LENGTH bytes at OFFSET of an mmap-able file (a PCI sysfs resourceN
 * file, or /dev/mem with a physical address) to stdout, using aligned 32-bit
 * volatile loads (MMIO register blocks must not be read byte-wise or with
 * memcpy). OFFSET and LENGTH: decimal or 0x-hex, multiples of 4.
 * Built statically on the host by scripts/qemu-cxl/build-guest.sh. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: mmio-dump FILE OFFSET LENGTH\n"); return 2; }
    unsigned long long off = strtoull(argv[2], 0, 0), len = strtoull(argv[3], 0, 0);
    if ((off | len) & 3) { fprintf(stderr, "mmio-dump: offset/length not 4-aligned\n"); return 2; }
    int fd = open(argv[1], O_RDONLY | O_SYNC);
    if (fd < 0) { perror(argv[1]); return 1; }
    long pg = sysconf(_SC_PAGESIZE);
    unsigned long long base = off & ~(unsigned long long)(pg - 1), skip = off - base;
    void *m = mmap(0, len + skip, PROT_READ, MAP_SHARED, fd, (off_t)base);
    if (m == MAP_FAILED) { perror("mmio-dump: mmap"); return 1; }
    volatile uint32_t *p = (volatile uint32_t *)((char *)m + skip);
    uint32_t buf[1024];
    for (unsigned long long i = 0; i < len / 4;) {
        unsigned n = 0;
        while (n < 1024 && i < len / 4) buf[n++] = p[i++];
        if (fwrite(buf, 4, n, stdout) != n) { perror("mmio-dump: write"); return 1; }
    }
    return 0;
}
