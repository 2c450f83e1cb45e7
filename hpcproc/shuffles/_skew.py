"""Heavy keys of a hash join (skew): which rows stay on their rank, which are replicated.

A hash join sends every row of a key to one rank, so a key held by a large part of the
rows (Zipf keys, a default value, a dominant customer) makes that rank's memory and time
grow with the skew. The remedy (partial redistribution, partial duplication): the rows
of a *heavy* key stay on the rank that holds them on the side where the key has more rows
(``local``), and the other side's rows of that key are replicated to every rank; every
other key goes through the hash partitioning as before.

Detection (:func:`plan`, collective, the same result on every rank):

1. When a heavy key would hold fewer than :data:`MIN_ROWS` rows the join is left alone
   (no communication: the caller knows the row totals from its first reduction).
2. Every rank samples :data:`SAMPLE_ROWS` rows of each side (fixed seed, with
   replacement; all rows when it has fewer), each standing for ``rows / samples`` rows of
   its side, and sends each distinct sampled key with its weight to the key's *owner*,
   a rank chosen by a hash of its words (for a 64-bit integer key, the rank the hash
   join sends it to; :func:`.exchange_runs`: at most
   ``2 * SAMPLE_ROWS`` keys of ``key words + 1`` words sent per rank).
3. Every owner sums the weights of its keys (in rank order: the same sums on every run)
   and keeps those whose estimated rows (both sides) reach half the threshold ``T =
   (rows_left + rows_right) / (SHARE * ranks)`` as candidates (half: a key at ``T`` is
   expected ``SAMPLE_ROWS / SHARE`` = 32 times in the sample, missing it takes 16 fewer,
   2.8 standard deviations; a key at ``1.5 T`` is missed about once in 10^5 joins, and a
   missed key near ``T`` adds at most an eighth of a rank's rows to its rank). The
   weights sum to the rows, so there are at most ``2 * SHARE * ranks`` candidates (and at
   most ``SHARE * ranks`` heavy keys). The candidates of all owners are concatenated on
   every rank (one allreduce of zero-padded blocks, then sorted): every rank receives
   its share of the sample plus the candidates, not every rank's sample (at 1,000 ranks
   about 8 KB of sample and 8 bytes per candidate word, where an all-gather of the
   samples received 8 MB; an owner also receives one entry per rank that sampled a key
   it owns). No candidate: the join is today's hash join, nothing else is done.
4. Candidates are counted exactly: one compiled pass over each side's keys (up to
   :data:`FEW` one-word candidates compared one by one, more looked up in a small hash
   table), which also records every row's candidate for the routing, and one allreduce
   of the counts. A candidate with at least ``max(T, MIN_ROWS)`` rows is
   heavy; it stays on the side with more of its rows (the left one on a tie) and the
   other side's rows are replicated, heaviest keys first while the replicated rows fit
   ``budget`` bytes (the join's ``replicate_bytes``); a key that does not fit keeps the
   hash partitioning.

``SHARE = 8``: a key is heavy when it alone would add an eighth of an average rank's rows
to its rank; the lighter keys, at most ``T`` rows each, spread over the ranks by hash
(Zipf(1.2) keys on 8 ranks: the busiest rank joins 1.11x the average rows, 1.42x with
``SHARE = 4``, 1.82x without the heavy keys).
A key heavy on both sides multiplies: its output (rows_left x rows_right) is split over
the ranks by its local side's rows, and its other side is replicated (within the budget).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..comm import fail_together, lib_comm
from ._encode import encoded_chunks
from ._exchange import dest_dtype, exchange_runs
from ._hashjoin import key_words, plain_keys
from ._jit import jit
from ._kernels import hash_dest, hash_row

__all__ = ["SkewPlan", "plan", "SAMPLE_ROWS", "SHARE", "MIN_ROWS"]

#: Rows sampled per rank and side.
SAMPLE_ROWS = 256
#: A key is heavy when it holds ``1 / SHARE`` of an average rank's rows (both sides).
SHARE = 8
#: Fewest rows of a heavy key (below this, imbalance costs less than detecting it).
MIN_ROWS = 1 << 12
#: Up to this many one-word candidates are compared one by one instead of hashed.
FEW = 16
_SEED = 0x5EED
_SLOT_SHIFT = np.uint64(16)
_ONE = np.uint64(1)
HASH, LOCAL, REPLICATE = 0, 1, 2


@jit
def _table(C):
    """Open-addressing table of the distinct key rows ``C``: a slot holds the key words
    and the row number + 1 (0: empty). Returns the table (its size a power of two)."""
    n, m = C.shape
    size = 16
    while size < 2 * n:
        size *= 2
    T = np.zeros((size, m + 1), np.uint64)
    mask = np.uint64(size - 1)
    for j in range(n):
        s = (hash_row(C, j, m) >> _SLOT_SHIFT) & mask
        while T[s, m] != 0:
            s = (s + _ONE) & mask
        for w in range(m):
            T[s, w] = C[j, w]
        T[s, m] = np.uint64(j + 1)
    return T


# The kernel below probes the table inline: a probe in a function of its own, called per
# row, is not inlined by Numba and costs 2.5x the pass (measured: 48 ms against 18 ms for
# 2**21 rows). Looking rows up without counting uses it too (a scratch count array).

@jit
def _count(K, T, counts, ids):
    """``counts[j]`` += the rows of ``K`` equal to key ``j`` of ``T``; ``ids[i]``: the
    key of row ``i`` (-1: none)."""
    m, mask = K.shape[1], np.uint64(T.shape[0] - 1)
    for i in range(K.shape[0]):
        ids[i] = -1
        s = (hash_row(K, i, m) >> _SLOT_SHIFT) & mask
        t = T[s, m]
        while t != 0:
            same = True
            for w in range(m):
                if T[s, w] != K[i, w]:
                    same = False
            if same:
                j = np.int64(t) - 1
                ids[i] = j
                counts[j] += 1
                break
            s = (s + _ONE) & mask
            t = T[s, m]


@jit
def _count_few(K, C, counts, ids):
    """:func:`_count` for one-word keys and few candidates ``C``: compared one by one,
    no hash and no branch on the data (a quarter of the hash probe's time)."""
    c = C.shape[0]
    for i in range(K.shape[0]):
        key = K[i, 0]
        idx = -1
        for j in range(c):
            if C[j, 0] == key:
                idx = j
        ids[i] = idx
    tally = np.zeros(c + 1, np.int64)
    for i in range(ids.shape[0]):
        tally[ids[i] + 1] += 1
    for j in range(c):
        counts[j] += tally[j + 1]


@jit
def _route(ids, act, rank, dest, rep):
    """Rows whose key ``j = ids[i]`` has ``act[j]`` LOCAL or REPLICATE: ``dest`` =
    ``rank``; the REPLICATE ones listed in ``rep`` (its length)."""
    r = 0
    for i in range(ids.shape[0]):
        j = ids[i]
        if j >= 0 and act[j] != HASH:
            dest[i] = rank
            if act[j] == REPLICATE:
                rep[r] = i
                r += 1


def _words(cols, plain: bool):
    """``(start, stop, K)``: the key words of ``cols`` as :func:`key_words` makes them
    (a view of a plain 64-bit key; else encoded, a chunk at a time)."""
    if plain:
        yield 0, cols[0].shape[0], key_words(cols, cols)[0]
    else:
        yield from encoded_chunks(cols)


class SkewPlan:
    """The heavy keys of a join and what happens to each side's rows of them.

    Attributes
    ----------
    heavy : int
        Heavy keys handled (0: none, the join is the plain hash join).
    replicated : dict
        Rows of each side replicated to every rank (totals over the ranks).
    """

    def __init__(self, cand, table, plain, actions, ids, heavy, replicated):
        self._cand, self._table, self._plain = cand, table, plain
        self._actions, self._ids = actions, ids
        self.heavy, self.replicated = heavy, replicated

    def actions(self, cols, side: str) -> np.ndarray:
        """What happens to every row of ``cols`` (key columns of ``side``): int8,
        :data:`HASH`, :data:`LOCAL` or :data:`REPLICATE`. Not collective."""
        scratch = np.zeros(self._cand.shape[0], np.int64)  # counts nobody reads
        ids = _candidates(cols, self._plain, self._cand, self._table, scratch)
        hit = ids >= 0
        out = np.zeros(ids.shape[0], np.int8)
        out[hit] = self._actions[side][ids[hit]]
        return out

    def route(self, side: str, dest: np.ndarray, rank: int) -> np.ndarray:
        """Keep the rows of heavy keys of ``side`` (the rows that :func:`plan` counted)
        on ``rank`` (``dest`` updated in place) and return the rows to replicate. Not
        collective; once per side."""
        ids, count = self._ids.pop(side)
        act = self._actions[side]
        rep = np.empty(int(count[act == REPLICATE].sum()), np.int64)
        _route(ids, act, rank, dest, rep)
        return rep


def _candidates(cols, plain, cand, table, counts) -> np.ndarray:
    """The candidate (row of ``cand``, -1: none) of every row of the key columns
    ``cols``; ``counts[j]`` += the rows of candidate ``j``. A few one-word candidates are
    compared one by one, more are looked up in their ``table``."""
    ids = np.empty(cols[0].shape[0], np.int32)
    for a, b, K in _words(cols, plain):
        if K.shape[1] == 1 and cand.shape[0] <= FEW:
            _count_few(K, cand, counts, ids[a:b])
        else:
            _count(K, table, counts, ids[a:b])
    return ids


def _sample(cols, rank: int, side: int):
    """``(key columns of the sampled rows, weight of each)``."""
    n = cols[0].shape[0]
    if n <= SAMPLE_ROWS:
        return cols, np.ones(n)
    idx = np.sort(np.random.default_rng([_SEED, rank, side]).integers(0, n, SAMPLE_ROWS))
    return [c[idx] for c in cols], np.full(SAMPLE_ROWS, n / SAMPLE_ROWS)


def _distinct(K, weights):
    """The distinct rows of ``K`` (sorted) and the summed weights of each."""
    if not K.shape[0]:
        return K, weights
    keys, inv = np.unique(K, axis=0, return_inverse=True)
    return keys, np.bincount(inv.reshape(-1), weights=weights, minlength=keys.shape[0])


def _everywhere(rows: np.ndarray, lc, failed=None) -> np.ndarray:
    """The uint64 ``rows`` of every rank, concatenated in rank order, on every rank: a
    bitwise-or allreduce of zero-padded blocks (each rank receives the result, not a
    count per rank). Collective over the library communicator ``lc``. ``failed``: this
    rank's exception since its last collective, agreed in the first allreduce (the
    rows' total) and raised on every rank."""
    n = np.array([0 if failed is not None else rows.shape[0], failed is not None], np.int64)
    total, start = np.empty_like(n), np.zeros_like(n)
    lc.Allreduce(n, total, op=MPI.SUM)
    if total[1]:
        fail_together(failed, "join", lc)
    lc.Exscan(n[:1], start[:1], op=MPI.SUM)
    if lc.Get_rank() == 0:
        start[0] = 0  # Exscan leaves rank 0's result undefined
    out = np.zeros((int(total[0]), rows.shape[1]), np.uint64)
    out[int(start[0]):int(start[0]) + rows.shape[0]] = rows
    if out.size:
        lc.Allreduce(MPI.IN_PLACE, out, op=MPI.BOR)
    return out


def _sampled_candidates(lk, rk, least: float, comm, error=None) -> np.ndarray:
    """The sorted distinct key words whose sampled weight over all ranks (both sides)
    is at least ``least``, the same on every rank. Each rank's distinct sampled keys go
    to their hash owners, which sum the weights and keep the candidates; the candidates
    are then concatenated everywhere (:func:`_everywhere`). Collective. ``error`` (this
    rank's exception since its last collective) and any local failure here are raised
    on every rank, riding on the collectives that happen anyway."""
    lc = lib_comm(comm)
    size, rank = lc.Get_size(), lc.Get_rank()
    try:
        if error is not None:
            raise error
        (ls, lw), (rs, rw) = _sample(lk, rank, 0), _sample(rk, rank, 1)
        keys, weights = _distinct(np.concatenate(key_words(ls, rs)), np.concatenate([lw, rw]))
        owner = np.empty(keys.shape[0], dest_dtype(size))
        hash_dest(keys, size, owner)  # a 64-bit integer key: its rank in the hash join
        order = np.argsort(owner, kind="stable")  # each owner's keys stay sorted
        rows = np.column_stack([keys, weights.view(np.uint64)])[order]  # key words, weight
        counts = np.bincount(owner, minlength=size)
    except Exception as err:  # noqa: BLE001 - agreed in the exchange's counts
        error, rows, counts = err, np.zeros((0, 2), np.uint64), np.zeros(size, np.int64)
    got = exchange_runs({"kw": rows}, counts, comm, error=error)[0]["kw"]
    failed = cand = None
    try:
        weights = np.ascontiguousarray(got[:, -1]).view(np.float64)
        keys, weights = _distinct(got[:, :-1], weights)  # summed in rank order: reproducible
        cand = np.ascontiguousarray(keys[weights >= least])
    except Exception as err:  # noqa: BLE001 - agreed in _everywhere's first allreduce
        failed = err
    cand = _everywhere(cand, lc, failed)
    return np.unique(cand, axis=0) if cand.shape[0] else cand


def plan(lk, rk, rows, row_bytes, budget: int, comm, error=None) -> SkewPlan | None:
    """The heavy keys of a join of key columns ``lk`` and ``rk`` (already of common
    types); ``rows``: (left, right) row totals over the ranks, ``row_bytes``: bytes of
    a (left, right) row, ``budget``: most bytes replicated to every rank; ``None``: no
    heavy key. Collective over ``comm`` (traffic on its library communicator), the same
    result on every rank.

    ``error``: an exception this rank raised since its last collective (``lk``, ``rk``
    are then not used). When the plan communicates, it and any failure of a rank inside
    the plan (an allocation) are raised on every rank together, riding on the plan's own
    collectives; a plan that returns (``error`` given) did not communicate (too few rows
    for a heavy key, decided from the totals alike on every rank), and the caller still
    holds the error."""
    lc = lib_comm(comm)
    size = lc.Get_size()
    limit = (int(rows[0]) + int(rows[1])) / (SHARE * size)
    if size < 2 or limit < MIN_ROWS:
        return None
    cand = _sampled_candidates(lk, rk, limit / 2, comm, error)
    if not cand.shape[0]:
        return None
    c = cand.shape[0]
    flat = np.zeros(2 * c + 1, np.int64)  # the counts of both sides, then a failure flag
    own, failed, table, ids = flat[:2 * c].reshape(2, c), None, None, None
    try:
        plain = plain_keys(lk, rk)
        table = _table(cand)
        ids = {side: (_candidates(cols, plain, cand, table, own[i]), own[i])
               for i, (side, cols) in enumerate((("left", lk), ("right", rk)))}
    except Exception as err:  # noqa: BLE001 - agreed in the counts' allreduce
        failed, flat[-1] = err, 1
    both = np.empty_like(flat)
    lc.Allreduce(flat, both, op=MPI.SUM)
    if both[-1]:
        fail_together(failed, "join", lc)
    counts = both[:2 * c].reshape(2, c)
    total = counts.sum(axis=0)
    actions = {"left": np.zeros(cand.shape[0], np.int8),
               "right": np.zeros(cand.shape[0], np.int8)}
    replicated = {"left": 0, "right": 0}
    room, heavy = int(budget), 0
    names = ("left", "right")
    for j in np.argsort(-total, kind="stable"):
        if total[j] < limit:
            break
        keep = 0 if counts[0, j] >= counts[1, j] else 1  # the side with more rows stays
        other = 1 - keep
        cost = int(counts[other, j]) * row_bytes[other]
        if cost > room:
            continue  # too many rows to replicate: hash-partitioned as before
        room -= cost
        heavy += 1
        actions[names[keep]][j] = LOCAL
        actions[names[other]][j] = REPLICATE
        replicated[names[other]] += int(counts[other, j])
    if not heavy:
        return None
    return SkewPlan(cand, table, plain, actions, ids, heavy, replicated)
