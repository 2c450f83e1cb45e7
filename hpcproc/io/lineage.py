"""Provenance (lineage) of the datasets hpcproc writes.

Every read (``hp.read``, ``hp.read_table``, a complete ``hp.blocks`` scan) records its
input in this process's lineage: file, dataset, row selection, size, modification time,
and a content checksum computed from the blocks the ranks have just read (no second
pass). Every write (``hp.write``, ``hp.write_table``, checkpoints) stores the lineage as
HDF5 attributes of each dataset it creates:

* ``hpcproc_lineage``: one JSON document (see :func:`lineage_record`);
* flat attributes for quick look-ups with ``h5dump -A``: ``hpcproc_version``,
  ``hpcproc_created`` (UTC ISO time), ``hpcproc_ranks``, ``hpcproc_command``.

Reading an output as input chains the lineage: its own ``hpcproc_lineage`` is embedded
in the input record (``"parent"``), up to :data:`MAX_DEPTH` generations deep.

Checksum (rank-count independent): ``crc32`` (zlib's polynomial) of the selected rows'
values as little-endian bytes in C order, i.e. exactly
``zlib.crc32(np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes())``. Each rank
computes the crc32 of its own block; the blocks' crcs are combined in rank order with
:func:`crc32_combine` (the GF(2) algebra of zlib's ``crc32_combine``), which gives the
same value on any number of ranks. Set ``HPCPROC_LINEAGE=0`` to skip checksums.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import time
import zlib

import numpy as np

from .._version import __version__

__all__ = ["crc32_combine", "block_crc32", "inputs", "restore_inputs", "reset",
           "lineage_record",
           "lineage_attrs", "read_lineage", "ATTR", "MAX_DEPTH"]

ATTR = "hpcproc_lineage"
MAX_DEPTH = 8
MAX_ATTR_BYTES = 60_000
FORMAT = 1

_POLY = 0xEDB88320
_INPUTS: dict = {}  # (path, dataset, start, stop) -> record; insertion-ordered
_STARTED: list = []  # time of the first hpcproc read in this process


# crc32 combination ----------------------------------------------------------------------
def _multmodp(a: int, b: int) -> int:
    """a * b modulo the CRC polynomial (reflected bit order, as in zlib)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                break
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _x2n_table() -> list[int]:
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """crc32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)``. Not collective."""
    if len2 <= 0:
        return crc1 & 0xFFFFFFFF
    p, n, k = 1 << 31, int(len2), 3  # x^(8 * len2) = x^(len2 * 2^3)
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return (_multmodp(p, crc1 & 0xFFFFFFFF) ^ crc2) & 0xFFFFFFFF


def _le_bytes(block: np.ndarray) -> np.ndarray:
    le = block.dtype.newbyteorder("<") if block.dtype.byteorder not in ("|", "<") else block.dtype
    return np.ascontiguousarray(block, dtype=le).reshape(-1).view(np.uint8)


def _crc32_impl():
    """ISA-L's crc32 when the optional ``isal`` package is installed (same polynomial and
    values as zlib's, about 4x faster), else zlib's."""
    if not _IMPL:
        try:
            from isal.isal_zlib import crc32
        except ImportError:
            crc32 = zlib.crc32
        _IMPL.append(crc32)
    return _IMPL[0]


_IMPL: list = []


def crc32_function():
    """The crc32 implementation in use: ``f(bytes, crc) -> crc`` (zlib's polynomial)."""
    return _crc32_impl()


def block_crc32(block: np.ndarray, crc: int = 0) -> int:
    """crc32 of ``block``'s values as little-endian C-order bytes (continuing ``crc``)."""
    return _crc32_impl()(_le_bytes(block), crc) & 0xFFFFFFFF


def combine_parts(parts) -> tuple[int, int]:
    """Combine ``(crc, nbytes)`` pieces in order into the crc and length of the whole."""
    crc, total = 0, 0
    for c, n in parts:
        crc = crc32_combine(crc, c, n) if total else c & 0xFFFFFFFF
        total += n
    return crc, total


def enabled() -> bool:
    return os.environ.get("HPCPROC_LINEAGE", "1").lower() not in ("0", "no", "off", "false")


# recording inputs -----------------------------------------------------------------------
def file_facts(path: str, name: str, size: int | None = None,
               mtime_ns: int | None = None, raw=False) -> dict:
    """On rank 0: size and mtime of ``path`` (as given, e.g. from the dataset's metadata
    read, else from ``os.stat``), and the parent lineage of ``path:name`` (from ``raw``,
    its ``hpcproc_lineage`` attribute as the metadata read found it, else read here)."""
    if size is None or mtime_ns is None:
        st = os.stat(path)
        size, mtime_ns = st.st_size, st.st_mtime_ns
    facts = {"file_size": size, "mtime": _iso(mtime_ns / 1e9), "mtime_ns": mtime_ns}
    try:
        parent = (read_lineage(path, name, missing_ok=True) if raw is False
                  else parse_lineage(raw, path, name, missing_ok=True))
    except ValueError as exc:  # a damaged attribute must not stop the job reading data
        from ..observe.log import get_logger, warn_once
        warn_once(get_logger(__name__), "%s: its lineage is not recorded in outputs", exc)
        parent = None
    if parent is not None:
        facts["parent"] = _trim(parent, MAX_DEPTH - 1)
    return facts


def _trim(record: dict, depth: int) -> dict:
    """Embed at most ``depth`` more generations; deeper parents become references."""
    record = dict(record)
    ins = []
    for item in record.get("inputs", []):
        item = dict(item)
        if "parent" in item:
            if depth <= 0:
                item.pop("parent")
                item["parent_ref"] = f"{item['file']}:{item['dataset']}"
            else:
                item["parent"] = _trim(item["parent"], depth - 1)
        ins.append(item)
    record["inputs"] = ins
    return record


def record_input(path: str, name: str, start: int, stop: int, shape, dtype,
                 crc: int | None, nbytes: int, facts: dict, sources=()) -> dict:
    """Add one input to this process's lineage (same call, same values, on every rank).

    ``sources``: the other files the data was read from (a virtual dataset's source
    files, external raw files), recorded as ``"sources"`` when there are any."""
    if not _STARTED:
        _STARTED.append(time.time())
    rec = {"file": os.path.abspath(path), "dataset": name, "rows": [int(start), int(stop)],
           "shape": [int(n) for n in shape], "dtype": str(np.dtype(dtype)),
           "bytes": int(nbytes), **{k: v for k, v in facts.items() if k != "parent"},
           "checksum": None if crc is None else f"crc32:{crc:08x}", "read": _iso(time.time())}
    if "parent" in facts:
        rec["parent"] = facts["parent"]
    if sources:
        rec["sources"] = [os.path.abspath(p) for p in sources]
    _INPUTS[(rec["file"], name, int(start), int(stop))] = rec
    return rec


def checksummed(path: str, name: str, start: int, stop: int, file_size, mtime_ns) -> bool:
    """True if rows ``[start, stop)`` of ``path:name`` were recorded with a checksum in
    this process and the file still has the recorded size and modification time (so a
    second pass over the same rows, e.g. stats then histogram, need not checksum them
    again). The same answer on every rank. Not collective."""
    rec = _INPUTS.get((os.path.abspath(path), name, int(start), int(stop)))
    return (rec is not None and rec["checksum"] is not None and mtime_ns is not None
            and rec.get("file_size") == file_size and rec.get("mtime_ns") == mtime_ns)


def restore_inputs(lineage, checkpoint: str) -> int:
    """Re-record the inputs of a restored checkpoint's lineage in this process. Not
    collective (the manifest, hence ``lineage``, is the same on every rank).

    A run restored from a checkpoint read its inputs before the save, in another
    process: their records (file, rows, size, mtime, checksum, parents) come back from
    the checkpoint's lineage, each marked ``"via_checkpoint": checkpoint``, so outputs
    written after a restart name the original inputs as an uninterrupted run's would.
    Records this process made itself win. Malformed entries are skipped. Returns the
    number of inputs recorded.
    """
    ins = lineage.get("inputs") if isinstance(lineage, dict) else None
    count = 0
    for rec in ins if isinstance(ins, list) else ():
        try:
            key = (str(rec["file"]), str(rec["dataset"]), int(rec["rows"][0]),
                   int(rec["rows"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            continue
        if key not in _INPUTS:
            _INPUTS[key] = {**rec, "via_checkpoint": str(checkpoint)}
            count += 1
    if count and not _STARTED and isinstance(lineage.get("start"), str):
        _STARTED.append(time.time())
    return count


def inputs() -> list[dict]:
    """The inputs recorded so far in this process (copies). Not collective."""
    return [dict(r) for r in _INPUTS.values()]


def reset() -> None:
    """Forget the recorded inputs (e.g. between independent jobs of one process)."""
    _INPUTS.clear()
    _STARTED.clear()


# writing lineage ------------------------------------------------------------------------
def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def _caller() -> str | None:
    """``module.function (file:line)`` of the first frame outside hpcproc."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package
    frame = sys._getframe(1)
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(here + os.sep) and "importlib" not in fname:
            mod = frame.f_globals.get("__name__", "?")
            return f"{mod}.{frame.f_code.co_name} ({fname}:{frame.f_lineno})"
        frame = frame.f_back
    return None


def lineage_record(kind: str, ranks: int, output: dict | None = None) -> dict:
    """The lineage document of an output written now by ``ranks`` ranks. Not collective."""
    now = time.time()
    env = {k: os.environ[k] for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID",
                                       "SLURM_ARRAY_TASK_ID", "SLURM_CLUSTER_NAME")
           if k in os.environ}
    return {
        "format": FORMAT, "kind": kind, "hpcproc_version": __version__,
        "argv": list(sys.argv), "caller": _caller(), "python": sys.version.split()[0],
        "ranks": int(ranks), "host": socket.gethostname(), "pid": os.getpid(),
        "slurm_job_id": env.get("SLURM_JOB_ID"), "slurm": env,
        "start": _iso(_STARTED[0] if _STARTED else now), "end": _iso(now),
        "output": output or {}, "inputs": inputs(),
    }


def lineage_attrs(kind: str, ranks: int, output: dict | None = None) -> dict:
    """HDF5 attributes (JSON document plus flat ones) for an output written now."""
    rec = lineage_record(kind, ranks, output)
    text = json.dumps(rec, sort_keys=True)
    for depth in range(MAX_DEPTH - 1, -1, -1):  # HDF5 compact attributes stop at 64 KiB
        if len(text.encode()) <= MAX_ATTR_BYTES:
            break
        text = json.dumps(_trim(rec, depth), sort_keys=True)
    return {ATTR: text, "hpcproc_version": __version__,
            "hpcproc_created": rec["end"], "hpcproc_ranks": int(ranks),
            "hpcproc_command": " ".join(rec["argv"]) or (rec["caller"] or "")}


def stamp(attrs: dict, names, kind: str, ranks: int) -> dict:
    """``attrs`` (dataset -> attrs) with lineage attributes added (the user's win)."""
    out = {}
    for name in names:
        own = dict((attrs or {}).get(name, {}))
        out[name] = {**lineage_attrs(kind, ranks, {"dataset": "/" + name.strip("/")}), **own}
    return out


def read_lineage(path: str, name: str, missing_ok: bool = False) -> dict | None:
    """The lineage document of ``path:name`` (local, no MPI).

    ``KeyError`` if absent (unless ``missing_ok``), ``ValueError`` naming the file, the
    dataset and the attribute if it is not a JSON object.
    """
    from ._meta import get_dataset, open_file

    with open_file(path) as f:
        raw = get_dataset(f, name, path).attrs.get(ATTR)
    return parse_lineage(raw, path, name, missing_ok)


def parse_lineage(raw, path: str, name: str, missing_ok: bool = False) -> dict | None:
    """The lineage document in ``raw`` (the attribute of ``path:name``); errors as
    :func:`read_lineage`."""
    if raw is None:
        if missing_ok:
            return None
        raise KeyError(f"{path}:{name} has no {ATTR} attribute (not written by hpcproc?)")
    try:
        rec = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError, arrays
        raise ValueError(f"{path}:{name}: attribute {ATTR} is not valid JSON ({exc})") \
            from None
    if not isinstance(rec, dict):
        raise ValueError(f"{path}:{name}: attribute {ATTR} is not a lineage document "
                         f"(a JSON object), but {type(rec).__name__}")
    return rec


def format_lineage(rec: dict, indent: int = 0) -> str:
    """A readable, indented rendering of a lineage document (parents nested)."""
    pad = "  " * indent
    lines = [f"{pad}{rec.get('kind', 'output')} by hpcproc {rec.get('hpcproc_version')} on "
             f"{rec.get('ranks')} rank(s), host {rec.get('host')}"
             + (f", Slurm job {rec['slurm_job_id']}" if rec.get("slurm_job_id") else ""),
             f"{pad}  time     {rec.get('start')} .. {rec.get('end')}",
             f"{pad}  command  {' '.join(rec.get('argv') or [])}"]
    if rec.get("caller"):
        lines.append(f"{pad}  caller   {rec['caller']}")
    for item in rec.get("inputs", []):
        lines.append(f"{pad}  input    {item['file']}:{item['dataset']} rows "
                     f"{item['rows'][0]}:{item['rows'][1]} {item['dtype']} "
                     f"{tuple(item['shape'])} {item['bytes']} B {item.get('checksum')} "
                     f"(file {item.get('file_size')} B, mtime {item.get('mtime')})")
        if "parent" in item:
            lines.append(format_lineage(item["parent"], indent + 2))
        elif "parent_ref" in item:
            lines.append(f"{pad}    parent   {item['parent_ref']} (not embedded)")
    return "\n".join(lines)
