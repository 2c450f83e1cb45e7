"""``hpcproc ckpt export DIR [STEP] OUT.h5``: one step's global arrays as one plain file.

Every DistArray entry becomes the dataset ``/<name>`` of the global shape, every
DistTable the group ``/<name>`` with one dataset per column (names escaped as in the
rank files, the state name in the attribute ``hpcproc_entry``); numpy scalars and JSON
values become attributes of the root group (JSON as text). Rank-local arrays and random
generator states belong to one rank of one run and are not exported. The step is read
and verified like a restore (any rank count, checksums checked, by default the newest
valid step) and written through :func:`hpcproc.io.write.write_many` (parallel, atomic,
lineage pointing at the checkpoint's manifest and, through it, at the checkpoint's own
inputs).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..array import DistArray
from ..comm import agreed, check_all, get_comm, lib_comm, root_call
from ..io import lineage
from ..io.write import check_output, write_many
from ._errors import CheckpointError
from ._format import (
    MANIFEST,
    ManifestError,
    column_dataset,
    dataset_name,
    parse_step_dirname,
    step_dirname,
)
from ._reader import load_state, newest_manifest, verify
from ._schema import load_manifest

__all__ = ["export_step", "parse_step"]

_EXPORTED = ("array", "table", "scalar", "json")


def parse_step(text) -> int:
    """A step given as ``12`` or ``step-000000000012``."""
    if isinstance(text, int) and not isinstance(text, bool):
        step = text
    else:
        named = parse_step_dirname(str(text))
        try:
            step = named if named is not None else int(str(text), 10)
        except ValueError:
            raise ValueError(f"not a checkpoint step: {text!r} (e.g. 12 or "
                             f"step-000000000012)") from None
    if not 0 <= step < 10**12:
        raise ValueError(f"step must be in [0, 10**12), got {step}")
    return step


def _checkpoint_files(directory: str) -> list[str]:
    """Every regular file of the checkpoint directory and its step directories."""
    found = []
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            try:
                found += [e.path for e in os.scandir(entry.path)
                          if e.is_file(follow_symlinks=False)]
            except OSError:
                continue
        elif entry.is_file(follow_symlinks=False):
            found.append(entry.path)
    return found


def _find(directory: str, step, rejected) -> tuple[int, dict, dict]:
    """On rank 0: the step to export, its manifest and the manifest file's facts."""
    if step is None:
        found, manifest, _ = newest_manifest(directory, rejected)
        if found < 0:
            raise CheckpointError(f"no valid checkpoint step in {directory}"
                                  + (" (every step is corrupt)" if rejected else ""))
    else:
        found = step
        try:
            manifest = load_manifest(os.path.join(directory, step_dirname(step), MANIFEST))
            if manifest["step"] != step:
                raise ManifestError(f"manifest is for step {manifest['step']}")
        except ManifestError as exc:
            raise CheckpointError(f"checkpoint {step_dirname(step)} in {directory} is not "
                                  f"valid: {exc}") from None
    st = os.stat(os.path.join(directory, step_dirname(found), MANIFEST))
    facts = {"file_size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return found, manifest, facts


def export_step(directory, out, step=None, comm=None) -> dict:
    """Write the global arrays of checkpoint step ``step`` (default: the newest valid
    one) of ``directory`` to the HDF5 file ``out``. Collective; any rank count.

    Returns ``{"step", "datasets", "attributes", "skipped"}`` (``skipped``: rank-local
    entries, not exported). ``out`` may not be a file of the checkpoint directory.
    """
    comm = get_comm(comm)
    if not isinstance(directory, (str, os.PathLike)) or not isinstance(out, (str, os.PathLike)):
        raise TypeError("directory and out must be paths")
    step = None if step is None else parse_step(step)
    directory = os.path.abspath(os.fspath(directory))

    def files():
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"no checkpoint directory {directory}")
        return _checkpoint_files(directory)

    check_output(out, root_call(files, comm), comm, "output")  # before anything is read
    rank, size, rejected = comm.Get_rank(), comm.Get_size(), set()
    while True:
        found, manifest, facts = root_call(lambda: _find(directory, step, rejected), comm)
        stepdir = os.path.join(directory, step_dirname(found))
        err, buf = verify(stepdir, manifest, rank, size)
        errors = lib_comm(comm).allgather(err)
        if not any(errors):
            break
        problem = "; ".join(e for e in errors if e)
        if step is not None:
            raise agreed(CheckpointError(f"checkpoint {step_dirname(found)} in {directory} "
                                          f"is corrupt: {problem}"))
        rejected.add(found)
    entries = {k: e for k, e in manifest["entries"].items() if e["kind"] in _EXPORTED}
    state = check_all(lambda: load_state(stepdir, dict(manifest, entries=entries), comm,
                                         buf if manifest["ranks"] == size else None), comm)
    arrays, attrs, file_attrs = {}, {}, {"hpcproc_checkpoint": directory,
                                         "hpcproc_checkpoint_step": found}
    for name, value in state.items():
        if isinstance(value, DistArray):
            arrays[dataset_name(name)] = value
            attrs[dataset_name(name)] = {"hpcproc_entry": name}
        elif entries[name]["kind"] == "table":
            for col in value.columns:
                arrays[column_dataset(name, col)] = value[col]
                attrs[column_dataset(name, col)] = {"hpcproc_entry": name,
                                                    "hpcproc_column": col}
        elif entries[name]["kind"] == "json":
            file_attrs[name] = json.dumps(value, sort_keys=True)
        else:
            file_attrs[name] = value
    _record_inputs(stepdir, manifest, entries, facts)
    write_many(out, arrays, comm, mode="w", attrs=attrs, file_attrs=file_attrs)
    lib_comm(comm).Barrier()
    return {"step": found, "datasets": sorted(arrays), "output": os.path.abspath(out),
            "attributes": sorted(k for k in file_attrs if not k.startswith("hpcproc_")),
            "skipped": sorted(set(manifest["entries"]) - set(entries)),
            "ranks_saved": manifest["ranks"], "ranks": comm.Get_size()}


def _record_inputs(stepdir, manifest, entries, facts) -> None:
    """The checkpoint step as the lineage input of the export (same on every rank)."""
    path = os.path.join(stepdir, MANIFEST)
    parent = {"parent": manifest["lineage"]} if isinstance(manifest.get("lineage"), dict) else {}
    for name, e in entries.items():
        if e["kind"] == "array":
            shape, dtype = e["shape"], np.dtype(e["dtype"])
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        elif e["kind"] == "table":
            shape, dtype = [e["num_rows"]], np.dtype("u1")
            nbytes = sum(e["num_rows"] * np.dtype(c["dtype"]).itemsize
                         * int(np.prod(c["shape"], dtype=np.int64)) for c in e["columns"])
        else:
            continue
        lineage.record_input(path, name, 0, shape[0], shape, dtype, None, nbytes,
                                {**facts, **parent})

