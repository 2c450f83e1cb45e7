"""Move rows between ranks so that each rank ends up with a given global row range.

The building block of re-blocking (chunk-aligned writes, ``rebalance``): rank r holds
rows ``[offset, offset + n)`` of a row-ordered array and must end up with rows
``[targets[r][0], targets[r][1])``. The send ranges are intersections of intervals; the
data moves in one ``Alltoallv`` of raw bytes over the library communicator.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from .comm import lib_comm
from .observe.phases import add_bytes, traced

__all__ = ["redistribute_rows"]


@traced("exchange")
def redistribute_rows(local: np.ndarray, offset: int, targets, comm=None) -> np.ndarray:
    """Return the rows ``targets[rank]`` of the row-distributed array whose block here is
    ``local`` (starting at global row ``offset``). Collective.

    ``targets`` is a list of ``(start, stop)`` per rank, identical on every rank, that
    tiles the global rows in rank order.
    """
    comm = lib_comm(comm)
    rank, size = comm.Get_rank(), comm.Get_size()
    local = np.ascontiguousarray(local)
    row_bytes = local.dtype.itemsize * int(np.prod(local.shape[1:], dtype=np.int64))
    lo, hi = offset, offset + local.shape[0]
    starts = np.array([t[0] for t in targets], dtype=np.int64)
    stops = np.array([t[1] for t in targets], dtype=np.int64)
    send_lo = np.clip(starts, lo, hi)
    send_hi = np.clip(stops, lo, hi)
    send_rows = np.maximum(send_hi - send_lo, 0)
    send_displ = (send_lo - lo) * row_bytes
    recv_rows = np.empty(size, dtype=np.int64)
    comm.Alltoall([send_rows, MPI.INT64_T], [recv_rows, MPI.INT64_T])
    out = np.empty((int(stops[rank] - starts[rank]),) + local.shape[1:], dtype=local.dtype)
    if int(recv_rows.sum()) != out.shape[0]:
        raise ValueError("redistribute_rows: targets do not tile the global rows")
    add_bytes(sent=int(send_rows.sum() - send_rows[rank]) * row_bytes)
    recv_displ = np.concatenate(([0], np.cumsum(recv_rows)[:-1])) * row_bytes
    comm.Alltoallv(
        [local.reshape(-1).view(np.uint8), (send_rows * row_bytes, send_displ), MPI.BYTE],
        [out.reshape(-1).view(np.uint8), (recv_rows * row_bytes, recv_displ), MPI.BYTE])
    return out
