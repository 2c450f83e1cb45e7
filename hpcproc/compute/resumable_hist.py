"""Resumable ``hist`` of a dataset: ``hpcproc hist FILE:DSET --checkpoint DIR``.

Same round scheme as :mod:`._stats`: the bin edges (from ``--range`` or one min/max pass)
and the round size are fixed when the scan starts and stored in the checkpoint with the
running counts (JSON ints, exact, the same on every rank) and the next round. Killed, the
same command (on any rank count) resumes after the last committed round; the counts are
identical to an uninterrupted run's and to ``np.histogram``'s (integer adds commute).
"""

from __future__ import annotations

import numpy as np

from ..checkpoint._core import Checkpointer
from ..checkpoint._identity import check_identity, dataset_identity
from ..comm import agreed, get_comm
from ..io import dataset_info, read

__all__ = ["histogram_file_resumable"]


def _edges(path, dataset, bins, range, comm, block_bytes, method, mask_and_scale):
    from ._source import open_source
    from .histogram import auto_range

    src = open_source((path, dataset), comm, block_bytes, method, mask_and_scale)
    dtype = src.dtype  # the values' type after CF decoding, as hp.histogram uses
    if range is None:
        range = auto_range(src, dtype)
    return np.histogram_bin_edges(np.empty(0, dtype), bins, range=range)


def histogram_file_resumable(path: str, dataset: str, bins: int, directory, range=None,
                             comm=None, block_bytes: int = 64 << 20, method: str = "auto",
                             every_seconds: float | None = 60.0, keep: int = 2, *,
                             mask_and_scale: bool = True):
    """Like :func:`hpcproc.histogram` of ``(path, dataset)``, resuming from and saving to
    checkpoints in ``directory``. Collective. Returns ``(counts, edges, info)`` with
    ``info = {"resumed_from": rows already counted at start, "rounds": n}``.

    A checkpoint of another command, input (file, dataset, shape, dtype, size,
    modification time), bins or range raises ``ValueError`` (on every rank) naming what
    differs. The rank count may change between runs (integer counts add exactly).
    """
    from .histogram import check_range, histogram

    comm = get_comm(comm)
    info = dataset_info(path, dataset, comm)
    range = check_range(range)
    with Checkpointer(directory, comm, keep=keep, every_seconds=every_seconds,
                      every_steps=None if every_seconds else 1) as ck:
        got = ck.restore()
        ident = {"command": "hist", "input": dataset_identity(info),
                 "options": {"bins": int(bins),
                             "range": None if range is None else [float(v) for v in range],
                             "mask_and_scale": bool(mask_and_scale)}}
        if got is None:
            round_rows = max(1, block_bytes // max(1, info.row_bytes)) * comm.Get_size()
            edges = _edges(path, dataset, bins, range, comm, block_bytes, method,
                           mask_and_scale)
            start, counts = 0, np.zeros(edges.size - 1, np.int64)
        else:
            saved = got[1].get("scan")
            check_identity(directory, {k: v for k, v in saved.items() if k != "round_rows"}
                           if isinstance(saved, dict) else saved, ident)
            try:
                round_rows = int(saved["round_rows"])
                edges = np.asarray(got[1]["edges"], np.float64)
                start, counts = got[0], np.asarray(got[1]["counts"], np.int64)
            except (KeyError, TypeError, ValueError) as exc:
                raise agreed(ValueError(f"{directory}: checkpoint step {got[0]} is not a "
                                         f"hist scan state ({exc})")) from None
            if round_rows < 1 or counts.shape != (edges.size - 1,) or edges.size != bins + 1:
                raise agreed(ValueError(f"{directory}: checkpoint step {got[0]} holds an "
                                         f"inconsistent hist state"))
        ident["round_rows"] = round_rows
        rounds = -(-info.rows // round_rows)

        def state():
            return {"scan": ident, "edges": [float(e) for e in edges],
                    "counts": [int(c) for c in counts]}

        for k in ck.steps(start, rounds, state):
            x = read(path, dataset, comm, rows=(k * round_rows,
                                                min(info.rows, (k + 1) * round_rows)),
                     method=method, mask_and_scale=mask_and_scale)
            counts = counts + histogram(x, edges, comm=comm)[0]
    return counts, edges, {"resumed_from": int(min(info.rows, start * round_rows)),
                           "rounds": int(rounds)}
