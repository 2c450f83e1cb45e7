"""Attacks on the rewritten ``hp.join``: arguments that used to hang or fail with an
unclear message, and results checked against a dict-based join written here."""

import collections
import sys

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import SERIAL_ONLY, hpcproc_cmd, run


def _all(comm, cols):
    return {k: np.concatenate(comm.allgather(np.asarray(v))) for k, v in cols.items()}


@pytest.mark.mpi
@pytest.mark.parametrize("suffix", ["", None, 5])
def test_bad_suffix_is_an_error_not_a_hang(comm, suffix):
    # suffix="" looped forever renaming a clashing column ("v" + "" is still taken)
    k = np.arange(4, dtype=np.int64) + 4 * comm.rank
    with pytest.raises(ValueError, match="suffix must be a non-empty string"):
        hp.join({"k": k, "v": k}, {"k": k, "v": k}, "k", comm=comm, suffix=suffix)


@pytest.mark.mpi
@pytest.mark.parametrize("bb", ["64M", None, 1.5, True])
def test_bad_broadcast_bytes_is_named(comm, bb):
    # a string or None failed in numpy's comparison ("ufunc 'less_equal' did not contain
    # a loop ..."), naming no argument
    k = np.arange(4, dtype=np.int64) + 4 * comm.rank
    with pytest.raises(TypeError, match="broadcast_bytes must be an integer"):
        hp.join({"k": k}, {"k": k}, "k", comm=comm, broadcast_bytes=bb)


@pytest.mark.mpi
def test_bad_on_is_named(comm):
    k = np.arange(4, dtype=np.int64) + 4 * comm.rank
    with pytest.raises(TypeError, match="on must be a column name or a list of names"):
        hp.join({"k": k}, {"k": k}, 0, comm=comm)  # was: 'int' object is not iterable
    with pytest.raises(KeyError, match="the right table has no key column 'k2'"):
        hp.join({"k": k, "k2": k}, {"k": k}, ["k", "k2"], comm=comm)


@pytest.mark.mpi
@pytest.mark.parametrize("side", ["left", "right"])
def test_object_column_is_refused_clearly(comm, side):
    # object columns reached the exchange/gather: "Cannot change data-type for array of
    # references" (numpy's words, naming no column)
    k = np.arange(3, dtype=np.int64) + 3 * comm.rank
    obj = np.array([1, "x", None], dtype=object)
    left = {"k": k, "a": obj} if side == "left" else {"k": k}
    right = {"k": k, "b": obj} if side == "right" else {"k": k}
    with pytest.raises(TypeError, match="column '(a|b)' is object: object columns cannot"):
        hp.join(left, right, "k", comm=comm)


@SERIAL_ONLY
def test_cli_empty_suffix_is_a_usage_error(tmp_path):
    for name in ("l.h5", "r.h5"):
        with h5py.File(tmp_path / name, "w") as f:
            f["key"] = np.arange(5, dtype=np.int64)
            f["v"] = np.arange(5.0)
    proc = run(hpcproc_cmd("join", tmp_path / "l.h5", tmp_path / "r.h5", "--on", "/key",
                           "--left-with", "/v", "--right-with", "/v", "--suffix", "",
                           "--out", tmp_path / "o.h5"), ranks=2, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "hpcproc: error: --suffix must not be empty" in proc.stderr
    assert not (tmp_path / "o.h5").exists()


_BIG = np.array([2**63 - 1, 2**63, 2**64 - 1, 0, 1, 2**63 + 1], dtype=np.uint64)
_SBIG = np.array([2**63 - 1, -1, 0, 1, -2**63], dtype=np.int64)
_F = np.array([0.0, -0.0, np.nan, 1.5, 0.1, -np.inf, np.inf])

# (left keys, right keys): byte orders, widths and signedness mixed on the two sides
_KEYS = {
    "be-i8/le-i8": (np.arange(-5, 5).astype(">i8"), np.arange(-3, 7).astype("<i8")),
    "be-u8/be-u8": (_BIG.astype(">u8"), _BIG[::-1].astype(">u8")),
    "u8/i8": (np.tile(_BIG, 2), np.tile(_SBIG, 2)),
    "i8/be-u8": (np.tile(_SBIG, 2), _BIG.astype(">u8")),
    "f4/f8": (_F.astype(np.float32), _F),
    "f8/be-f8": (_F, _F[::-1].astype(">f8")),
    "bool/i1": (np.array([True, False, True]), np.array([1, 0, 2, -1], np.int8)),
    "u4/i8": (np.array([2**32 - 1, 0, 5], np.uint32), np.array([-1, 2**32 - 1, 5], np.int64)),
    "dups": (np.arange(40) % 3, np.arange(30) % 4),
}


def _key_ref(col):
    """Values as Python numbers (exact for every integer), NaN as one value."""
    return [("nan",) if x != x else x for x in col.tolist()]


@pytest.mark.mpi
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("strategy", ["hash", "broadcast"])
@pytest.mark.parametrize("case", sorted(_KEYS))
def test_join_pairs_match_a_dict_join(comm, case, strategy, how):
    lk, rk = _KEYS[case]
    r, p = comm.rank, comm.size
    mine = lambda a: a[r::p]  # noqa: E731 - uneven blocks, some ranks maybe empty
    left = {"k": mine(lk), "lid": mine(np.arange(lk.size))}
    right = {"k": mine(rk), "rid": mine(np.arange(rk.size))}
    opts = {"memory_budget": 1 << 12, "max_message": 64} if strategy == "hash" else {}
    local = hp.join(left, right, "k", how=how, comm=comm, strategy=strategy, **opts).local()
    assert local["k"].dtype == lk.dtype  # the left key column, byte order kept
    out = _all(comm, local)
    rid = out["rid"]
    rid = np.where(np.isnan(rid), -1, rid).astype(np.int64) if rid.dtype.kind == "f" else rid
    got = sorted(zip(out["lid"].tolist(), rid.tolist()))
    floats = "f" in lk.dtype.kind + rk.dtype.kind  # documented: then compared as float64
    lv, rv = (lk.astype(np.float64), rk.astype(np.float64)) if floats else (lk, rk)
    rows = collections.defaultdict(list)
    for j, k in enumerate(_key_ref(rv)):
        rows[0.0 if k == 0 else k].append(j)
    exp = []
    for i, k in enumerate(_key_ref(lv)):
        hit = rows.get(0.0 if k == 0 else k, [])
        exp += [(i, j) for j in hit] + ([(i, -1)] if how == "left" and not hit else [])
    assert got == sorted(exp)
    # the key column is the left one, bit for bit
    assert np.array_equal(out["k"].astype(lk.dtype).view(np.uint8),
                          lk[out["lid"]].view(np.uint8))


OUT_OF_MEMORY = """
import resource, sys
import numpy as np
from mpi4py import MPI
import hpcproc as hp

comm = MPI.COMM_WORLD
n = 5000
left = {"k": np.full(n if comm.rank == 1 else 0, 7, np.int64),
        "a": np.ones(n if comm.rank == 1 else 0)}
right = {"k": np.full(n if comm.rank == 0 else 0, 7, np.int64),
         "b": np.ones(n if comm.rank == 0 else 0)}
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
if comm.rank == 1:  # 300 MB more address space: the ~600 MB output cannot fit
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + (300 << 20), hard))
try:
    hp.join(left, right, "k", strategy="broadcast", comm=comm)
    print("no error", flush=True)
except MemoryError as err:
    print(f"MemoryError: {err}", flush=True)
finally:
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
small = hp.join({"k": np.arange(3)}, {"k": np.arange(3), "b": np.ones(3)}, "k", comm=comm)
total = comm.allreduce(len(small.local()["k"]))
print(f"rank {comm.rank} goes on: {total}", flush=True)
"""


@SERIAL_ONLY
def test_join_out_of_memory_on_one_rank_fails_every_rank(tmp_path):
    """A many-to-many key on one rank (5000 x 5000 pairs, ~600 MB of output) where that
    rank's address space is capped: the MemoryError is raised on every rank (it used to
    leave the other ranks waiting in the result's collective). In fresh processes: a
    long-lived one's free heap (kept for reuse) would hold the output."""
    script = tmp_path / "oom.py"
    script.write_text(OUT_OF_MEMORY)
    proc = run([sys.executable, str(script)], ranks=2, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout  # two ranks' lines may interleave
    assert out.count("MemoryError: join: the output of rank 1 does not fit in memory") == 2, out
    assert "no error" not in out
    assert "rank 0 goes on: 12" in out and "rank 1 goes on: 12" in out, out
