"""Break-it tests for the s22 changes: the exchange's two-stream scatter and scatter by
recorded positions, the HDF5 environment compared between ranks before a read, and the
histogram slice kernel shared by ``hp.histogram`` and ``hp.describe``.

Every result is compared with an independent numpy reference. Tests marked ``mpi`` run
serially and under 2 and 3 ranks; the others run once serially (some launch their own
``mpiexec``)."""

from __future__ import annotations

import re
import sys
import warnings

import numpy as np
import pytest

import hpcproc as hp
from hpcproc import memory
from hpcproc.shuffles import exchange
from hpcproc.shuffles._exchange import POSITION_COLUMNS, words
from support import MPIEXEC, SERIAL_ONLY, child_env, hpcproc_cmd, run

# --------------------------------------------------------------------------------------
# 1. the exchange: two scatter streams, positions recorded by the first column


def _expected(comm, cols, dest):
    """numpy: every rank's rows bound here, by source rank, then in source order."""
    everyone = comm.allgather((cols, np.asarray(dest, np.int64)))
    return {k: np.concatenate([c[k][d == comm.rank] for c, d in everyone])
            .astype(cols[k].dtype) for k in cols}


def _table(rng, n, ncol, zero_first):
    """``ncol`` columns of random bytes, of odd dtypes and row shapes, with zero-width
    columns mixed in (first, and after every third)."""
    dtypes = ["<f8", "u1", ">i2", "S3", ">c16", "?", "V5", "<u2"]
    cols = {"z_first": np.zeros((n, 0))} if zero_first else {}
    for j in range(ncol):
        dt = np.dtype(dtypes[j % len(dtypes)])
        trail = (2, 3) if j == 3 else ()
        raw = rng.integers(0, 256, n * dt.itemsize * int(np.prod(trail, dtype=int)), np.uint8)
        cols[f"c{j}"] = raw.view(dt).reshape((n,) + trail) if dt.kind != "b" else raw > 127
        if j % 3 == 2:
            cols[f"z{j}"] = np.zeros((n, 0), np.int32)
    return cols


def _check(got, exp):
    for k in exp:
        assert got[k].dtype == exp[k].dtype and got[k].shape == exp[k].shape, k
        assert got[k].tobytes() == exp[k].tobytes(), k


@pytest.fixture(params=["retained", "pooled"])
def staging(request):
    """Freed memory retained (the default: staging buffers made per call) or given back
    (``HPCPROC_RETAIN_MEMORY=0``: the send and positions buffers kept in a pool on the
    communicator, reused by the next call)."""
    before = memory.retaining()
    memory.retain_memory(request.param == "retained")
    yield request.param
    memory.retain_memory(before)


@pytest.mark.mpi
def test_break_exchange_alternating_column_counts_reuse_the_pool(comm, staging):
    """Calls alternating 2 and 7 columns (below and above POSITION_COLUMNS, zero-width
    columns first or between), 0/1/odd/large row counts, ``out=`` larger than needed:
    the pooled positions of one call never leak into the next, never alias an output."""
    rng = np.random.default_rng([comm.rank, 22])
    for it in range(12):
        n = [0, 1, 7, 333, 2001][it % 5] + comm.rank
        ncol = POSITION_COLUMNS - 1 if it % 2 else 7
        dest = rng.integers(0, comm.size, n)
        cols = _table(rng, n, ncol, zero_first=it % 3 == 0)
        exp = _expected(comm, cols, dest)
        out = {k: np.zeros((exp[k].shape[0] + 5,) + v.shape[1:], v.dtype)
               for k, v in cols.items()}
        got, _ = exchange(cols, dest, comm, out=out)
        _check(got, exp)
        assert all(not out[k][exp[k].shape[0]:].view(np.uint8).any() for k in cols), it
        got, _ = exchange(cols, dest.astype(np.uint8), comm)
        _check(got, exp)


@pytest.mark.mpi
@pytest.mark.parametrize("n", [20000, 70001])
def test_break_exchange_positions_do_not_fit_the_staging_share(comm, staging, n):
    """Three 1-byte columns in one round whose 4-byte positions do not fit the staging
    share (the minimum budget), just fit, and fit easily: the same rows as numpy."""
    rng = np.random.default_rng([comm.rank, n])
    dest = rng.integers(0, comm.size, n)
    cols = {f"c{j}": rng.integers(0, 255, n).astype(np.uint8) for j in range(POSITION_COLUMNS)}
    exp = _expected(comm, cols, dest)
    workspace = 2 << 20
    for budget in (1, n + workspace + 2 * (n + comm.size), n + workspace + 8 * n + 64):
        got, info = exchange(cols, dest, comm, memory_budget=budget)
        _check(got, exp)


@pytest.mark.mpi
@pytest.mark.parametrize("max_message", [7, 1000])
def test_break_exchange_many_columns_in_many_rounds(comm, staging, max_message):
    """Nine columns (big-endian, structured-like void, 3-byte, 2-D rows) over several
    rounds (the one-stream scatter) between one-round calls (two streams, positions)."""
    rng = np.random.default_rng([comm.rank, max_message])
    for rounds_first in (True, False):
        n = 501 + 3 * comm.rank
        dest = rng.integers(0, comm.size, n)
        cols = _table(rng, n, 9, zero_first=False)
        exp = _expected(comm, cols, dest)
        calls = [dict(max_message=max_message, memory_budget=1), {}]
        for kw in calls if rounds_first else calls[::-1]:
            got, info = exchange(cols, dest, comm, **kw)
            _check(got, exp)


STRIDED_DEST = """
import sys
import numpy as np
from mpi4py import MPI
import hpcproc as hp
comm = MPI.COMM_WORLD
n = 1001
rng = np.random.default_rng(comm.rank)
cols = {f"c{j}": rng.random(n) for j in range(POSITION_COLUMNS)}
dest = np.repeat(rng.integers(0, comm.size, n).astype(np.uint8), 2)
if sys.argv[1] == "strided":
    dest = dest[::2]
else:
    dest = dest[::2].copy()
everyone = comm.allgather((cols, dest))
got, _ = hp.exchange(cols, dest, comm)
for k in cols:
    exp = np.concatenate([c[k][d == comm.rank] for c, d in everyone])
    assert np.array_equal(got[k], exp), k
imported = comm.gather("numba" in sys.modules)
if comm.rank == 0:
    print(imported, flush=True)
"""


@SERIAL_ONLY
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_break_exchange_strided_dest_uses_the_ahead_of_time_kernels(tmp_path, layout):
    """A uint8 destination array that is a strided view (``d[::2]``, a column of a 2-D
    array): the ahead-of-time kernels take C-contiguous arrays; it used to import Numba
    and compile the count and scatter kernels on every rank (about 1 s each)."""
    script = tmp_path / "dest.py"
    script.write_text(STRIDED_DEST.replace("POSITION_COLUMNS", str(POSITION_COLUMNS)))
    proc = run([sys.executable, str(script), layout], ranks=2, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "[False, False]", proc.stdout


@pytest.mark.parametrize("size", [9, 255, 256, 257, 300, 65536])
@pytest.mark.parametrize("n", [0, 1, 3, 1001, 40001])
def test_break_scatter_kernels_with_many_destinations(size, n):
    """In-process, the one-stream path (more than TWO_STREAMS ranks) with uint8 and
    uint16 destinations, 1-D and row words, recording positions and scattering by
    them: numpy's stable argsort."""
    from hpcproc.shuffles import _kernels as K

    rng = np.random.default_rng(size + n)
    dest = rng.integers(0, size, n).astype(np.uint8 if size <= 256 else np.uint16)
    if n > 10:
        dest[: n // 2] = size - 1
    order = np.argsort(dest, kind="stable")
    counts = np.bincount(dest, minlength=size).astype(np.int64)
    displ = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    half = K.halves(n, size)
    assert half == 0
    per_half = K.count_dest(dest, size, half)
    np.testing.assert_array_equal(per_half[0] + per_half[1], counts)
    start = np.stack([displ, displ + per_half[0]])
    for col in (rng.integers(0, 255, (n, 5)).astype(np.uint8), words(rng.random((n, 3))),
                rng.integers(0, 65535, n).astype(np.uint16)):
        pos = np.full(n, -1, np.int32)
        out = np.zeros_like(col)
        addr = np.full(size, out.ctypes.data, np.int64)
        if col.ndim == 1:
            K.scatter_to(dest, col, start, half, addr, pos)
        else:
            K.scatter_wide_to(dest, col, start[0], addr, pos)
        np.testing.assert_array_equal(out, col[order])
        if col.ndim == 1:  # the next column by the positions
            again = np.zeros_like(col)
            K.scatter_pos_to(dest, pos, col, np.full(size, again.ctypes.data, np.int64))
            np.testing.assert_array_equal(again, col[order])


# --------------------------------------------------------------------------------------
# 2. the HDF5 environment compared between ranks


@pytest.mark.mpi
def test_break_environment_long_values_keep_the_message_short(comm, shared_tmp, monkeypatch):
    """A 20000-character plugin directory (non-ASCII) in the plugin search path of every
    rank's HDF5 (HDF5_PLUGIN_PATH is compared by its effect: h5py.h5pl), different on
    every rank, differing only in its middle: the error stays short, yet shows every
    rank's value as different."""
    from h5py import h5pl

    missing = str(shared_tmp / "missing.h5")
    long = "/ü" * 5000 + f"/rank{comm.rank}" + "/z" * 5000
    h5pl.append(long.encode())
    try:
        if comm.size == 1:
            with pytest.raises(FileNotFoundError):
                hp.read(missing, "/x", comm=comm)
            return
        with pytest.raises(hp.ArgumentMismatchError) as err:
            hp.read(missing, "/x", comm=comm)
    finally:
        h5pl.remove(h5pl.size() - 1)
    text = str(err.value)
    assert len(text) < 2000, len(text)
    shown = re.findall(r"rank \d+: ('[^;]*)", text)
    assert len(shown) == comm.size and len(set(shown)) == comm.size, text
    assert comm.allreduce(1) == comm.size  # the communicator stays usable


def test_break_environment_many_ranks_listed_by_whole_numbers():
    """A value held by many non-adjacent ranks is summarised; every rank number shown is
    one of them (never a number cut in two)."""
    from hpcproc.agreement import _few_ranks

    for rs in (list(range(0, 1000, 3)), list(range(100000, 100020, 2)),
               list(range(0, 100, 2)), [0, 1, 2, 5, 1000, 1001]):
        text = _few_ranks(rs)
        assert len(text) <= 60, text
        listed = re.findall(r"\d+", text.split("(", 1)[-1])
        assert listed and all(int(r) in rs for r in listed), text


@SERIAL_ONLY
def test_break_environment_set_on_rank_0_only_mpmd(tmp_path):
    """MPMD: HDF5_EXT_PREFIX (a long non-ASCII value) on rank 0 only of 3 ranks: one
    short error on every rank, exit status 1, no abort banner, no hang."""
    import h5py

    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(10.0)
    value = "/données" * 400
    prog = hpcproc_cmd("stats", f"{path}:/x", "--json")
    cmd = [MPIEXEC, "-n", "1", "-env", "HDF5_EXT_PREFIX", value, *prog, ":",
           "-n", "2", "env", "-u", "HDF5_EXT_PREFIX", *prog]
    env = child_env()
    env.pop("HDF5_EXT_PREFIX", None)
    proc = run(cmd, timeout=120, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert proc.stderr.count("hpcproc: error: HDF5_EXT_PREFIX differs between ranks") == 1, out
    assert "ranks 1-2: unset" in proc.stderr and "MPI_Abort" not in out, out
    assert len(proc.stderr) < 2000, len(proc.stderr)
    assert proc.stdout == ""


# --------------------------------------------------------------------------------------
# 3. the histogram slice kernel at slice boundaries


@pytest.mark.mpi
@pytest.mark.parametrize("n", [32767, 32768, 32769, 65537])
@pytest.mark.parametrize("kind", ["f8", "f4", "i8_beyond_2_53", "u1", "nan_inf"])
def test_break_histogram_slice_boundaries(comm, n, kind):
    """Counts at 1 value below, at and above a slice (SLICE = 32768), and two slices
    plus one, with NaN/inf (histogram with a range; describe with skipna), int64 values
    beyond 2^53, more bins than SUB_BINS: np.histogram's counts and edges."""
    from hpcproc.kernels._hist_nb import SLICE

    assert SLICE == 32768  # the sizes above straddle it
    rng = np.random.default_rng([n, len(kind)])
    if kind == "i8_beyond_2_53":
        x = rng.integers(-2**62, 2**62, n)
        x[::7] = 2**53 + 1
    elif kind == "u1":
        x = rng.integers(0, 256, n).astype(np.uint8)
    else:
        x = rng.normal(size=n).astype("f4" if kind == "f4" else "f8")
    if kind == "nan_inf":
        x[SLICE - 1::5] = np.nan
        x[0], x[-1] = -np.inf, np.inf
    a, b = hp.block_range(n, comm.size, comm.rank)
    d = hp.DistArray.from_local(x[a:b], comm)
    finite = x[np.isfinite(x)]
    cases = [(10, None), (1, None), (3, (float(finite.min()), float(finite.max()))),
             (np.array([-1e300, -1.0, 0.0, 0.5, 1e300]), None), (70000, (0, 200))]
    for bins, rng_ in cases:
        if kind == "nan_inf" and rng_ is None and not isinstance(bins, np.ndarray):
            continue  # no finite range: an error in numpy and here (tested elsewhere)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref, ref_edges = np.histogram(x, bins, range=rng_)
        counts, edges = hp.histogram(d, bins, range=rng_, comm=comm)
        np.testing.assert_array_equal(edges, ref_edges)
        np.testing.assert_array_equal(counts, ref)
        if not isinstance(bins, np.ndarray):
            got = hp.describe(d, bins, range=rng_, skipna=True, comm=comm)
            ref, ref_edges = np.histogram(x[~np.isnan(x)] if x.dtype.kind == "f" else x,
                                          bins, range=rng_)
            np.testing.assert_array_equal(got["edges"], ref_edges)
            np.testing.assert_array_equal(got["counts"], ref)
