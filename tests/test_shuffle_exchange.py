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
    # keys equal as strings would silently become one column (was: the second kept)
    clash = {1: np.zeros(n), "1": np.ones(n)}
    with pytest.raises(ValueError, match=r"\['1'\] are given twice"):
        exchange(clash, np.zeros(n, dtype=int), comm)
    got, _ = exchange({1: np.ones(n)}, np.zeros(n, dtype=int), comm)  # one such key: fine
    assert list(got) == ["1"]


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


def _reference(comm, cols, dest):
    everyone = comm.allgather((cols, dest))
    return {k: np.concatenate([c[k][d == comm.rank] for c, d in everyone]) for k in cols}


@pytest.mark.parametrize("max_message", [MAX_MESSAGE, 64])
@pytest.mark.parametrize("layout", ["even", "all_on_last", "one_row"])
def test_exchange_into_preallocated_out(comm, max_message, layout):
    """``out=``: the received rows fill the first rows of the caller's arrays (spare room
    left as it was), the result is views of them, and the same arrays serve again."""
    n = {"even": 200 + 13 * comm.rank, "all_on_last": 150 if comm.rank == comm.size - 1
         else 0, "one_row": int(comm.rank == 0)}[layout]
    cols, dest = _local_data(comm, n)
    cols["nan"] = np.where(np.arange(n) % 3 == 0, np.nan, -1.5 * np.arange(n))
    exp = _reference(comm, cols, dest)
    room = exp["row"].shape[0] + 7
    out = {k: np.full((room,) + v.shape[1:], 99, v.dtype) for k, v in cols.items()}
    for _ in range(2):  # a time-step loop: the same output arrays every step
        got, info = exchange(cols, dest, comm, out=out, max_message=max_message,
                             memory_budget=1 << 20)
        for k in cols:
            np.testing.assert_array_equal(got[k], exp[k])
            assert got[k].shape[0] == exp[k].shape[0] and got[k].dtype == cols[k].dtype
            assert got[k].size == 0 or np.shares_memory(got[k], out[k])
            assert (out[k][exp[k].shape[0]:] == 99).all()  # spare rows untouched
    assert list(info["received"]) == [int(np.sum(d == comm.rank))
                                      for _, d in comm.allgather((0, dest))]


@pytest.mark.parametrize("max_message", [MAX_MESSAGE, 64])
@pytest.mark.parametrize("route", ["all_own", "none_own", "own_first_last", "mixed"])
@pytest.mark.parametrize("names", ["all", "two"])
def test_exchange_own_rows_copied_not_sent(comm, max_message, route, names):
    """A rank's own rows skip MPI (in one round the scatter writes them straight into
    the result, new or ``out=``, and the others into the send buffer; in several they are
    copied from the send buffer): they must land between the rows of lower and higher
    ranks, in source order, for every row width (1, 2, 3, 8, 24 bytes and zero-width),
    with six columns (scattered by positions) and two (by counters), in one round and in
    many, into new arrays and into ``out=``. A new result owns exactly its rows."""
    size, rank = comm.size, comm.rank
    n = 97 + 31 * rank
    rng = np.random.default_rng(7 + rank)
    i = np.arange(n)
    dest = {"all_own": np.full(n, rank), "none_own": (rank + 1 + i % max(size - 1, 1)) % size,
            "own_first_last": np.where((i < 5) | (i >= n - 5), rank, i % size),
            "mixed": rng.integers(0, size, n)}[route]
    cols = {"u1": (i + 100 * rank).astype(np.uint8), "i2": (i - 1000 * rank).astype(">i2"),
            "b3": rng.integers(0, 255, (n, 3)).astype(np.uint8),
            "f8": rng.random(n) + rank, "v3": rng.random((n, 3)), "z": np.zeros((n, 0))}
    if names == "two":
        cols = {k: cols[k] for k in ("b3", "f8")}
    exp = _reference(comm, cols, dest)
    got, info = exchange(cols, dest, comm, max_message=max_message, memory_budget=1 << 20)
    out = {k: np.full((exp[k].shape[0] + 2,) + v.shape[1:], 7, v.dtype) for k, v in cols.items()}
    got_out, _ = exchange(cols, dest, comm, out=out, max_message=max_message,
                          memory_budget=1 << 20)
    if max_message == 64 and size > 1 and route != "all_own":
        assert info["rounds"] > 1
    for k in cols:
        for g in (got, got_out):
            assert g[k].dtype == cols[k].dtype and g[k].shape == exp[k].shape
            np.testing.assert_array_equal(g[k], exp[k])
        if got[k].nbytes:
            assert got[k].base is None and got[k].flags.owndata


@pytest.mark.parametrize("malloc_keeps", [False, True])
def test_exchange_reused_staging_never_leaks_into_results(comm, malloc_keeps):
    """The staging buffers kept between calls are internal: a second exchange (other
    data, other widths) leaves the first one's results intact; ``KEEP = 0`` (keep
    nothing) and ``release_exchange_buffers`` give the same results. The exchange keeps
    them itself only when malloc does not keep freed memory (hpcproc.memory)."""
    from hpcproc import memory
    was = memory.retaining()
    memory.retain_memory(malloc_keeps)
    try:
        _reused_staging(comm)
    finally:
        memory.retain_memory(was)


def _reused_staging(comm):
    from hpcproc.shuffles import _exchange
    rng = np.random.default_rng(comm.rank)
    a = {"x": rng.random(300), "y": rng.integers(0, 9, (300, 5)).astype(np.int16)}
    da = rng.integers(0, comm.size, 300)
    first, _ = exchange(a, da, comm)
    keep = {k: v.copy() for k, v in first.items()}
    b = {"x": rng.random(500), "y": rng.integers(0, 9, (500, 5)).astype(np.int16)}
    db = (np.arange(500) + comm.rank) % comm.size
    second, _ = exchange(b, db, comm)
    for k in a:
        np.testing.assert_array_equal(first[k], keep[k])
        np.testing.assert_array_equal(second[k], _reference(comm, b, db)[k])
    hp.release_exchange_buffers(comm)
    hp.release_exchange_buffers(comm)  # idempotent
    again, _ = exchange(a, da, comm)
    old = _exchange.KEEP
    try:
        _exchange.KEEP = 0
        kept_none, _ = exchange(a, da, comm)
    finally:
        _exchange.KEEP = old
    for k in a:
        np.testing.assert_array_equal(again[k], keep[k])
        np.testing.assert_array_equal(kept_none[k], keep[k])


def test_exchange_out_errors_on_every_rank(comm):
    """A bad ``out`` on one rank (the last) is one clear error on every rank, raised
    before any data moves; the inputs and the other ranks' outputs are untouched."""
    n = 40
    last = comm.rank == comm.size - 1
    x = np.arange(n, dtype=np.float64) + 100 * comm.rank
    dest = np.arange(n) % comm.size
    rows = int(np.sum(dest == comm.rank)) * comm.size  # the same dest on every rank
    mine = int(np.sum(dest == comm.size - 1)) * comm.size  # the last rank's rows

    def outs(everywhere=False, **bad):
        # a different structure on one rank (a list, other names) is the agreement
        # check's ArgumentMismatchError: such cases are bad on every rank here
        o = {"x": np.zeros(rows + 1)}
        if last or everywhere:
            o.update(bad)
        return o
    cases = [
        (ValueError, f"has room for {mine - 1} rows, but this rank receives {mine}",
         outs(x=np.zeros(rows - 1))),
        (TypeError, "dtype float64, got float32", outs(x=np.zeros(rows, np.float32))),
        (TypeError, "dtype float64, got list", outs(True, x=[0.0] * 4)),
        (hp.ShapeMismatchError, "rows of shape", outs(x=np.zeros((rows, 2)))),
        (ValueError, "writable C-contiguous", outs(x=np.zeros(2 * rows)[::2])),
        (KeyError, "exactly the columns", outs(True, y=np.zeros(rows))),
        (ValueError, "shares memory with the input column 'x'", outs(x=x)),
        (ValueError, "shares memory with the input dest",
         outs(x=dest.view(np.float64) if dest.dtype.itemsize == 8 else dest)),
    ]
    for exc, msg, out in cases:
        before = x.copy()
        with pytest.raises(exc, match=msg):
            exchange({"x": x}, dest, comm, out=out)
        np.testing.assert_array_equal(x, before)
    two = {"x": x, "y": x.astype(np.int64)}
    shared = np.zeros(rows + 1)
    with pytest.raises(ValueError, match=r"out\['y'\] shares memory with out\['x'\]"):
        exchange(two, dest, comm, out={"x": shared, "y": shared.view(np.int64)})


def test_exchange_out_given_on_some_ranks_only(comm):
    """``out`` on some ranks and not on others: the ranks disagree, every rank says so
    (no hang, nothing moved)."""
    if comm.size == 1:
        pytest.skip("needs two ranks to disagree")
    n = 10
    out = {"x": np.zeros(4 * n)} if comm.rank == 0 else None
    with pytest.raises(ValueError, match="out"):
        exchange({"x": np.zeros(n)}, np.zeros(n, int), comm, out=out)


@pytest.mark.parametrize("size", [1, 2, 3, 8, 9, 300])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_count_dest_matches_bincount(size, dtype):
    """The count pass (by comparison up to ``COMPARE_COUNT`` ranks, a block at a time;
    by counters above) against ``np.bincount``, both halves, over several blocks and
    their remainders, with runs of one rank and ranks that get nothing."""
    from hpcproc.shuffles import _kernels as K
    if size > np.iinfo(dtype).max + 1:
        pytest.skip("more ranks than the type holds")
    n = 2 * K._BLOCK + 12345
    rng = np.random.default_rng(size)
    dest = rng.integers(0, size, n).astype(dtype)
    dest[1000:40000] = size - 1
    dest[50000:50007] = 0
    if size > 2:
        dest[dest == 1] = 0  # a rank that receives nothing
    for half in (0, 1, K._BLOCK, n // 2, n - 1, n):
        got = K.count_dest(dest, size, half)
        np.testing.assert_array_equal(got[0], np.bincount(dest[:half], minlength=size))
        np.testing.assert_array_equal(got[1], np.bincount(dest[half:], minlength=size))


@pytest.mark.parametrize("size", [1, 2, 3, 8, 9, 40])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000, 1001])
def test_scatter_kernels_match_a_stable_sort(size, n):
    """The partition kernels on their own: the one-round scatter with every split of the
    rows into its two streams (none, the exchange's, lopsided), with and without
    recording positions, the scatter by positions, and the several-round scatter with
    three rounds, for 1-D and row words: the rows bound for each rank (in
    each round), in their local order (numpy's stable argsort of the destinations)."""
    from hpcproc.shuffles import _kernels as K
    rng = np.random.default_rng(size * 7919 + n)
    dest = rng.integers(0, size, n).astype(np.uint8)
    if n > 10:
        dest[: n // 3] = size - 1  # a long run of one destination
    cols = [rng.integers(0, 1 << 62, n).astype(np.uint64),
            rng.integers(0, 255, (n, 3)).astype(np.uint8)]
    order = np.argsort(dest, kind="stable")
    counts = np.bincount(dest, minlength=size).astype(np.int64)
    displ = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    by_dest = [np.flatnonzero(dest == d) for d in range(size)]  # stable: local order
    rank_in_dest = np.empty(n, np.int64)
    for rows in by_dest:
        rank_in_dest[rows] = np.arange(rows.size)
    for half in sorted({0, K.halves(n, size), n // 3, n}):
        per_half = K.count_dest(dest, size, half)
        assert np.array_equal(per_half[0], np.bincount(dest[:half], minlength=size))
        assert np.array_equal(per_half[0] + per_half[1], counts)
        # every destination's rows into an array of its own, from position 2 on (the
        # exchange: own rows into the result, the others into the send buffer)
        begin = np.full(size, 2, np.int64)
        start = np.stack([begin, begin + per_half[0]])
        for col in cols:
            outs = [np.zeros((c + 3,) + col.shape[1:], col.dtype) for c in counts]
            addr = np.array([o.ctypes.data for o in outs], np.int64)
            pos = np.full(n, -1, np.int32)
            if col.ndim == 1:
                K.scatter_to(dest, col, start, half, addr, pos)
            else:
                K.scatter_wide_to(dest, col, start[0], addr, pos)
            for o, rows in zip(outs, by_dest):
                np.testing.assert_array_equal(o[2:-1], col[rows])
                assert not o[:2].any() and not o[-1].any()  # nothing outside its rows
            np.testing.assert_array_equal(pos, 2 + rank_in_dest)
            # the next column by the positions alone, into other arrays
            nxt = rng.integers(0, 1 << 30, n).astype(np.uint32)
            outs = [np.zeros(c + 3, nxt.dtype) for c in counts]
            addr = np.array([o.ctypes.data for o in outs], np.int64)
            K.scatter_pos_to(dest, pos, nxt, addr)
            for o, rows in zip(outs, by_dest):
                np.testing.assert_array_equal(o[2:-1], nxt[rows])
                assert not o[:2].any() and not o[-1].any()
        # not recording, into one array grouped by destination
        one = np.zeros_like(cols[0])
        start = np.stack([displ, displ + per_half[0]])
        K.scatter_to(dest, cols[0], start, half, np.full(size, one.ctypes.data, np.int64),
                     np.empty(0, np.int32))
        np.testing.assert_array_equal(one, cols[0][order])
    rounds = 3
    for k in range(rounds):
        lo, hi = counts * k // rounds, counts * (k + 1) // rounds
        rdispl = np.concatenate([[0], np.cumsum(hi - lo)[:-1]]).astype(np.int64)
        pick = np.concatenate([order[np.flatnonzero(dest[order] == d)[lo[d]:hi[d]]]
                               for d in range(size)]).astype(np.int64)
        for col in cols:
            out = np.zeros((int((hi - lo).sum()),) + col.shape[1:], col.dtype)
            K.scatter_round(dest, col, lo, hi, rdispl, out)
            np.testing.assert_array_equal(out, col[pick])
