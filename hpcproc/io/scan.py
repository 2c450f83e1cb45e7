"""A reduction's read of a whole dataset: this rank's rows in cache-sized pieces.

:func:`hpcproc.blocks` yields blocks of ``block_bytes`` (64 MiB by default) and agrees
on errors after every block, so that the loop body may itself communicate. A reduction
that only folds each block into a local state (``hp.stats``, ``hp.describe``) needs
neither, and pays for both: a 64 MiB block has left the CPU cache by the time the
kernels visit it, and every agreement is a collective that waits for the slowest rank.

:func:`scan_pieces` reads a direct-readable dataset (contiguous, unfiltered, no CF
decoding; ``method`` "auto" or "direct") in pieces of at most :data:`PIECE` bytes into
one reused buffer (:class:`~hpcproc.io.direct.RowScan`) and hands on each piece while it
is in the cache; its crc32 for the lineage record is computed on a helper thread
(meanwhile, when the rank has a core to spare: :func:`spare_core`). It communicates only
before the first piece (the read plan, the node's rank count) and after the last (a
barrier that sleeps while it waits, read errors, the lineage record). Any other
dataset is read with :func:`hpcproc.blocks` (``reuse=True``) as before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np

from .. import _faults
from ..comm import check_all, get_comm, lib_comm, node_comm
from ..observe import progress
from . import cf, direct, ingest
from .plan import ReadPlan
from .read import blocks

__all__ = ["scan_pieces", "spare_core", "PIECE"]

#: Bytes per piece: the native reference reads 8 MiB pieces too (measured: smaller
#: pieces cost more Python per byte than they save; larger ones leave the cache).
PIECE = 8 << 20


def scan_pieces(path: str, dataset: str, comm=None, block_bytes: int = 64 << 20,
                method: str = "auto", mask_and_scale: bool = True, threads: int = 1
                ) -> Iterator[tuple[int, np.ndarray]]:
    """This rank's share of ``path:dataset`` as ``(file row, local array)`` pieces.

    Collective at the start and at the end only: ranks may get different numbers of
    pieces, so the loop body must not communicate, and every rank must run the loop to
    its end. Pieces hold at most ``min(block_bytes, PIECE)`` bytes (at least one row)
    and are views of one reused buffer, valid until the next step. The rows are those of
    :func:`hpcproc.blocks` (the same decomposition and values); a failed read stops this
    rank's pieces and is raised on every rank after the last piece. A complete scan is
    recorded as an input of the lineage, with its checksum. ``threads``: the threads the
    loop body runs on (the checksum overlaps it only if the rank has a core beyond them).
    """
    comm = get_comm(comm)
    if int(block_bytes) < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    plan = ReadPlan.make(path, dataset, comm, None, method, mask_and_scale=mask_and_scale)
    info = plan.info
    if plan.how != "direct" or cf.decoder(info, mask_and_scale) is not None:
        for b in blocks(path, dataset, block_bytes, comm, method=method, reuse=True,
                        mask_and_scale=mask_and_scale):
            yield b.origin, b.local
        return
    lo, hi = plan.ranges[comm.Get_rank()]
    crc = ingest.BlockChecksum(info, plan.start, plan.stop)
    inline = ingest.inline_crc32() if crc.active else None
    rows = max(1, min(int(block_bytes), PIECE) // max(1, info.row_bytes))
    overlap = spare_core(comm, threads)  # collective (the first time for comm)
    scan = direct.RowScan(info, lo, hi, rows, inline, overlap=overlap)
    bar = progress.scan(f"{path}:{info.name}", (hi - lo) * info.row_bytes,
                        (plan.stop - plan.start) * info.row_bytes)
    error, rank = None, comm.Get_rank()
    try:
        for row, piece in scan:
            _faults.check("scan.read", rank)  # tests: a failed read on chosen ranks
            if crc.active and inline is None:
                crc.update(piece)  # a big-endian machine: checksummed here
            bar.update(piece.nbytes)
            yield row, piece
    except Exception as exc:  # noqa: BLE001 - a read error: raised on every rank below
        error = _named(exc, path, info.name)
    bar.close()
    _idle_wait(comm)
    check_all(lambda: _raise(error), comm)
    if inline is not None:
        crc.crc, crc.nbytes = scan.crc, (hi - lo) * info.row_bytes
    crc.finish(info, plan.start, plan.stop, comm)


def spare_core(comm, threads: int = 1) -> bool:
    """True when this rank has a core beyond its ``threads``: its CPU affinity, or its
    share of the node's cores (``os.cpu_count()`` over the ranks on the node), whichever
    is smaller. Collective the first time for ``comm`` (:func:`~hpcproc.comm.node_comm`)."""
    ranks = node_comm(comm).Get_size()
    total = os.cpu_count() or 1
    try:
        mine = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call on this system
        mine = total
    return min(mine, total // max(1, ranks)) > max(1, int(threads))


def _idle_wait(comm, spin: float = 1e-3, poll: float = 2e-4) -> None:
    """Wait until every rank has read its last piece, sleeping between polls after the
    first millisecond: a rank that finishes early must not spin (MPI's blocking
    collectives busy-wait) on a CPU that the ranks still reading may need."""
    req = lib_comm(comm).Ibarrier()
    t0 = time.perf_counter()
    while not req.Test():
        if time.perf_counter() - t0 > spin:
            time.sleep(poll)


def _named(exc: Exception, path: str, name: str) -> Exception:
    """An OSError from ``pread`` (e.g. a file truncated while it is read) with the file
    and dataset it was reading: every rank raises it, and the message names no file."""
    if not isinstance(exc, OSError) or str(path) in str(exc):
        return exc
    named = OSError(f"reading {path}:{name}: {exc}")
    named.errno = exc.errno
    return named


def _raise(error) -> None:
    if error is not None:
        raise error
