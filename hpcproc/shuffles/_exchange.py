"""The exchange: a bounded-memory, large-count-safe, multi-column Alltoallv.

Every row ``i`` of a set of equal-length columns goes to rank ``dest[i]``. The data moves
over the library communicator, one column at a time, as raw bytes:

1. a Numba pass counts the rows per destination; one ``Alltoall`` of the counts tells
   every rank how much it receives from whom;
2. the exchange runs in ``R`` rounds (the same ``R`` on every rank). In round ``k`` the
   rows bound from rank s to rank d numbered ``[k*c//R, (k+1)*c//R)`` (in s's local
   order) move: a second Numba pass scatters them into a send buffer grouped by
   destination (with one round, in two interleaved streams up to 8 ranks,
   :func:`._kernels.halves`, and from the third column on by the positions the first
   column's scatter recorded, :data:`POSITION_COLUMNS`), and one ``Alltoallv`` moves
   the rows bound for other ranks. This rank's own rows never go through MPI (MPICH's
   Alltoallv copied a rank's message to itself 2.3-3.2x slower than memcpy, 9x on a
   busy machine: with random destinations over p ranks, 1/p of the rows): in one round
   the scatter writes them straight to their place in the result and the others to the
   send buffer (:func:`_one_round`); with several rounds they are copied from the send
   buffer;
3. ``R`` is the smallest number of rounds for which every rank's send and receive
   buffers fit its share of ``memory_budget`` and no message (nor any byte displacement)
   exceeds ``max_message`` bytes. Counts and displacements therefore always fit a C
   ``int``: a rank may send far more than 2**31 bytes to another, in several rounds.

Received rows are ordered by source rank, then by their order on the source: the
exchange is stable, which the sort relies on.

Steady state (a simulation exchanging particles every time step): when freed memory is
not kept for reuse by malloc (:mod:`hpcproc.memory`, on by default), the send (and, with
several rounds, receive) staging buffers are kept per library communicator between
calls (at most :data:`KEEP` bytes each; :func:`release_exchange_buffers` frees them), and
``out=`` receives into the caller's preallocated arrays, so that a repeated exchange
touches no new memory: new memory costs a page fault per page on first touch, which
made an Alltoallv into a fresh buffer about 0.6x as fast as into a warm one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np
from mpi4py import MPI

from .._units import env_size
from ..agreement import collective
from ..array import dtype_key
from ..comm import check_all, fail_together, lib_comm, node_comm
from ..errors import ShapeMismatchError
from ..memory import available, retaining
from ..observe.phases import phase
from . import _kernels as K

__all__ = ["exchange", "exchange_runs", "release_exchange_buffers", "default_memory_budget",
           "dest_dtype", "check_limits", "check_alloc", "MAX_MESSAGE", "KEEP"]

#: Largest message (and byte displacement) of one Alltoallv, in bytes: below 2**31.
MAX_MESSAGE = (1 << 31) - (1 << 20)
#: Smallest staging share per rank, whatever the budget says (one round per column of a
#: few rows would be absurd).
MIN_STAGING = 1 << 16
#: Part of the budget kept for the partition kernels' workspace (keys encoded a chunk at
#: a time) and small per-round arrays; the rest, minus the destination array, is split
#: between the send and the receive buffer.
WORKSPACE = 2 << 20
#: Largest staging buffer kept for the next exchange on the same communicator (bytes;
#: larger ones are freed when the exchange returns).
KEEP = 1 << 30
#: Fewest columns (of nonzero width) for which a one-round exchange scatters the second
#: and later ones by recorded positions (2^24 rows at 2-64 destinations: recording costs
#: the first column's scatter 30 against 21 ms, each later column then takes 12-15 ms
#: instead of 21-26: a gain from the third column on).
POSITION_COLUMNS = 3
_POOL = None  # MPI attribute key: the staging buffers kept on a library communicator
_POOL_LOCK = threading.Lock()  # guards the creation of _POOL and of a communicator's pool


def default_memory_budget(comm=None) -> int:
    """Default extra memory of an exchange per rank, in bytes. Collective.

    ``HPCPROC_MEMORY_BUDGET`` (a size: bytes, or with a suffix as ``64M``, ``4G``)
    overrides it (a ``ValueError`` naming the variable on every rank when it is not a
    positive size on any rank: set on some ranks only, it must not leave the others
    waiting in the exchange); otherwise a quarter of the memory available (the node's, or
    its memory cgroup's when less: Slurm's --mem; :func:`hpcproc.memory.available`)
    divided by the ranks on the node, at least 64 MiB.
    """
    env = check_all(lambda: env_size("HPCPROC_MEMORY_BUDGET"), comm)
    ranks = node_comm(comm).Get_size()  # collective the first time: on every rank
    if env is not None:
        return env
    per_rank = available(unknown=4 << 30) // ranks
    return max(64 << 20, per_rank // 4)


def dest_dtype(size: int) -> np.dtype:
    """Smallest integer type that holds a rank of ``size`` ranks (1 byte up to 256)."""
    return np.dtype(np.uint8 if size <= 256 else np.uint16 if size <= 65536 else np.int32)


def words(col: np.ndarray) -> np.ndarray:
    """A view of a C-contiguous column as one machine word (or a row of words) per row."""
    n = col.shape[0]
    rb = col.dtype.itemsize * int(np.prod(col.shape[1:], dtype=np.int64))
    raw = col.reshape(n, -1).view(np.uint8) if col.size else np.empty((n, rb), np.uint8)
    if rb in (1, 2, 4, 8):
        return raw.view(f"u{rb}").reshape(n)
    if rb % 8 == 0:
        return raw.view(np.uint64)
    return raw


def check_limits(memory_budget, max_message) -> None:
    """Raise ``TypeError``/``ValueError`` naming the argument unless ``memory_budget``
    (bytes, ``None``: the default) is a positive integer and ``max_message`` an integer
    in ``1..MAX_MESSAGE``. Not collective: the shuffles call it before communicating."""
    for name, v in (("memory_budget", memory_budget), ("max_message", max_message)):
        if (v is not None or name == "max_message") and (
                isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))):
            raise TypeError(f"{name} must be an integer (bytes), got {v!r}")
    if memory_budget is not None and memory_budget <= 0:
        raise ValueError(f"memory_budget must be positive (bytes), got {memory_budget}")
    if not 0 < max_message <= MAX_MESSAGE:
        raise ValueError(f"max_message must be in 1..{MAX_MESSAGE} (bytes), got {max_message}")


def _signature(columns) -> list:
    return [(k, dtype_key(v.dtype), v.shape[1:]) for k, v in columns.items()]


def _validate(columns, dest, size, names=()) -> None:
    if len(names) > len(columns):
        same = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"exchange: column names {same} are given twice (keys that are the "
                         f"same as strings, such as 1 and '1'): one would replace the other")
    if dest.dtype.kind not in "iu" or dest.ndim != 1:
        raise TypeError(f"exchange: dest must be a 1-D integer array of ranks, got "
                        f"{dest.ndim}-D {dest.dtype}")
    for k, v in columns.items():
        if v.dtype.hasobject:  # pointers: meaningless on another rank
            raise TypeError(f"exchange: column {k!r} is {v.dtype}: object columns cannot "
                            "move between ranks (convert to a numeric, string or bytes type)")
    lengths = {k: (v.shape[0] if v.ndim else None) for k, v in columns.items()}
    if any(n is None for n in lengths.values()):
        raise ShapeMismatchError("exchange: columns must have at least one dimension")
    if len(set(lengths.values()) | {dest.shape[0]}) > 1:
        detail = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ShapeMismatchError(f"exchange: columns and dest have different lengths: "
                                 f"{detail}, dest={dest.shape[0]}")
    if dest.size and (int(dest.min()) < 0 or int(dest.max()) >= size):
        raise ValueError(f"exchange: dest values must be in [0, {size})")


def _validate_out(out, columns, inputs) -> None:
    """``out`` (checked before any communication): one writable C-contiguous array per
    column, of its dtype and trailing shape, sharing no memory with an input (``inputs``:
    the columns and ``dest`` as passed) nor with another output."""
    if not isinstance(out, Mapping):
        raise TypeError(f"exchange: out must be a mapping of column name to array, got "
                        f"{type(out).__name__}")
    if sorted(map(str, out)) != sorted(columns):
        raise KeyError(f"exchange: out must have exactly the columns {sorted(columns)}, got "
                       f"{sorted(map(str, out))}")
    seen = []
    for k, o in out.items():
        col = columns[str(k)]
        if not isinstance(o, np.ndarray) or o.dtype != col.dtype:
            got = o.dtype if isinstance(o, np.ndarray) else type(o).__name__
            raise TypeError(f"exchange: out[{k!r}] must be a numpy array of the column's "
                            f"dtype {col.dtype}, got {got}")
        if o.ndim != col.ndim or o.shape[1:] != col.shape[1:]:
            need = ("an array of rows is" if o.ndim == 0 else
                    f"rows of shape {col.shape[1:]} are")
            raise ShapeMismatchError(f"exchange: out[{k!r}] has shape {o.shape}; {need} "
                                     "needed")
        if not (o.flags.c_contiguous and o.flags.writeable):
            raise ValueError(f"exchange: out[{k!r}] must be a writable C-contiguous array")
        for name, a in inputs:
            if np.may_share_memory(o, a):
                raise ValueError(f"exchange: out[{k!r}] shares memory with the input "
                                 f"{name}: the output cannot be an input")
        for name, a in seen:
            if np.may_share_memory(o, a):
                raise ValueError(f"exchange: out[{k!r}] shares memory with out[{name!r}]")
        seen.append((k, o))


def _check_room(out, rows: int) -> None:
    for k, o in out.items():
        if o.shape[0] < rows:
            raise ValueError(f"exchange: out[{k!r}] has room for {o.shape[0]} rows, but "
                             f"this rank receives {rows}")


def _staging(lc, which: str, nbytes: int) -> np.ndarray:
    """``nbytes`` of the staging buffer ``which`` kept on ``lc`` (allocated, or grown,
    when too small; kept for the next call up to :data:`KEEP` bytes)."""
    global _POOL
    pool = None if _POOL is None else lc.Get_attr(_POOL)
    if pool is None:
        with _POOL_LOCK:  # threads making the first call at once: one keyval, one pool
            if _POOL is None:
                _POOL = MPI.Comm.Create_keyval()
            pool = lc.Get_attr(_POOL)
            if pool is None:
                pool = {}
                lc.Set_attr(_POOL, pool)
    buf = pool.get(which)
    if buf is None or buf.nbytes < nbytes:
        pool.pop(which, None)  # freed before the larger one is made
        buf = np.empty(nbytes, np.uint8)
        if nbytes <= KEEP and not retaining():  # else malloc keeps it, reusable by all
            pool[which] = buf
    return buf[:nbytes]


def release_exchange_buffers(comm=None) -> None:
    """Free the staging buffers that :func:`exchange` keeps for ``comm`` between calls.

    Not collective (each rank frees its own). They are made again by the next exchange
    that needs them; each is at most :data:`KEEP` bytes and within the exchange's
    ``memory_budget``.
    """
    if _POOL is not None:
        pool = lib_comm(comm).Get_attr(_POOL)
        if pool:
            pool.clear()


def _split(counts: np.ndarray, k: int, rounds: int):
    lo = counts * k // rounds
    return lo, counts * (k + 1) // rounds


def _without(counts: np.ndarray, me: int) -> np.ndarray:
    """``counts`` with this rank's own entry 0: its own rows never go through MPI (a
    copy: MPICH's Alltoallv moved them 2.3-9x slower than memcpy)."""
    out = counts.copy()
    out[me] = 0
    return out


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.shape[0], dtype=np.int64)
    np.cumsum(counts[:-1], out=out[1:])
    return out


@collective("hp.exchange", local=("columns", "dest", "out", "error"))
def exchange(columns, dest, comm=None, *, out=None, memory_budget: int | None = None,
             max_message: int = MAX_MESSAGE, validate: bool = True, error=None):
    """Send row ``i`` of every column to rank ``dest[i]``. Collective.

    Parameters
    ----------
    columns : mapping of str to numpy.ndarray
        Equal-length local columns (same names, dtypes and trailing shapes on every rank).
    dest : numpy.ndarray of int
        Destination rank of every local row.
    comm : mpi4py.MPI.Intracomm, optional
        Communicator (``None``: COMM_WORLD); data moves on its library duplicate.
    out : mapping of str to numpy.ndarray, optional
        Preallocated outputs (as a simulation reuses its arrays every time step): one
        writable C-contiguous array per column, of the column's dtype and trailing shape,
        with at least as many rows as this rank receives, sharing no memory with an input
        or another output. The received rows fill their first rows; the result holds
        views of that filled prefix. Given on every rank or on none. Errors (checked on
        every rank, the capacity once the counts are known) are raised on every rank.
    memory_budget : int, optional
        Extra bytes per rank for everything the shuffle allocates besides its output:
        the destination array (1 byte per row up to 256 ranks), the partitioners'
        workspace (``WORKSPACE``) and the send and receive buffers (default
        :func:`default_memory_budget`). More data moves in more rounds. A budget below
        ``rows + WORKSPACE + 2 * MIN_STAGING`` bytes cannot be met; the exchange then
        uses the minimum buffers.
    max_message : int
        Largest message or byte displacement of one Alltoallv (below 2**31; tests lower
        it to force the multi-round large-count path).
    error : Exception, optional
        Internal callers: an exception this rank raised since its last collective. It is
        agreed in the counts' ``Alltoall`` (no collective of its own) and raised on every
        rank, as is any error of this rank inside the exchange (an allocation failing):
        the lowest failing rank's, of its type when possible, its message naming the rank
        (:func:`hpcproc.comm.fail_together`).

    Returns
    -------
    (dict, dict)
        The received columns (rows ordered by source rank, then source order; views of
        ``out`` when given) and ``{"rounds": R, "sent": rows sent per rank,
        "received": rows received per rank}``.

    The staging buffers stay allocated for the next call (see :func:`release_exchange_buffers`).
    """
    lc = lib_comm(comm)
    size = lc.Get_size()
    given = list(columns.items()) if out is not None else []  # kept only to check out
    names = [str(k) for k in columns]  # 1 and "1" would become one column
    # as given for the checks (np.ascontiguousarray makes a scalar one row)
    columns = {str(k): np.asarray(v) for k, v in columns.items()}
    dest = np.asarray(dest)
    if validate:
        check_all(lambda: _validate(columns, dest, size, names), comm)
        sigs = lc.allgather(_signature(columns))
        check_all(lambda: _check_signatures(sigs), comm)
    if out is not None:
        inputs = [(f"column {k!r}", v) for k, v in given] + [("dest", dest)]
        check_all(lambda: _validate_out(out, columns, inputs), comm)
        out = {str(k): v for k, v in out.items()}
    check_limits(memory_budget, max_message)
    if memory_budget is None:
        memory_budget = default_memory_budget(comm)
    # A rank that fails between two collectives (a copy or an allocation: MemoryError)
    # must not leave the others waiting in the next one: its failure rides on a
    # collective that happens anyway (the counts' Alltoall, the rounds' Allreduce) and
    # every rank raises it together (:func:`hpcproc.comm.fail_together`).
    try:
        if error is not None:
            raise error
        # C-contiguous, as the ahead-of-time kernels take it (a strided view compiled them)
        columns = {k: np.ascontiguousarray(v) for k, v in columns.items()}
        dest = np.ascontiguousarray(dest, dtype=dest_dtype(size))
        half = K.halves(dest.shape[0], size)  # the scatter's two streams
        # counted in two halves always (four counters); the first's counts matter with
        # two streams only
        per_half = K.count_dest(dest, size, dest.shape[0] // 2)
        send = per_half[0] + per_half[1]
        first = per_half[0].copy() if half else np.zeros(size, np.int64)
    except Exception as err:  # noqa: BLE001 - agreed in the counts' Alltoall
        failed, send = err, np.full(size, FAILED, np.int64)
    else:
        failed = None
    recv = _counts(lc, send, failed, "exchange")
    try:
        rowbytes = [v.dtype.itemsize * int(np.prod(v.shape[1:], dtype=np.int64))
                    for v in columns.values()]
        widest = max(rowbytes, default=1)
        staging = max(MIN_STAGING, (int(memory_budget) - dest.nbytes - WORKSPACE) // 2)
        limit = max(min(staging, int(max_message)), widest)
        need = (max(int(send.sum()), int(recv.sum())) + size) * widest
        total = int(recv.sum())
        if out is not None:
            _check_room(out, total)
        mine = max(1, -(-need // limit))
    except Exception as err:  # noqa: BLE001 - agreed in the rounds' Allreduce
        failed, mine = err, 1
    rounds = _agreed_max(lc, mine, failed, "exchange")
    if out is not None:
        out = {k: out[k][:total] for k in columns}
    if rounds == 1:
        out = _one_round(lc, columns, rowbytes, dest, send, recv, half, first, out, staging)
    else:
        try:
            if out is None:
                out = {k: np.empty((total,) + v.shape[1:], v.dtype)
                       for k, v in columns.items()}
            bufs = _round_buffers(lc, send, recv, limit, widest)
        except Exception as err:  # noqa: BLE001 - agreed before the first Alltoallv
            failed = err
        check_alloc(lc, failed, "exchange")
        _rounds(lc, columns, rowbytes, dest, send, recv, rounds, out, bufs)
    return out, {"rounds": int(rounds), "sent": send, "received": recv}


#: Count sent in the counts' ``Alltoall`` by a rank that failed before it.
FAILED = -1


def _counts(lc, send, failed, what: str) -> np.ndarray:
    """The counts' ``Alltoall``, which also agrees a failure before it: a rank that
    failed sends :data:`FAILED` to every rank, so every rank sees it and all raise it
    together. Collective."""
    recv = np.empty(lc.Get_size(), dtype=np.int64)
    lc.Alltoall([send, MPI.INT64_T], [recv, MPI.INT64_T])
    if recv.min(initial=0) < 0:
        fail_together(failed, what, lc)
    return recv


def _agreed_max(lc, value: int, failed, what: str) -> int:
    """The largest ``value`` of all ranks (one ``Allreduce`` of two int64), which also
    agrees a failure: raised together on every rank if any rank's ``failed`` is set.
    Collective."""
    buf = np.array([value, failed is not None], dtype=np.int64)
    lc.Allreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
    if buf[1]:
        fail_together(failed, what, lc)
    return int(buf[0])


def check_alloc(lc, failed, what: str) -> None:
    """Agree on the allocations made since the last collective (one ``Allreduce`` of one
    int64 when no rank failed): the next collective is an ``Alltoallv`` that a failed
    rank cannot take part in. Collective."""
    flag = np.array([failed is not None], dtype=np.int64)
    lc.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
    if flag[0]:
        fail_together(failed, what, lc)


def _one_round(lc, columns, rowbytes, dest, send, recv, half, first, out, staging) -> dict:
    """The exchange in one ``Alltoallv`` per column (everything fits the budget).

    The scatter writes every row once, straight to where it goes from this rank: its
    own rows to their place among the received ones in the result (new, or the caller's
    ``out``), the others grouped by destination into the send staging buffer (kept
    between calls: its pages are mapped already), from which the ``Alltoallv`` sends them
    into the other ranks' results. The only new memory touched is the result itself
    (which an ``Alltoallv`` into a new buffer also faults in): an earlier version wrote
    the rows for other ranks into a tail of the new result, cut off afterwards, which
    faulted in half as much again at 2 ranks and moved 0.53 of a warm ``Alltoallv``
    against 0.78 for this (2^25 rows of 2 words per rank, 2 ranks, fresh 2-core guest).
    With :data:`POSITION_COLUMNS` columns or more, the first column's scatter records
    each row's position (in the receive share of the budget, which one round does not
    use) and the other one-word columns follow them.
    """
    me = lc.Get_rank()
    total, n = int(recv.sum()), dest.shape[0]
    rdispl = _offsets(recv)
    sremote, rremote = _without(send, me), _without(recv, me)
    sdispl = _offsets(sremote)
    away = int(sremote.sum())  # rows this rank sends to others
    # where the rows for each rank start: in the send buffer, own rows in the result
    first_at = sdispl.copy()
    first_at[me] = rdispl[me]
    start = np.stack([first_at, first_at + first])  # the scatter's two streams
    moving = sum(1 for rb in rowbytes if rb)
    use_pos = moving >= POSITION_COLUMNS and 4 * n <= staging and max(total, away) < 2**31
    # every allocation is made, and agreed on, before the first Alltoallv (a rank out of
    # memory would leave the others waiting in it)
    failed = None
    try:
        results = {name: out[name] if out is not None else
                   np.empty((total,) + col.shape[1:], col.dtype)
                   for name, col in columns.items()}
        pos = _staging(lc, "recv", 4 * n).view(np.int32) if use_pos else np.empty(0, np.int32)
        stage = _staging(lc, "send", away * max(rowbytes, default=0))
    except Exception as err:  # noqa: BLE001 - agreed just below
        failed = err
    check_alloc(lc, failed, "exchange")
    found = False
    for (name, col), rb in zip(columns.items(), rowbytes):
        res = results[name]
        if rb == 0:  # zero-width rows: nothing to move
            continue
        src, raw = words(col), res.reshape(-1).view(np.uint8)
        addr = np.full(lc.Get_size(), stage.ctypes.data, np.int64)  # rows for others
        addr[me] = raw.ctypes.data  # own rows: in place among the received ones
        if found and src.ndim == 1:
            K.scatter_pos_to(dest, pos, src, addr)
        else:  # the positions are recorded once, by the first column's scatter
            record = pos[:0] if found else pos
            if src.ndim == 1:
                K.scatter_to(dest, src, start, half, addr, record)
            else:  # one stream: the same places as the two
                K.scatter_wide_to(dest, src, start[0], addr, record)
            found = use_pos
        with phase("exchange", sent=away * rb):
            lc.Alltoallv([stage, (sremote * rb, sdispl * rb), MPI.BYTE],
                         [raw, (rremote * rb, rdispl * rb), MPI.BYTE])
    return results


def _round_buffers(lc, send, recv, limit: int, widest: int):
    """The send and receive staging buffers of :func:`_rounds` (before its first round:
    their allocation is agreed on before any ``Alltoallv``)."""
    most = limit + lc.Get_size() * widest  # the largest round of the widest column
    return (_staging(lc, "send", min(most, int(send.sum()) * widest)),
            _staging(lc, "recv", min(most, int(recv.sum()) * widest)))


def _rounds(lc, columns, rowbytes, dest, send, recv, rounds, out, bufs) -> None:
    """The exchange in ``rounds`` rounds into ``out``: in round ``k``, the rows bound
    for each rank numbered ``[k*c//R, (k+1)*c//R)`` are scattered into the send staging
    buffer, this rank's own copied into ``out``, the others moved by one ``Alltoallv``
    into the receive staging buffer and from there into ``out``."""
    size, me = lc.Get_size(), lc.Get_rank()
    rdisp_out = _offsets(recv)
    send_buf, recv_buf = bufs
    for k in range(rounds):
        slo, shi = _split(send, k, rounds)
        rlo, rhi = _split(recv, k, rounds)
        scount, rcount = shi - slo, rhi - rlo
        sdispl, rdispl = _offsets(scount), _offsets(rcount)
        own, at = int(scount[me]), int(rdisp_out[me] + rlo[me])  # this rank's own rows
        sremote, rremote = _without(scount, me), _without(rcount, me)
        for (name, col), rb in zip(columns.items(), rowbytes):
            if rb == 0:
                continue
            src = words(col)
            target = send_buf[: int(scount.sum()) * rb].view(src.dtype)
            target = target.reshape((-1,) + src.shape[1:])
            K.scatter_round(dest, src, slo, shi, sdispl, target)
            words(out[name])[at:at + own] = target[sdispl[me]:sdispl[me] + own]
            rbuf = recv_buf[: int(rcount.sum()) * rb]
            with phase("exchange", sent=int(sremote.sum()) * rb):
                lc.Alltoallv([target.reshape(-1).view(np.uint8),
                              (sremote * rb, sdispl * rb), MPI.BYTE],
                             [rbuf, (rremote * rb, rdispl * rb), MPI.BYTE])
            dst = out[name].reshape(-1).view(np.uint8).reshape(-1, rb)
            flat = rbuf.reshape(-1, rb)
            for s in range(size):
                if rremote[s]:
                    a = rdisp_out[s] + rlo[s]
                    dst[a:a + rcount[s]] = flat[rdispl[s]:rdispl[s] + rcount[s]]


def exchange_runs(columns, counts, comm=None, *, memory_budget: int | None = None,
                  max_message: int = MAX_MESSAGE, consume: bool = False, error=None):
    """:func:`exchange` of rows already grouped by destination. Collective.

    The first ``counts[0]`` rows of every column go to rank 0, the next ``counts[1]`` to
    rank 1, and so on (sorted rows cut by splitters). No destination array, no scatter
    pass, no staging buffers: when every column's send and receive side fits one
    message, this rank's own rows are copied and one ``Alltoallv`` per column moves the
    others straight from the column into the output (memory speed). Otherwise (more
    than ``max_message`` bytes) this is :func:`exchange` with the destination array
    spelled out (bounded rounds). Not validated: internal callers pass agreed,
    equal-length columns. Returns what :func:`exchange` returns.

    With ``consume=True`` (a ``dict`` of C-contiguous columns that the caller no longer
    needs) each column is removed from ``columns`` once it has moved (on the one-message
    path; several rounds leave ``columns`` as it is), so that its memory
    is freed before the next column's output is made: the peak is the input plus one
    column, not input plus output.

    ``error`` (an exception this rank raised since its last collective) and any failure
    of this rank inside (an allocation) are raised on every rank together, as in
    :func:`exchange`.
    """
    check_limits(memory_budget, max_message)
    lc = lib_comm(comm)
    size = lc.Get_size()
    given = columns if consume else {}
    try:  # a local failure (the caller's ``error``, a copy) rides on the counts' Alltoall
        if error is not None:
            raise error
        columns = {str(k): np.ascontiguousarray(v) for k, v in columns.items()}
        send = np.ascontiguousarray(counts, dtype=np.int64)
    except Exception as err:  # noqa: BLE001 - agreed in the counts' Alltoall
        failed, send = err, np.full(size, FAILED, np.int64)
    else:
        failed = None
    recv = _counts(lc, send, failed, "exchange")
    rowbytes = [v.dtype.itemsize * int(np.prod(v.shape[1:], dtype=np.int64))
                for v in columns.values()]
    widest = max(rowbytes, default=1)
    fits = max(int(send.sum()), int(recv.sum())) * widest <= int(max_message)
    if _agreed_max(lc, not fits, None, "exchange"):  # some rank needs rounds
        try:
            dest = np.repeat(np.arange(size, dtype=dest_dtype(size)), send)
        except Exception as err:  # noqa: BLE001 - agreed in the exchange's counts
            failed, dest = err, np.zeros(0, dest_dtype(size))
        return exchange(columns, dest, comm, memory_budget=memory_budget,
                        max_message=max_message, validate=False, error=failed)
    sdispl, rdispl = _offsets(send), _offsets(recv)
    me = lc.Get_rank()
    own, sremote, rremote = int(send[me]), _without(send, me), _without(recv, me)
    out, failed = {}, None
    for name, rb in zip(list(columns), rowbytes):
        col = columns.pop(name)
        given.pop(name, None)
        try:
            out[name] = dst = np.empty((int(recv.sum()),) + col.shape[1:], col.dtype)
        except Exception as err:  # noqa: BLE001 - agreed before this column's Alltoallv
            failed = err
        if rb == 0:
            continue
        check_alloc(lc, failed, "exchange")  # a rank out of memory: no Alltoallv
        words(dst)[rdispl[me]:rdispl[me] + own] = words(col)[sdispl[me]:sdispl[me] + own]
        sb = col.reshape(-1).view(np.uint8) if col.size else np.empty(0, np.uint8)
        rbv = dst.reshape(-1).view(np.uint8) if dst.size else np.empty(0, np.uint8)
        with phase("exchange", sent=int(sremote.sum()) * rb):
            lc.Alltoallv([sb, (sremote * rb, sdispl * rb), MPI.BYTE],
                         [rbv, (rremote * rb, rdispl * rb), MPI.BYTE])
        del col, sb  # consumed: this column's memory goes before the next output is made
    return out, {"rounds": 1, "sent": send, "received": recv}


def _check_signatures(sigs) -> None:
    if any(s != sigs[0] for s in sigs):
        raise TypeError(f"exchange: ranks passed columns with different names, dtypes or "
                        f"shapes: {sigs}")
