"""The local join: a radix-partitioned hash join (compiled).

Both sides' encoded key rows (:mod:`._encode`) are hashed and scattered into ``2**B``
partitions by high bits of the hash, ``B`` chosen so that a partition of the right side
holds about ``PART_ROWS`` rows. Each right partition then gets an open-addressing table
that fits the cache (rows with equal keys chained, in right-table order), and the left
rows of the same partition probe it: every table access is a cache hit, where one table
for the whole right side costs a cache and TLB miss per row. Only the hash of a row, its
key words and its row number move; the other columns are gathered once at the end.

Output is in left-table order, the matches of a left row in right-table order (the
broadcast join's contract), whatever the partitioning.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from ._kernels import hash_row, mix

__all__ = ["hash_join", "PART_ROWS"]

#: Target rows of one right partition (its table: 2-4x as many 8-byte slots, in L2).
PART_ROWS = 2048
_PART_SHIFT = np.uint64(40)    # partition: hash bits 40..63 (the rank used hash % ranks)
_SLOT_SHIFT = np.uint64(16)    # table slot: hash bits 16..39


@jit
def _hash(K, i, m):
    """:func:`hash_row` with the one-word case (the common one) unrolled."""
    if m == 1:
        return mix(np.uint64(0x9E3779B97F4A7C15) ^ K[i, 0])
    return hash_row(K, i, m)


@jit
def _partition(K, bits, order, keys):
    """Stable scatter of the rows of ``K`` into ``2**bits`` partitions by hash: their
    numbers to ``order``, their key words to ``keys``. Returns the partition offsets.
    The hash is computed once (the partition of every row kept, 2 bytes a row)."""
    n, m = K.shape
    parts = 1 << bits
    mask = np.uint64(parts - 1)
    pid = np.empty(n, np.uint16)  # bits <= 16 (see _bits)
    starts = np.zeros(parts + 1, np.int64)
    for i in range(n):
        p = (_hash(K, i, m) >> _PART_SHIFT) & mask
        pid[i] = p
        starts[np.int64(p) + 1] += 1
    for p in range(parts):
        starts[p + 1] += starts[p]
    pos = starts[:-1].copy()
    for i in range(n):
        p = np.int64(pid[i])
        q = pos[p]
        pos[p] = q + 1
        order[q] = i
        if m == 1:
            keys[q, 0] = K[i, 0]
        else:
            for w in range(m):
                keys[q, w] = K[i, w]
    return starts


@jit
def _same(A, i, B, j):
    if A.shape[1] == 1:
        return A[i, 0] == B[j, 0]
    for w in range(A.shape[1]):
        if A[i, w] != B[j, w]:
            return False
    return True


@jit
def _probe_all(lkeys, lorder, lstarts, rkeys, rstarts, head, nxt, ordered):
    """Build every right partition's table and probe it with the left partition; sets
    ``head[left row]`` (``ordered``; else ``head[left position]``, a sequential write) to
    the first matching right position (-1: none) and returns the number of matching
    pairs."""
    m = rkeys.shape[1]
    parts = rstarts.shape[0] - 1
    big = 16
    for p in range(parts):
        big = max(big, 2 * (rstarts[p + 1] - rstarts[p]))
    size = 16
    while size < big:
        size *= 2
    table = np.empty(size, np.int64)
    total = 0
    for p in range(parts):
        r0, r1 = rstarts[p], rstarts[p + 1]
        l0, l1 = lstarts[p], lstarts[p + 1]
        if r1 == r0:
            for k in range(l0, l1):
                head[lorder[k] if ordered else k] = -1
            continue
        ts = 16
        while ts < 2 * (r1 - r0):
            ts *= 2
        tmask = np.uint64(ts - 1)
        for s in range(ts):
            table[s] = -1
        for j in range(r1 - 1, r0 - 1, -1):  # backwards: chains come out in right order
            s = (_hash(rkeys, j, m) >> _SLOT_SHIFT) & tmask
            while True:
                t = table[s]
                if t < 0:
                    table[s] = j
                    nxt[j] = -1
                    break
                if _same(rkeys, t, rkeys, j):
                    nxt[j] = t
                    table[s] = j
                    break
                s = (s + np.uint64(1)) & tmask
        for k in range(l0, l1):
            s = (_hash(lkeys, k, m) >> _SLOT_SHIFT) & tmask
            found = -1
            while True:
                t = table[s]
                if t < 0:
                    break
                if _same(rkeys, t, lkeys, k):
                    found = t
                    break
                s = (s + np.uint64(1)) & tmask
            head[lorder[k] if ordered else k] = found
            while found >= 0:
                total += 1
                found = nxt[found]
    return total


@jit
def _expand(head, lorder, nxt, rorder, total, keep_unmatched):
    """The (left row, right row) pairs, in ``head``'s order (left rows in order, or
    with ``lorder`` not empty in partitioned order); ``-1`` for an unmatched left row
    when ``keep_unmatched``."""
    n = head.shape[0]
    if keep_unmatched:
        for i in range(n):
            if head[i] < 0:
                total += 1
    li = np.empty(total, np.int64)
    ri = np.empty(total, np.int64)
    p = 0
    ident = lorder.shape[0] == 0
    for k in range(n):
        q = head[k]
        i = k if ident else lorder[k]
        if q < 0:
            if keep_unmatched:
                li[p] = i
                ri[p] = -1
                p += 1
            continue
        while q >= 0:
            li[p] = i
            ri[p] = rorder[q]
            p += 1
            q = nxt[q]
    return li, ri


def _bits(rows: int) -> int:
    b = 0
    while (PART_ROWS << b) < rows and b < 16:
        b += 1
    return b


def hash_join(Kl: np.ndarray, Kr: np.ndarray, keep_unmatched: bool, ordered: bool = True):
    """``(left_index, right_index)`` of every pair of equal key rows of ``Kl`` and ``Kr``
    (``(n, m)`` uint64 encoded keys). Left rows in order (``ordered``; otherwise grouped
    by hash partition, which saves a random write per left row), each one's matches in
    right order; with ``keep_unmatched`` a left row without a match gives ``(i, -1)``.
    Not collective."""
    Kl = np.ascontiguousarray(Kl, dtype=np.uint64)
    Kr = np.ascontiguousarray(Kr, dtype=np.uint64)
    if Kl.shape[1] != Kr.shape[1]:
        raise ValueError("hash_join: both sides need the same number of key words")
    bits = _bits(Kr.shape[0])
    idx = np.int32 if max(Kl.shape[0], Kr.shape[0]) < 2**31 else np.int64
    lorder = np.empty(Kl.shape[0], idx)
    lkeys = np.empty_like(Kl)
    lstarts = _partition(Kl, bits, lorder, lkeys)
    rorder = np.empty(Kr.shape[0], idx)
    rkeys = np.empty_like(Kr)
    rstarts = _partition(Kr, bits, rorder, rkeys)
    head = np.empty(Kl.shape[0], idx)
    nxt = np.empty(Kr.shape[0], idx)
    total = _probe_all(lkeys, lorder, lstarts, rkeys, rstarts, head, nxt, bool(ordered))
    del lkeys, rkeys
    return _expand(head, lorder[:0] if ordered else lorder, nxt, rorder, total,
                   bool(keep_unmatched))
