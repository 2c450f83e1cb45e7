"""Where a reduction's data comes from: a DistArray, a file dataset, or hp.blocks(...).

Reductions accept any of
* a :class:`DistArray` (this rank's block, in memory),
* ``"file.h5:/dset"`` or ``("file.h5", "/dset")``: streamed with :func:`hpcproc.blocks`
  (memory bounded by ``block_bytes`` per rank; several passes possible), or, for a
  reduction that folds pieces into a local state, in cache-sized pieces
  (:meth:`Source.located_pieces`, :func:`hpcproc.io.scan.scan_pieces`),
* an iterator returned by :func:`hpcproc.blocks` (one pass, bounded memory).

A file input is CF-decoded (``mask_and_scale``, :mod:`hpcproc.io.cf`); when its variable
declares missing values, ``Source.skipna`` is True: reductions leave out the missing
values (masked, or NaN), as xarray does by default.

This is the one place where blocks are converted to the dtype the kernels run on
(native byte order, float16 as float32: :mod:`hpcproc.kernels._dtypes`), so every
reduction sees the same values whatever the input's byte order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from ..array import DistArray
from ..comm import agreed, get_comm
from ..errors import DtypeError
from ..io import blocks, dataset_info, split_target
from ..io.cf import decoder
from ..io.scan import PIECE, scan_pieces
from ..kernels._dtypes import kernel_dtype, real_kernel_dtype, to_kernel

__all__ = ["Source", "open_source", "check_real"]


class Source:
    """Local blocks of a distributed input, with its dtype and trailing shape.

    ``dtype`` is the input's dtype in native byte order (numpy's results follow it);
    ``kernel_dtype`` the dtype of the blocks that :meth:`blocks` yields.
    """

    def __init__(self, comm, dtype, trailing, make_iter, passes: bool, nbytes=None,
                 skipna: bool = False, located: bool = False, make_pieces=None):
        self.comm = comm
        self.skipna = skipna  # a CF-masked file input: NaNs are missing values
        self.dtype = np.dtype(dtype).newbyteorder("=") if dtype is not None else None
        self.kernel_dtype = kernel_dtype(dtype) if dtype is not None else None
        self.trailing = tuple(trailing)
        self._make_iter = make_iter  # blocks, or (global row, block) pairs if located
        self._located = located
        self._make_pieces = make_pieces  # (row, piece) pairs of a file input, or None
        self.multipass = passes
        self.nbytes = nbytes
        self._used = False

    def blocks(self) -> Iterator[np.ndarray]:
        """This rank's blocks (numpy arrays); every rank yields the same number."""
        it = self._iter()
        return (b for _, b in it) if self._located else it

    def located_blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(global row of the block's first row, block)`` pairs of :meth:`blocks` (the
        row in the DistArray, or in the file for file inputs and ``hp.blocks``)."""
        if not self._located:
            raise TypeError("this source does not know the global rows of its blocks")
        return self._iter()

    def located_pieces(self, min_rows: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """``(global row, piece)`` pairs, like :meth:`located_blocks`, but a file input
        comes in cache-sized pieces (:func:`hpcproc.io.scan.scan_pieces`) when a piece
        holds at least ``min_rows`` rows (wider rows come in blocks: a fold whose state
        is per column pays per piece for every column).

        For a reduction that folds each piece into a local state: the number of pieces
        may differ between ranks (none on an empty rank), so the loop body must not
        communicate, and every rank must run the loop to its end (a read error is raised
        on every rank after the last piece). Other inputs: :meth:`located_blocks`.
        """
        row_bytes = self.dtype.itemsize * int(np.prod(self.trailing, dtype=np.int64)) \
            if self.dtype is not None else 0
        if self._make_pieces is None or row_bytes * int(min_rows) > PIECE:
            return self.located_blocks()
        self._check_pass()
        kdt = self.kernel_dtype
        return ((row, to_kernel(b, kdt)) for row, b in self._make_pieces())

    def _check_pass(self):
        if self._used and not self.multipass:
            raise ValueError("this input is a one-pass iterator (hp.blocks(...)); pass the "
                             "file and dataset instead for a reduction that needs several passes")
        self._used = True

    def _iter(self):
        self._check_pass()
        kdt = self.kernel_dtype
        if self._located:
            return ((row, to_kernel(b, kdt)) for row, b in self._make_iter())
        return (to_kernel(b, kdt) for b in self._make_iter())


def check_real(dtype, what):
    """Raise ``DtypeError`` (naming ``what``) unless reductions can run on ``dtype``:
    complex, non-numeric and long double wider than float64 are refused.

    Call it only with a dtype every rank shares (a DistArray's, or broadcast metadata):
    the error is then raised on every rank alike (agreed: no abort needed).
    """
    try:
        real_kernel_dtype(dtype, what)
    except DtypeError as exc:
        raise agreed(exc) from None


def open_source(x, comm=None, block_bytes: int = 64 << 20, method: str = "auto",
                mask_and_scale: bool = True) -> Source:
    """Wrap ``x`` as a :class:`Source`. Collective for file inputs (metadata broadcast).

    Raises ``DtypeError`` (on every rank) for non-numeric or complex data.
    """
    if isinstance(x, DistArray):
        check_real(x.dtype, "the array")
        return Source(x.comm, x.dtype, x.global_shape[1:], lambda: iter([(x.offset, x.local)]),
                      True, located=True)
    if isinstance(x, str) or (isinstance(x, tuple) and len(x) == 2
                              and all(isinstance(p, str) for p in x)):
        path, name = split_target(x) if isinstance(x, str) else x
        comm = get_comm(comm)
        info = dataset_info(path, name, comm)
        check_real(info.np_dtype, f"dataset {name!r}")
        dec = decoder(info, mask_and_scale)

        def make():
            return ((b.origin, b.local) for b in blocks(
                path, name, block_bytes=block_bytes, comm=comm, method=method, reuse=True,
                mask_and_scale=mask_and_scale))
        def pieces():
            from ..kernels import get_threads  # the checksum thread needs a spare core
            return scan_pieces(path, name, comm, block_bytes, method, mask_and_scale,
                               threads=get_threads())
        return Source(comm, info.native_dtype if dec is None else dec.dtype, info.shape[1:],
                      make, True, nbytes=info.rows * info.row_bytes,
                      skipna=dec is not None and dec.masks, located=True, make_pieces=pieces)
    if isinstance(x, Iterator):
        first = next(x, None)
        if first is None:  # no blocks at all (an empty dataset)
            return Source(get_comm(comm), None, (), lambda: iter(()), False, located=True)
        if not isinstance(first, DistArray):
            raise TypeError(f"expected an iterator of DistArray blocks (hp.blocks), got "
                            f"{type(first).__name__}")
        check_real(first.dtype, "the blocks")
        rest = ((b.origin, b.local) for b in x)
        return Source(first.comm, first.dtype, first.global_shape[1:],
                      lambda: itertools.chain([(first.origin, first.local)], rest), False,
                      located=True)
    raise TypeError("expected a DistArray, 'file.h5:/dataset', (file, dataset) or an "
                    f"hp.blocks(...) iterator, got {type(x).__name__}")
