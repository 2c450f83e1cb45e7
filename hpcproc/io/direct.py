"""Direct byte-range IO of contiguous, unfiltered datasets (no HDF5 library in the loop).

A contiguous dataset is one run of bytes at a known file offset, so rank r's rows are
the byte range ``offset + start*row_bytes .. offset + stop*row_bytes``: each rank
``pread``s (or ``pwrite``s) exactly that range. This is the fastest path there is; the
benchmark in ``benchmarks/io.py`` compares it with raw reads of the same bytes.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..observe.phases import phase
from ._meta import DatasetInfo

__all__ = ["read_rows", "write_rows", "pread_into", "pwrite_from", "RowScan"]

# Linux transfers at most 0x7ffff000 bytes per read()/write(); loop in pieces below that.
_MAX_IO = 1 << 30
#: Bytes read (and checksummed) at a time when the read also computes a checksum: small
#: enough to stay in the CPU cache between the read and the checksum.
PIECE = 256 << 10
_LOCK = threading.Lock()


def pread_into(fd: int, buf: memoryview, offset: int) -> None:
    """Fill ``buf`` from ``fd`` at ``offset`` (looping over short reads)."""
    done, total = 0, len(buf)
    while done < total:
        n = os.preadv(fd, [buf[done:done + _MAX_IO]], offset + done)
        if n == 0:
            raise OSError(f"unexpected end of file at byte {offset + done} "
                          f"(expected {total - done} more bytes): the file is truncated")
        done += n


def pwrite_from(fd: int, buf: memoryview, offset: int) -> None:
    """Write all of ``buf`` to ``fd`` at ``offset`` (looping over short writes)."""
    done, total = 0, len(buf)
    while done < total:
        done += os.pwritev(fd, [buf[done:done + _MAX_IO]], offset + done)


def read_rows(info: DatasetInfo, start: int, stop: int, out: np.ndarray | None = None,
              crc32=None, crc: int = 0):
    """Rows ``[start, stop)`` of a direct-readable dataset, in native byte order.

    Reads into ``out`` (C-contiguous, native dtype, the block's shape) when given.
    With ``crc32`` (a ``zlib.crc32``-compatible function; little-endian machines only)
    it returns ``(out, crc)``: the crc32 of the values as little-endian bytes (continuing
    the running ``crc``), computed piece by piece right after each piece is read, while
    it is still in the CPU cache (a separate pass over the block afterwards would read
    all of it from memory again).
    """
    if out is None:
        out = np.empty((stop - start,) + info.shape[1:], dtype=info.native_dtype)
    raw = out.view(info.np_dtype)  # the same bytes, in the file's byte order
    swap = not info.np_dtype.isnative
    if out.nbytes:
        base = info.offset + start * info.row_bytes
        fd = os.open(info.path, os.O_RDONLY)
        try:
            if crc32 is None:
                pread_into(fd, memoryview(raw.reshape(-1).view(np.uint8)), base)
                if swap:
                    raw.byteswap(inplace=True)  # now native values in `out`
            else:
                values = raw.reshape(-1)
                per = max(1, PIECE // values.itemsize)
                for i in range(0, values.size, per):
                    piece = values[i:i + per]
                    pread_into(fd, memoryview(piece.view(np.uint8)), base + i * values.itemsize)
                    if swap:
                        piece.byteswap(inplace=True)
                    crc = crc32(piece.view(np.uint8), crc)
        finally:
            os.close(fd)
    return out if crc32 is None else (out, crc & 0xFFFFFFFF)


_CRC_POOL: list = []


def _crc_thread() -> ThreadPoolExecutor:
    """The helper thread that checksums the pieces of a :class:`RowScan`."""
    with _LOCK:
        if not _CRC_POOL:
            _CRC_POOL.append(ThreadPoolExecutor(1, thread_name_prefix="hpcproc-crc"))
        return _CRC_POOL[0]


class RowScan:
    """Rows ``[lo, hi)`` of a direct-readable dataset, piece by piece. Local.

    Iterating yields ``(first row, piece)``: at most ``piece_rows`` rows in native byte
    order, ``pread`` into one reused buffer (a view of it: valid until the next step).
    A consumer that works on each piece as it comes finds it in the CPU cache, where a
    whole large block would have left the cache before the work started.

    With ``crc32`` (as in :func:`read_rows`) the running crc32 of the values, continuing
    ``crc``, is computed on a helper thread while the consumer works on the piece (the
    next read waits for it); :attr:`crc` holds it after the last step. The helper
    thread also keeps the checksum's vector code out of the consumer's thread: ISA-L's
    crc32 leaves the thread's vector registers in a state that made the SSE-encoded
    kernels called afterwards 2-3x slower on an AVX-512 machine (measured).
    ``overlap=False``: the consumer gets each piece once its checksum is done (the helper
    thread computes it while this thread waits), for a rank without a core to spare: a
    helper thread that competes with the ranks for their cores cost more CPU time than it
    saved (2 ranks on 2 cores: 12% more, measured).
    """

    def __init__(self, info: DatasetInfo, lo: int, hi: int, piece_rows: int, crc32=None,
                 crc: int = 0, overlap: bool = True):
        if piece_rows < 1:
            raise ValueError(f"piece_rows must be >= 1, got {piece_rows}")
        self.info, self.lo, self.hi, self.step = info, int(lo), int(hi), int(piece_rows)
        self.crc32, self.crc, self.overlap = crc32, crc, bool(overlap)

    def __iter__(self):
        info = self.info
        n = min(self.step, self.hi - self.lo)
        if n <= 0:
            return
        out = np.empty((n,) + tuple(info.shape[1:]), dtype=info.native_dtype)
        raw = out.view(info.np_dtype)  # the same bytes, in the file's byte order
        swap = not info.np_dtype.isnative
        pending = None
        fd = os.open(info.path, os.O_RDONLY)
        try:
            for a in range(self.lo, self.hi, self.step):
                b = min(self.hi, a + self.step)
                if pending is not None:  # the buffer is reused: its checksum first
                    self.crc, pending = pending.result(), None
                part = raw[:b - a]
                with phase("read", read=part.nbytes):
                    pread_into(fd, memoryview(part.reshape(-1).view(np.uint8)),
                               info.offset + a * info.row_bytes)
                    if swap:
                        part.byteswap(inplace=True)  # now native values in `out`
                if self.crc32 is not None:
                    pending = _crc_thread().submit(self.crc32, part.reshape(-1).view(np.uint8),
                                                   self.crc)
                    if not self.overlap:
                        self.crc, pending = pending.result(), None
                yield a, out[:b - a]
            if pending is not None:
                self.crc, pending = pending.result(), None
        finally:
            if pending is not None:  # stopped early: no checksum, but never a stray read
                pending.result()
            os.close(fd)
        self.crc &= 0xFFFFFFFF


def write_rows(path: str, offset: int, row_bytes: int, start: int, local: np.ndarray,
               fsync: bool = True) -> None:
    """Write ``local`` as rows from ``start`` on into the preallocated contiguous dataset
    whose raw data begins at byte ``offset`` of ``path``."""
    local = np.ascontiguousarray(local)
    if local.nbytes == 0:
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        pwrite_from(fd, memoryview(local.reshape(-1).view(np.uint8)), offset + start * row_bytes)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
