"""The exchange and ``hp.shuffle`` / ``hp.rebalance`` (serial and 2/3 ranks)."""

import numpy as np
import pytest
from _shuffle_data import LAYOUTS, keys, split

import hpcproc as hp
from hpcproc.errors import ShapeMismatchError
from hpcproc.shuffles import exchange
from hpcproc.shuffles._exchange import MAX_MESSAGE

pytestmark = pytest.mark.mpi


def _local_data(comm, n):
    rng = np.random.default_rng(100 + comm.rank)
    return {
        "src": np.full(n, comm.rank, dtype=np.int16),
        "row": np.arange(n, dtype=np.int64),
        "vec": rng.random((n, 3)),                      # 24-byte rows
        "odd": rng.integers(0, 255, (n, 3)).astype(np.uint8),  # 3-byte rows
    }, rng.integers(0, comm.size, n)


@pytest.mark.parametrize("max_message", [MAX_MESSAGE, 64])
def test_exchange_moves_every_row_stably(comm, max_message):
    n = 300 + 37 * comm.rank
    cols, dest = _local_data(comm, n)
    out, info = exchange(cols, dest, comm, max_message=max_message, memory_budget=1 << 20)
    if max_message == 64 and comm.size > 1:
        assert info["rounds"] > 1  # the chunked (large-count) path ran
    # reference: every rank's (src, row) pairs bound here, in source order
    everyone = comm.allgather((cols, dest))
    exp = {k: np.concatenate([c[k][d == comm.rank] for c, d in everyone]) for k in cols}
    for k in cols:
        np.testing.assert_array_equal(out[k], exp[k])
    assert np.array_equal(info["received"], [np.sum(d == comm.rank) for _, d in everyone])


def test_exchange_forced_large_count_rounds_with_budget(comm):
    # rows 8 bytes; a message limit of 40 bytes forces many rounds; budget tiny
    n = 1000 * (comm.rank + 1)
    x = np.arange(n, dtype=np.float64) + 1e6 * comm.rank
    dest = (np.arange(n) * 7) % comm.size
    out, info = exchange({"x": x}, dest, comm, max_message=40, memory_budget=1)
    assert info["rounds"] >= 1000 * 8 // 40  # no message above 40 bytes
    everyone = comm.allgather((x, dest))
    exp = np.concatenate([a[d == comm.rank] for a, d in everyone])
    np.testing.assert_array_equal(out["x"], exp)


def test_exchange_errors_everywhere(comm):
    n = 10
    bad = {"a": np.zeros(n), "b": np.zeros(n if comm.rank != comm.size - 1 else n - 1)}
    with pytest.raises(ShapeMismatchError, match="different lengths"):
        exchange(bad, np.zeros(n, dtype=int), comm)
    with pytest.raises(ValueError, match="dest values"):
        exchange({"a": np.zeros(n)}, np.full(n, comm.size if comm.rank == 0 else 0), comm)
    if comm.size > 1:
        cols = {"a": np.zeros(n, dtype=np.float32 if comm.rank == comm.size - 1 else float)}
        with pytest.raises(TypeError, match="different names, dtypes"):
            exchange(cols, np.zeros(n, dtype=int), comm)


def test_mismatched_table_on_one_rank_one_clear_error(comm):
    n = 20
    cols = {"k": np.arange(n), "v": np.zeros(n - (comm.rank == comm.size - 1))}
    for call in (lambda: hp.sort(cols, "k", comm=comm),
                 lambda: hp.shuffle(cols, "k", comm=comm),
                 lambda: hp.groupby(cols, "k", comm=comm).agg(v="sum"),
                 lambda: hp.join(cols, {"k": np.arange(3)}, "k", comm=comm)):
        with pytest.raises(ShapeMismatchError, match="different lengths"):
            call()
    with pytest.raises(KeyError, match="nokey"):
        hp.sort({"k": np.arange(n)}, "nokey", comm=comm)


@pytest.mark.parametrize("partitioner", ["hash", "range"])
@pytest.mark.parametrize("kind", ["uniform", "zipf", "float_nan"])
def test_shuffle_groups_equal_keys(comm, partitioner, kind):
    n = 3000
    k = keys(kind, n, seed=1)
    t = split({"k": k, "id": np.arange(n)}, comm, "uneven")
    s = hp.shuffle(t, "k", partitioner=partitioner)
    assert s.meta["rank_rows"] == list(comm.allgather(s.local_rows))
    # whole rows moved together, nothing lost or duplicated
    mine = s.local()
    np.testing.assert_array_equal(mine["k"], k[mine["id"]])
    allid = np.concatenate(comm.allgather(mine["id"]))
    np.testing.assert_array_equal(np.sort(allid), np.arange(n))
    # every key on exactly one rank (NaN included)
    per_rank = comm.allgather(set(np.unique(mine["k"], equal_nan=True).tolist()))
    nan_ranks = sum(any(x != x for x in s_) for s_ in per_rank)
    assert nan_ranks <= 1
    for i in range(len(per_rank)):
        for j in range(i + 1, len(per_rank)):
            assert not {x for x in per_rank[i] & per_rank[j] if x == x}
    if partitioner == "range":  # ranks in key order (NaN last)
        kk = mine["k"].astype(float)
        kk = kk[~np.isnan(kk)]
        bounds = comm.allgather((kk.min(), kk.max()) if kk.size else None)
        bounds = [b for b in bounds if b is not None]
        assert all(a[1] < b[0] for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rebalance_keeps_order(comm, layout):
    n = 101
    data = np.arange(n * 2).reshape(n, 2)
    t = split({"x": data, "y": np.arange(n) * 0.5}, comm, layout)
    b = hp.rebalance(t)
    assert b.rows == hp.block_range(n, comm.size, comm.rank)
    np.testing.assert_array_equal(b.local("x"), data[slice(*b.rows)])
    assert b.meta["rank_rows"] == list(hp.block_counts(n, comm.size))
    arr = t["y"]
    rb = hp.rebalance(arr)
    assert isinstance(rb, hp.DistArray)
    np.testing.assert_array_equal(rb.allgather(), np.arange(n) * 0.5)


@pytest.mark.parametrize("bad", ["float", "bool", "2d"])
def test_exchange_rejects_non_integer_dest(comm, bad):
    # a float dest used to be truncated silently; now one clear TypeError on every rank
    n = 6
    dest = {"float": np.zeros(n, np.float64), "bool": np.zeros(n, bool),
            "2d": np.zeros((n, 1), np.int64)}[bad]
    with pytest.raises(TypeError, match="dest must be a 1-D integer array"):
        exchange({"a": np.arange(n)}, dest, comm)
