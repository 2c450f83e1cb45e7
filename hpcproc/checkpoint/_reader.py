"""Finding, verifying and loading the newest valid checkpoint step.

Every rank scans the directory and proposes its newest step whose manifest is valid and
whose files exist with the right sizes; the ranks take the minimum (a step only one rank
can see is not used). The files of that step are then checksummed (each file by one
rank); if any file is corrupt the step is reported and the next older one tried.

Distributed entries are read by global row, so the restoring run may have any number of
ranks: with the saved rank count every rank reads its own file (one read, verified in
memory) and gets back exactly the rows it saved; with another count every rank gets a
balanced block (:func:`hpcproc.block_range`) read from the overlapping files.
"""

from __future__ import annotations

import os
import stat

import numpy as np

from ..array import DistArray
from ..io.direct import pread_into
from ..partition import block_range
from ..table import DistTable
from ._dirs import committed_steps
from ._errors import RankCountError
from ._format import (
    MANIFEST,
    ManifestError,
    hash_file,
    open_regular,
    rank_filename,
    read_and_hash,
    step_dirname,
)
from ._rng import rng_from_bytes
from ._schema import load_manifest

__all__ = ["newest_manifest", "assigned_files", "check_files", "check_layouts", "verify",
           "check_rank_count", "load_state"]


def assigned_files(manifest: dict, rank: int, size: int) -> list[str]:
    """The files that ``rank`` of ``size`` checks (and checksums) at a restore: its own
    file when the rank count is unchanged, else every ``size``-th file. Each file is
    looked at by exactly one rank, so a restore costs O(P) file-system metadata
    operations in all, not O(P^2)."""
    if manifest["ranks"] == size:
        return [rank_filename(rank)]
    return sorted(manifest["files"])[rank::size]


def check_files(stepdir: str, manifest: dict, names=None) -> None:
    """Cheap structural checks: the files ``names`` (default: all) present with the
    recorded size."""
    if len(manifest["files"]) != manifest["ranks"]:
        raise ManifestError("manifest lists the wrong number of files")
    for name in manifest["files"] if names is None else names:
        meta = manifest["files"].get(name)
        if meta is None:
            raise ManifestError(f"{name} is not in the manifest")
        try:
            st = os.lstat(os.path.join(stepdir, name))
        except FileNotFoundError:
            raise ManifestError(f"{name} missing") from None
        if not stat.S_ISREG(st.st_mode):  # symbolic links are never followed
            raise ManifestError(f"{name} is not a regular file")
        size = st.st_size
        if size != meta["size"]:
            raise ManifestError(f"{name} has {size} bytes, the manifest says {meta['size']}")


def newest_manifest(directory: str, rejected=()) -> tuple[int, dict | None, dict]:
    """The newest committed step not in ``rejected`` whose manifest is valid, as
    ``(step, manifest, skipped)`` (``(-1, None, skipped)`` if none); ``skipped``: the
    newer steps passed over, with the reason. Not collective: rank 0 runs it and
    broadcasts the result (one read of the O(P) manifest, not one per rank)."""
    skipped = {}
    for step in reversed(committed_steps(directory)):
        if step in rejected:
            continue
        try:
            manifest = load_manifest(os.path.join(directory, step_dirname(step), MANIFEST))
            if manifest["step"] != step:
                raise ManifestError(f"manifest is for step {manifest['step']}")
            if len(manifest["files"]) != manifest["ranks"]:
                raise ManifestError("manifest lists the wrong number of files")
        except ManifestError as exc:
            skipped[step] = str(exc)
            continue
        return step, manifest, skipped
    return -1, None, skipped


def verify(stepdir: str, manifest: dict, rank: int, size: int):
    """Check and checksum the files assigned to this rank (:func:`assigned_files`).
    Returns ``(error or None, buffer)``; ``buffer`` is this rank's own file, read whole,
    when the rank count is unchanged."""
    try:
        check_files(stepdir, manifest, assigned_files(manifest, rank, size))
    except ManifestError as exc:
        return str(exc), None
    if manifest["ranks"] == size:
        name = rank_filename(rank)
        meta = manifest["files"][name]
        buf = np.empty(meta["size"], dtype=np.uint8)
        try:
            with open_regular(os.path.join(stepdir, name)) as f:
                digest = read_and_hash(f.fileno(), buf)
        except OSError as exc:
            return f"{name}: {exc}", None
        if digest != meta["checksum"]:
            return f"{name}: checksum mismatch", None
        return check_layouts(stepdir, manifest, [name]), buf
    for name in assigned_files(manifest, rank, size):
        try:
            nbytes, digest = hash_file(os.path.join(stepdir, name))
        except OSError as exc:
            return f"{name}: {exc}", None
        if (nbytes, digest) != (manifest["files"][name]["size"],
                                manifest["files"][name]["checksum"]):
            return f"{name}: checksum mismatch", None
    return check_layouts(stepdir, manifest, assigned_files(manifest, rank, size)), None


def _expected(manifest: dict, rank: int):
    """``(dataset, dtype, shape, offset)`` of every array the manifest says ``rank``'s
    file holds (the manifest has passed :func:`check_manifest`)."""
    for entry, e in manifest["entries"].items():
        kind = e["kind"]
        if kind == "array":
            yield (entry, e["dataset"], e["dtype"], [e["counts"][rank], *e["shape"][1:]],
                   e["offsets"][rank])
        elif kind == "table":
            for c in e["columns"]:
                yield (entry, c["dataset"], c["dtype"], [e["counts"][rank], *c["shape"]],
                       c["offsets"][rank])
        elif kind == "local":
            yield (entry, e["dataset"], e["dtypes"][rank], e["shapes"][rank] or [1],
                   e["offsets"][rank])
        elif kind == "rng":
            yield entry, e["dataset"], "u1", [e["sizes"][rank]], e["offsets"][rank]


def check_layouts(stepdir: str, manifest: dict, names) -> str | None:
    """Check that the files ``names`` hold the datasets the manifest describes (dtype,
    shape, byte offset), so a restore reads exactly the bytes that were saved. Returns
    the problem, or None. Not collective."""
    import h5py

    for name in names:
        rank = int(name[len("rank-"):-len(".h5")])
        try:
            with open_regular(os.path.join(stepdir, name)) as raw, \
                    h5py.File(raw, "r", locking=False) as f:
                for entry, ds, dtype, shape, offset in _expected(manifest, rank):
                    what = f"{name}: entry {entry!r}"
                    if f.get(ds, getclass=True) is not h5py.Dataset:
                        return f"{what}: no dataset {ds}"
                    d = f[ds]
                    got = (d.dtype.str, list(d.shape) if d.shape else [1],
                           d.id.get_offset() if d.size else None)
                    if got != (np.dtype(dtype).str, list(shape), offset):
                        return (f"{what}: dataset {ds} is (dtype, shape, offset) {got}, "
                                f"the manifest says {(dtype, shape, offset)}")
        except (OSError, ValueError, KeyError) as exc:
            return f"{name}: {exc}"
    return None


def check_rank_count(manifest: dict, size: int) -> None:
    """Raise :class:`RankCountError` if rank-local entries cannot be restored here."""
    if manifest["ranks"] == size:
        return
    local = [n for n, e in manifest["entries"].items() if e["kind"] in ("local", "rng")]
    if local:
        raise RankCountError(
            f"checkpoint step {manifest['step']} was saved on {manifest['ranks']} ranks and "
            f"holds rank-local entries {local}, which can only be restored on "
            f"{manifest['ranks']} ranks (this run has {size}); store data that must survive "
            f"a change of rank count as a DistArray or DistTable")


class _Source:
    """Reads byte ranges of the step's files: from this rank's verified buffer, else pread."""

    def __init__(self, stepdir, own_rank, buf):
        self.stepdir, self.own_rank, self.buf, self.fds = stepdir, own_rank, buf, {}

    def array(self, rank, offset, dtype, shape):
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * dtype.itemsize
        if nbytes == 0:
            return np.empty(shape, dtype=dtype)
        if rank == self.own_rank and self.buf is not None:
            raw = self.buf[offset:offset + nbytes]
            if offset % dtype.alignment == 0:
                return raw.view(dtype).reshape(shape)
            return raw.copy().view(dtype).reshape(shape)
        out = np.empty(shape, dtype=dtype)
        pread_into(self._fd(rank), memoryview(out.reshape(-1).view(np.uint8)), offset)
        return out

    def _fd(self, rank):
        if rank not in self.fds:
            self.fds[rank] = os.open(os.path.join(self.stepdir, rank_filename(rank)),
                                     os.O_RDONLY | os.O_NOFOLLOW)
        return self.fds[rank]

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _rows(src, counts, offsets, dtype, trailing, lo, hi):
    """Global rows [lo, hi) of a distributed dataset, gathered from the saved blocks."""
    dtype = np.dtype(dtype)
    row_bytes = dtype.itemsize * int(np.prod(trailing, dtype=np.int64))
    parts, start = [], 0
    for rank, count in enumerate(counts):
        a, b = max(lo, start), min(hi, start + count)
        if a < b:
            parts.append(src.array(rank, (offsets[rank] or 0) + (a - start) * row_bytes,
                                   dtype, (b - a, *trailing)))
        start += count
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.empty((0, *trailing), dtype=dtype)
    return np.concatenate(parts)


def load_state(stepdir: str, manifest: dict, comm, buf) -> dict:
    """Rebuild the state dict of a verified step on this rank. Not collective."""
    rank, size = comm.Get_rank(), comm.Get_size()
    same = manifest["ranks"] == size
    src = _Source(stepdir, rank if same else -1, buf)
    state = {}
    try:
        for name, e in manifest["entries"].items():
            kind = e["kind"]
            if kind in ("array", "table"):
                counts = e["counts"]
                total = e["shape"][0] if kind == "array" else e["num_rows"]
                lo = sum(counts[:rank]) if same else block_range(total, size, rank)[0]
                hi = lo + counts[rank] if same else block_range(total, size, rank)[1]
                if kind == "array":
                    local = _rows(src, counts, e["offsets"], e["dtype"], e["shape"][1:], lo, hi)
                    state[name] = DistArray(local, e["shape"], lo, comm)
                else:
                    cols = {c["name"]: _rows(src, counts, c["offsets"], c["dtype"], c["shape"],
                                             lo, hi) for c in e["columns"]}
                    state[name] = DistTable(cols, total, lo, comm)
            elif kind == "local":
                shape = e["shapes"][rank]
                stored = shape if shape else [1]
                arr = src.array(rank, e["offsets"][rank], e["dtypes"][rank], stored)
                state[name] = arr.reshape(shape)
            elif kind == "rng":
                state[name] = rng_from_bytes(src.array(rank, e["offsets"][rank], "u1",
                                                       [e["sizes"][rank]]))
            elif kind == "scalar":
                state[name] = np.frombuffer(bytes.fromhex(e["hex"]), dtype=e["dtype"])[0]
            elif kind == "json":
                state[name] = e["value"]
            else:
                raise ManifestError(f"unknown entry kind {kind!r}")
    finally:
        src.close()
    return state
