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
from ._kernels import gather_rows as gather_kernel
from ._kernels import hash_dest, hash_row
from .hash import hash_partition

__all__ = ["Matches", "local_join", "hash_join", "take", "key_words", "plain_keys", "rank_dests",
           "BUILDS", "PART_ROWS"]

BUILDS = ("right", "left", "smaller")
#: Target rows of one build partition (its table: 2-4x as many 8-byte slots, in L2).
PART_ROWS = 2048
_PART_SHIFT = np.uint64(40)    # partition: hash bits 40..63 (the rank uses hash % ranks)
_SLOT_SHIFT = np.uint64(16)    # table slot: hash bits 16..39
_ONE = np.uint64(1)


@jit
def _partition(K, bits, keys, order, pid):
    """Stable scatter of the rows of ``K`` into ``2**bits`` partitions by hash: their key
    words to ``keys``, their row numbers to ``order`` (unless it is empty), the partition
    of every row to ``pid`` (uint16: ``bits <= 16``, see :func:`_bits`). Returns the
    partition offsets. (The large arrays come from numpy, which asks for huge pages:
    fewer page faults than Numba's allocations.)"""
    n, m = K.shape
    parts = 1 << bits
    mask = np.uint64(parts - 1)
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
    return starts


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
def _probe_parts(pkeys, pstarts, bkeys, bstarts, nxt, res, first, total):
    """Build every build partition's table and probe it with the probe partition:
    ``res[k]`` (probe rows in partitioned order) is the partitioned position of the first
    matching build row (-1: none); ``nxt[j]`` the partitioned position of the next build
    row with the same key (``nxt`` starts at -1; the partition is stable, so chains are
    in build order). A slot holds the key words and the position + 1 (0: empty): a probe
    reads one slot. Partitions ``first, first + 1, ...`` are joined, ``total`` pairs
    counted before them. An empty ``nxt`` (unique build keys, the usual case, need no
    chains) stops at the first partition with a repeated key, before probing it.
    Returns (number of matching pairs, whether a build key repeats, the partition where
    it stopped: all of them when done)."""
    m = bkeys.shape[1]
    parts = bstarts.shape[0] - 1
    big = 16
    for p in range(parts):
        big = max(big, 2 * (bstarts[p + 1] - bstarts[p]))
    size = 16
    while size < big:
        size *= 2
    table = np.empty((size, m + 1), np.uint64)
    dup = False
    for p in range(first, parts):
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
                    table[s, m] = np.uint64(j + 1)
                    break
                if _same(table, s, bkeys, j, m):
                    if nxt.shape[0] == 0:
                        return total, True, p  # the caller goes on with chains
                    nxt[j] = np.int64(t) - 1
                    table[s, m] = np.uint64(j + 1)
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
    return total, dup, parts


@jit
def _pick(src, res, out):
    """``out[k] = src[res[k]]`` (0 where ``res[k] < 0``): the build values of the probe
    rows in partitioned order. ``res`` walks the build partitions in order, so every
    read falls in the current partition's few cached kilobytes."""
    for k in range(res.shape[0]):
        j = res[k]
        if j >= 0:  # (not a conditional expression: uint64 | int unifies to float64)
            out[k] = src[j]
        else:
            out[k] = 0


@jit
def _unscatter(pid, starts, res, head):
    """``head[i]``: the entry of ``res`` (partitioned order) of row ``i``, the inverse of
    :func:`_partition`'s scatter: reads ``res`` as one sequential stream per partition.
    Row numbers and the words of build columns go through it alike."""
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


def _words(col: np.ndarray):
    """A 1-D column of 1, 2, 4 or 8-byte items as unsigned words (``None``: other)."""
    size = col.dtype.itemsize
    if col.ndim != 1 or size not in (1, 2, 4, 8) or col.dtype.hasobject:
        return None
    return np.ascontiguousarray(col).view(f"u{size}")


def take(col: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``col[idx]`` along the rows; a compiled gather for 1-D columns of 1, 2, 4 or 8
    bytes (faster than ``np.take`` for random indices)."""
    src = _words(col)
    if src is None or not col.size:
        return np.take(col, idx, axis=0)
    out = np.empty(idx.shape[0], col.dtype)
    gather_kernel(src, idx, out.view(src.dtype))
    return out


class Matches:
    """The matching rows of a local join, and the gathers of either side's columns
    into output order (the probe side's order, a probe row's matches in build order).
    Not collective.

    Built on ``Kb`` (``(rows, words)`` uint64, see :func:`key_words`) and probed with
    ``Kp``. When no build key repeats and every probe row is in the output once (each
    matches, or ``keep_unmatched``), the probe side's columns are the output as they are
    and a build column is gathered in three streaming passes instead of a random gather
    over the build side: its values scattered into build-partition order, picked per
    probe row in partitioned order (reads within a cached partition), and put back into
    probe order (:func:`_unscatter`). Otherwise the (probe row, build row) pairs are
    made and columns gathered by row numbers.

    Attributes
    ----------
    rows : int
        Output rows.
    missing : numpy.ndarray of bool or None
        Output rows without a build match (``keep_unmatched`` only; ``None``: none).
    """

    def __init__(self, Kp: np.ndarray, Kb: np.ndarray, keep_unmatched: bool):
        n = Kp.shape[0]
        bits = _bits(Kb.shape[0])
        pkeys = np.empty_like(Kp)
        pid = np.empty(n, np.uint16)
        pstarts = _partition(Kp, bits, pkeys, np.empty(0, np.int64), pid)
        bkeys = np.empty_like(Kb)
        self._border = np.empty(Kb.shape[0], np.int64)
        bstarts = _partition(Kb, bits, bkeys, self._border,
                             np.empty(Kb.shape[0], np.uint16))
        # the match of probe row k overwrites its spent key (written after it is read);
        # no chain links until a build key repeats (a dimension table needs none)
        res = pkeys.reshape(-1).view(np.int64)[:n]
        nxt = np.empty(0, np.int64)
        total, dup, done = _probe_parts(pkeys, pstarts, bkeys, bstarts, nxt, res, 0, 0)
        if done < bstarts.shape[0] - 1:
            nxt = np.full(Kb.shape[0], -1, np.int64)
            total, dup, _ = _probe_parts(pkeys, pstarts, bkeys, bstarts, nxt, res, done,
                                         total)
        del bkeys, pkeys
        self.missing = None
        self._pi = self._bi = None
        if not dup and (keep_unmatched or total == n):
            self.rows = n  # the probe rows in order: no pairs
            self._stream = (pid, pstarts, res)
            if total < n:
                self.missing = self._unscatter(res) < 0
            return
        head = self._unscatter(res, pid, pstarts)
        del res, pid
        if dup:
            self._pi, bi = _expand(head, nxt, total, keep_unmatched)
        else:
            self._pi = np.flatnonzero(head >= 0)
            bi = head[self._pi]
        self._bi = self._rows(bi)
        if keep_unmatched and total < self._pi.shape[0]:
            self.missing = self._bi < 0
        self.rows = self._pi.shape[0]

    def _unscatter(self, res, pid=None, starts=None):
        if pid is None:
            pid, starts = self._stream[:2]
        head = np.empty(pid.shape[0], res.dtype)
        _unscatter(pid, starts, res, head)
        return head

    def probe_index(self):
        """The probe row of every output row (``None``: all probe rows, in order)."""
        return self._pi

    def build_index(self):
        """The build row of every output row (-1: no match); before :meth:`build`."""
        if self._bi is None:
            self._bi = self._unscatter(self._rows(self._stream[2]))
        return self._bi

    def _rows(self, pos):
        """Build rows of partitioned build positions (-1 stays -1)."""
        if not self._border.size:
            return np.full(pos.shape[0], -1, np.int64)
        return np.where(pos >= 0, self._border[np.maximum(pos, 0)], -1)

    def probe(self, col: np.ndarray, owned: bool = False) -> np.ndarray:
        """A probe-side column in output order (``owned``: may be returned as it is)."""
        if self._pi is None:
            return col if owned else col.copy()
        return take(col, self._pi)

    def build(self, cols: list) -> list:
        """Build-side columns in output order; the values of rows without a match
        (:attr:`missing`) are unspecified: the caller fills them."""
        words = [_words(c) if c.shape[0] else None for c in cols]
        stream = [i for i, w in enumerate(words) if w is not None and self._bi is None]
        out = [None] * len(cols)
        for i, col in enumerate(cols):
            if i in stream:
                continue
            if not col.shape[0]:
                out[i] = np.zeros((self.rows,) + col.shape[1:], col.dtype)
                continue
            bi = self.build_index()
            out[i] = take(col, np.maximum(bi, 0) if self.missing is not None else bi)
        if stream:
            pid, starts, res = self._stream
            buf = None
            for i in stream:
                src = words[i]
                part = np.empty(src.shape[0], src.dtype)
                gather_kernel(src, self._border, part)  # build-partition order
                if i == stream[-1]:  # the last one picks in place of the matches
                    buf = res.view(np.uint8)
                elif buf is None:
                    buf = np.empty(res.nbytes, np.uint8)
                picked = buf[: res.shape[0] * src.itemsize].view(src.dtype)
                _pick(part, res, picked)
                del part
                out[i] = np.empty(res.shape[0], cols[i].dtype)
                _unscatter(pid, starts, picked, out[i].view(src.dtype))
            self._stream = None  # spent
        return out


def local_join(Kl: np.ndarray, Kr: np.ndarray, keep_unmatched: bool, build: str = "right"):
    """The matches of equal key rows of ``Kl`` and ``Kr`` (``(n, m)`` uint64 keys, see
    :func:`key_words`) as :class:`Matches` with its build side: ``(matches, "left" or
    "right")``. Not collective.

    The table is built on ``build`` (``"smaller"``: the side with fewer rows, the right
    one on a tie); the output follows the other side's order, each of its rows' matches
    in build order. With ``keep_unmatched`` (built on the right only) a left row without
    a match is in the output once.
    """
    if build not in BUILDS:
        raise ValueError(f"build must be one of {BUILDS}, got {build!r}")
    Kl = np.ascontiguousarray(Kl, dtype=np.uint64)
    Kr = np.ascontiguousarray(Kr, dtype=np.uint64)
    if Kl.ndim != 2 or Kr.ndim != 2 or Kl.shape[1] != Kr.shape[1]:
        raise ValueError("local_join: both sides need the same number of key words")
    if build == "smaller":
        build = "left" if Kl.shape[0] < Kr.shape[0] else "right"
    if build == "right":
        return Matches(Kl, Kr, bool(keep_unmatched)), "right"
    if keep_unmatched:
        raise ValueError("local_join: keep_unmatched needs the table built on the right")
    return Matches(Kr, Kl, False), "left"


def hash_join(Kl: np.ndarray, Kr: np.ndarray, keep_unmatched: bool, build: str = "right"):
    """``(left_index, right_index)`` of every output row of :func:`local_join` (right
    index ``-1``: a left row without a match, ``keep_unmatched`` only; ``left_index``
    ``None``: ``0, 1, ..., len(Kl)-1``). Not collective."""
    m, side = local_join(Kl, Kr, keep_unmatched, build)
    if side == "right":
        return m.probe_index(), m.build_index()
    pi = m.probe_index()
    return m.build_index(), (np.arange(m.rows) if pi is None else pi)


def plain_keys(lk, rk) -> bool:
    """One 64-bit integer key column of the same kind on both sides: its bits are the key."""
    return (len(lk) == len(rk) == 1 and lk[0].dtype.kind in "iu"
            and lk[0].dtype.itemsize == 8 and lk[0].dtype == rk[0].dtype)


def key_words(lk, rk):
    """``(Kl, Kr)``: the key columns of both sides (already of common types) as uint64
    words that are equal exactly when the keys are. A 64-bit integer key is viewed, not
    copied; other keys are encoded (:mod:`._encode`: ``-0.0`` equals ``0.0``, NaN equals
    NaN)."""
    if plain_keys(lk, rk):
        return tuple(np.ascontiguousarray(k[0]).view(np.uint64).reshape(-1, 1)
                     for k in (lk, rk))
    return encode_keys(lk), encode_keys(rk)


def rank_dests(lk, rk, size: int):
    """``(dest_left, dest_right)``: the rank of every row of both sides, equal keys on
    equal ranks: :func:`hash_dest` of the plain keys' words (:func:`key_words`), else
    :func:`.hash.hash_partition` of the encoded keys (a chunk at a time)."""
    if not plain_keys(lk, rk):
        return hash_partition(lk, size), hash_partition(rk, size)
    dests = []
    for K in key_words(lk, rk):
        dests.append(np.empty(K.shape[0], dest_dtype(size)))
        hash_dest(K, size, dests[-1])
    return tuple(dests)
