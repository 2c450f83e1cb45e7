/* hpcproc_stats: the native ceiling for `hpcproc stats` + a 64-bin histogram.
 *
 * Two modes. The default (two passes) is described first; `-1` is the one-pass mode that
 * `hp.describe` is measured against (see the end of this comment).
 *
 * Count, sum, mean, std, min, max and an N-bin histogram (numpy's edges and rules,
 * range = [min, max]) of a contiguous, native-endian float64 HDF5 dataset whose raw data
 * starts at byte OFFSET of FILE. Every rank pread()s its balanced share of the elements
 * in 8 MiB pieces: pass 1 computes the moment state (chunks of 1024 values: 4-way sum,
 * min, max, then M2 around the chunk mean; chunks merged with Chan's formulas and a
 * compensated sum), the states are allgathered and merged in rank order, pass 2 fills
 * the histogram, which is summed with MPI_Allreduce. Prints JSON on rank 0.
 *
 * One pass (`-1`): with a range LO HI given, each 8 MiB piece is pread into one reused
 * buffer and visited in slices of 32768 values (in L2): moments as above, then a
 * vectorised bin index (float estimate, clamped, -1 outside or NaN) and numpy's exact
 * edge correction into 4 interleaved sub-histograms. Without a range ([min, max] is
 * unknown until every value is read) the file is read twice, as in the default mode,
 * but the second pass uses the vectorised sub-histograms: the same algorithm as
 * hp.describe(range=None). `-k` (no range) reads once and keeps the share in memory
 * for the histogram instead: the alternative benchmarks/stats.py measures (slower with
 * a warm page cache: faulting in fresh memory costs more than the second pread).
 * `-m` times the fused loop alone on data in memory (see in_memory below).
 *
 * Build: mpicc -O3 -march=native -o hpcproc_stats native/hpcproc_stats.c -lm
 * Usage: mpiexec -n 2 hpcproc_stats [-1|-k|-m] FILE OFFSET NELEM [BINS [LO HI]]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PIECE (1 << 20) /* doubles per pread: 8 MiB */
#define CHUNK 1024

typedef struct { double n, sum, comp, mean, m2, mn, mx; } state_t;

static void merge(state_t *a, double n, double s, double mean, double m2, double mn, double mx) {
    if (n == 0) return;
    if (a->n == 0) { a->mean = mean; a->m2 = m2; }
    else {
        double tot = a->n + n, d = mean - a->mean;
        a->mean += d * (n / tot);
        a->m2 += m2 + d * d * (a->n * n / tot);
    }
    a->n += n;
    double t = a->sum + s;
    a->comp += fabs(a->sum) >= fabs(s) ? (a->sum - t) + s : (s - t) + a->sum;
    a->sum = t;
    if (mn < a->mn) a->mn = mn;
    if (mx > a->mx) a->mx = mx;
}

static void moments(const double *x, size_t n, state_t *st) {
    for (size_t r0 = 0; r0 < n; r0 += CHUNK) {
        size_t r1 = r0 + CHUNK < n ? r0 + CHUNK : n, i = r0;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        double mn0 = INFINITY, mn1 = INFINITY, mx0 = -INFINITY, mx1 = -INFINITY;
        for (; i + 4 <= r1; i += 4) {
            double a = x[i], b = x[i + 1], c = x[i + 2], d = x[i + 3];
            s0 += a; s1 += b; s2 += c; s3 += d;
            mn0 = a < mn0 ? a : mn0; mn1 = b < mn1 ? b : mn1;
            mn0 = c < mn0 ? c : mn0; mn1 = d < mn1 ? d : mn1;
            mx0 = a > mx0 ? a : mx0; mx1 = b > mx1 ? b : mx1;
            mx0 = c > mx0 ? c : mx0; mx1 = d > mx1 ? d : mx1;
        }
        for (; i < r1; i++) {
            s0 += x[i];
            mn0 = x[i] < mn0 ? x[i] : mn0;
            mx0 = x[i] > mx0 ? x[i] : mx0;
        }
        double s = (s0 + s1) + (s2 + s3), cnt = (double)(r1 - r0), mean = s / cnt;
        double m0 = 0, m1 = 0;
        for (i = r0; i + 2 <= r1; i += 2) {
            double d0 = x[i] - mean, d1 = x[i + 1] - mean;
            m0 += d0 * d0; m1 += d1 * d1;
        }
        for (; i < r1; i++) { double d0 = x[i] - mean; m0 += d0 * d0; }
        merge(st, cnt, s, mean, m0 + m1, mn0 < mn1 ? mn0 : mn1, mx0 > mx1 ? mx0 : mx1);
    }
}

static void histogram(const double *x, size_t n, const double *e, int nb, double norm,
                      int64_t *h) {
    double lo = e[0], hi = e[nb];
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (!(v >= lo && v <= hi)) continue;
        int b = (int)((v - lo) * norm);
        if (b > nb - 1) b = nb - 1;
        if (b < 0) b = 0;
        while (b > 0 && v < e[b]) b--;
        while (b < nb - 1 && v >= e[b + 1]) b++;
        h[b]++;
    }
}

#define SLICE 32768 /* values per fused slice (256 KiB: stays in L2) */

/* The vectorised bin index of x[0..n): (v - lo) * norm, clamped; -1 outside or NaN. */
static void bin_index(const double *x, size_t n, double lo, double hi, double norm, int nb,
                      int *idx) {
    for (size_t i = 0; i < n; i++) {
        double v = x[i], t = (v - lo) * norm;
        t = t < nb - 1 ? t : nb - 1;
        t = t > 0 ? t : 0;
        idx[i] = (v >= lo && v <= hi) ? (int)t : -1;
    }
}

/* numpy's exact correction of the estimate against the edges, into 4 sub-histograms. */
static void bin_count(const double *x, size_t n, const double *e, int nb, const int *idx,
                      int64_t *sub) {
    for (size_t i = 0; i < n; i++) {
        int b = idx[i];
        if (b < 0) continue;
        double v = x[i];
        while (b > 0 && v < e[b]) b--;
        while (b < nb - 1 && v >= e[b + 1]) b++;
        sub[(i & 3) * nb + b]++;
    }
}

static void histogram4(const double *x, size_t n, const double *e, int nb, double norm,
                       int *idx, int64_t *sub) {
    for (size_t r0 = 0; r0 < n; r0 += SLICE) {
        size_t m = n - r0 < SLICE ? n - r0 : SLICE;
        bin_index(x + r0, m, e[0], e[nb], norm, nb, idx);
        bin_count(x + r0, m, e, nb, idx, sub);
    }
}

/* numpy's histogram_bin_edges for (lo, hi): linspace, equal lo/hi widened by 0.5. */
static double make_edges(double lo, double hi, int nb, double *e) {
    if (lo == hi) { lo -= 0.5; hi += 0.5; }
    double step = (hi - lo) / nb;
    for (int k = 0; k <= nb; k++) e[k] = k * step + lo;
    e[nb] = hi;
    return nb / (hi - lo);
}

/* CPU seconds of this process (user + system): robust to other jobs on the machine. */
static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static size_t read_piece(int fd, double *buf, size_t count, off_t off) {
    size_t want = count * sizeof(double), got = 0;
    while (got < want) {
        ssize_t r = pread(fd, (char *)buf + got, want - got, off + (off_t)got);
        if (r <= 0) { perror("pread"); MPI_Abort(MPI_COMM_WORLD, 1); }
        got += (size_t)r;
    }
    return count;
}

static void merge_all(const state_t *st, int size, state_t *g, double *total) {
    double mine[7] = {st->n, st->sum, st->comp, st->mean, st->m2, st->mn, st->mx};
    double *all = malloc(sizeof(double) * 7 * size), comp = 0;
    MPI_Allgather(mine, 7, MPI_DOUBLE, all, 7, MPI_DOUBLE, MPI_COMM_WORLD);
    state_t z = {0, 0, 0, 0, 0, INFINITY, -INFINITY};
    *g = z;
    for (int k = 0; k < size; k++) {
        double *a = all + 7 * k;
        merge(g, a[0], a[1], a[3], a[4], a[5], a[6]);
        comp += a[2];
    }
    *total = g->sum + g->comp + comp;
    free(all);
}

/* -m: the fused loop alone on data already in memory (the share is read once,
 * untimed), median of 5 runs of this rank's share on one thread: GB/s on stdout. */
static int in_memory(int fd, off_t offset, int64_t lo, int64_t cnt, const double *e, int nb,
                     double norm, int64_t *h, int *idx) {
    double *x = aligned_alloc(64, ((size_t)cnt * 8 + 63) / 64 * 64);
    for (int64_t i = 0; i < cnt; i += PIECE) {
        size_t m = (size_t)(cnt - i < PIECE ? cnt - i : PIECE);
        read_piece(fd, x + i, m, offset + (off_t)((lo + i) * 8));
    }
    double t[5];
    for (int k = 0; k < 5; k++) {
        state_t st = {0, 0, 0, 0, 0, INFINITY, -INFINITY};
        struct timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        for (size_t r0 = 0; r0 < (size_t)cnt; r0 += SLICE) {
            size_t m = (size_t)cnt - r0 < SLICE ? (size_t)cnt - r0 : SLICE;
            moments(x + r0, m, &st);
            bin_index(x + r0, m, e[0], e[nb], norm, nb, idx);
            bin_count(x + r0, m, e, nb, idx, h);
        }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        t[k] = (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec);
        if (st.n != (double)cnt) return 3;
    }
    for (int i = 0; i < 5; i++)  /* sort for the median */
        for (int j = i + 1; j < 5; j++)
            if (t[j] < t[i]) { double u = t[i]; t[i] = t[j]; t[j] = u; }
    printf("{\"GBps\": %.4f, \"seconds\": %.6f}\n", cnt * 8 / 1e9 / t[2], t[2]);
    free(x);
    MPI_Finalize();
    return 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int mem = argc > 1 && strcmp(argv[1], "-m") == 0; /* compute only, data in memory */
    int keep = argc > 1 && strcmp(argv[1], "-k") == 0; /* one read, share kept in memory */
    int one = mem || keep || (argc > 1 && strcmp(argv[1], "-1") == 0);
    argv += one;
    argc -= one;
    if (argc < 4 || argc == 6) {
        if (rank == 0) fprintf(stderr, "usage: hpcproc_stats [-1|-k|-m] FILE OFFSET NELEM [BINS [LO HI]]\n");
        MPI_Finalize();
        return 2;
    }
    off_t offset = (off_t)strtoll(argv[2], NULL, 10);
    int64_t nelem = strtoll(argv[3], NULL, 10);
    int nb = argc > 4 ? atoi(argv[4]) : 64;
    int ranged = argc > 6;
    double rlo = ranged ? strtod(argv[5], NULL) : 0, rhi = ranged ? strtod(argv[6], NULL) : 0;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror(argv[1]); MPI_Abort(MPI_COMM_WORLD, 1); }
    int64_t q = nelem / size, r = nelem % size;
    int64_t lo = rank * q + (rank < r ? rank : r), cnt = q + (rank < r);
    keep = keep && !ranged;
    size_t len = keep ? (size_t)cnt : PIECE;
    double *buf = aligned_alloc(64, (len * sizeof(double) + 63) / 64 * 64 + 64);
    double *e = malloc(sizeof(double) * (nb + 1));
    int64_t *h = calloc((size_t)nb * 4, sizeof(int64_t));
    int *idx = malloc(sizeof(int) * SLICE);
    double norm = ranged ? make_edges(rlo, rhi, nb, e) : 0;
    if (mem) return in_memory(fd, offset, lo, cnt, e, nb, norm, h, idx);

    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime(), c0 = cpu_seconds();
    state_t st = {0, 0, 0, 0, 0, INFINITY, -INFINITY}, g;
    double total;
    for (int64_t i = 0; i < cnt; i += PIECE) {
        size_t m = (size_t)(cnt - i < PIECE ? cnt - i : PIECE);
        double *x = keep ? buf + i : buf;
        read_piece(fd, x, m, offset + (off_t)((lo + i) * 8));
        if (one && ranged) {
            for (size_t r0 = 0; r0 < m; r0 += SLICE) {
                size_t k = m - r0 < SLICE ? m - r0 : SLICE;
                moments(x + r0, k, &st);
                bin_index(x + r0, k, e[0], e[nb], norm, nb, idx);
                bin_count(x + r0, k, e, nb, idx, h);
            }
        } else {
            moments(x, m, &st);
        }
    }
    merge_all(&st, size, &g, &total);
    if (!ranged) {
        norm = make_edges(g.mn, g.mx, nb, e);
        for (int64_t i = 0; i < cnt; i += PIECE) {
            size_t m = (size_t)(cnt - i < PIECE ? cnt - i : PIECE);
            double *x = keep ? buf + i : buf;
            if (!keep) read_piece(fd, x, m, offset + (off_t)((lo + i) * 8));
            if (one) histogram4(x, m, e, nb, norm, idx, h);
            else histogram(x, m, e, nb, norm, h);
        }
    }
    for (int s = 1; s < 4; s++)
        for (int k = 0; k < nb; k++) h[k] += h[s * nb + k];
    MPI_Allreduce(MPI_IN_PLACE, h, nb, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    double dt[2] = {MPI_Wtime() - t0, cpu_seconds() - c0}, tmax[2];
    MPI_Reduce(dt, tmax, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("{\"count\": %.0f, \"sum\": %.17g, \"mean\": %.17g, \"std\": %.17g, "
               "\"min\": %.17g, \"max\": %.17g, \"seconds\": %.6f, \"cpu_seconds\": %.6f, "
               "\"hist\": [", g.n, total, total / g.n, sqrt(g.m2 / g.n), g.mn, g.mx, tmax[0],
               tmax[1]);
        for (int k = 0; k < nb; k++) printf("%s%lld", k ? ", " : "", (long long)h[k]);
        printf("]}\n");
    }
    close(fd);
    free(buf); free(e); free(h); free(idx);
    MPI_Finalize();
    return 0;
}
