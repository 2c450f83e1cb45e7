"""What a command's checkpoint was computed from, and the check that a resumed run matches.

Every ``--checkpoint`` command stores an *identity* with its state: the command, the
options that change its result, and for each input the file (absolute path), dataset,
shape, dtype, file size and modification time (ns) as read from the dataset's metadata,
plus the lineage checksum when this process already has one. A resumed run computes the
same identity and refuses to continue on any difference (an agreed error on every rank,
exit 1, no ``MPI_Abort``): continuing would mix statistics of two different inputs or
argument sets, and silently starting over could throw away hours of work of a run pointed
at the wrong directory. Removing the directory starts afresh.
"""

from __future__ import annotations

import datetime
import os

from ..comm import agreed
from ..io import lineage

__all__ = ["dataset_identity", "check_identity"]

_LABELS = {"file": "file", "dataset": "dataset", "shape": "shape", "dtype": "dtype",
           "file_size": "file size (bytes)", "mtime_ns": "modification time",
           "checksum": "lineage checksum", "ranks": "number of ranks"}
_PREFIX = {"input": "", "options": "option "}
_CHANGED = ("file size", "modification time", "lineage checksum")


def dataset_identity(info) -> dict:
    """Identity of the dataset described by ``info`` (a ``DatasetInfo``), with the lineage
    checksum of all its rows if this process has recorded it. Not collective."""
    rec = next((r for r in lineage.inputs()
                if (r["file"], r["dataset"], r["rows"]) == (os.path.abspath(info.path),
                                                             info.name, [0, info.rows])
                and r.get("mtime_ns") == info.mtime_ns
                and r.get("file_size") == info.file_size), None)
    return {"file": os.path.abspath(info.path), "dataset": info.name,
            "shape": [int(n) for n in info.shape], "dtype": str(info.dtype),
            "file_size": info.file_size, "mtime_ns": info.mtime_ns,
            "checksum": None if rec is None else rec.get("checksum")}


def _show(key, value) -> str:
    if key == "mtime_ns" and isinstance(value, int):
        t = datetime.datetime.fromtimestamp(value / 1e9, datetime.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    return repr(value) if isinstance(value, str) else str(value)


def differences(saved, current, where: str = "") -> list[str]:
    """Readable ``what: saved ... now`` lines for every field that differs."""
    out = []
    for key in list(current) + [k for k in saved if k not in current]:
        old, now = saved.get(key), current.get(key)
        if old == now or (key == "checksum" and (old is None or now is None)):
            continue  # a checksum known on one side only: size and mtime decide
        if isinstance(old, dict) and isinstance(now, dict):
            if key == "columns":
                for col in list(now) + [c for c in old if c not in now]:
                    out += _pair(old.get(col), now.get(col), f"{where}column {col} ")
            else:
                out += differences(old, now, where + _PREFIX.get(key, f"{key} "))
        elif key == "inputs" and isinstance(old, list) and isinstance(now, list) \
                and len(old) == len(now):
            for i, (a, b) in enumerate(zip(old, now)):
                out += _pair(a, b, f"{where}input {i + 1} ")
        else:
            label = f"{where}{_LABELS.get(key, key)}"
            shown = ("absent" if key not in saved else _show(key, old),
                     "absent" if key not in current else _show(key, now))
            out.append(f"{label}: {shown[0]} in the checkpoint, {shown[1]} now")
    return out


def _pair(old, now, where) -> list[str]:
    if isinstance(old, dict) and isinstance(now, dict):
        return differences(old, now, where)
    return [] if old == now else [f"{where.strip()}: {old!r} in the checkpoint, {now!r} now"]


def check_identity(directory, saved, current) -> None:
    """Raise an agreed ``ValueError`` naming what differs between a checkpoint's identity
    and this run's. Not collective (``saved`` and ``current`` are the same on every rank).
    """
    if not isinstance(saved, dict) or "command" not in saved:
        raise agreed(ValueError(
            f"{directory} holds a checkpoint that was not written by an hpcproc command "
            f"(or by an older version); use another directory or remove it"))
    diff = differences(saved, current)
    if not diff:
        return
    if saved.get("command") != current.get("command"):
        raise agreed(ValueError(
            f"{directory} holds a checkpoint of another command (hpcproc "
            f"{saved.get('command')} of {_inputs(saved)}), not of hpcproc "
            f"{current.get('command')}; use another directory or remove it"))
    renamed = any(f"{w}:" in d for d in diff for w in ("file", "dataset"))
    if not renamed and any(w in d for d in diff for w in _CHANGED):
        what = (f"the input of the checkpoint in {directory} changed since it was saved "
                f"({_inputs(current)})")
    else:
        what = f"{directory} holds a checkpoint of another run ({_inputs(saved)})"
    raise agreed(ValueError(f"{what}: {'; '.join(diff)}; remove {directory} (or use "
                             f"another directory) to start over"))


def _inputs(ident: dict) -> str:
    ins = ident.get("inputs") or [ident.get("input") or ident]
    return ", ".join(f"{i.get('file')}" + (f":{i['dataset']}" if i.get("dataset") else "")
                     for i in ins if isinstance(i, dict))
