"""Break-it tests for the exchange's raw-address scatter (s24b): ``store_at`` in
``scatter_to`` (two streams, address counters), ``_scatter_rest``, ``scatter_wide_to``
and ``scatter_pos_to``, the one-round exchange writing its own rows into the result (new
or ``out=``) and the others into the kept send staging buffer, and the count of
destinations by comparison up to 8 ranks.

A mistake in an address is memory corruption, not an exception: the kernels are called
directly with one array per destination, each between guard bytes that must stay as
they were, and every exchange result is compared with an independent numpy reference
(rows bound for a rank, per source rank in source order, concatenated by source rank).
``out=`` arrays have sentinel rows beyond the received ones, which must stay untouched.

Tests marked ``mpi`` run serially and under 2 and 3 ranks; the others once serially.
"""

from __future__ import annotations

import faulthandler

import numpy as np
import pytest
from _shuffle_data import DEST_PATTERNS, dest_pattern

import hpcproc as hp
from hpcproc.shuffles import _exchange as X
from hpcproc.shuffles import _kernels as K

faulthandler.enable()

GUARD = 64  # guard bytes on each side of every destination array
SENTINEL = 0xA5


# --------------------------------------------------------------------------------------
# 1. the kernels, directly: one array per destination between guard bytes


def _reference(dest, src, size):
    """Rows of ``src`` bound for each rank, in source order (stable)."""
    order = np.argsort(dest, kind="stable")
    ds = dest[order]
    return [src[order[ds == d]] for d in range(size)]


def _targets(counts, leads, shape, dtype):
    """One guarded byte buffer per destination with room for ``leads[d]`` spare rows and
    then ``counts[d]`` rows (the rows start at position ``leads[d]``)."""
    row = int(np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64)))
    bufs = [np.full(2 * GUARD + (int(s) + int(c)) * row, SENTINEL, np.uint8)
            for s, c in zip(leads, counts)]
    return bufs, row


def _check_targets(bufs, starts, counts, row, expect, dtype, shape):
    for d, (b, s, c) in enumerate(zip(bufs, starts, counts)):
        assert (b[:GUARD + s * row] == SENTINEL).all(), ("guard before", d)
        assert (b[GUARD + (s + c) * row:] == SENTINEL).all(), ("guard after", d)
        body = b[GUARD + s * row:GUARD + (s + c) * row]
        got = body.view(dtype).reshape((int(c),) + shape)
        np.testing.assert_array_equal(got, expect[d], err_msg=f"destination {d}")


def _word_cases():
    """(dtype, row shape) of the words the exchange scatters: 1-D words of 1, 2, 4 and
    8 bytes, rows of 3 and 12 bytes (uint8 words) and of 16 and 24 bytes (uint64)."""
    return [(np.uint8, ()), (np.uint16, ()), (np.uint32, ()), (np.uint64, ()),
            (np.uint8, (3,)), (np.uint8, (12,)), (np.uint64, (2,)), (np.uint64, (3,))]


def _random_words(rng, n, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(0, info.max, (n,) + shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("size", [1, 2, 3, 8, 9, 16])
@pytest.mark.parametrize("ddt", [np.uint8, np.uint16])
def test_scatter_kernels_guarded(size, ddt):
    """``scatter_to`` (two streams up to 8 ranks, odd lengths: the second stream's
    extra row), ``scatter_wide_to`` and ``scatter_pos_to`` (the positions of the first
    column, 1-D or 2-D) put every row where a stable counting sort puts it, into its
    destination's array, and touch no byte outside the rows they own."""
    rng = np.random.default_rng([size, np.dtype(ddt).itemsize])
    for n in (0, 1, 2, 3, 7, 8, 9, 255, 1001):
        for pattern in ("random", "one", "last", "alternate"):
            dest = {"random": rng.integers(0, size, n), "one": np.zeros(n, int),
                    "last": np.full(n, size - 1),
                    "alternate": np.arange(n) % size}[pattern].astype(ddt)
            half = K.halves(n, size)
            per_half = K.count_dest(dest, size, n // 2)
            counts = per_half[0] + per_half[1]
            np.testing.assert_array_equal(counts, np.bincount(dest, minlength=size))
            np.testing.assert_array_equal(
                per_half[0], np.bincount(dest[:n // 2], minlength=size))
            first = per_half[0] if half else np.zeros(size, np.int64)
            leads = rng.integers(0, 3, size).astype(np.int64)
            start = np.stack([leads, leads + first]).astype(np.int64)
            pos = np.full(n + 2, -7, np.int32)  # the recorded positions, guarded too
            recorded = None
            for dtype, shape in _word_cases() + _word_cases()[::-1]:
                src = _random_words(rng, n, dtype, shape)
                bufs, row = _targets(counts, leads, shape, dtype)
                addr = np.array([b.ctypes.data + GUARD for b in bufs], np.int64)
                if recorded is not None and src.ndim == 1:
                    K.scatter_pos_to(dest, recorded, src, addr)
                else:
                    record = pos[1:n + 1] if recorded is None else pos[:0]
                    if src.ndim == 1:
                        K.scatter_to(dest, src, start, half, addr, record)
                    else:
                        K.scatter_wide_to(dest, src, start[0], addr, record)
                    if recorded is None:
                        assert pos[0] == -7 and pos[n + 1] == -7
                        recorded = pos[1:n + 1].copy()
                        expect_pos = np.empty(n, np.int64)
                        for d in range(size):
                            rows = np.flatnonzero(dest == d)
                            expect_pos[rows] = leads[d] + np.arange(rows.size)
                        np.testing.assert_array_equal(recorded, expect_pos)
                _check_targets(bufs, leads, counts, row, _reference(dest, src, size),
                               dtype, shape)


def test_scatter_kernels_python_store():
    """The Python meaning of ``store_at`` (a kernel run as Python) writes the value's own
    bytes, and the kernels run as Python agree with the compiled ones."""
    rng = np.random.default_rng(5)
    for dtype, shape in _word_cases():
        n, size = 11, 3
        dest = rng.integers(0, size, n).astype(np.uint8)
        src = _random_words(rng, n, dtype, shape)
        counts = np.bincount(dest, minlength=size)
        half = K.halves(n, size)
        first = np.bincount(dest[:half], minlength=size) if half else np.zeros(size, int)
        leads = np.array([0, 1, 2], np.int64)
        start = np.stack([leads, leads + first]).astype(np.int64)
        bufs, row = _targets(counts, leads, shape, dtype)
        addr = np.array([b.ctypes.data + GUARD for b in bufs], np.int64)
        pos = np.zeros(n, np.int32)
        if src.ndim == 1:
            K.scatter_to.py_func(dest, src, start, half, addr, pos)
        else:
            K.scatter_wide_to.py_func(dest, src, start[0], addr, pos)
        _check_targets(bufs, leads, counts, row, _reference(dest, src, size), dtype, shape)


# --------------------------------------------------------------------------------------
# 2. the exchange: tables of 1-6 columns, out= with sentinels and offsets, rounds


def _col(kind, n, rng):
    """A column of ``kind``: its row width in bytes is in the name."""
    return {
        "u1": lambda: rng.integers(0, 256, n).astype(np.uint8),
        "i2": lambda: rng.integers(-30000, 30000, n).astype(np.int16),
        "f4": lambda: rng.normal(size=n).astype(np.float32),
        "i8": lambda: rng.integers(-2**62, 2**62, n),
        "b3": lambda: rng.integers(0, 256, (n, 3)).astype(np.uint8),
        "S3": lambda: np.array([b"%03d" % (i % 1000) for i in range(n)], "S3"),
        "i4x3": lambda: rng.integers(-9, 9, (n, 3)).astype(np.int32),  # 12 bytes
        "f8x3": lambda: rng.normal(size=(n, 3)),  # 24 bytes
        "c16": lambda: rng.normal(size=n) + 1j * rng.normal(size=n),  # 16 bytes
        "zero": lambda: np.zeros((n, 0), np.int64),
        "zero2": lambda: np.zeros((n, 2, 0), np.float32),
    }[kind]()


TABLES = [
    ["i8"],
    ["b3"],
    ["zero"],
    ["f8x3", "u1"],
    ["zero", "i2"],
    ["f8x3", "i2", "f4"],  # first moving column 2-D: positions from scatter_wide_to
    ["u1", "i2", "i4x3"],  # a 2-D column after the positions are recorded
    ["zero", "i4x3", "zero2", "u1", "c16", "i8"],
    ["i8", "f4", "b3", "u1", "S3", "f8x3"],
    ["zero", "zero2", "i2"],  # two moving columns with zero-width ones: no positions
]



def _expected(comm, cols, dest):
    everyone = comm.allgather((cols, dest))
    return {k: np.concatenate([c[k][d == comm.rank] for c, d in everyone]).astype(v.dtype)
            for k, v in cols.items()}


def _sentinel_like(shape, dtype):
    a = np.empty(shape, dtype)
    a.reshape(-1).view(np.uint8)[:] = SENTINEL
    return a


def _run_and_check(comm, cols, dest, exp, opts, tag):
    rows = len(next(iter(exp.values())))
    # out=: a view at an offset of a larger array, spare rows after the received ones
    bigs, out = {}, {}
    for k, v in cols.items():
        lead, spare = 3, 5
        big = _sentinel_like((lead + rows + spare,) + v.shape[1:], v.dtype)
        bigs[k] = (big, lead)
        out[k] = big[lead:lead + rows + spare]
    for into in (False, True):
        got, info = hp.exchange(cols, dest, comm, out=out if into else None, **opts)
        assert int(info["received"].sum()) == rows, tag
        for k in cols:
            assert got[k].shape == exp[k].shape, (tag, k)
            assert got[k].tobytes() == exp[k].tobytes(), (tag, k, into)
            if into:
                big, lead = bigs[k]
                raw = big.reshape(big.shape[0], -1).view(np.uint8)
                assert (raw[:lead] == SENTINEL).all(), (tag, k, "before the view")
                assert (raw[lead + rows:] == SENTINEL).all(), (tag, k, "spare rows")
    return info


@pytest.mark.mpi
@pytest.mark.parametrize("table", range(len(TABLES)))
def test_exchange_tables(comm, table):
    """Every table of TABLES, every destination pattern, 0, 1, odd and many rows (a rank
    holding none), new results and ``out=`` views at an offset with sentinel rows beyond
    the received ones, one round and several: the reference's bytes, no stray write."""
    kinds = TABLES[table]
    for it, n in enumerate([0, 1, 2, 5, 97, 1000]):
        for pattern in DEST_PATTERNS:
            rng = np.random.default_rng([comm.rank, it, table, comm.size])
            mine = 0 if (comm.rank == 0 and it % 2) else n
            dest = dest_pattern(pattern, mine, comm, rng)
            cols = {f"c{j}": _col(k, mine, rng) for j, k in enumerate(kinds)}
            before = {k: v.copy() for k, v in cols.items()}
            exp = _expected(comm, cols, dest)
            for opts in ({}, {"memory_budget": 1, "max_message": 40}):
                info = _run_and_check(comm, cols, dest, exp, opts, (kinds, n, pattern, opts))
                if not opts:
                    assert info["rounds"] == 1
            for k, v in cols.items():
                np.testing.assert_array_equal(v, before[k])


# --------------------------------------------------------------------------------------
# 3. the kept staging buffers: reused, grown, released; earlier results stay intact


@pytest.mark.mpi
@pytest.mark.parametrize("keep", ["pooled", "retained", "not_kept"])
def test_exchange_staging_reuse(comm, monkeypatch, keep):
    """Exchanges of growing and shrinking widths and row counts in one process: the send
    staging buffer (and the positions' one) is reused, grown when a later call needs more
    and released between calls; every result stays as it was returned after the later
    calls (none is a view of a staging buffer)."""
    if keep != "retained":
        monkeypatch.setattr(X, "retaining", lambda: False)
    if keep == "not_kept":
        monkeypatch.setattr(X, "KEEP", 16)
    kept = []
    plan = [(10, ["u1"]), (300, ["i8", "f8x3", "i2"]), (5, ["b3"]), (2000, ["c16", "u1",
            "i4x3", "f4"]), (0, ["i8"]), (700, ["f8x3"]), (3000, ["u1", "i2", "f4"])]
    for step, (n, kinds) in enumerate(plan * 2):
        rng = np.random.default_rng([comm.rank, step, comm.size])
        dest = rng.integers(0, comm.size, n)
        cols = {f"c{j}": _col(k, n, rng) for j, k in enumerate(kinds)}
        exp = _expected(comm, cols, dest)
        got, info = hp.exchange(cols, dest, comm)
        assert info["rounds"] == 1
        for k in cols:
            assert got[k].tobytes() == exp[k].tobytes(), (step, k)
        kept.append((got, {k: v.copy() for k, v in exp.items()}))
        if step == 8:
            hp.release_exchange_buffers(comm)
        for old, want in kept:  # earlier results untouched by later exchanges
            for k in want:
                assert old[k].tobytes() == want[k].tobytes(), (step, k)


# --------------------------------------------------------------------------------------
# 4. columns and outputs the built kernels do not take: read-only, unaligned (Numba)


def _unaligned(a):
    """A copy of ``a`` at an odd address (C-contiguous, writable, not aligned)."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    u = buf[1:].view(a.dtype).reshape(a.shape) if a.size else a.copy()
    u[...] = a
    return u


@pytest.mark.mpi
def test_exchange_readonly_unaligned(comm):
    """Read-only and unaligned columns and unaligned ``out=`` arrays (the compiled kernels
    with the raw store, not the built ones) give the reference's bytes."""
    for it, n in enumerate([1, 6, 501]):
        rng = np.random.default_rng([comm.rank, it, 77])
        dest = rng.integers(0, comm.size, n)
        base = {"a": _col("i8", n, rng), "b": _col("f8x3", n, rng), "c": _col("i2", n, rng),
                "d": _col("c16", n, rng)}
        ro = {}
        for k, v in base.items():
            r = v.copy()
            r.flags.writeable = False
            ro[k] = r
        una = {k: _unaligned(v) for k, v in base.items()}
        exp = _expected(comm, base, dest)
        rows = len(exp["a"])
        for cols in (ro, una):
            for into in (False, True):
                out = {k: _unaligned(_sentinel_like((rows + 2,) + v.shape[1:], v.dtype))
                       for k, v in base.items()} if into else None
                got, _ = hp.exchange(cols, dest, comm, out=out)
                for k in base:
                    assert got[k].tobytes() == exp[k].tobytes(), (it, k, into)
                    if into:
                        tail = out[k][rows:].reshape(-1).view(np.uint8)
                        assert (tail == SENTINEL).all(), k


# --------------------------------------------------------------------------------------
# 5. the count by comparison over several blocks; large tables; no columns


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9])
def test_count_dest_blocks(size):
    """``count_dest`` over several comparison blocks (halves not on a block boundary,
    uint8 and uint16 destinations) gives ``np.bincount`` of each half."""
    rng = np.random.default_rng(size)
    for n in (K._BLOCK * 2 + 3, K._BLOCK * 3 - 1):
        for ddt in (np.uint8, np.uint16):
            dest = rng.integers(0, size, n).astype(ddt)
            dest[: n // 3] = size - 1  # a long run of the last rank across blocks
            for half in (n // 2, 0, n, K._BLOCK + 1):
                got = K.count_dest(dest, size, half)
                np.testing.assert_array_equal(got[0], np.bincount(dest[:half], minlength=size))
                np.testing.assert_array_equal(got[1], np.bincount(dest[half:], minlength=size))


@pytest.mark.mpi
def test_exchange_large_and_empty(comm):
    """A table of 150001 rows per rank (the count over several blocks, the two streams
    with an odd row), a table with no columns and one of zero-width columns only."""
    n = 150001 + comm.rank
    rng = np.random.default_rng([comm.rank, 9])
    dest = rng.integers(0, comm.size, n).astype(np.int16)
    cols = {"a": _col("i8", n, rng), "b": _col("b3", n, rng), "c": _col("u1", n, rng),
            "d": _col("i2", n, rng)}
    exp = _expected(comm, cols, dest)
    got, info = hp.exchange(cols, dest, comm)
    assert info["rounds"] == 1
    for k in cols:
        assert got[k].tobytes() == exp[k].tobytes(), k
    got, info = hp.exchange({}, dest[:10], comm)
    assert got == {} and int(info["received"].sum()) == sum(
        int((d == comm.rank).sum()) for d in comm.allgather(dest[:10]))
    cols = {"z": _col("zero", 10, rng), "y": _col("zero2", 10, rng)}
    exp = _expected(comm, cols, dest[:10])
    got, _ = hp.exchange(cols, dest[:10], comm)
    for k in cols:
        assert got[k].shape == exp[k].shape and got[k].dtype == exp[k].dtype, k


# --------------------------------------------------------------------------------------
# 6. an allocation failing on one rank inside the one-round exchange


@pytest.mark.mpi
@pytest.mark.parametrize("which", ["send", "recv"])
def test_one_round_staging_failure(comm, monkeypatch, which):
    """The send staging buffer (or the positions') failing on the last rank is raised on
    every rank before any Alltoallv (no rank left waiting), and the next exchange gives
    the reference."""
    real = X._staging

    def failing(lc, name, nbytes):
        if name == which and comm.rank == comm.size - 1:
            raise MemoryError("injected")
        return real(lc, name, nbytes)

    n = 50
    rng = np.random.default_rng([comm.rank, 3])
    dest = rng.integers(0, comm.size, n)
    dest[0] = (comm.rank + 1) % comm.size  # something away when there are other ranks
    cols = {"a": _col("i8", n, rng), "b": _col("f4", n, rng), "c": _col("u1", n, rng)}
    monkeypatch.setattr(X, "_staging", failing)
    with pytest.raises(MemoryError):
        hp.exchange(cols, dest, comm)
    monkeypatch.setattr(X, "_staging", real)
    exp = _expected(comm, cols, dest)
    got, _ = hp.exchange(cols, dest, comm)
    for k in cols:
        assert got[k].tobytes() == exp[k].tobytes(), k


# --------------------------------------------------------------------------------------
# 7. a random mix, with guard bytes around the staging buffers the exchange is given


@pytest.mark.mpi
def test_exchange_fuzz_guarded_staging(comm, monkeypatch):
    """Random tables (1-6 columns of every width, zero-width ones mixed in), destination
    patterns and dtypes, ``out=`` or not, one round or several: the reference's bytes,
    and no byte written outside the staging buffers the exchange asked for (each handed
    out between guard bytes) nor outside the received rows of ``out=``."""
    handed = []

    def guarded(lc, which, nbytes):
        buf = np.full(nbytes + 2 * GUARD, SENTINEL, np.uint8)
        handed.append(buf)
        return buf[GUARD:GUARD + nbytes]

    monkeypatch.setattr(X, "_staging", guarded)
    kinds = ["u1", "i2", "f4", "i8", "b3", "S3", "i4x3", "f8x3", "c16", "zero", "zero2"]
    ddts = [np.uint8, np.uint16, np.int8, np.int64]
    for it in range(60):
        rng = np.random.default_rng([it, comm.size])  # the same table shape on every rank
        table = list(rng.choice(kinds, int(rng.integers(1, 7))))
        pattern = DEST_PATTERNS[it % len(DEST_PATTERNS)]
        opts = [{}, {}, {"memory_budget": 1, "max_message": int(rng.integers(20, 400))}][it % 3]
        into = bool(it % 2)
        mine_rng = np.random.default_rng([it, comm.rank, 1])
        n = int(mine_rng.choice([0, 1, 2, 3, 9, 64, 333]))
        dest = dest_pattern(pattern, n, comm, mine_rng).astype(ddts[it % len(ddts)])
        cols = {f"c{j}": _col(k, n, mine_rng) for j, k in enumerate(table)}
        exp = _expected(comm, cols, dest)
        rows = len(next(iter(exp.values())))
        out = {k: _sentinel_like((rows + 4,) + v.shape[1:], v.dtype)
               for k, v in cols.items()} if into else None
        handed.clear()
        got, _ = hp.exchange(cols, dest, comm, out=out, **opts)
        for k in cols:
            assert got[k].tobytes() == exp[k].tobytes(), (it, table, k)
            if into:
                assert (out[k][rows:].reshape(-1).view(np.uint8) == SENTINEL).all(), k
        for buf in handed:
            assert (buf[:GUARD] == SENTINEL).all() and (buf[-GUARD:] == SENTINEL).all(), (
                it, table, pattern)


# --------------------------------------------------------------------------------------
# 8. which scatter runs: positions from the third moving column, not when they do not fit


@pytest.mark.mpi
def test_exchange_positions_taken_or_not(comm, monkeypatch):
    """Three moving columns in one round follow the first column's positions (the path
    the tables above check is the one taken); a budget that holds one round but not the
    positions (``4 * rows`` bytes) scatters every column with counters: both give the
    reference."""
    calls = []
    real = K.scatter_pos_to
    monkeypatch.setattr(K, "scatter_pos_to", lambda *a: (calls.append(1), real(*a))[1])
    n = 24000  # divisible by 2 and 3: every rank receives n rows
    rng = np.random.default_rng([comm.rank, 11])
    dest = (np.arange(n) + comm.rank) % comm.size
    cols = {"a": _col("u1", n, rng), "b": _col("b3", n, rng), "c": _col("u1", n, rng),
            "d": _col("u1", n, rng)}
    exp = _expected(comm, cols, dest)
    for budget, positions in ((None, True), (n + X.WORKSPACE + 2 * (7 * n // 2), False)):
        calls.clear()
        got, info = hp.exchange(cols, dest, comm, memory_budget=budget)
        assert info["rounds"] == 1
        assert bool(calls) == positions, budget
        for k in cols:
            assert got[k].tobytes() == exp[k].tobytes(), (budget, k)
