"""Resumable ``stats`` of a dataset: ``hpcproc stats FILE:DSET --checkpoint DIR``.

The dataset is scanned in rounds of ``round_rows`` global rows (fixed when the scan
starts and stored in the checkpoint, so a resumed scan, on any rank count, processes
exactly the rows not yet counted); in each round every rank reads its part of the
round's rows, and the round's merged moments are added to the running total, which is
the same on every rank. The checkpoint holds the total (numpy scalars, exact bytes), the
next round and the scan's identity (file, dataset, rows, round size): killed in the
middle, the same command resumes after the last committed round.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .. import progress
from ..collectives import allreduce_state
from ..comm import get_comm, lib_comm
from ..io import dataset_info, read
from ..trace import phase
from ..kernels.moments import Moments, merge_moments, moments_of
from ._core import Checkpointer

__all__ = ["stats_file_resumable"]

_FIELDS = ("sum", "mean", "m2", "min", "max")


def _to_state(ident: dict, next_round: int, m: Moments) -> dict:
    state = {"scan": ident, "next_round": next_round, "count": int(m.count)}
    state.update({f: np.float64(getattr(m, f)) for f in _FIELDS})
    return state


def _from_state(state: dict) -> Moments:
    return Moments(state["count"], *(float(state[f]) for f in _FIELDS))


def stats_file_resumable(path: str, dataset: str, directory, comm=None,
                         block_bytes: int = 64 << 20, method: str = "auto", ddof: int = 0,
                         every_seconds: float | None = 60.0, keep: int = 2) -> dict:
    """Like :func:`hpcproc.stats_file`, resuming from and saving to checkpoints in
    ``directory``. Collective.

    ``every_seconds=None`` saves after every round. A checkpoint of a different scan
    (another file, dataset or size) in ``directory`` raises ``ValueError``. The result
    has ``resumed_from`` (rows already counted at start) and ``rounds``.
    """
    comm = get_comm(comm)
    info = dataset_info(path, dataset, comm)
    t0 = time.perf_counter()
    t_read = t_comp = 0.0
    with Checkpointer(directory, comm, keep=keep, every_seconds=every_seconds,
                      every_steps=None if every_seconds else 1) as ck:
        got = ck.restore()
        round_rows = max(1, block_bytes // max(1, info.row_bytes)) * comm.Get_size()
        ident = {"file": os.path.abspath(os.fspath(path)), "dataset": info.name,
                 "rows": info.rows, "round_rows": round_rows}
        if got is None:
            start, total = 0, Moments()
        else:
            saved = got[1]["scan"]
            if {k: saved[k] for k in ("file", "dataset", "rows")} != \
                    {k: ident[k] for k in ("file", "dataset", "rows")}:
                raise ValueError(f"{directory} holds a checkpoint of another scan "
                                 f"({saved['file']}:{saved['dataset']}, {saved['rows']} rows)")
            ident["round_rows"] = round_rows = saved["round_rows"]
            start, total = got[0], _from_state(got[1])
        rounds = -(-info.rows // round_rows)
        resumed_rows = min(info.rows, start * round_rows)
        bar = progress.scan(f"{path}:{info.name}", rounds - start,  # counts rounds done
                            (info.rows - resumed_rows) * info.row_bytes)
        for k in ck.steps(start, rounds, lambda: _to_state(ident, k + 1, total)):
            t1 = time.perf_counter()
            x = read(path, dataset, comm, rows=(k * round_rows,
                                                min(info.rows, (k + 1) * round_rows)),
                     method=method)
            t2 = time.perf_counter()
            with phase("compute"):
                mine = moments_of(x.local)
            total = merge_moments(total, allreduce_state(mine, merge_moments, comm))
            t_read += t2 - t1
            t_comp += time.perf_counter() - t2
            bar.update(1)
        bar.close()
    result = total.as_dict(ddof)
    result["bytes"] = int(info.rows * info.row_bytes)
    result["resumed_from"] = int(resumed_rows)
    result["rounds"] = int(rounds)
    slowest = np.max(lib_comm(comm).allgather((t_read, t_comp)), axis=0).tolist()
    result["timings"] = {"read": slowest[0], "compute": slowest[1],
                         "total": time.perf_counter() - t0}
    return result
