/* rawio: the raw IO limit ("dd-style" baseline) for hpcproc's IO benchmark.
 *
 * On N ranks, rank r reads (pread) or writes (pwrite, then fsync) its balanced block of
 * the byte range [OFFSET, OFFSET+NBYTES) of FILE: NBYTES is split like hpcproc splits
 * rows (block_range: the first NBYTES % N ranks get one byte more). The transfer is
 * timed with MPI_Wtime between barriers; rank 0 prints one JSON object with the slowest
 * rank's transfer time (elapsed_max_s: from leaving the first barrier to the end of its
 * IO, max over ranks), the fastest rank's (elapsed_min_s), the barrier-to-barrier time
 * (job_s, which also holds any skew in leaving the first barrier) and the bandwidth
 * gbps = NBYTES / elapsed_max_s / 1e9.
 *
 *   mpiexec -n 2 native/bin/rawio read  FILE OFFSET NBYTES [options]
 *   mpiexec -n 2 native/bin/rawio write FILE OFFSET NBYTES [options]
 *
 * Sizes accept the suffixes K, M, G, T (powers of 1024).
 *
 * Options
 *   --bs BYTES        transfer unit: a buffer of BYTES is reused for every pread/pwrite
 *                     (like dd bs=...). Default 0: one buffer holding the rank's whole
 *                     block, transferred in pieces of at most 1 GiB (as hpcproc does).
 *   --alloc-in-timing allocate the whole-block buffer inside the timed region without
 *                     touching it first, so page faults on the fresh memory are timed
 *                     (what a reader that returns a new array pays). Default: the buffer
 *                     is allocated and touched before the clock starts.
 *   --create          write: rank 0 recreates FILE (unlink, create, size OFFSET+NBYTES)
 *                     before the clock starts, so blocks are allocated as for a new file.
 *   --no-fsync        write: do not fsync (default: every rank fsyncs its descriptor
 *                     inside the timed region).
 *   --warm-mem BYTES  before the clock starts, touch and free BYTES of anonymous memory,
 *                     so that the memory the timed region allocates (page cache, a fresh
 *                     buffer) comes from pages the kernel has just freed. On VMs whose
 *                     host reclaims free guest memory (virtio-balloon free page reporting)
 *                     first-touching long-free memory is very slow; this separates that
 *                     machine effect from the cost of the IO itself.
 *
 * Exit status: 0 on success, 1 on an IO error (message on stderr, MPI_Abort), 2 on bad
 * usage.
 */
#define _GNU_SOURCE
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#define MAX_IO ((int64_t)1 << 30) /* Linux moves at most 0x7ffff000 bytes per call */

static int rank = 0;

static void die(const char *what, const char *path)
{
    fprintf(stderr, "rawio: rank %d: %s %s: %s\n", rank, what, path ? path : "",
            strerror(errno));
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static void usage(const char *msg)
{
    if (rank == 0)
        fprintf(stderr,
                "rawio: %s\nusage: rawio read|write FILE OFFSET NBYTES [--bs BYTES] "
                "[--alloc-in-timing] [--create] [--no-fsync] [--warm-mem BYTES]\n",
                msg);
    MPI_Finalize();
    exit(2);
}

/* "4096", "64K", "1G" -> bytes; -1 on a malformed or negative size. */
static int64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    int shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'B') /* accept 1GiB, 1GB (both 2^30 here) */
        end += (*end == 'i') ? 1 : 0;
    if (*end == 'B')
        end++;
    if (*end != '\0' || v > (INT64_MAX >> shift))
        return -1;
    return (int64_t)v << shift;
}

/* Print s as a JSON string (paths may hold quotes or backslashes). */
static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
}

/* Balanced block of n items over size ranks, remainder to the first ranks. */
static void block_range(int64_t n, int size, int r, int64_t *lo, int64_t *hi)
{
    int64_t base = n / size, rem = n % size;
    *lo = r * base + (r < rem ? r : rem);
    *hi = *lo + base + (r < rem ? 1 : 0);
}

static void pread_all(int fd, char *buf, int64_t len, int64_t off, const char *path)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, (size_t)(len < MAX_IO ? len : MAX_IO), (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("pread", path);
        }
        if (n == 0) {
            errno = EIO;
            fprintf(stderr, "rawio: rank %d: unexpected end of file at byte %lld of %s\n",
                    rank, (long long)off, path);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        buf += n, len -= n, off += n;
    }
}

static void pwrite_all(int fd, const char *buf, int64_t len, int64_t off, const char *path)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, (size_t)(len < MAX_IO ? len : MAX_IO), (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("pwrite", path);
        }
        buf += n, len -= n, off += n;
    }
}

static char *alloc(int64_t len, int touch, int fill)
{
    if (len == 0)
        len = 1;
    char *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        die("mmap", "buffer");
    if (touch) /* fault every page in now; a non-zero pattern for writes */
        memset(p, fill, (size_t)len);
    return p;
}

int main(int argc, char **argv)
{
    int size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    if (argc < 5)
        usage("missing arguments");
    const char *mode = argv[1], *path = argv[2];
    int writing = strcmp(mode, "write") == 0;
    if (!writing && strcmp(mode, "read") != 0)
        usage("mode must be 'read' or 'write'");
    int64_t offset = parse_size(argv[3]), nbytes = parse_size(argv[4]), bs = 0;
    if (offset < 0 || nbytes < 0)
        usage("OFFSET and NBYTES must be non-negative sizes");
    int alloc_in_timing = 0, create = 0, do_fsync = 1;
    int64_t warm_mem = 0;
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--bs") == 0 && i + 1 < argc) {
            if ((bs = parse_size(argv[++i])) < 0)
                usage("--bs needs a non-negative size");
        } else if (strcmp(argv[i], "--warm-mem") == 0 && i + 1 < argc) {
            if ((warm_mem = parse_size(argv[++i])) < 0)
                usage("--warm-mem needs a non-negative size");
        } else if (strcmp(argv[i], "--alloc-in-timing") == 0) {
            alloc_in_timing = 1;
        } else if (strcmp(argv[i], "--create") == 0) {
            create = 1;
        } else if (strcmp(argv[i], "--no-fsync") == 0) {
            do_fsync = 0;
        } else {
            usage("unknown option");
        }
    }
    if (alloc_in_timing && bs > 0)
        usage("--alloc-in-timing applies to the whole-block buffer (--bs 0) only");

    if (writing && create && rank == 0) {
        if (unlink(path) != 0 && errno != ENOENT)
            die("unlink", path);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0)
            die("create", path);
        if (ftruncate(fd, (off_t)(offset + nbytes)) != 0)
            die("ftruncate", path);
        close(fd);
    }
    MPI_Barrier(MPI_COMM_WORLD);

    int64_t lo, hi;
    block_range(nbytes, size, rank, &lo, &hi);
    int64_t len = hi - lo, start = offset + lo;
    int64_t buflen = bs > 0 ? (bs < len ? bs : len) : len;

    int fd = open(path, writing ? O_WRONLY : O_RDONLY);
    if (fd < 0)
        die("open", path);
    char *buf = alloc_in_timing ? NULL : alloc(buflen, 1, writing ? 0x5a : 0);
    if (warm_mem > 0) {
        char *warm = alloc(warm_mem, 1, 1);
        munmap(warm, (size_t)warm_mem);
    }

    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    if (alloc_in_timing)
        buf = alloc(buflen, 0, 0);
    for (int64_t done = 0; done < len;) {
        int64_t n = bs > 0 && bs < len - done ? bs : len - done;
        if (writing)
            pwrite_all(fd, buf, n, start + done, path);
        else
            pread_all(fd, buf, n, start + done, path);
        done += n;
    }
    if (writing && do_fsync && fsync(fd) != 0)
        die("fsync", path);
    double t1 = MPI_Wtime();
    MPI_Barrier(MPI_COMM_WORLD);
    double t2 = MPI_Wtime();

    /* elapsed: this rank's transfer (barrier exit to end of IO); job: barrier to barrier */
    double mine = t1 - t0, job = t2 - t0, slowest, fastest, job_max;
    MPI_Reduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&mine, &fastest, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
    MPI_Reduce(&job, &job_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);

    /* a checksum of one byte per page keeps the read data observable */
    unsigned long sum = 0, total;
    if (!writing)
        for (int64_t i = 0; i < buflen; i += 4096)
            sum += (unsigned char)buf[i];
    MPI_Reduce(&sum, &total, 1, MPI_UNSIGNED_LONG, MPI_SUM, 0, MPI_COMM_WORLD);

    if (close(fd) != 0)
        die("close", path);
    munmap(buf, (size_t)(buflen ? buflen : 1));

    if (rank == 0) {
        printf("{\"tool\": \"rawio\", \"op\": \"%s\", \"file\": ", mode);
        json_string(path);
        printf(", \"offset\": %lld, \"nbytes\": %lld, \"ranks\": %d, \"bs\": %lld, "
               "\"alloc_in_timing\": %s, \"fsync\": %s, \"elapsed_max_s\": %.6f, "
               "\"elapsed_min_s\": %.6f, \"job_s\": %.6f, \"gbps\": %.4f, "
               "\"checksum\": %lu}\n",
               (long long)offset, (long long)nbytes, size, (long long)bs,
               alloc_in_timing ? "true" : "false",
               writing ? (do_fsync ? "true" : "false") : "null", slowest, fastest, job_max,
               slowest > 0 ? nbytes / slowest / 1e9 : 0.0,
               writing ? 0UL : total);
        fflush(stdout);
    }
    MPI_Finalize();
    return 0;
}
