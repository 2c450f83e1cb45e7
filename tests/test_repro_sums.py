"""Default ``hp.stats``: sum/mean/var/std/min/max/count bit-identical for any rank count,
block size, thread count and layout (serial and 2/3 ranks), and accurate.

Every result is compared bit for bit with the same statistics of the whole data computed
on every rank in one block, one thread (``_one_block``), and checked against independent
references: ``math.fsum`` and exact rational arithmetic (``fractions.Fraction``) for
sums, means and variances, numpy for min, max and counts.
"""

import json
import math
from fractions import Fraction

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import SERIAL_ONLY, bits, hpcproc_cmd, on_root, one_block, run, same_bits

pytestmark = pytest.mark.mpi

KEYS = ("count", "nan_count", "sum", "mean", "var", "std", "min", "max")


def _layouts(n, comm):
    """Row cuts of several layouts: balanced, growing, an empty rank, one rank holding
    almost everything, cuts one row either side of a chunk boundary."""
    size = comm.size
    out = []
    for w in (np.ones(size), np.arange(1, size + 1.0), np.r_[0.0, np.ones(size - 1)],
              np.r_[[1e-3] * (size - 1), 1.0]):
        if not w.sum():
            continue
        cuts = np.concatenate(([0], np.round(np.cumsum(w) / w.sum() * n))).astype(int)
        out.append(cuts)
    if size > 1 and n > 1025 * size + 1023:
        out.append(np.array([0] + [1023 + 1025 * r for r in range(1, size)] + [n]))
    return out


def _dist(data, cuts, comm):
    """A hand-built DistArray (``local_rows``-style layout given by ``cuts``)."""
    r = comm.rank
    return hp.DistArray(data[cuts[r]:cuts[r + 1]], data.shape, int(cuts[r]), comm)


def _exact(data, ddof=0):
    """Exact sum, mean, var of finite data (Fractions)."""
    vals = [Fraction(float(v)) for v in data.astype(np.float64).ravel()]
    n = len(vals)
    s = sum(vals, Fraction(0))
    mean = s / n
    return s, mean, sum(((v - mean) ** 2 for v in vals), Fraction(0)) / (n - ddof)


def _cases():
    rng = np.random.default_rng(14)
    u = rng.random(5001)
    wide = rng.standard_normal(3001) * np.exp(rng.uniform(-690, 690, 3001))
    sub = rng.standard_normal(2100) * 5e-324 * 2**20
    return {
        "uniform": u,
        "offset": 1e9 + u,
        "huge_range": np.concatenate([wide, [1e300, -1e300, 1e-300, 5e-324, -5e-324]]),
        "cancel": np.tile([1e16, 1.0, -1e16, 3.0], 700),
        "subnormal": sub,
        "zeros": np.array([-0.0, 0.0, -0.0, 0.0, -0.0] * 300),
        "float32": (rng.standard_normal(4501) * 1e3 + 1e4).astype(np.float32),
        "float16": (rng.standard_normal(2999) * 10).astype(np.float16),
        "int64": rng.integers(-10**12, 10**12, 4222),
        "int8": rng.integers(-128, 127, 3777).astype(np.int8),
        "one": np.array([2.5]),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_bit_identical_any_layout(comm, name):
    data = _cases()[name]
    ref = one_block(data, comm)
    for cuts in _layouts(len(data), comm):
        same_bits(KEYS, hp.stats(_dist(data, cuts, comm)), ref, cuts)
        same_bits(KEYS, hp.stats(_dist(data, cuts, comm), ddof=1), one_block(data, comm, ddof=1))
    same_bits(KEYS, hp.stats(hp.DistArray.from_global(data, comm)), ref)


@pytest.mark.parametrize("name", ["uniform", "offset", "huge_range", "cancel", "subnormal",
                                  "float32", "float16"])
def test_accuracy_against_exact_references(comm, name):
    data = _cases()[name]
    got = hp.stats(hp.DistArray.from_global(data, comm))
    f64 = data.astype(np.float64)
    s, mean, var = _exact(data)
    scale = float(np.abs(f64).sum())
    assert got["count"] == data.size
    # the exact sum of float64 chunk sums: each chunk sum (at most 1024 terms) is off by
    # at most 1024 ulp of its absolute sum
    assert abs(Fraction(got["sum"]) - s) <= Fraction(scale) * 1024 * 2.0**-53 + Fraction(
        abs(float(s))) * 2.0**-52
    assert got["sum"] == pytest.approx(math.fsum(f64), rel=1e-13, abs=scale * 1e-13)
    assert got["mean"] == pytest.approx(float(mean), rel=1e-13, abs=scale / data.size * 1e-13)
    try:
        want_var = float(var)
    except OverflowError:  # squares beyond float64 (huge_range): var is inf
        want_var = math.inf
    if want_var == math.inf:
        assert got["var"] == math.inf
    elif want_var > 0:
        assert got["var"] == pytest.approx(want_var, rel=1e-10), name
    assert got["std"] == math.sqrt(got["var"])
    assert got["min"] == f64.min() and got["max"] == f64.max()


def test_sum_of_chunk_sums_is_exact(comm):
    # chunk sums 2**60, 3, -2**60 (each exact): their total must be 3 exactly, and the
    # mean 3 / n correctly rounded
    big = np.full(1024, 2.0**50)
    data = np.concatenate([big, [1.0, 1.0, 1.0], np.zeros(1021), -big, [0.5]])
    for cuts in _layouts(len(data), comm):
        got = hp.stats(_dist(data, cuts, comm))
        assert got["sum"] == 3.5 and got["mean"] == float(Fraction(35, 10 * len(data)))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_any_thread_count(comm, threads):
    data = np.random.default_rng(7).standard_normal(600_011) * 1e-3 + 1e5
    ref = one_block(data, comm)
    old = hp.set_threads(threads)
    try:
        for cuts in _layouts(len(data), comm):
            same_bits(KEYS, hp.stats(_dist(data, cuts, comm)), ref, (threads, cuts))
        cols = data[:600_000].reshape(-1, 3)
        same_bits(KEYS, hp.stats(hp.DistArray.from_global(cols, comm), axis=0),
              one_block(cols, comm, axis=0))
    finally:
        hp.set_threads(old)


def test_nan_inf(comm):
    rng = np.random.default_rng(2)
    base = rng.standard_normal(4099)
    cases = {"nan": (np.nan, [5, 2000, 4098]), "pinf": (np.inf, [7]),
             "both_inf": (None, [1, 3000]), "nan_and_inf": (None, [11, 4000])}
    for name, (val, where) in cases.items():
        data = base.copy()
        if name == "both_inf":
            data[1], data[3000] = np.inf, -np.inf
        elif name == "nan_and_inf":
            data[11], data[4000] = np.nan, -np.inf
        else:
            data[where] = val
        for skipna in (False, True):
            ref = one_block(data, comm, skipna=skipna)
            for cuts in _layouts(len(data), comm):
                got = hp.stats(_dist(data, cuts, comm), skipna=skipna)
                same_bits(KEYS, got, ref, (name, skipna, cuts))
            npf = (np.nansum, np.nanmean, np.nanvar) if skipna else (np.sum, np.mean, np.var)
            with np.errstate(invalid="ignore"):
                want = [f(data) for f in npf]
            for key, w in zip(("sum", "mean", "var"), want):
                if np.isfinite(w):
                    assert got[key] == pytest.approx(w, rel=1e-12), (name, skipna, key)
                else:
                    assert bits(got[key]) == bits(w) or (np.isnan(got[key]) and np.isnan(w)), \
                        (name, skipna, key, got[key], w)
            assert got["nan_count"] == int(np.isnan(data).sum())
            assert got["count"] == (data.size - got["nan_count"] if skipna else data.size)


@pytest.mark.parametrize("cols", [2, 3, 7, 1500])
def test_axis0_columns(comm, cols):
    rng = np.random.default_rng(cols)
    data = rng.standard_normal((max(40, 9000 // cols), cols)) * 1e-2 + np.arange(cols) * 1e6
    data[3, 0] = np.nan
    for ddof in (0, 1):
        for skipna in (False, True):
            ref = one_block(data, comm, axis=0, ddof=ddof, skipna=skipna)
            for cuts in _layouts(len(data), comm):
                got = hp.stats(_dist(data, cuts, comm), axis=0, ddof=ddof, skipna=skipna)
                same_bits(KEYS, got, ref, (ddof, skipna, cuts))
    got = hp.stats(hp.DistArray.from_global(data, comm), axis=0, skipna=True)
    for j in sorted({0, 1, cols // 2, cols - 1}):  # np.nanvar is off by 1e-10 here
        col = data[:, j][~np.isnan(data[:, j])]
        s, mean, var = _exact(col)
        tol = 1e-15 * float(np.abs(col).sum())
        assert abs(got["sum"][j] - float(s)) <= tol, j
        assert abs(got["mean"][j] - float(mean)) <= tol / col.size, j
        assert got["var"][j] == pytest.approx(float(var), rel=1e-13), j


def test_empty(comm):
    got = hp.stats(hp.DistArray.from_global(np.zeros(0), comm))
    assert got["count"] == 0 and got["sum"] == 0.0
    assert math.isnan(got["mean"]) and math.isnan(got["var"]) and math.isnan(got["min"])


@pytest.mark.parametrize("chunks", [None, (777,), (333,)])
def test_file_any_block_size(comm, shared_tmp, chunks):
    data = np.random.default_rng(3).standard_normal((9001, 2)) * 1e-3 + 7.0
    data[100, 1] = np.nan
    path = shared_tmp / "r.h5"
    on_root(comm, lambda: h5py.File(path, "w").create_dataset(
        "x", data=data, chunks=None if chunks is None else chunks + (2,)).file.close())
    ref, ref0 = one_block(data, comm, skipna=True), one_block(data, comm, axis=0)
    for block_bytes in (160, 1000, 4096 * 3 + 8, 1 << 20):
        for src in (f"{path}:/x", hp.blocks(str(path), "/x", block_bytes=block_bytes,
                                             comm=comm)):
            same_bits(KEYS, hp.stats(src, comm=comm, block_bytes=block_bytes, skipna=True), ref,
                  block_bytes)
        got = hp.stats_file(str(path), "/x", comm=comm, block_bytes=block_bytes, axis=0)
        same_bits(KEYS, got, ref0, block_bytes)


@SERIAL_ONLY
def test_cli_same_bits_any_ranks_blocks_threads_and_resumed(tmp_path):
    rng = np.random.default_rng(9)
    data = 1e9 + rng.random(140001)  # > 2 threads x 65536 rows: one rank splits it
    data[[5, 60000]] = rng.random(2) * 1e-12
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f["x"] = data
        f.create_dataset("y", data=data, chunks=(999,))
    s, mean, var = _exact(data)

    def stats(*opts, ranks=1, env=None, target="x"):
        proc = run(hpcproc_cmd("stats", "--json", *opts, f"{path}:/{target}"), ranks=ranks,
                   env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return {k: v for k, v in json.loads(proc.stdout).items() if k in KEYS}

    ref = stats(env={"HPCPROC_THREADS": "1"})
    assert ref["sum"] == pytest.approx(float(s), rel=1e-15)
    assert ref["mean"] == pytest.approx(float(mean), rel=1e-15)
    assert ref["std"] == pytest.approx(math.sqrt(float(var)), rel=1e-12)
    runs = [(1, (), "2", "x"), (1, ("--block-bytes", "4096"), "1", "y"),
            (2, ("--block-bytes", "40008"), "2", "x"), (2, (), "1", "y"),
            (3, ("--block-bytes", "4096"), "1", "y"), (3, (), "2", "x")]
    for ranks, opts, threads, target in runs:
        got = stats(*opts, ranks=ranks, env={"HPCPROC_THREADS": threads}, target=target)
        assert got == ref, (ranks, opts, threads, target)
    ck = ["--block-bytes", "160k", "--checkpoint-every", "0"]
    for ranks in (2, 3):
        killed = run(hpcproc_cmd("stats", "--json", *ck, "--checkpoint", tmp_path / f"k{ranks}",
                                 f"{path}:/x"), ranks=ranks, timeout=300,
                     env={"HPCPROC_CKPT_CRASH": "write-done:1:3"})
        assert killed.returncode != 0
        resumed = run(hpcproc_cmd("stats", "--json", *ck, "--checkpoint", tmp_path / f"k{ranks}",
                                  f"{path}:/x"), ranks=ranks, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        out = json.loads(resumed.stdout)
        assert out["resumed_from"] > 0
        assert {k: v for k, v in out.items() if k in KEYS} == ref, ranks
        fresh = stats(*ck, "--checkpoint", tmp_path / f"f{ranks}", ranks=ranks)
        assert fresh == ref
