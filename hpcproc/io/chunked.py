"""Chunked (and compressed) datasets: each rank reads or writes whole chunks.

Reading: the row decomposition is aligned to the chunk length along axis 0
(:func:`hpcproc.partition.aligned_ranges`), so every chunk is decompressed by exactly one
rank; each rank reads its rows through (serial) h5py.

Writing: rows are first re-blocked so that every rank holds whole chunks, then every
rank applies the filter pipeline to its own chunks *in parallel* (the shuffle filter
and gzip/deflate, byte-identical to HDF5's own filters), and the compressed chunks are
stored with ``write_direct_chunk``. Only that final store is serialised (a token passes
from rank to rank, because a serial HDF5 file has one writer at a time); it moves
compressed bytes and costs little next to the compression, which is where the time goes.
"""

from __future__ import annotations

import itertools
import zlib

import h5py
import numpy as np

from ..comm import lib_comm
from ._meta import DatasetInfo, get_dataset, open_file

__all__ = ["read_rows", "encode_chunks", "store_chunks", "SUPPORTED_COMPRESSION"]

SUPPORTED_COMPRESSION = (None, "gzip")


def read_rows(info: DatasetInfo, start: int, stop: int,
              out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``[start, stop)`` read through h5py, in native byte order (into ``out``)."""
    if out is None:
        out = np.empty((stop - start,) + info.shape[1:], dtype=info.native_dtype)
    if stop <= start or out.size == 0:
        return out
    with open_file(info.path) as f:
        dset = get_dataset(f, info.name, info.path)
        try:
            dset.read_direct(out, source_sel=np.s_[start:stop])
        except (OSError, RuntimeError, ValueError) as exc:  # e.g. a corrupt chunk
            raise OSError(f"cannot read rows {start}:{stop} of {info.name!r} in {info.path}: "
                          f"{exc}") from None
    return out


def _shuffle(raw: bytes | np.ndarray, itemsize: int) -> bytes:
    """HDF5's shuffle filter: byte k of every element, for k = 0 .. itemsize-1."""
    if itemsize == 1:
        return bytes(raw)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, itemsize).T.tobytes()


def encode_chunks(local: np.ndarray, first_row: int, chunks: tuple, shape: tuple,
                  compression: str | None, level: int, shuffle: bool):
    """Yield ``(chunk_offset, encoded_bytes)`` for every chunk of the rows ``local``.

    ``local`` holds global rows ``[first_row, first_row + len(local))`` and starts on a
    chunk boundary. Edge chunks are padded with zeros to the full chunk shape, as HDF5
    stores them.
    """
    itemsize = local.dtype.itemsize
    grid = [range(0, n, c) for n, c in zip(shape[1:], chunks[1:])]
    for r0 in range(0, local.shape[0], chunks[0]):
        rows = local[r0:r0 + chunks[0]]
        for rest in itertools.product(*grid):
            sel = (slice(None),) + tuple(slice(o, o + c) for o, c in zip(rest, chunks[1:]))
            block = rows[sel]
            if block.shape != tuple(chunks):
                padded = np.zeros(chunks, dtype=local.dtype)
                padded[tuple(slice(0, n) for n in block.shape)] = block
                block = padded
            raw = np.ascontiguousarray(block).tobytes()
            if shuffle:
                raw = _shuffle(raw, itemsize)
            if compression == "gzip":
                raw = zlib.compress(raw, level)
            yield (first_row + r0,) + tuple(rest), raw


def store_chunks(path: str, name: str, encoded, comm=None) -> BaseException | None:
    """Store this rank's encoded chunks, one rank after another. Collective.

    Returns the local exception (or ``None``) instead of raising, so the token always
    goes round and the caller can agree on the outcome with every rank.
    """
    comm = lib_comm(comm)
    rank, size = comm.Get_rank(), comm.Get_size()
    if rank > 0:
        comm.recv(source=rank - 1, tag=71)
    error = None
    try:
        if encoded:
            with h5py.File(path, "r+") as f:
                dset = get_dataset(f, name, path)
                for offset, raw in encoded:
                    dset.id.write_direct_chunk(offset, raw, filter_mask=0)
    except Exception as exc:  # noqa: BLE001 - reported by the caller on every rank
        error = exc
    if rank + 1 < size:
        comm.send(None, dest=rank + 1, tag=71)
    return error
