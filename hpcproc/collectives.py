"""Reductions of mergeable partial states across ranks."""

from __future__ import annotations

from functools import reduce

from .agreement import collective
from .comm import lib_comm
from .observe.phases import traced

__all__ = ["allreduce_state", "reduce_state", "scan"]


#: Tag of the tree reductions' point-to-point messages on the library communicator.
_TAG = 4207


def _tree_merge(lc, state, merge):
    """Merge every rank's state along a binomial tree towards rank 0, in rank order;
    the result on rank 0, None elsewhere.

    At level k a rank that is a multiple of 2^(k+1) holds the merge of ranks
    ``[r, r + 2^k)`` and merges in the partner's ``[r + 2^k, r + 2^(k+1))`` on its right,
    so the result is the rank-order merge, associated in a fixed way (bit-identical from
    run to run for a given rank count), after ceil(log2 P) merges and messages on the
    longest path instead of P - 1 merges on every rank.
    """
    size, rank = lc.Get_size(), lc.Get_rank()
    step = 1
    while step < size:
        if rank % (2 * step):
            lc.send(state, dest=rank - step, tag=_TAG)
            return None
        if rank + step < size:
            state = merge(state, lc.recv(source=rank + step, tag=_TAG))
        step *= 2
    return state


@traced("wait")
def allreduce_state(state, merge, comm=None):
    """Merge every rank's ``state`` with ``merge(a, b)``; the result on every rank.

    Collective. States are merged in rank order along a binomial tree (``merge`` need not
    be commutative; ceil(log2 P) merges on the longest path) and the result is broadcast,
    so it is bit-identical on every rank. Rank order makes ``merge(a, b)`` see ``a`` from
    lower ranks than ``b``; the grouping of the merges depends on the rank count.
    """
    lc = lib_comm(comm)
    return lc.bcast(_tree_merge(lc, state, merge), root=0)


@traced("wait")
def reduce_state(state, merge, comm=None, root: int = 0):
    """Like :func:`allreduce_state`, but the result only on ``root`` (None elsewhere)."""
    lc = lib_comm(comm)
    if root == 0:
        return _tree_merge(lc, state, merge)
    states = lc.gather(state, root=root)  # keep rank order for any other root
    return None if states is None else reduce(merge, states)


@traced("wait")
@collective("hp.scan", local=("value",))
def scan(value, comm=None, exclusive: bool = True):
    """Prefix sum across ranks: rank r gets the sum of ranks ``0..r-1`` (``exclusive``).

    Collective. ``value`` is a number or a numpy array with the same shape and dtype on
    every rank (``ValueError``/``TypeError`` on every rank otherwise). Rank 0 gets zeros
    in the exclusive form. With ``exclusive=False`` rank r gets the sum of ranks
    ``0..r``. Typical use: global row offsets (``hp.scan(len(local))``).
    """
    import numpy as np
    from mpi4py import MPI

    from .comm import check_all

    lib = lib_comm(comm)
    scalar = np.ndim(value) == 0
    arr = np.array(value, ndmin=1, copy=True)
    info = lib.allgather((arr.shape, arr.dtype.str, type(value).__name__))

    def check():
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"scan needs numbers, got dtype {arr.dtype}")
        if len({i[0] for i in info}) > 1:
            raise ValueError(f"scan: shapes differ across ranks: {sorted({i[0] for i in info})}")
        if len({i[1] for i in info}) > 1:
            raise TypeError(f"scan: dtypes differ across ranks: {sorted({i[1] for i in info})}")
    check_all(check, comm)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    out = np.zeros_like(arr)
    if exclusive:
        lib.Exscan(arr, out, op=MPI.SUM)
        if lib.Get_rank() == 0:
            out[...] = 0
    else:
        lib.Scan(arr, out, op=MPI.SUM)
    if scalar:
        return out[0].item() if isinstance(value, (int, float, complex)) else out[0]
    return out
