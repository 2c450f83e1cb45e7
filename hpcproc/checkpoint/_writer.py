"""Writing one checkpoint step: every rank its own file, rank 0 the manifest and commit.

Protocol (see ``_format`` for the layout):

Each state entry is stored under its own name (see ``_format``: ``/T``, ``/table/col``).

1. rank 0 creates ``DIR/.tmp-step-N-<token>/``;
2. every rank writes ``rank-<r>.h5`` there: rank 0's structure via h5py (contiguous
   datasets, space allocated up front), then the raw bytes with ``pwrite``, then
   ``fsync``; the file checksum is computed from the data in memory (only the small
   HDF5 metadata is read back);
3. the ranks agree on the outcome (allgather): if any rank failed, the save fails on
   every rank with the same :class:`CheckpointError` and the temporary directory is
   removed; the previous checkpoint was never touched;
4. rank 0 writes and fsyncs ``manifest.json`` and the temporary directory, renames it to
   ``step-N`` (atomic), fsyncs ``DIR``, replaces ``latest`` atomically, then applies
   retention (the new step is durable before anything old is deleted).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
import warnings

import h5py
import numpy as np

from .. import _faults, _version
from ..io.direct import pwrite_from
from . import _crash
from ._dirs import apply_retention, write_latest
from ._errors import CheckpointWarning
from ._format import (
    CHECKSUM,
    FORMAT,
    MANIFEST,
    OLD_PREFIX,
    TMP_PREFIX,
    VERSION,
    ManifestError,
    column_dataset,
    dataset_name,
    dump_manifest,
    fsync_dir,
    hash_regions,
    rank_filename,
    step_dirname,
    write_file_atomic,
)
from ._schema import load_manifest

__all__ = ["make_tmp_dir", "write_rank_file", "build_manifest", "commit_step", "remove_tmp"]


def make_tmp_dir(directory: str, step: int) -> str:
    """On rank 0: create the temporary directory of a new step; return its path."""
    path = os.path.join(directory, f"{TMP_PREFIX}{step_dirname(step)}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    return path


def remove_tmp(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _create(f: h5py.File, name: str, arr: np.ndarray):
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
    lcpl.set_create_intermediate_group(True)
    space = h5py.h5s.create_simple(arr.shape) if arr.ndim else h5py.h5s.create(h5py.h5s.SCALAR)
    dsid = h5py.h5d.create(f.id, name.encode(), h5py.h5t.py_create(arr.dtype), space,
                           dcpl=dcpl, lcpl=lcpl)
    return dsid.get_offset() if arr.nbytes else None


def write_rank_file(path: str, items, rank: int, lineage: dict | None = None,
                    attrs: dict | None = None) -> dict:
    """Write this rank's arrays ``items`` (``(dataset, ndarray)``) to ``path``, durably.

    ``lineage``: attributes set on every dataset (:func:`hpcproc.io.lineage.lineage_attrs`);
    ``attrs``: more attributes per dataset (entry name, global offset and shape).

    Returns ``{"size", "checksum", "offsets"}`` (byte offset of every dataset's data).
    """
    with h5py.File(path, "w-", locking=False) as f:  # private file: no lock needed
        offsets = {name: _create(f, name, arr) for name, arr in items}
        for name, _ in items:
            f[name].attrs.update(lineage or {})
            f[name].attrs.update((attrs or {}).get(name, {}))
    regions = [(offsets[name], arr.reshape(-1).view(np.uint8)) for name, arr in items
               if offsets[name] is not None]
    total = sum(len(buf) for _, buf in regions)
    fd = os.open(path, os.O_RDWR)
    try:
        done = 0
        for offset, buf in regions:
            if done < total // 2 <= done + len(buf):   # crash/fault points mid-file
                half = total // 2 - done
                pwrite_from(fd, memoryview(buf[:half]), offset)
                _faults.check("checkpoint.write", rank)
                _crash.point("write-mid", rank)
                pwrite_from(fd, memoryview(buf[half:]), offset + half)
            else:
                pwrite_from(fd, memoryview(buf), offset)
            done += len(buf)
        if total == 0:
            _faults.check("checkpoint.write", rank)
        size = os.fstat(fd).st_size
        checksum = hash_regions(fd, size, regions)  # CPU work while the kernel writes back
        os.fsync(fd)
    finally:
        os.close(fd)
    _crash.point("write-done", rank)
    return {"size": size, "checksum": checksum, "offsets": offsets}


def build_manifest(step: int, signature, rows, outcomes, shared) -> dict:
    """The manifest body, from every rank's layout facts and file results."""
    ranks = len(outcomes)
    entries = {}
    for sig in signature:
        name, kind = sig[0], sig[1]
        ds = dataset_name(name)
        offs = [o["offsets"] for o in outcomes]
        if kind == "array":
            entries[name] = {"kind": kind, "dtype": sig[2], "shape": sig[3], "dataset": ds,
                             "counts": [r[name][1] for r in rows],
                             "offsets": [o[ds] for o in offs]}
        elif kind == "table":
            entries[name] = {"kind": kind, "num_rows": sig[3],
                             "counts": [r[name][1] for r in rows],
                             "columns": [{"name": col, "dtype": dt, "shape": shape,
                                          "dataset": column_dataset(name, col),
                                          "offsets": [o[column_dataset(name, col)]
                                                      for o in offs]}
                                         for col, dt, shape in sig[2]]}
        elif kind == "local":
            entries[name] = {"kind": kind, "dataset": ds,
                             "dtypes": [o["local"][name]["dtype"] for o in outcomes],
                             "shapes": [o["local"][name]["shape"] for o in outcomes],
                             "offsets": [o[ds] for o in offs]}
        elif kind == "rng":
            entries[name] = {"kind": kind, "dataset": ds,
                             "sizes": [o["local"][name]["size"] for o in outcomes],
                             "offsets": [o[ds] for o in offs]}
        else:
            entries[name] = shared[name]
    return {
        "format": FORMAT, "version": VERSION, "checksum": CHECKSUM, "step": int(step),
        "ranks": ranks, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hpcproc": _version.__version__,
        "files": {rank_filename(r): {"size": o["size"], "checksum": o["checksum"]}
                  for r, o in enumerate(outcomes)},
        "entries": entries,
    }


def commit_step(directory: str, tmp: str, body: dict, keep: int) -> list[int]:
    """On rank 0: write the manifest, commit the step atomically, apply retention.

    A step saved again under the same number (e.g. after a restart) replaces the old one:
    the old directory is renamed aside (``.old-``) and deleted only once the new one is
    committed; a crash in between leaves it for :func:`cleanup` to put back. Retention
    runs only after the new step is committed and its manifest reads back as valid.
    Returns the steps deleted by retention.
    """
    step = body["step"]
    _faults.check("checkpoint.commit", 0)
    write_file_atomic(os.path.join(tmp, MANIFEST), dump_manifest(body))
    fsync_dir(tmp)
    _crash.point("manifest", 0)
    final = os.path.join(directory, step_dirname(step))
    old = None
    if os.path.lexists(final):  # the same step saved again (e.g. after a restart)
        old = os.path.join(directory, f"{OLD_PREFIX}{step_dirname(step)}-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(directory)
    _crash.point("renamed", 0)
    try:  # the step is committed: what follows is housekeeping that restore never needs
        if old is not None:
            remove_tmp(old)
        load_manifest(os.path.join(final, MANIFEST))  # reads back: safe to drop older
        write_latest(directory, step)
        _crash.point("latest", 0)
        return apply_retention(directory, keep, newest=step)
    except (OSError, ManifestError) as exc:
        warnings.warn(f"checkpoint {step_dirname(step)} is committed, but updating "
                      f"'latest' or deleting old steps failed: {exc}", CheckpointWarning,
                      stacklevel=2)
        return []
