"""hp.describe: one read gives exactly hp.stats + hp.histogram (+ the sketch quantiles).

The references are the separate calls (hp.stats bit for bit, hp.histogram) and numpy
(np.histogram's counts and edges, numpy's min/max/count). Marked ``mpi``: serial and
under 2 and 3 ranks (uneven blocks, one rank empty). The CLI tests launch their own jobs.
"""

import json

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import hpcproc_cmd, on_root, run

STATS = ("count", "nan_count", "sum", "mean", "var", "std", "min", "max")


def _dist(data, comm):
    """Uneven blocks, rank 0 empty when there are several ranks."""
    n, size = len(data), comm.size
    w = np.arange(size, dtype=float) + (1.0 if size == 1 else 0.0)
    cuts = np.concatenate(([0], np.round(np.cumsum(w) / w.sum() * n))).astype(int)
    return hp.DistArray.from_local(data[cuts[comm.rank]:cuts[comm.rank + 1]], comm)


def _same(a, b):
    """Bit-identical scalars (NaN equals NaN; the type too: int sums stay ints)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _check(got, x, bins=64, range=None, ddof=0, skipna=False, exact=False, **kw):
    ref = hp.stats(x, ddof=ddof, skipna=skipna, exact=exact, **kw)
    for k in STATS:
        assert _same(got[k], ref[k]), (k, got[k], ref[k])
    counts, edges = hp.histogram(x, bins, range=range, **kw)
    np.testing.assert_array_equal(got["counts"], counts)
    np.testing.assert_array_equal(got["edges"], edges)
    assert got["edges"].dtype == edges.dtype and got["counts"].dtype == np.int64


def _data(dtype, n=30011, seed=4):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(n) < 0.3
    if dt.kind in "iu":
        lo = 0 if dt.kind == "u" else -50
        return rng.integers(lo, 51, n).astype(dtype)
    d = (rng.standard_normal(n) * 10).astype(dtype)
    d[:50] = np.round(d[:50])  # values on edges
    return d


@pytest.mark.mpi
@pytest.mark.parametrize("dtype", ["f8", "f4", "f2", ">f8", "<f4", "i8", ">i4", "u2", "u8",
                                   "i1", "?"])
@pytest.mark.parametrize("bins,rng", [(64, None), (7, (-5, 5)), (3, (0, 0)),
                                      (np.array([-30.0, -1, 0, 0.5, 2, 40]), None)])
def test_equals_stats_histogram_numpy(comm, dtype, bins, rng):
    data = _data(dtype)
    x = _dist(data, comm)
    got = hp.describe(x, bins, range=rng)
    _check(got, x, bins, rng)
    ref_counts, ref_edges = np.histogram(data.view(np.uint8) if data.dtype == np.bool_
                                         else data, bins, range=rng)  # numpy warns on bool
    np.testing.assert_array_equal(got["counts"], ref_counts)
    np.testing.assert_array_equal(got["edges"], ref_edges)
    assert got["count"] == data.size and got["passes"] == (2 if rng is None and
                                                          np.ndim(bins) == 0 else 1)
    if data.dtype.kind != "b":
        assert got["min"] == data.min() and got["max"] == data.max()


@pytest.mark.mpi
def test_ddof_and_threads_split_blocks(comm):
    data = np.random.default_rng(1).standard_normal(400_003) * 3 + 1
    x = _dist(data, comm)
    old = hp.set_threads(3)  # blocks split over threads: the same ranges as hp.stats
    try:
        got = hp.describe(x, 16, ddof=1, quantiles=[0.25, 0.5])
        _check(got, x, 16, ddof=1)
        sk = hp.quantile(x, [0.25, 0.5], method="sketch")
        np.testing.assert_array_equal(got["quantiles"], sk)
    finally:
        hp.set_threads(1 if old == 3 else None)


@pytest.mark.mpi
def test_nan_and_inf(comm):
    data = _data("f8")
    data[[3, 500, 9000]] = np.nan
    x = _dist(data, comm)
    # a range given: NaNs are not counted; statistics as hp.stats (NaN without skipna)
    for skipna in (False, True):
        got = hp.describe(x, 10, range=(-20, 20), skipna=skipna)
        _check(got, x, 10, (-20, 20), skipna=skipna)
        np.testing.assert_array_equal(got["counts"], np.histogram(data, 10, (-20, 20))[0])
    # range=None: numpy refuses NaN extremes, and so do hp.histogram and hp.describe
    with pytest.raises(ValueError, match="autodetected range of \\[nan, nan\\]"):
        hp.describe(x, 10)
    # ... unless NaNs are skipped: the range of the other values
    good = data[~np.isnan(data)]
    got = hp.describe(x, 10, skipna=True)
    np.testing.assert_array_equal(got["counts"], np.histogram(good, 10)[0])
    np.testing.assert_array_equal(got["edges"], np.histogram(good, 10)[1])
    assert got["nan_count"] == 3 and got["count"] == good.size
    data[7] = np.inf
    with pytest.raises(ValueError, match="not finite"):
        hp.describe(_dist(data, comm), 10, skipna=True)
    got = hp.describe(_dist(data, comm), 10, range=(-20, 20), skipna=True)
    np.testing.assert_array_equal(got["counts"], np.histogram(data, 10, (-20, 20))[0])


@pytest.mark.mpi
@pytest.mark.parametrize("case", ["empty", "one", "equal", "two_values"])
def test_small_inputs(comm, case):
    data = {"empty": np.empty(0), "one": np.array([2.5]), "equal": np.full(1001, -7.0),
            "two_values": np.array([1.0, 2.0] * 5)}[case]
    x = _dist(data, comm)
    got = hp.describe(x, 5, quantiles=0.5)
    _check(got, x, 5)
    counts, edges = np.histogram(data, 5)
    np.testing.assert_array_equal(got["counts"], counts)
    np.testing.assert_array_equal(got["edges"], edges)
    if case == "empty":
        assert got["count"] == 0 and np.isnan(got["quantiles"])
    else:
        assert got["quantiles"] == pytest.approx(np.quantile(data, 0.5), rel=0.011)


@pytest.mark.mpi
def test_too_many_bins_for_the_range(comm):
    data = np.array([1.0, 1.0 + 2**-52] * 5)  # numpy cannot make 5 distinct edges
    with pytest.raises(ValueError, match="Too many bins"):
        np.histogram(data, 5)
    with pytest.raises(ValueError, match="Too many bins"):
        hp.describe(_dist(data, comm), 5)  # on every rank alike, after the pass


@pytest.mark.mpi
@pytest.mark.parametrize("rng", [(-3000, 3000), None])
def test_exact_mode(comm, rng):
    data = np.random.default_rng(2).standard_normal(50_000) * 1e3
    x = _dist(data, comm)
    got = hp.describe(x, 8, range=rng, exact=True, quantiles=0.9)
    _check(got, x, 8, rng, exact=True)
    assert got["quantiles"] == hp.quantile(x, 0.9, method="sketch")


@pytest.mark.mpi
def test_two_dimensional_all_elements(comm):
    data = np.random.default_rng(8).integers(-1000, 1000, (9001, 3)).astype("i2")
    x = _dist(data, comm)
    got = hp.describe(x, 20)
    _check(got, x, 20)
    np.testing.assert_array_equal(got["counts"], np.histogram(data, 20)[0])
    assert got["sum"] == data.sum(dtype=np.int64) and got["count"] == data.size


def _write(path, data, chunks=None, **attrs):
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", data=data, chunks=chunks)
        for k, v in attrs.items():
            d.attrs[k] = v


@pytest.mark.mpi
@pytest.mark.parametrize("layout", ["contiguous", "chunked", "big_endian", "int32", "cf"])
def test_file_inputs(comm, shared_tmp, layout):
    rng = np.random.default_rng(9)
    data = rng.standard_normal(40_009) * 5
    attrs, chunks = {}, None
    if layout == "chunked":
        chunks = (1000,)
    elif layout == "big_endian":
        data = data.astype(">f8")
    elif layout == "int32":
        data = rng.integers(-2**31, 2**31 - 1, 40_009).astype("i4")
    elif layout == "cf":  # int16 packed, with missing values: decoded by every call
        data = np.round(data * 100).astype("i2")
        data[::7] = -32767
        attrs = {"scale_factor": np.float32(0.01), "add_offset": np.float32(2),
                 "_FillValue": np.int16(-32767)}
    path = shared_tmp / f"{layout}.h5"
    on_root(comm, _write, path, data, chunks, **attrs)
    target = f"{path}:/x"
    for bins, rng_ in ((32, None), (10, (-5, 5))):
        for bb in (64 << 20, 8000):  # one block, or many (and ranks with fewer blocks)
            got = hp.describe(target, bins, range=rng_, comm=comm, block_bytes=bb)
            _check(got, target, bins, rng_, comm=comm, block_bytes=bb)
            assert got["passes"] == (2 if rng_ is None else 1)
            if layout != "cf":
                ref = np.histogram(data, bins, range=rng_)
                np.testing.assert_array_equal(got["counts"], ref[0])
                np.testing.assert_array_equal(got["edges"], ref[1])
    if layout == "cf":  # missing values are left out, as with skipna=True
        valid = data[data != -32767].astype(np.float32) * np.float32(0.01) + np.float32(2)
        got = hp.describe(target, 12, comm=comm)
        assert got["count"] == valid.size and got["nan_count"] == (data == -32767).sum()
        np.testing.assert_array_equal(got["counts"], np.histogram(valid, 12)[0])


@pytest.mark.mpi
def test_blocks_iterator_one_pass_only(comm, shared_tmp):
    data = np.random.default_rng(3).standard_normal(20_000)
    path = shared_tmp / "it.h5"
    on_root(comm, _write, path, data)
    it = hp.blocks(str(path), "/x", block_bytes=8000, comm=comm)
    got = hp.describe(it, 16, range=(-4, 4), quantiles=[0.5])
    np.testing.assert_array_equal(got["counts"], np.histogram(data, 16, (-4, 4))[0])
    assert got["count"] == data.size and got["max"] == data.max()
    with pytest.raises(ValueError, match="range=None needs a pass"):
        hp.describe(hp.blocks(str(path), "/x", block_bytes=8000, comm=comm), 16)


@pytest.mark.mpi
@pytest.mark.parametrize("kwargs,exc,match", [
    ({"bins": 0}, ValueError, "must be positive"),
    ({"bins": "auto"}, ValueError, "only an integer"),
    ({"bins": 2.5}, TypeError, "must be an integer"),
    ({"bins": [3.0, 1.0]}, ValueError, "increase monotonically"),
    ({"range": (1, 0)}, ValueError, "max must be larger"),
    ({"range": (0, np.inf)}, ValueError, "not finite"),
    ({"ddof": -1}, ValueError, "ddof"),
    ({"skipna": "yes"}, TypeError, "skipna"),
    ({"exact": 1}, TypeError, "exact"),
    ({"quantiles": [0.5, 1.5]}, ValueError, "range \\[0, 1\\]"),
    ({"quantiles": "median"}, ValueError, "quantiles must be"),
    ({"quantiles": 0.5, "rel_err": 0}, ValueError, "rel_err"),
])
def test_argument_errors(comm, kwargs, exc, match):
    x = _dist(np.arange(10.0), comm)
    with pytest.raises(exc, match=match):
        hp.describe(x, **kwargs)


@pytest.mark.mpi
def test_ranks_disagree_and_comm_rule(comm):
    from mpi4py import MPI
    x = _dist(np.arange(100.0), comm)
    if comm.size > 1:
        with pytest.raises(hp.ArgumentMismatchError, match="bins"):
            hp.describe(x, 10 + comm.rank)
        other = MPI.COMM_SELF
        with pytest.raises(ValueError, match="comm"):
            hp.describe(x, 10, comm=other)
    with pytest.raises(TypeError, match="expected a DistArray"):
        hp.describe([1.0, 2.0])
    with pytest.raises(hp.DtypeError, match="complex"):
        hp.describe(_dist(np.arange(4) * 1j, comm))


def test_fused_kernel_cache_follows_its_callees():
    """Numba keys a cached kernel on its own file; the fused kernel compiles in the
    moment, histogram and sketch kernels of other modules, so their files' stamps must be
    part of its cache key (else an edited _moments_nb.py leaves a stale cached kernel)."""
    import os

    from hpcproc.kernels import _describe_nb as nb
    from hpcproc.kernels import _hist_nb, _moments_nb, _select_nb
    from hpcproc.kernels._numba import CACHE
    if not CACHE:
        pytest.skip("kernel cache switched off")
    stamp = nb.describe_1d.dispatcher._cache._cache_file._source_stamp
    files = [m.__file__ for m in (_hist_nb, _moments_nb, _select_nb)]
    assert stamp[1] == tuple((os.stat(f).st_mtime, os.stat(f).st_size) for f in files)


# --- the CLI: `hpcproc stats FILE:/x --hist BINS` (launches its own jobs) --------------

@pytest.fixture(scope="module")
def cli_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("describe") / "n.h5"
    data = np.random.default_rng(11).standard_normal(100_003) * 2
    _write(path, data)
    return path, data


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_cli_json(cli_file, ranks):
    path, data = cli_file
    out = run(hpcproc_cmd("stats", f"{path}:/x", "--hist", "16", "--json", "--block-bytes",
                          "100k"), ranks=ranks, check=True, timeout=180)
    got = json.loads(out.stdout)
    plain = json.loads(run(hpcproc_cmd("stats", f"{path}:/x", "--json", "--block-bytes",
                                       "100k"), ranks=ranks, check=True,
                           timeout=180).stdout)
    for k in ("count", "sum", "mean", "std", "min", "max"):
        assert got[k] == plain[k], k  # the same numbers as `hpcproc stats`
    counts, edges = np.histogram(data, 16)
    assert got["counts"] == counts.tolist() and got["edges"] == edges.tolist()
    assert got["passes"] == 2
    one = json.loads(run(hpcproc_cmd("stats", f"{path}:/x", "--hist", "16", "--range", "-3",
                                     "3", "--json"), ranks=ranks, check=True,
                         timeout=180).stdout)
    counts, edges = np.histogram(data, 16, range=(-3, 3))
    assert one["counts"] == counts.tolist() and one["edges"] == edges.tolist()
    assert one["passes"] == 1 and one["max"] == got["max"]


def test_cli_text_and_errors(cli_file):
    path, data = cli_file
    out = run(hpcproc_cmd("stats", f"{path}:/x", "--hist", "4", "--timings"), ranks=2,
              check=True, timeout=180).stdout
    counts = np.histogram(data, 4)[0]
    assert "histogram (100003 values in range)" in out and "2 reads of the data" in out
    for c in counts:
        assert f" {c} " in out
    assert f"max      {data.max():.10g}" in out
    bad = run(hpcproc_cmd("stats", f"{path}:/x", "--hist", "0"), ranks=2, timeout=120)
    assert bad.returncode == 2 and "hpcproc: error:" in bad.stderr and "--hist" in bad.stderr
    bad = run(hpcproc_cmd("stats", f"{path}:/x", "--hist", "8", "--checkpoint", str(path) + ".ck"),
              ranks=2, timeout=120)
    assert bad.returncode == 2 and "--hist cannot be combined with --checkpoint" in bad.stderr
    assert bad.stderr.count("hpcproc: error:") == 1
    for args, msg in ((["--range", "0", "1"], "--range needs --hist BINS"),
                      (["--hist", "4", "--range", "2", "1"], "needs MIN <= MAX")):
        bad = run(hpcproc_cmd("stats", f"{path}:/x", *args), ranks=2, timeout=120)
        assert bad.returncode == 2 and msg in bad.stderr, bad.stderr


@pytest.mark.parametrize("dtype", ["f8", "f4", "i4", "u8"])
@pytest.mark.parametrize("threads", [1, 3])
def test_fused_pieces_equal_separate_kernels(dtype, threads):
    """hp.describe's fused fold (moments + histogram of each L2 slice in one kernel) of
    pieces at unaligned global starts, split over threads: the reproducible state is
    bit for bit that of the whole block folded by hp.stats' kernel, and the counts are
    np.histogram's (rows outside whole chunks are counted by the unfused kernel)."""
    from hpcproc.compute.histogram import edge_args
    from hpcproc.kernels import repro_state as rs
    from hpcproc.kernels.describe_state import DescribeState

    rng = np.random.default_rng(5)
    data = (rng.standard_normal(300_001) * 1000).astype(dtype)
    if dtype == "f8":
        data[[7, 40_000, 299_999]] = np.nan, np.inf, -np.inf
    edges = np.histogram_bin_edges(data[np.isfinite(data)].astype("f8"), 37)
    start = 1021  # not a chunk boundary: a raw head and tail around the whole chunks
    old = hp.set_threads(threads)
    try:
        state = DescribeState(*edge_args(edges))
        for lo, hi in ((0, 0), (0, 5), (5, 70_003), (70_003, 70_004), (70_004, 300_001)):
            state.add(data[lo:hi], None, start=start + lo)
        whole = rs.block_state(data.reshape(-1, 1), start)
    finally:
        hp.set_threads(1 if old == threads else None)
    assert rs.pack(state.state).tobytes() == rs.pack(whole).tobytes()
    fin = data[np.isfinite(data)] if dtype == "f8" else data
    np.testing.assert_array_equal(state.counts(), np.histogram(fin, edges)[0])


@pytest.mark.parametrize("case", ["edges_f8", "offset_f4", "int_edges_beyond_2_53"])
def test_bin_estimate_and_correction_on_edges(case):
    """The vectorised bin estimate + exact correction (``_hist_nb.bin_estimates`` and
    ``count_bins4``) against np.histogram: every edge, its float neighbours, a range far
    from zero (estimates off by a bin), integer edges compared exactly beyond 2**53, the
    last bin closed, lengths that are not a multiple of the 4 sub-histograms."""
    from hpcproc.compute.histogram import edge_args
    from hpcproc.kernels.describe_state import DescribeState

    if case == "int_edges_beyond_2_53":
        edges = np.arange(2**60, 2**60 + 65 * 1000, 1000, dtype=np.int64)
        base = np.concatenate([edges - 1, edges, edges + 1, [2**60 - 10**6, 2**61]])
        data = np.tile(base, 700).astype(np.int64)
    else:
        dt = np.float64 if case == "edges_f8" else np.float32
        lo, hi = (-3.0, 7.0) if case == "edges_f8" else (1e6, 1e6 + 10.0)
        edges = np.histogram_bin_edges(np.zeros(0, dt), 64, range=(lo, hi))
        e = edges.astype(dt)
        base = np.concatenate([e, np.nextafter(e, -np.inf), np.nextafter(e, np.inf),
                               [np.nan, np.inf, -np.inf]]).astype(dt)
        data = np.tile(base, 700)
    for n in (1, 2, 3, 5, 7, 33_001, data.size):
        x = data[:n]
        state = DescribeState(*edge_args(edges))
        state.add(x, None)
        np.testing.assert_array_equal(state.counts(), np.histogram(x, edges)[0])


@pytest.mark.mpi
def test_too_many_bins_is_refused_before_allocating(comm):
    """More bins than the node's memory holds (counts and four sub-histograms per thread):
    one clear error on every rank, before anything of that size is allocated."""
    import os
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    too_many = total // 40 + 1  # 64 bytes per bin would not fit, the counts alone would
    with pytest.raises(ValueError, match=f"bins={too_many:,} needs about .* use fewer bins"):
        hp.describe(_dist(np.arange(10.0), comm), too_many, range=(0, 10))
