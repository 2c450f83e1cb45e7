"""Listing and verifying the steps of a checkpoint directory (``hpcproc ckpt ls|verify``)."""

from __future__ import annotations

import os

from ._dirs import committed_steps, read_latest
from ._format import MANIFEST, TMP_PREFIX, TRASH_PREFIX, ManifestError, hash_file, step_dirname
from ._reader import check_files, check_layouts
from ._schema import load_manifest

__all__ = ["list_steps", "verify_steps"]


def _describe(directory: str, step: int, deep: bool) -> dict:
    stepdir = os.path.join(directory, step_dirname(step))
    info = {"step": step, "name": step_dirname(step), "valid": False, "problem": None}
    try:
        m = load_manifest(os.path.join(stepdir, MANIFEST))
        info.update(ranks=m["ranks"], created=m.get("created"),
                    bytes=sum(f["size"] for f in m["files"].values()),
                    entries={k: e["kind"] for k, e in m["entries"].items()})
        if m["step"] != step:
            raise ManifestError(f"manifest is for step {m['step']}")
        check_files(stepdir, m)
        if deep:
            for name, meta in sorted(m["files"].items()):
                if hash_file(os.path.join(stepdir, name)) != (meta["size"], meta["checksum"]):
                    raise ManifestError(f"{name}: checksum mismatch")
            problem = check_layouts(stepdir, m, sorted(m["files"]))
            if problem:
                raise ManifestError(problem)
        info["valid"] = True
    except ManifestError as exc:
        info["problem"] = str(exc)
    return info


def list_steps(directory, verify: bool = False) -> dict:
    """Committed steps of ``directory`` (newest last) with their manifest facts.

    Not collective. With ``verify`` every file's checksum is checked (reads all data);
    otherwise only the manifest and file sizes. Also reports ``latest`` and leftovers
    of interrupted saves or deletions.
    """
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoint directory {directory}")
    names = os.listdir(directory)
    return {
        "directory": directory,
        "latest": read_latest(directory),
        "steps": [_describe(directory, s, verify) for s in committed_steps(directory)],
        "leftovers": sorted(n for n in names if n.startswith((TMP_PREFIX, TRASH_PREFIX))),
    }


def verify_steps(directory) -> dict:
    """:func:`list_steps` with every checksum verified. Not collective."""
    return list_steps(directory, verify=True)
