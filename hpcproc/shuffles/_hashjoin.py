"""The local join: a radix-partitioned hash join (compiled).

Keys arrive as ``(rows, words)`` uint64 matrices whose rows are equal exactly when the
keys are (:func:`key_words`). Both sides are scattered into ``2**B`` partitions by high
bits of a 64-bit hash of the key, ``B`` chosen so that a partition of the build side holds
about ``PART_ROWS`` rows. Each build partition then gets an open-addressing table that
fits the cache (a slot holds the key words and the build row; equal keys are chained in
build order), and the probe rows of the same partition look it up: every table access
is a cache hit, where one table for the whole build side costs a cache and TLB miss per
row. The match of each probe row is written in partitioned order (sequentially) and put
back into probe order by a pass that reads the partitions as ``2**B`` sequential
streams: the output follows the probe side's order, the matches of a probe row in build
order, with no random access over the whole data.

When no build key repeats (a dimension table: the usual case) every probe row has at
most one match and :func:`hash_join` returns the build row of every probe row directly,
without expanding pairs (``None`` for the probe index when that is the identity). The
rank of a row in the distributed join (:func:`hash_dest`) uses the low bits of the same
hash.
"""

from __future__ import annotations

import numpy as np

from ._encode import encode_keys
from ._exchange import dest_dtype
from ._jit import jit
from ._kernels import hash_dest, hash_row
from .hash import hash_partition

__all__ = ["hash_join", "key_words", "rank_dests", "BUILDS", "PART_ROWS"]

BUILDS = ("right", "left", "smaller")
#: Target rows of one build partition (its table: 2-4x as many 8-byte slots, in L2).
PART_ROWS = 2048
_PART_SHIFT = np.uint64(40)    # partition: hash bits 40..63 (the rank uses hash % ranks)
_SLOT_SHIFT = np.uint64(16)    # table slot: hash bits 16..39
_ONE = np.uint64(1)


@jit
def _partition(K, bits, keys, order):
    """Stable scatter of the rows of ``K`` into ``2**bits`` partitions by hash: their key
    words to ``keys``, their row numbers to ``order`` (unless it is empty). Returns the
    partition offsets and the partition of every row (2 bytes a row)."""
    n, m = K.shape
    parts = 1 << bits
    mask = np.uint64(parts - 1)
    pid = np.empty(n, np.uint16)  # bits <= 16 (see _bits)
    starts = np.zeros(parts + 1, np.int64)
    for i in range(n):
        p = (hash_row(K, i, m) >> _PART_SHIFT) & mask
        pid[i] = p
        starts[np.int64(p) + 1] += 1
    for p in range(parts):
        starts[p + 1] += starts[p]
    pos = starts[:-1].copy()
    with_order = order.shape[0] > 0
    for i in range(n):
        p = np.int64(pid[i])
        q = pos[p]
        pos[p] = q + 1
        if with_order:
            order[q] = i
        for w in range(m):
            keys[q, w] = K[i, w]
    return starts, pid


@jit
def _same(A, i, B, j, m):
    for w in range(m):
        if A[i, w] != B[j, w]:
            return False
    return True


@jit
def _probe_one(pkeys, p0, p1, table, tmask, res):
    """The probe of one partition for one-word keys and no repeated build key (the
    common case, specialised): ``res[k]`` for ``p0 <= k < p1``; returns the matches."""
    hits = 0
    for k in range(p0, p1):
        key = pkeys[k, 0]
        s = (hash_row(pkeys, k, 1) >> _SLOT_SHIFT) & tmask
        found = -1
        while True:
            t = table[s, 1]
            if t == 0:
                break
            if table[s, 0] == key:
                found = np.int64(t) - 1
                break
            s = (s + _ONE) & tmask
        res[k] = found
        hits += found >= 0
    return hits


@jit
def _probe_parts(pkeys, pstarts, bkeys, border, bstarts, nxt, res):
    """Build every build partition's table and probe it with the probe partition:
    ``res[k]`` (probe rows in partitioned order) is the first matching build row (-1:
    none); ``nxt[row]`` the next build row with the same key (``nxt`` starts at -1).
    A slot holds the key words and the build row + 1 (0: empty): a probe reads one slot.
    Returns (number of matching pairs, whether a build key repeats)."""
    m = bkeys.shape[1]
    parts = bstarts.shape[0] - 1
    big = 16
    for p in range(parts):
        big = max(big, 2 * (bstarts[p + 1] - bstarts[p]))
    size = 16
    while size < big:
        size *= 2
    table = np.empty((size, m + 1), np.uint64)
    total = 0
    dup = False
    for p in range(parts):
        b0, b1 = bstarts[p], bstarts[p + 1]
        p0, p1 = pstarts[p], pstarts[p + 1]
        if b1 == b0:
            for k in range(p0, p1):
                res[k] = -1
            continue
        ts = 16
        while ts < 2 * (b1 - b0):
            ts *= 2
        tmask = np.uint64(ts - 1)
        for s in range(ts):
            table[s, m] = 0
        pdup = False
        for j in range(b1 - 1, b0 - 1, -1):  # backwards: chains come out in build order
            s = (hash_row(bkeys, j, m) >> _SLOT_SHIFT) & tmask
            while True:
                t = table[s, m]
                if t == 0:
                    for w in range(m):
                        table[s, w] = bkeys[j, w]
                    table[s, m] = np.uint64(border[j] + 1)
                    break
                if _same(table, s, bkeys, j, m):
                    nxt[border[j]] = np.int64(t) - 1
                    table[s, m] = np.uint64(border[j] + 1)
                    pdup = True
                    break
                s = (s + _ONE) & tmask
        dup = dup or pdup
        if m == 1 and not pdup:
            total += _probe_one(pkeys, p0, p1, table, tmask, res)
            continue
        for k in range(p0, p1):
            s = (hash_row(pkeys, k, m) >> _SLOT_SHIFT) & tmask
            found = -1
            while True:
                t = table[s, m]
                if t == 0:
                    break
                if _same(table, s, pkeys, k, m):
                    found = np.int64(t) - 1
                    break
                s = (s + _ONE) & tmask
            res[k] = found
            if found >= 0:
                total += 1
                if pdup:
                    q = nxt[found]
                    while q >= 0:
                        total += 1
                        q = nxt[q]
    return total, dup


@jit
def _unscatter(pid, starts, res, head):
    """``head[i]``: the entry of ``res`` (partitioned order) of row ``i``, the inverse of
    :func:`_partition`'s scatter: reads ``res`` as one sequential stream per partition."""
    pos = starts[:-1].copy()
    for i in range(pid.shape[0]):
        p = np.int64(pid[i])
        q = pos[p]
        pos[p] = q + 1
        head[i] = res[q]


@jit
def _expand(head, nxt, total, keep_unmatched):
    """The (probe row, build row) pairs in probe order (build order within); ``-1`` as
    the build row of an unmatched probe row when ``keep_unmatched``."""
    n = head.shape[0]
    if keep_unmatched:
        for i in range(n):
            if head[i] < 0:
                total += 1
    pi = np.empty(total, np.int64)
    bi = np.empty(total, np.int64)
    p = 0
    for i in range(n):
        q = head[i]
        if q < 0:
            if keep_unmatched:
                pi[p] = i
                bi[p] = -1
                p += 1
            continue
        while q >= 0:
            pi[p] = i
            bi[p] = q
            p += 1
            q = nxt[q]
    return pi, bi


def _bits(rows: int) -> int:
    b = 0
    while (PART_ROWS << b) < rows and b < 16:
        b += 1
    return b


def _match(Kp, Kb, keep_unmatched: bool):
    """``(probe index or None for the identity, build index)`` of every matching pair,
    in probe order."""
    bits = _bits(Kb.shape[0])
    pkeys = np.empty_like(Kp)
    pstarts, pid = _partition(Kp, bits, pkeys, np.empty(0, np.int64))
    bkeys = np.empty_like(Kb)
    border = np.empty(Kb.shape[0], np.int64)
    bstarts, _ = _partition(Kb, bits, bkeys, border)
    nxt = np.full(Kb.shape[0], -1, np.int64)
    res = np.empty(Kp.shape[0], np.int64)
    total, dup = _probe_parts(pkeys, pstarts, bkeys, border, bstarts, nxt, res)
    del pkeys, bkeys, border
    head = np.empty(Kp.shape[0], np.int64)
    _unscatter(pid, pstarts, res, head)
    del res, pid
    if dup:
        return _expand(head, nxt, total, keep_unmatched)
    if keep_unmatched or total == Kp.shape[0]:
        return None, head
    pi = np.flatnonzero(head >= 0)
    return pi, head[pi]


def hash_join(Kl: np.ndarray, Kr: np.ndarray, keep_unmatched: bool, build: str = "right"):
    """``(left_index, right_index)`` of every pair of equal key rows of ``Kl`` and ``Kr``
    (``(n, m)`` uint64 keys, see :func:`key_words`). Not collective.

    The table is built on ``build`` (``"smaller"``: the side with fewer rows, the right
    one on a tie); the output follows the other side's order, each of its rows' matches
    in build order. ``left_index`` is ``None`` when it would be ``0, 1, ..., len(Kl)-1``
    (built on the right, every left row matching once). With ``keep_unmatched`` (built
    on the right only) a left row without a match gives right index ``-1``.
    """
    if build not in BUILDS:
        raise ValueError(f"build must be one of {BUILDS}, got {build!r}")
    Kl = np.ascontiguousarray(Kl, dtype=np.uint64)
    Kr = np.ascontiguousarray(Kr, dtype=np.uint64)
    if Kl.ndim != 2 or Kr.ndim != 2 or Kl.shape[1] != Kr.shape[1]:
        raise ValueError("hash_join: both sides need the same number of key words")
    if build == "smaller":
        build = "left" if Kl.shape[0] < Kr.shape[0] else "right"
    if build == "right":
        return _match(Kl, Kr, bool(keep_unmatched))
    if keep_unmatched:
        raise ValueError("hash_join: keep_unmatched needs the table built on the right")
    ri, li = _match(Kr, Kl, False)
    return li, (np.arange(Kr.shape[0]) if ri is None else ri)


def _plain(lk, rk) -> bool:
    """One 64-bit integer key column of the same kind on both sides: its bits are the key."""
    return (len(lk) == len(rk) == 1 and lk[0].dtype.kind in "iu"
            and lk[0].dtype.itemsize == 8 and lk[0].dtype == rk[0].dtype)


def key_words(lk, rk):
    """``(Kl, Kr)``: the key columns of both sides (already of common types) as uint64
    words that are equal exactly when the keys are. A 64-bit integer key is viewed, not
    copied; other keys are encoded (:mod:`._encode`: ``-0.0`` equals ``0.0``, NaN equals
    NaN)."""
    if _plain(lk, rk):
        return tuple(np.ascontiguousarray(k[0]).view(np.uint64).reshape(-1, 1)
                     for k in (lk, rk))
    return encode_keys(lk), encode_keys(rk)


def rank_dests(lk, rk, size: int):
    """``(dest_left, dest_right)``: the rank of every row of both sides, equal keys on
    equal ranks: :func:`hash_dest` of the plain keys' words (:func:`key_words`), else
    :func:`.hash.hash_partition` of the encoded keys (a chunk at a time)."""
    if not _plain(lk, rk):
        return hash_partition(lk, size), hash_partition(rk, size)
    dests = []
    for K in key_words(lk, rk):
        dests.append(np.empty(K.shape[0], dest_dtype(size)))
        hash_dest(K, size, dests[-1])
    return tuple(dests)
