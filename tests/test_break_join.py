"""Attacks on the rewritten ``hp.join``: arguments that used to hang or fail with an
unclear message, and results checked against a dict-based join written here."""

import collections

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import SERIAL_ONLY, hpcproc_cmd, run


def _all(comm, cols):
    return {k: np.concatenate(comm.allgather(np.asarray(v))) for k, v in cols.items()}


def _pairs_ref(lk, rk, how):
    rows = collections.defaultdict(list)
    for j, k in enumerate(rk.tolist()):
        rows[k].append(j)
    out = []
    for i, k in enumerate(lk.tolist()):
        hit = rows.get(k, [])
        out += [(i, j) for j in hit]
        if how == "left" and not hit:
            out.append((i, -1))
    return sorted(out)


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
    with pytest.raises(TypeError, match=f"{side} column '(a|b)' is object"):
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
