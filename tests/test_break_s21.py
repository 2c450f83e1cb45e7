"""Break-it tests for the s21 changes: the exchange's own-row copy (one round, many
rounds, ``exchange_runs``), ``HPCPROC_MEMORY_BUDGET`` read on every rank, the histogram's
uniform-edge test, and numpy's huge-page advice turned off on a ballooned VM.

Every result is compared with an independent numpy reference. Tests marked ``mpi`` run
serially and under 2 and 3 ranks; the others launch their own ``mpiexec`` (serial session
only)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import hpcproc as hp
from hpcproc.shuffles import exchange
from hpcproc.shuffles._exchange import MAX_MESSAGE, exchange_runs
from support import MPIEXEC, SERIAL_ONLY, balloon_reports_free_pages, child_env, hpcproc_cmd, run

# --------------------------------------------------------------------------------------
# 1. the exchange: own rows copied, not sent


def _rows(rng, dtype, n, trail):
    """``n`` rows of random bytes viewed as ``dtype`` with trailing shape ``trail``."""
    dtype = np.dtype(dtype)
    nbytes = n * dtype.itemsize * int(np.prod(trail, dtype=np.int64))
    return rng.integers(0, 256, nbytes, dtype=np.uint8).view(dtype).reshape((n,) + trail)


def _same(got, exp) -> bool:
    """Equal dtype, shape and bytes (field by field: padding bytes are not data)."""
    if got.dtype != exp.dtype or got.shape != exp.shape:
        return False
    if got.dtype.names:
        return all(_same(got[f], exp[f]) for f in got.dtype.names)
    return got.tobytes() == exp.tobytes()


def _expected(comm, cols, dest):
    """numpy: every rank's rows bound here, by source rank, then in source order."""
    everyone = comm.allgather((cols, np.asarray(dest)))
    return {k: np.concatenate([c[k][d.astype(np.int64) == comm.rank] for c, d in everyone])
            .astype(cols[k].dtype) for k in cols}


def _route(route, rank, size, n, rng):
    i = np.arange(n)
    return {"all_self": np.full(n, rank), "none_self": (rank + 1 + i % max(size - 1, 1)) % size,
            "random": rng.integers(0, size, n), "all_to_last": np.full(n, size - 1),
            "all_to_0": np.zeros(n, np.int64),
            "self_last_row": np.where(i == n - 1, rank, (rank + 1) % size)}[route]


DTYPES = [np.uint8, ">i2", "<u4", ">f8", np.complex128, "S3", "V7", np.bool_, np.float16,
          ">c8", "U2", np.dtype([("a", "<i4"), ("b", "S1")]),
          np.dtype([("a", ">f8"), ("b", "u1")], align=True)]
TRAILS = [(), (3,), (0,), (2, 3)]
DEST_DTYPES = ["i1", "u1", ">i2", "u2", "<i4", ">u4", ">i8", "u8", np.intp]


@pytest.mark.mpi
@pytest.mark.parametrize("max_message", [MAX_MESSAGE, 40])
@pytest.mark.parametrize("route", ["all_self", "none_self", "random", "all_to_last",
                                   "all_to_0", "self_last_row"])
@pytest.mark.parametrize("sizes", ["uneven", "middle_empty", "one_row"])
def test_break_exchange_every_dtype_route_and_round(comm, max_message, route, sizes):
    size, rank = comm.size, comm.rank
    n = {"uneven": 17 + 13 * rank, "middle_empty": 0 if rank == 1 % size else 29,
         "one_row": 1}[sizes]
    rng = np.random.default_rng([rank, len(route), max_message])
    dest = _route(route, rank, size, n, rng)
    cols = {f"c{j}": _rows(rng, dt, n, TRAILS[j % len(TRAILS)]) for j, dt in enumerate(DTYPES)}
    cols["strided"] = _rows(rng, ">i8", 2 * n, (2,))[::2]  # non-contiguous input
    exp = _expected(comm, cols, dest)
    for j in range(3):  # three destination dtypes per case, every one over the cases
        ddt = DEST_DTYPES[(j + 3 * len(route) + n) % len(DEST_DTYPES)]
        d = dest.astype(ddt)
        if j % 3 == 1:  # a strided destination array
            d = np.repeat(d, 2)[::2]
        out = None
        if j % 3:  # preallocated: exactly the size, or larger (the tail left alone)
            extra = 0 if j % 3 == 1 else 3
            out = {k: np.zeros((exp[k].shape[0] + extra,) + v.shape[1:], v.dtype)
                   for k, v in cols.items()}
        got, info = exchange(cols, d, comm, out=out, max_message=max_message,
                             memory_budget=1 << 20)
        for k in cols:
            assert _same(got[k], exp[k]), (k, ddt, route)
            if out is not None:
                assert not out[k][exp[k].shape[0]:].view(np.uint8).any(), k
        everyone = comm.allgather(d.astype(np.int64))
        assert info["received"].tolist() == [int(np.sum(x == rank)) for x in everyone]


@pytest.mark.mpi
@pytest.mark.parametrize("max_message", [MAX_MESSAGE, 40])
@pytest.mark.parametrize("route", ["all_self", "none_self", "random", "all_to_0"])
def test_break_exchange_runs_against_numpy(comm, max_message, route):
    """``exchange_runs`` (rows already grouped by destination): one Alltoallv plus the
    own-row copy, or the bounded-round fallback when a message would be too large."""
    size, rank = comm.size, comm.rank
    n = 0 if rank == size - 1 and size > 1 else 23 + 11 * rank
    rng = np.random.default_rng([rank, 9, max_message])
    dest = np.sort(_route(route, rank, size, n, rng), kind="stable")
    cols = {"a": _rows(rng, ">f8", n, ()), "b": _rows(rng, "S3", n, ()),
            "c": _rows(rng, np.int32, n, (3,)), "z": np.zeros((n, 0))}
    exp = _expected(comm, cols, dest)
    got, info = exchange_runs(cols, np.bincount(dest, minlength=size), comm,
                              max_message=max_message, memory_budget=1 << 20)
    for k in cols:
        assert _same(got[k], exp[k]), k


def _part(n, comm, layout):
    if layout == "even":
        return hp.block_range(n, comm.size, comm.rank)
    if layout == "all_on_last":
        return (0, n) if comm.rank == comm.size - 1 else (0, 0)
    cuts = np.linspace(0, n, comm.size + 1).astype(int) ** 2 // max(n, 1)  # uneven
    return int(cuts[comm.rank]), int(cuts[comm.rank + 1])


@pytest.mark.mpi
@pytest.mark.parametrize("max_message", [MAX_MESSAGE, 40])
@pytest.mark.parametrize("layout", ["even", "all_on_last", "uneven"])
@pytest.mark.parametrize("kdt", ["i8", ">i4", "u2", ">f8", "i1"])
def test_break_sort_shuffle_groupby_join_against_numpy(comm, max_message, layout, kdt):
    n = 523
    rng = np.random.default_rng(31)
    k = rng.integers(-6, 6, n) if kdt != "u2" else rng.integers(0, 6, n)
    k = k.astype(kdt)
    ident = np.arange(n, dtype=np.int64)
    vec = rng.random((n, 3))
    s = rng.integers(0, 255, (n, 3)).astype(np.uint8).view("S3").reshape(n)
    a, b = _part(n, comm, layout)
    t = hp.DistTable.from_local({"k": k[a:b], "id": ident[a:b], "vec": vec[a:b],
                                 "s": s[a:b]}, comm)
    opts = dict(max_message=max_message, memory_budget=1)
    for asc in (True, False):  # sort: stable, whole rows move
        g = hp.sort(t, "k", ascending=asc, **opts).allgather()
        order = np.argsort(k.astype(np.float64) * (1 if asc else -1), kind="stable")
        np.testing.assert_array_equal(g["id"], ident[order])
        np.testing.assert_array_equal(g["vec"], vec[order])
        assert g["s"].tobytes() == s[order].tobytes()
    for how in ("hash", "range"):  # shuffle: keys on one rank, rows by source then order
        loc = hp.shuffle(t, "k", partitioner=how, **opts).local()
        ids = np.asarray(loc["id"])
        assert np.all(np.diff(ids) > 0)
        np.testing.assert_array_equal(np.asarray(loc["vec"]), vec[ids])
        np.testing.assert_array_equal(np.sort(np.concatenate(comm.allgather(ids))), ident)
        keysets = comm.allgather(set(np.asarray(loc["k"]).tolist()))
        assert sum(len(x) for x in keysets) == len(set().union(*keysets))
    v = vec[:, 0]
    tg = hp.DistTable.from_local({"k": k[a:b], "v": v[a:b]}, comm)
    uk, inv = np.unique(k, return_inverse=True)
    for strategy in ("hash", "auto") if kdt != ">f8" else ("hash",):
        g = hp.groupby(tg, "k", strategy=strategy, **opts).agg(v=["sum", "count"]).allgather()
        np.testing.assert_array_equal(g["k"], uk)
        np.testing.assert_array_equal(g["v_count"], np.bincount(inv))
        np.testing.assert_allclose(g["v_sum"], np.bincount(inv, weights=v), rtol=1e-12)
    rk = uk[::2]
    ra, rb = _part(len(rk), comm, "even")
    R = hp.DistTable.from_local({"k": rk[ra:rb], "rv": np.arange(len(rk))[ra:rb] * 10}, comm)
    L = hp.DistTable.from_local({"k": k[a:b], "id": ident[a:b]}, comm)
    j = hp.join(L, R, "k", how="inner", strategy="hash", **opts).allgather()
    o = np.argsort(j["id"], kind="stable")
    hit = np.isin(k, rk)
    np.testing.assert_array_equal(j["id"][o], ident[hit])
    np.testing.assert_array_equal(j["rv"][o], np.searchsorted(rk, k[hit]) * 10)


# --------------------------------------------------------------------------------------
# 2. HPCPROC_MEMORY_BUDGET differing between ranks

BUDGET_SCRIPT = textwrap.dedent("""
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    comm = MPI.COMM_WORLD
    x = np.arange(10.0) + 100 * comm.rank
    res, _ = hp.exchange({"x": x}, np.arange(10) % comm.size, comm)
    everyone = comm.gather(res["x"].tolist())
    print(everyone if comm.rank == 0 else "", flush=True)
""")


@SERIAL_ONLY
def test_break_memory_budget_valid_on_one_rank_only_does_not_hang(tmp_path):
    """A valid ``HPCPROC_MEMORY_BUDGET`` on rank 0 only: rank 0 takes it, rank 1 computes
    the default, which splits the communicator by node (``MPI_Comm_split_type``, collective
    the first time) while rank 0 is already in the counts' Alltoall: a hang."""
    script = tmp_path / "budget.py"
    script.write_text(BUDGET_SCRIPT)
    rank = [sys.executable, str(script)]
    cmd = ["timeout", "-k", "10", "30", MPIEXEC, "-n", "1", "env", "HPCPROC_MEMORY_BUDGET=64M",
           *rank, ":", "-n", "1", *rank]
    proc = run(cmd, timeout=90)
    want = [[float(x + 100 * s) for s in range(2) for x in range(10) if x % 2 == r]
            for r in range(2)]
    assert proc.returncode == 0, f"exit {proc.returncode} (124: hung)\n{proc.stderr[-800:]}"
    assert proc.stdout.strip() == str(want)


# --------------------------------------------------------------------------------------
# 3. histogram edges: uniform detection

def _hist_data(kind):
    rng = np.random.default_rng(5)
    if kind == "normal":
        return rng.normal(size=3001)
    if kind == "float32":
        return rng.normal(size=2000).astype(np.float32)
    if kind == "ints":
        return rng.integers(-50, 50, 2000)
    if kind == "on_edges":  # many values exactly on the linspace edges
        return np.concatenate([np.linspace(-3, 3, 101), np.linspace(0, 1, 11),
                               np.linspace(-4, 4, 2001)])
    return np.concatenate([rng.normal(size=300), [np.nan, np.inf, -np.inf, 0.0, -0.0]])


EDGES = {
    "linspace": np.linspace(0, 1, 11),
    "nearly_1e-10": np.linspace(0, 1, 11) * (1 + 1e-10 * np.arange(11)),
    "alternating_2e-9": np.linspace(-3, 3, 101) + (np.arange(101) % 2) * 1.2e-10,
    "at_tolerance": np.array([0.0, 1.0, 2.0 + 1e-9, 3.0 + 1e-9]),
    "drift": np.cumsum(np.r_[-2.0, np.full(1000, 0.004) * (1 + 0.9e-9 * (np.arange(1000) % 2))]),
    "one_bin": np.array([-0.5, 0.5]),
    "one_bin_empty": np.array([0.0, 0.0]),
    "repeated": np.array([-1.0, 0.0, 0.0, 1.0]),
    "inf_right": np.array([-1.0, 0.0, np.inf]),
    "int": np.arange(-50, 51, 5),
    "int_uneven": np.array([-50, -10, 0, 1, 2, 50]),
    "subnormal": np.array([0.0, 5e-324, 1e-323]),
    "huge": np.array([-1e308, 0.0, 1e308]),
    "float32": np.linspace(-2, 2, 9, dtype=np.float32),
    "float16": np.linspace(-2, 2, 9).astype(np.float16),
    "many": np.linspace(-4, 4, 200001),
    "negative_zero": np.array([-0.0, 0.5, 1.0]),
}


@pytest.mark.mpi
@pytest.mark.parametrize("data", ["normal", "float32", "ints", "on_edges", "nonfinite"])
def test_break_histogram_odd_edges_match_numpy(comm, data):
    x = _hist_data(data)
    lo, hi = hp.block_range(len(x), comm.size, comm.rank)
    d = hp.DistArray.from_local(x[lo:hi], comm)
    for name, e in EDGES.items():
        want = np.histogram(x, bins=e)[0]
        np.testing.assert_array_equal(hp.histogram(d, bins=e)[0], want, err_msg=name)
        np.testing.assert_array_equal(hp.describe(d, bins=e)["counts"], want, err_msg=name)
    for bins, rng in [(1, None), (7, None), (64, (-1e308, 1e308)), (3, (0, 1e-300)),
                      (10**6, None), (5, (1e15, 1e15 + 3))]:
        if data == "nonfinite" and rng is None:
            continue  # numpy: autodetected range not finite (checked elsewhere)
        try:
            with np.errstate(all="ignore"):
                wc, we = np.histogram(x, bins=bins, range=rng)
        except ValueError:  # numpy refuses (no finite-sized bins): so must hpcproc
            with pytest.raises(ValueError), np.errstate(all="ignore"):
                hp.histogram(d, bins=bins, range=rng)
            continue
        with np.errstate(all="ignore"):
            gc, ge = hp.histogram(d, bins=bins, range=rng)
        np.testing.assert_array_equal(gc, wc, err_msg=str((bins, rng)))
        np.testing.assert_array_equal(ge, we, err_msg=str((bins, rng)))


@pytest.mark.mpi
@pytest.mark.parametrize("edges", [[-np.inf, 0.0, np.inf], [-np.inf, np.inf], [-np.inf, 0.0]])
def test_break_histogram_infinite_first_edge_warns_nothing(comm, edges):
    """An infinite first edge: ``d - d[0]`` is ``inf - inf`` in the new uniform test, a
    RuntimeWarning ("invalid value encountered in subtract") that np.allclose did not
    give and np.histogram does not give (an error under ``-W error``)."""
    x = np.array([-2.0, -0.5, 0.5, 3.0, np.inf, -np.inf])
    lo, hi = hp.block_range(len(x), comm.size, comm.rank)
    d = hp.DistArray.from_local(x[lo:hi], comm)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        want = np.histogram(x, bins=edges)[0]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = hp.histogram(d, bins=edges)[0]
        got_describe = hp.describe(d, bins=edges)["counts"]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_describe, want)
    assert not [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]


@pytest.mark.mpi
def test_break_histogram_nan_last_edge_is_numpys_or_an_error(comm):
    """Edges ``[0, 1, nan]`` pass the monotonic check (NaN compares False); numpy counts
    ``[1, 2]`` (NaN sorts last); hp.histogram silently counts nothing. (Not from this
    change: the kernel's ``v <= edges[-1]``.) Either numpy's counts or a ValueError."""
    x = np.array([-2.0, -0.5, 0.5, 1.5, 3.0])
    lo, hi = hp.block_range(len(x), comm.size, comm.rank)
    d = hp.DistArray.from_local(x[lo:hi], comm)
    want = np.histogram(x, bins=[0, 1, np.nan])[0]
    assert want.tolist() == [1, 2]
    try:
        got = hp.histogram(d, bins=[0, 1, np.nan])[0]
    except ValueError:
        return
    np.testing.assert_array_equal(got, want)


@SERIAL_ONLY
def test_break_cli_hist_float32_file_matches_numpy(tmp_path):
    import h5py
    x = np.random.default_rng(3).normal(size=10007).astype(np.float32)
    x[::97] = 0.25  # values on a linspace edge of [-1, 1] with 8 bins
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["x"] = x
    for args, (bins, rng) in [(["--bins", "7"], (7, None)),
                              (["--bins", "8", "--range", "-1", "1"], (8, (-1, 1))),
                              (["--bins", "1"], (1, None))]:
        proc = run(hpcproc_cmd("hist", f"{path}:/x", "--json", *args), ranks=3, timeout=120)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        wc, we = np.histogram(x, bins=bins, range=rng)
        assert got["counts"] == wc.tolist()
        np.testing.assert_array_equal(np.asarray(got["edges"], np.float64), we)


# --------------------------------------------------------------------------------------
# 4. numpy's huge-page advice on a VM whose balloon reports free pages


HUGE_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    from hpcproc import memory
    comm = MPI.COMM_WORLD
    if sys.argv[1] != "none":
        hp.retain_memory(sys.argv[1] == "on")
    x = np.random.default_rng(comm.rank).normal(size=50000)
    s = hp.sort(hp.DistArray.from_local(x, comm)).allgather()
    c = hp.histogram(hp.DistArray.from_local(x, comm), bins=16, range=(-4, 4))[0]
    after = memory.numpy_huge_pages(True)
    everyone = comm.gather((after, s.tolist() == sorted(s.tolist()), c.tolist()))
    print(everyone if comm.rank == 0 else "", flush=True)
""")


@SERIAL_ONLY
@pytest.mark.parametrize("retain", ["on", "off"])
def test_break_retain_memory_before_first_call_keeps_huge_pages_off(tmp_path, retain):
    """hp.retain_memory(...) called by the user before the first collective call marks
    memory 'decided', so on_call skips the huge-page check too: numpy's advice stays on on
    the very machine the change is for."""
    if not balloon_reports_free_pages():
        pytest.skip("no virtio balloon with free page reporting here")
    script = tmp_path / "huge.py"
    script.write_text(HUGE_SCRIPT)
    proc = run([sys.executable, str(script), retain], ranks=2, timeout=90)
    assert proc.returncode == 0, proc.stderr
    got = eval(proc.stdout.strip())  # noqa: S307 - our own script's repr
    assert [g[0] for g in got] == [False, False], got


@SERIAL_ONLY
def test_break_huge_page_setting_changes_no_result(tmp_path):
    """Same sort and histogram with numpy's advice forced on, forced off and decided by
    hpcproc; against numpy."""
    script = tmp_path / "huge.py"
    script.write_text(HUGE_SCRIPT)
    x = np.concatenate([np.random.default_rng(r).normal(size=50000) for r in range(2)])
    want = np.histogram(x, bins=16, range=(-4, 4))[0].tolist()
    for env in ({}, {"NUMPY_MADVISE_HUGEPAGE": "0"}, {"NUMPY_MADVISE_HUGEPAGE": "1"}):
        proc = run([sys.executable, str(script), "none"], ranks=2, timeout=90, env=env)
        assert proc.returncode == 0, proc.stderr
        got = eval(proc.stdout.strip())  # noqa: S307 - our own script's repr
        assert [g[1:] for g in got] == [(True, want)] * 2, env


def _in_fake_sysfs(tmp_path, setup: str, user: str | None = None):
    """Run a 1-rank hp call with a tmpfs over /sys/bus/virtio/devices in a private mount
    namespace (root only; skipped elsewhere)."""
    tmp_path.chmod(0o755)  # readable by the unprivileged user of the unreadable case
    for parent in tmp_path.parents:
        if parent.stat().st_uid == 0 and not parent.stat().st_mode & 0o005:
            parent.chmod(parent.stat().st_mode | 0o005)
        if parent == Path("/tmp"):
            break
    script = tmp_path / "probe.py"
    script.write_text("import numpy as np, hpcproc as hp\nfrom hpcproc import memory\n"
                      "d = hp.DistArray.from_local(np.arange(4.0))\n"
                      "print(memory.host_takes_free_pages(), hp.stats(d)['sum'])\n")
    script.chmod(0o644)
    drop = f"setpriv --reuid={user} --regid={user} --clear-groups " if user else ""
    sh = (f"mount -t tmpfs -o mode=755 none /sys/bus/virtio/devices && {setup} && "
          f"{drop}{sys.executable} {script}")
    try:
        proc = subprocess.run(["timeout", "60", "unshare", "-m", "sh", "-c", sh],
                              capture_output=True, text=True, timeout=90, env=child_env())
    except FileNotFoundError:
        pytest.skip("no unshare")
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr.strip()[:200]}")
    return proc


D = "/sys/bus/virtio/devices"


@SERIAL_ONLY
@pytest.mark.parametrize("case,setup,want", [
    ("balloon_reporting", f"mkdir {D}/v0 && echo 0x0005 > {D}/v0/device && "
                          f"echo 0000010000 > {D}/v0/features", "True"),
    ("balloon_no_reporting", f"mkdir {D}/v0 && echo 0x0005 > {D}/v0/device && "
                             f"echo 0000000000 > {D}/v0/features", "False"),
    ("short_features", f"mkdir {D}/v0 && echo 0x0005 > {D}/v0/device && "
                       f"echo 01 > {D}/v0/features", "False"),
    ("no_features_file", f"mkdir {D}/v0 && echo 0x0005 > {D}/v0/device", "False"),
    ("features_is_dir", f"mkdir -p {D}/v0/features && echo 0x0005 > {D}/v0/device", "False"),
    ("unreadable_dir", f"chmod 000 {D}", "False"),
    ("undecodable_features", f"mkdir {D}/v0 && echo 0x0005 > {D}/v0/device && "
                             f"printf '\\377\\376' > {D}/v0/features", "False"),
])
def test_break_odd_sysfs_never_crashes_a_collective_call(tmp_path, case, setup, want):
    """Whatever /sys/bus/virtio/devices holds, the first collective call works (the
    undecodable case: ``open()`` in text mode raises UnicodeDecodeError, not OSError)."""
    proc = _in_fake_sysfs(tmp_path, setup, user="65534" if case == "unreadable_dir" else None)
    assert proc.returncode == 0, proc.stderr[-600:]
    assert proc.stdout.split() == [want, "6.0"], proc.stdout


@pytest.mark.mpi
@pytest.mark.parametrize("edges", [[0, 10, 20, 99], [0, 33, 66, 99], [0, 1, 2, 3], [5, 5, 99]])
def test_break_histogram_int64_edges_beyond_2_53(comm, edges):
    """Integer data and edges near 2**60: as float64 the widths collapse (ulp 256), so
    the uniform test must not pick the estimate; counts are numpy's exact ones."""
    x = (2**60 + np.random.default_rng(8).integers(0, 100, 997)).astype(np.int64)
    e = np.asarray(edges, dtype=np.int64) + 2**60
    lo, hi = hp.block_range(len(x), comm.size, comm.rank)
    d = hp.DistArray.from_local(x[lo:hi], comm)
    want = np.histogram(x, bins=e)[0]
    np.testing.assert_array_equal(hp.histogram(d, bins=e)[0], want)
    np.testing.assert_array_equal(hp.describe(d, bins=e)["counts"], want)


@SERIAL_ONLY
def test_break_memory_budget_different_valid_values_per_rank(tmp_path):
    """Different valid budgets (64M, 1G, 1 byte) on three ranks: the ranks agree on the
    number of rounds; every row arrives in order."""
    script = tmp_path / "budget.py"
    script.write_text(BUDGET_SCRIPT)
    rank = [sys.executable, str(script)]
    cmd = ["timeout", "-k", "10", "30", MPIEXEC]
    for i, value in enumerate(("64M", "1G", "1")):
        cmd += ([":"] if i else []) + ["-n", "1", "env", f"HPCPROC_MEMORY_BUDGET={value}", *rank]
    proc = run(cmd, timeout=90)
    want = [[float(x + 100 * s) for s in range(3) for x in range(10) if x % 3 == r]
            for r in range(3)]
    assert proc.returncode == 0, f"exit {proc.returncode} (124: hung)\n{proc.stderr[-800:]}"
    assert proc.stdout.strip() == str(want)
