/*
 * vfu-bench-client: a small, independent vfio-user benchmark client (issue 14).
 *
 * It measures the round trip of a 4-byte config-space REGION_READ against any vfio-user server, next to a raw
 * UNIX-socket ping-pong of the same sizes (32-byte request, 36-byte reply), with the same code on the client side:
 * one write(2) of the request, read(2) until the reply is complete. It does not use swift-cxl's Swift client, so the
 * figure it gives belongs to the server. cxlbench compiles it with `cc -O2` and runs it; it can also be run by hand:
 *
 *   cc -O2 -o /tmp/vfu-bench-client scripts/vfu-bench-client.c
 *   /tmp/vfu-bench-client -n 50000 vfu:/run/dev.sock raw:/tmp/echo.sock
 *
 * Targets (any number, measured interleaved in blocks of -b calls after -w warm-up calls each, so all of them see
 * the same machine conditions):
 *   vfu:PATH   a vfio-user server: VERSION (0.2, max_msg_fds 8), then REGION_READ region 7 (config), offset 0
 *              (the Vendor ID; -o sets another 4-byte aligned offset, e.g. 8, Revision ID and Class Code), count 4. Every reply's header (id, command, REPLY flag, no ERROR, size 36) and access fields are
 *              checked; any mismatch aborts with exit status 1.
 *   raw:PATH   cxlbench's echo server (`cxlbench --echo-server PATH`): sends the sizes (32, 36) as two u32, then
 *              each call writes 32 bytes and reads 36.
 *
 * Output, one line per target: `NAME mean_ns p50_ns p99_ns min_ns calls`. Wire format: vfio-user spec (QEMU
 * docs/interop/vfio-user.rst), "Header", "VFIO_USER_VERSION", "VFIO_USER_REGION_READ".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 8

static uint64_t config_offset;   /* -o */

struct target {
    const char *name;
    int is_vfu;
    int fd;
    uint16_t next_id;
    uint64_t *samples;
    size_t count;
};

static void die(const char *what) {
    fprintf(stderr, "vfu-bench-client: %s: %s\n", what, errno ? strerror(errno) : "protocol error");
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int connect_path(const char *path) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(a.sun_path)) { errno = ENAMETOOLONG; die(path); }
    strcpy(a.sun_path, path);
    for (int tries = 0; tries < 2000; tries++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) return fd;
        close(fd);
        usleep(5000);
    }
    die(path);
    return -1;
}

static void write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("write");
        p += r;
        n -= (size_t)r;
    }
}

static void read_all(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { if (r == 0) errno = 0; die("read"); }
        p += r;
        n -= (size_t)r;
    }
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* vfio-user header: id u16, command u16, size u32, flags u32, error u32. */
static void header(uint8_t *p, uint16_t id, uint16_t cmd, uint32_t size) {
    put16(p, id); put16(p + 2, cmd); put32(p + 4, size); put32(p + 8, 0); put32(p + 12, 0);
}

static void vfu_negotiate(struct target *t) {
    static const char json[] = "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,\"pgsizes\":4096}}";
    uint8_t msg[16 + 4 + sizeof(json)];
    header(msg, t->next_id, 1, (uint32_t)sizeof(msg));
    put16(msg + 16, 0);
    put16(msg + 18, 2);
    memcpy(msg + 20, json, sizeof(json));   /* with its NUL */
    write_all(t->fd, msg, sizeof(msg));
    uint8_t h[16];
    read_all(t->fd, h, 16);
    uint32_t size = get32(h + 4);
    if (get16(h) != t->next_id || get16(h + 2) != 1 || (get32(h + 8) & 0x2f) != 1 || size < 20 || size > 65536) {
        errno = 0;
        die("VERSION reply");
    }
    uint8_t body[65536];
    read_all(t->fd, body, size - 16);
    t->next_id++;
}

/* One REGION_READ of 4 bytes of config space (region 7, offset 0), checked. */
static inline void vfu_call(struct target *t) {
    uint8_t req[32], rep[36];
    header(req, t->next_id, 9, 32);
    put64(req + 16, config_offset);
    put32(req + 24, 7);
    put32(req + 28, 4);
    write_all(t->fd, req, 32);
    read_all(t->fd, rep, 36);
    if (get16(rep) != t->next_id || get16(rep + 2) != 9 || get32(rep + 4) != 36 || get32(rep + 8) != 1 ||
        get32(rep + 16) != (uint32_t)config_offset || get32(rep + 24) != 7 || get32(rep + 28) != 4) {
        errno = 0;
        die("REGION_READ reply");
    }
    t->next_id++;
}

static inline void raw_call(struct target *t) {
    uint8_t req[32], rep[36];
    memset(req, 0x5a, sizeof(req));
    write_all(t->fd, req, 32);
    read_all(t->fd, rep, 36);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t percentile(const uint64_t *sorted, size_t n, double p) {
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

int main(int argc, char **argv) {
    long n = 50000, block = 500, warmup = -1;
    int opt;
    while ((opt = getopt(argc, argv, "n:b:w:o:")) != -1) {
        switch (opt) {
        case 'n': n = atol(optarg); break;
        case 'b': block = atol(optarg); break;
        case 'w': warmup = atol(optarg); break;
        case 'o': config_offset = strtoull(optarg, NULL, 0) & ~3ull; break;
        default:
            fprintf(stderr, "usage: %s [-n calls] [-b block] [-w warmup] [-o config offset] vfu:PATH|raw:PATH ...\n", argv[0]);
            return 2;
        }
    }
    if (n < 1 || block < 1 || optind >= argc || argc - optind > MAX_TARGETS) {
        fprintf(stderr, "usage: %s [-n calls] [-b block] [-w warmup] [-o config offset] vfu:PATH|raw:PATH ...\n", argv[0]);
        return 2;
    }
    if (warmup < 0) warmup = n / 10;
    struct target targets[MAX_TARGETS];
    int nt = 0;
    for (int i = optind; i < argc; i++, nt++) {
        struct target *t = &targets[nt];
        memset(t, 0, sizeof(*t));
        t->name = argv[i];
        if (strncmp(argv[i], "vfu:", 4) == 0) {
            t->is_vfu = 1;
            t->fd = connect_path(argv[i] + 4);
            vfu_negotiate(t);
        } else if (strncmp(argv[i], "raw:", 4) == 0) {
            t->fd = connect_path(argv[i] + 4);
            uint32_t sizes[2] = { 32, 36 };
            write_all(t->fd, sizes, sizeof(sizes));
        } else {
            fprintf(stderr, "vfu-bench-client: target %s: expected vfu:PATH or raw:PATH\n", argv[i]);
            return 2;
        }
        t->samples = calloc((size_t)n, sizeof(uint64_t));
        if (!t->samples) die("calloc");
    }
    for (long i = 0; i < warmup; i++)
        for (int k = 0; k < nt; k++) { if (targets[k].is_vfu) vfu_call(&targets[k]); else raw_call(&targets[k]); }
    for (long done = 0; done < n; done += block) {
        long m = n - done < block ? n - done : block;
        for (int k = 0; k < nt; k++) {
            struct target *t = &targets[k];
            for (long i = 0; i < m; i++) {
                uint64_t t0 = now_ns();
                if (t->is_vfu) vfu_call(t); else raw_call(t);
                t->samples[t->count++] = now_ns() - t0;
            }
        }
    }
    for (int k = 0; k < nt; k++) {
        struct target *t = &targets[k];
        double sum = 0;
        for (size_t i = 0; i < t->count; i++) sum += (double)t->samples[i];
        qsort(t->samples, t->count, sizeof(uint64_t), cmp_u64);
        printf("%s %.1f %llu %llu %llu %zu\n", t->name, sum / (double)t->count,
               (unsigned long long)percentile(t->samples, t->count, 50),
               (unsigned long long)percentile(t->samples, t->count, 99),
               (unsigned long long)t->samples[0], t->count);
        close(t->fd);
        free(t->samples);
    }
    return 0;
}
