"""Where a reduction's data comes from: a DistArray, a file dataset, or hp.blocks(...).

Reductions accept any of
* a :class:`DistArray` (this rank's block, in memory),
* ``"file.h5:/dset"`` or ``("file.h5", "/dset")``: streamed with :func:`hpcproc.blocks`
  (memory bounded by ``block_bytes`` per rank; several passes possible),
* an iterator returned by :func:`hpcproc.blocks` (one pass, bounded memory).

A file input is CF-decoded (``mask_and_scale``, :mod:`hpcproc.io.cf`); when its variable
declares missing values, ``Source.skipna`` is True: reductions leave out the missing
values (masked, or NaN), as xarray does by default.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from .array import DistArray
from .comm import get_comm
from .io import blocks, dataset_info, split_target
from .errors import DtypeError
from .io._meta import check_numeric
from .io.cf import decoder

__all__ = ["Source", "open_source"]


class Source:
    """Local blocks of a distributed input, with its dtype and trailing shape."""

    def __init__(self, comm, dtype, trailing, make_iter, passes: bool, nbytes=None,
                 skipna: bool = False):
        self.comm = comm
        self.skipna = skipna  # a CF-masked file input: NaNs are missing values
        self.dtype = np.dtype(dtype) if dtype is not None else None
        self.trailing = tuple(trailing)
        self._make_iter = make_iter
        self.multipass = passes
        self.nbytes = nbytes
        self._used = False

    def blocks(self) -> Iterator[np.ndarray]:
        """This rank's blocks (numpy arrays); every rank yields the same number."""
        if self._used and not self.multipass:
            raise ValueError("this input is a one-pass iterator (hp.blocks(...)); pass the "
                             "file and dataset instead for a reduction that needs several passes")
        self._used = True
        return self._make_iter()


def _check_real(dtype, what):
    check_numeric(dtype, what)
    if np.dtype(dtype).kind == "c":
        raise DtypeError(f"{what} is complex ({np.dtype(dtype)}); hpcproc's reductions need "
                         "real numbers (reduce .real and .imag separately)")


def open_source(x, comm=None, block_bytes: int = 64 << 20, method: str = "auto",
                mask_and_scale: bool = True) -> Source:
    """Wrap ``x`` as a :class:`Source`. Collective for file inputs (metadata broadcast).

    Raises ``DtypeError`` (on every rank) for non-numeric or complex data.
    """
    if isinstance(x, DistArray):
        _check_real(x.dtype, "the array")
        return Source(x.comm, x.dtype, x.global_shape[1:], lambda: iter([x.local]), True)
    if isinstance(x, str) or (isinstance(x, tuple) and len(x) == 2
                              and all(isinstance(p, str) for p in x)):
        path, name = split_target(x) if isinstance(x, str) else x
        comm = get_comm(comm)
        info = dataset_info(path, name, comm)
        _check_real(info.np_dtype, f"dataset {name!r}")
        dec = decoder(info, mask_and_scale)

        def make():
            return (b.local for b in blocks(path, name, block_bytes=block_bytes, comm=comm,
                                            method=method, reuse=True,
                                            mask_and_scale=mask_and_scale))
        return Source(comm, info.native_dtype if dec is None else dec.dtype, info.shape[1:],
                      make, True, nbytes=info.rows * info.row_bytes,
                      skipna=dec is not None and dec.masks)
    if isinstance(x, Iterator):
        first = next(x, None)
        if first is None:  # no blocks at all (an empty dataset)
            return Source(get_comm(comm), None, (), lambda: iter(()), False)
        if not isinstance(first, DistArray):
            raise TypeError(f"expected an iterator of DistArray blocks (hp.blocks), got "
                            f"{type(first).__name__}")
        _check_real(first.dtype, "the blocks")
        rest = (b.local for b in x)
        return Source(first.comm, first.dtype, first.global_shape[1:],
                      lambda: itertools.chain([first.local], rest), False)
    raise TypeError("expected a DistArray, 'file.h5:/dataset', (file, dataset) or an "
                    f"hp.blocks(...) iterator, got {type(x).__name__}")
