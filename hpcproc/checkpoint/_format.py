"""On-disk format of a checkpoint: names, file checksums and the manifest.

A checkpoint directory holds one sub-directory per committed step::

    DIR/
      step-000000000042/
        manifest.json        format version, step, rank count, entries, file checksums
        rank-00000.h5        rank 0's rows of every distributed entry, its local arrays
        rank-00001.h5        ...
      latest                 "step-000000000042\\n", replaced atomically
      .tmp-step-...          a save in progress (removed at the next start)
      .trash-...             a step being deleted by retention (removed at the next start)
      .old-step-...          a step being replaced by a new save of the same number

Every data file is plain HDF5 and its checksum is XXH3-128 of the whole file, the same
value ``xxh128sum`` prints. The manifest is JSON and carries a checksum of its own
canonical body, so a flipped byte in it is detected too. A step directory without a valid
manifest does not exist.

Dataset names (format version 2): an entry ``T`` of the state is the contiguous dataset
``/T`` (a DistTable: the group ``/T`` with one dataset per column), so ``h5py``,
``h5dump`` and ``hpcproc stats step-N/rank-00000.h5:/T`` read a rank's rows directly.
Names are escaped deterministically (:func:`escape_name`: every byte outside
``[A-Za-z0-9_-]`` becomes ``%XX``, the empty name ``%``), and the manifest records
each entry's dataset. Every dataset carries ``hpcproc_entry`` (the state name),
``hpcproc_kind`` and, for distributed entries, ``hpcproc_offset`` (the global index of
its first row) and ``hpcproc_global_shape``. Version 1 (``/e<i>``, ``/e<i>/c<j>``) is
still read.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

__all__ = ["FORMAT", "VERSION", "VERSIONS", "escape_name", "dataset_name", "column_dataset",
           "MANIFEST", "LATEST", "TMP_PREFIX", "TRASH_PREFIX", "OLD_PREFIX",
           "step_dirname", "parse_step_dirname", "rank_filename", "hash_regions",
           "hash_file", "hash_bytes", "read_and_hash", "dump_manifest", "ManifestError",
           "fsync_dir", "write_file_atomic", "open_regular"]

FORMAT = "hpcproc-checkpoint"
VERSION = 2
VERSIONS = (1, 2)  #: versions this hpcproc restores
CHECKSUM = "xxh3_128"
MANIFEST = "manifest.json"
LATEST = "latest"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
OLD_PREFIX = ".old-"
_STEP_RE = re.compile(r"^step-(\d{12})$")
_PIECE = 64 << 20  # bytes hashed or read per call when streaming a file


class ManifestError(ValueError):
    """A manifest that is missing, unreadable, or inconsistent (the step is invalid)."""


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def escape_name(name: str) -> str:
    """A state name as one plain HDF5 link name: bytes outside ``[A-Za-z0-9_-]`` (of
    its UTF-8 form) become ``%XX``; ``""`` becomes ``%``. Injective and deterministic."""
    if name == "":
        return "%"
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}"
                   for b in name.encode("utf-8"))


def dataset_name(entry: str) -> str:
    """The dataset (or group, for a table) of state entry ``entry`` in a rank file."""
    return "/" + escape_name(entry)


def column_dataset(entry: str, column: str) -> str:
    """The dataset of column ``column`` of the table entry ``entry``."""
    return f"{dataset_name(entry)}/{escape_name(column)}"


def step_dirname(step: int) -> str:
    return f"step-{int(step):012d}"


def parse_step_dirname(name: str) -> int | None:
    m = _STEP_RE.match(name)
    return int(m.group(1)) if m else None


def rank_filename(rank: int) -> str:
    return f"rank-{int(rank):05d}.h5"


def _hasher():
    try:
        import xxhash  # imported lazily: `import hpcproc` stays cheap
    except ImportError:
        raise ImportError("hpcproc checkpoints need the 'xxhash' package "
                          "(pip install xxhash)") from None
    return xxhash.xxh3_128()


def hash_bytes(buf) -> str:
    """XXH3-128 of a bytes-like object, as 32 hex digits."""
    h = _hasher()
    h.update(buf)
    return h.hexdigest()


def hash_regions(fd: int, size: int, regions) -> str:
    """XXH3-128 of a file of ``size`` bytes whose byte ranges ``regions`` (a list of
    ``(offset, bytes-like)``) are known from memory; only the gaps are read from ``fd``.

    Equals :func:`hash_file` of the same file, without reading back the data just written.
    """
    from ..io.direct import pread_into

    h, pos = _hasher(), 0
    for offset, buf in sorted(regions, key=lambda r: r[0]):
        if offset > pos:
            gap = bytearray(offset - pos)
            pread_into(fd, memoryview(gap), pos)
            h.update(gap)
        mv = memoryview(buf).cast("B")
        for i in range(0, len(mv), _PIECE):
            h.update(mv[i:i + _PIECE])
        pos = offset + len(mv)
    if size > pos:
        gap = bytearray(size - pos)
        pread_into(fd, memoryview(gap), pos)
        h.update(gap)
    return h.hexdigest()


def read_and_hash(fd: int, buf: np.ndarray) -> str:
    """Fill ``buf`` (uint8) from the start of ``fd`` and return its XXH3-128; the hash of
    each piece runs in a helper thread while the next piece is read."""
    from concurrent.futures import ThreadPoolExecutor

    from ..io.direct import pread_into

    h, mv, pending = _hasher(), memoryview(buf), None
    with ThreadPoolExecutor(max_workers=1) as pool:
        for off in range(0, len(mv), _PIECE):
            piece = mv[off:off + _PIECE]
            pread_into(fd, piece, off)
            if pending is not None:
                pending.result()
            pending = pool.submit(h.update, piece)
        if pending is not None:
            pending.result()
    return h.hexdigest()


def hash_file(path: str) -> tuple[int, str]:
    """``(size, XXH3-128 hex digest)`` of a whole file, read in pieces."""
    h = _hasher()
    buf = np.empty(_PIECE, dtype=np.uint8)
    size = 0
    with open_regular(path) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(memoryview(buf)[:n])
            size += n
    return size, h.hexdigest()


def canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def dump_manifest(body: dict) -> bytes:
    """The manifest file's bytes: ``body`` plus a checksum of its canonical JSON."""
    doc = dict(body, manifest_checksum=hash_bytes(canonical(body)))
    return (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def open_regular(path: str, flags: int = os.O_RDONLY):
    """Open ``path`` for reading without following a symbolic link; refuse anything but
    a regular file (a FIFO or device would block or never end). Returns a binary file."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        import stat
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{os.path.basename(path)} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def fsync_dir(path: str) -> None:
    """fsync a directory, so that entries created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync, rename, fsync the dir."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
