"""Resumable ``stats`` of a dataset: ``hpcproc stats FILE:DSET --checkpoint DIR``.

The scan is plain ``stats``' scan (:func:`hpcproc.compute.stats.stats_file`): the same blocks of
``hp.blocks``, the same Numba kernel per block and the same merges, with each rank's
running state saved between blocks. The checkpoint holds every rank's state (one row per
rank of two DistArrays: the reproducible moment state packed as bytes, and the exact
integer sum/min/max), the
number of blocks done and the scan's identity (see :mod:`._identity`). Killed and run
again with the same arguments on the same number of ranks, it continues after the last
committed block, and prints exactly what an uninterrupted plain ``stats`` prints (bit
for bit). Another rank count, block size, read method or a changed input is an error
naming what differs.
"""

from __future__ import annotations

import time

import numpy as np

from ..array import DistArray
from ..checkpoint._core import Checkpointer
from ..checkpoint._identity import check_identity, dataset_identity
from ..comm import agreed, get_comm, lib_comm
from ..io import blocks, dataset_info
from ..observe.phases import phase

__all__ = ["stats_file_resumable"]

#: The saved moment state's format: an older checkpoint (no such key, or another
#: value) is refused with a message naming it.
_STATE = "reproducible-1"


def _saved_states(state, istate, nbytes, comm) -> dict:
    """This rank's running state as one row of two DistArrays (rank order)."""
    from ..kernels.repro_state import pack
    size, rank = comm.Get_size(), comm.Get_rank()
    ints = np.zeros((1, 4), np.int64)
    ints[0, 0] = nbytes
    if istate is not None:
        ints[0, 1:] = istate.reshape(-1)
    f = pack(state).reshape(1, -1)
    return {"moments": DistArray(f, (size, f.shape[1]), rank, comm),
            "ints": DistArray(ints, (size, 4), rank, comm)}


def stats_file_resumable(path: str, dataset: str, directory, comm=None,
                         block_bytes: int = 64 << 20, method: str = "auto", ddof: int = 0,
                         every_seconds: float | None = 60.0, keep: int = 2, *,
                         mask_and_scale: bool = True) -> dict:
    """Like :func:`hpcproc.stats_file`, resuming from and saving to checkpoints in
    ``directory``. Collective.

    ``every_seconds=None`` saves after every block. A checkpoint of another command,
    input, block size, method or rank count in ``directory`` raises ``ValueError`` (on
    every rank) naming what differs. The result also has ``resumed_from`` (rows counted
    before this run started) and ``rounds`` (blocks per rank: the steps of the scan).
    """
    from ..kernels._engine import compile_seconds
    from ..kernels.moment_state import empty_int_state, empty_state
    from ..kernels.repro_state import unpack
    from ._source import open_source
    from .stats import finish, fold_block

    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise ValueError(f"ddof must be a non-negative integer, got {ddof!r}")
    comm = get_comm(comm)
    t0, c0 = time.perf_counter(), compile_seconds()
    src = open_source((path, dataset), comm, block_bytes, method,  # validates the dtype
                      mask_and_scale)
    info = dataset_info(path, dataset, comm)
    ints = src.dtype is not None and src.dtype.kind in "iub"
    ident = {"command": "stats", "input": dataset_identity(info), "ranks": comm.Get_size(),
             "options": {"block_bytes": int(block_bytes), "method": method,
                         "mask_and_scale": bool(mask_and_scale)},
             "state": _STATE}
    state, istate, nbytes = empty_state(1), (empty_int_state(1) if ints else None), 0
    t_read = t_comp = 0.0
    with Checkpointer(directory, comm, keep=keep, every_seconds=every_seconds,
                      every_steps=None if every_seconds else 1) as ck:
        got = ck.restore()
        start = 0
        if got is not None:
            check_identity(directory, got[1].get("scan"), ident)
            try:
                start = int(got[0])
                state = unpack(np.asarray(got[1]["moments"].local))
                row = np.asarray(got[1]["ints"].local, np.int64).reshape(-1)
            except (KeyError, AttributeError, ValueError) as exc:
                raise agreed(ValueError(f"{directory}: checkpoint step {got[0]} is not a "
                                         f"stats scan state ({exc})")) from None
            nbytes = int(row[0])
            if ints:
                istate = row[1:].reshape(istate.shape).copy()
        resumed_bytes = nbytes
        done = start
        it = blocks(path, dataset, block_bytes=block_bytes, comm=comm, method=method,
                    reuse=True, mask_and_scale=mask_and_scale, first=start)
        while True:
            t1 = time.perf_counter()
            x = next(it, None)
            t2 = time.perf_counter()
            t_read += t2 - t1
            if x is None:
                break
            block = x.local
            nbytes += block.nbytes
            with phase("compute"):
                state, istate = fold_block(state, istate, block, None, 1, ints, comm,
                                           row=x.origin)
            block = x = None  # the buffer is reused by the next read
            t_comp += time.perf_counter() - t2
            done += 1
            ck.boundary(done, lambda: {"scan": ident, **_saved_states(state, istate, nbytes,
                                                                      comm)})
        ck.boundary(done, lambda: {"scan": ident, **_saved_states(state, istate, nbytes, comm)},
                    last=True)
    result, total = finish(state, istate, (nbytes, t_read, t_comp, time.perf_counter() - t0),
                           (), None, ddof, src.skipna, comm)
    compiled = compile_seconds() - c0
    resumed = lib_comm(comm).allreduce(resumed_bytes)
    result["bytes"] = int(info.rows * info.row_bytes)
    result["resumed_from"] = int(resumed // max(1, info.row_bytes))
    result["rounds"] = int(done)  # blocks per rank, the steps of the scan
    result["timings"] = {"read": total[3], "compute": max(0.0, total[4] - compiled),
                         "compile": compiled, "total": max(total[5], time.perf_counter() - t0)}
    return result
