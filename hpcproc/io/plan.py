"""The plan of a collective read: dataset metadata, selected rows, strategy, every rank's rows.

One :class:`ReadPlan` is made per call by :func:`~hpcproc.io.read.read`,
:func:`~hpcproc.io.read.blocks` and :func:`hpcproc.quality.validate.validate_dataset`
(metadata read once, on rank 0); :meth:`ReadPlan.read` reads a rank's rows by the plan's
strategy, checksumming the stored values for the lineage record and decoding CF attributes.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from ..comm import agreed, check_all, lib_comm
from ..errors import ShapeMismatchError
from ..observe.phases import phase
from ..partition import aligned_ranges, block_range, tiling_problem
from . import cf, chunked, direct, ingest, lineage, mpio
from ._meta import DatasetInfo, dataset_info

__all__ = ["ReadPlan", "METHODS", "LAYOUTS", "strategy", "row_selection", "check_layout",
           "decoded_dtype"]

METHODS = ("auto", "direct", "chunked", "h5py", "mpio")
#: ``"auto"``: chunk-aligned blocks for chunked datasets (no chunk read twice), balanced
#: (:func:`~hpcproc.partition.block_range`) otherwise; ``"balanced"``: always balanced.
LAYOUTS = ("auto", "balanced")


def strategy(info: DatasetInfo, method: str = "auto") -> str:
    """The read strategy (``direct``, ``chunked``, ``h5py`` or ``mpio``) that ``method``
    resolves to for a dataset (what :func:`read` and :func:`blocks` will use). Local."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        if info.direct_readable:
            return "direct"
        return "chunked" if info.layout == "chunked" else "h5py"
    if method == "direct" and not info.direct_readable:
        raise ValueError(f"method='direct' needs a contiguous, unfiltered, allocated dataset "
                         f"of a plain number type; {info.name!r} is {info.layout} with "
                         f"filters {list(info.filters)}"
                         + ("" if info.plain_type else " and a converted HDF5 number type"))
    if method == "chunked" and info.layout != "chunked":
        raise ValueError(f"method='chunked' needs a chunked dataset; {info.name!r} is "
                         f"{info.layout}")
    if method == "mpio":
        mpio.require()
    return method


def row_selection(rows, n: int, name: str) -> tuple[int, int]:
    """Normalise ``rows`` (None, slice or (start, stop)) to ``[start, stop)`` within ``n``."""
    if rows is None:
        return 0, n
    if isinstance(rows, tuple) and len(rows) == 2:
        rows = slice(*rows)
    if not isinstance(rows, slice):
        raise TypeError(f"rows must be a slice or (start, stop), not {type(rows).__name__}")
    if rows.step not in (None, 1):
        raise ValueError(f"rows: only contiguous slices are supported (step {rows.step})")
    start = 0 if rows.start is None else int(rows.start)
    stop = n if rows.stop is None else int(rows.stop)
    start, stop = (start + n if start < 0 else start), (stop + n if stop < 0 else stop)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rows {rows.start}:{rows.stop} out of range for dataset {name!r} "
                         f"with {n} rows")
    return start, stop


def _ranges(info: DatasetInfo, how: str, start: int, stop: int, size: int,
            layout: str = "auto"):
    if how == "chunked" and layout == "auto":
        return aligned_ranges(start, stop, info.chunks[0], size)
    return [tuple(start + b for b in block_range(stop - start, size, r)) for r in range(size)]


def check_layout(layout, local_rows) -> None:
    """Local checks of ``layout`` and ``local_rows`` (before any communication)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if local_rows is not None and layout != "auto":
        raise ValueError("give either local_rows= (this rank's own rows) or layout=, not both")


def _local_rows(local_rows, n: int) -> tuple[int, int]:
    """This rank's ``local_rows=(start, stop)``, checked against the ``n`` rows selected."""
    try:
        a, b = (operator.index(v) for v in local_rows)
    except (TypeError, ValueError):
        raise TypeError(f"local_rows must be a pair of ints (start, stop), got "
                        f"{local_rows!r}") from None
    if not 0 <= a <= b <= n:
        raise ValueError(f"local_rows ({a}, {b}) out of range for the {n} rows selected")
    return a, b


def _rank_ranges(info, how, start, stop, comm, layout, local_rows, out=None, dtype=None,
                 what="hp.read"):
    """Every rank's rows ``[lo, hi)`` of the selection ``[start, stop)``. Collective.

    ``local_rows`` (per rank, relative to the selection) are checked on every rank and
    must tile the selection (one allgather); otherwise the decomposition is ``layout``'s.
    ``out`` is checked to have the shape of this rank's block and ``dtype`` (default: the
    dataset's native dtype).
    """
    dtype = info.native_dtype if dtype is None else dtype
    size, rank = comm.Get_size(), comm.Get_rank()

    def local():
        if local_rows is None:
            ranges = _ranges(info, how, start, stop, size, layout)
            lo, hi = ranges[rank]
        else:
            ranges = None
            lo, hi = (start + v for v in _local_rows(local_rows, stop - start))
        try:
            _check_out(out, (hi - lo,) + info.shape[1:], dtype)
        except ValueError as exc:
            balanced = tuple(start + b for b in block_range(stop - start, size, rank))
            if local_rows is None and (lo, hi) != balanced:
                raise ValueError(f"{exc}: a chunk-aligned block; pass layout='balanced' or "
                                 "local_rows= to choose the blocks") from None
            raise
        return ranges, (lo, hi)

    ranges, mine = check_all(local, comm)
    if ranges is None:
        bounds = lib_comm(comm).allgather((mine[0] - start, mine[1] - mine[0]))
        problem = tiling_problem(bounds, stop - start)
        if problem:
            raise agreed(ShapeMismatchError(
                f"{what}: local_rows must tile the {stop - start} rows selected from "
                f"{info.name!r} (contiguous blocks in rank order): {problem}"))
        ranges = [(start + o, start + o + n) for o, n in bounds]
    return ranges


def _read_checksummed(info: DatasetInfo, how: str, lo: int, hi: int, comm, out=None,
                      crc: int = 0, checksum: bool = True, mask_and_scale: bool = True,
                      raw=None):
    """Rows ``[lo, hi)`` by strategy ``how``: ``(block, crc32 or None)``. Collective: a
    failure on any rank is raised on every rank.

    The direct path checksums while it reads (one pass, continuing the running ``crc``);
    the others leave the checksum (None) to the caller
    (:func:`hpcproc.io.ingest.after_read`, :class:`hpcproc.io.ingest.BlockChecksum`). With CF
    attributes (and ``mask_and_scale``) the stored values (read into ``raw`` when given)
    are checksummed here and decoded into ``out``.
    """
    dec = cf.decoder(info, mask_and_scale)

    def local():
        with phase("read", read=(hi - lo) * info.row_bytes):
            if dec is None:
                return _read_stored(info, how, lo, hi, comm, out, crc, checksum)
            block, c = _read_stored(info, how, lo, hi, comm, raw, crc, checksum)
            if c is None and checksum and lineage.enabled():
                c = lineage.block_crc32(block, crc)  # the values as stored
            return dec(block, out), c
    return check_all(local, comm)


def _read_stored(info: DatasetInfo, how: str, lo: int, hi: int, comm, out, crc, checksum):
    crc32 = ingest.inline_crc32() if how == "direct" and checksum else None
    if crc32 is not None:
        return direct.read_rows(info, lo, hi, out, crc32=crc32, crc=crc)
    if how == "direct":
        return direct.read_rows(info, lo, hi, out), None
    if how == "mpio":
        return mpio.read_rows(info, lo, hi, comm, out), None
    return chunked.read_rows(info, lo, hi, out), None


def decoded_dtype(info: DatasetInfo, mask_and_scale: bool) -> np.dtype:
    dec = cf.decoder(info, mask_and_scale)
    return info.native_dtype if dec is None else dec.dtype


def _check_out(out, shape, dtype) -> None:
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, not {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous \
            or not out.flags.writeable:
        raise ValueError(f"out must be a writeable C-contiguous {dtype} array of shape {shape} "
                         f"(this rank's block); got {out.dtype} {out.shape}")


@dataclass(frozen=True)
class ReadPlan:
    """A collective read of rows ``[start, stop)`` of one dataset: strategy ``how`` and
    every rank's rows ``ranges[rank] = (lo, hi)`` (file rows). Made by :meth:`make`."""

    info: DatasetInfo
    start: int
    stop: int
    how: str
    ranges: list
    layout: str
    local_rows: object
    mask_and_scale: bool

    @classmethod
    def make(cls, path, dataset, comm, rows=None, method="auto", *, layout="auto",
             local_rows=None, mask_and_scale=True, out=None, what="hp.read") -> "ReadPlan":
        """Collective. Metadata (rank 0, broadcast), row selection, strategy and the
        decomposition (``local_rows`` checked to tile: one allgather; ``out`` checked to
        fit this rank's block). Every argument error is raised on every rank."""
        check_layout(layout, local_rows)
        info = dataset_info(path, dataset, comm)
        start, stop = row_selection(rows, info.rows, info.name)
        how = strategy(info, method)
        ranges = _rank_ranges(info, how, start, stop, comm, layout, local_rows, out,
                              decoded_dtype(info, mask_and_scale), what)
        return cls(info, start, stop, how, ranges, layout, local_rows, mask_and_scale)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the blocks read (decoded when CF attributes apply)."""
        return decoded_dtype(self.info, self.mask_and_scale)

    @property
    def aligned(self) -> bool:
        """True when the blocks follow the chunk boundaries (chunked, ``layout="auto"``)."""
        return self.how == "chunked" and self.layout == "auto" and self.local_rows is None

    def read(self, lo: int, hi: int, comm, out=None, crc: int = 0, checksum: bool = True,
             raw=None):
        """Collective. Rows ``[lo, hi)``: ``(block, crc32 or None)`` (see
        :func:`_read_checksummed`)."""
        return _read_checksummed(self.info, self.how, lo, hi, comm, out, crc, checksum,
                                 self.mask_and_scale, raw)
