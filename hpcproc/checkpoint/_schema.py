"""Structural check of a manifest, beyond its checksum (anyone can recompute that).

Every field a restore uses is checked for type and range before any file is opened:
the file names are exactly ``rank-<r>.h5`` for ``r < ranks`` (so a manifest can never
name a file outside its step directory), dtypes are plain numeric numpy dtypes, shapes,
counts and offsets are non-negative integers that agree with each other, and every byte
range a restore reads lies inside its file. A manifest that fails raises
:class:`ManifestError` (the step is invalid; restore falls back to an older one).
"""

from __future__ import annotations

import json
import re

import numpy as np

from ._format import (
    CHECKSUM,
    FORMAT,
    VERSIONS,
    ManifestError,
    canonical,
    column_dataset,
    dataset_name,
    hash_bytes,
    open_regular,
    rank_filename,
)

__all__ = ["check_manifest", "parse_dtype"]

_KINDS = ("array", "table", "local", "rng", "scalar", "json")
_NUMERIC = "biufc"
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_ENTRY_DS = re.compile(r"^/e\d{1,9}$")  # format version 1
_COLUMN_DS = re.compile(r"^/e\d{1,9}/c\d{1,9}$")


def _good_name(ds, version: int, entry: str, column: str | None = None) -> bool:
    """Version 1: ``/e<i>`` (``/e<i>/c<j>``); version 2: exactly the escaped state name
    (and column name), so a manifest can name nothing but its own entry's dataset."""
    if not isinstance(ds, str):
        return False
    if version == 1:
        return (_COLUMN_DS if column is not None else _ENTRY_DS).match(ds) is not None
    return ds == (dataset_name(entry) if column is None else column_dataset(entry, column))


def _int(value, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ManifestError(f"{what} must be an integer >= {low}, not {value!r}")
    return value


def _list(value, what: str, length: int | None = None) -> list:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        want = "a list" if length is None else f"a list of {length}"
        raise ManifestError(f"{what} must be {want}, not {value!r}"[:200])
    return value


def _shape(value, what: str, min_ndim: int = 0) -> tuple:
    dims = _list(value, what)
    if len(dims) < min_ndim or len(dims) > 32:
        raise ManifestError(f"{what} has {len(dims)} dimensions")
    return tuple(_int(n, f"{what} dimension") for n in dims)


def parse_dtype(value, what: str) -> np.dtype:
    """The numpy dtype a manifest names; only plain numeric dtypes are accepted."""
    if not isinstance(value, str) or len(value) > 8:
        raise ManifestError(f"{what} must be a numeric dtype string, not {value!r}")
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError):
        raise ManifestError(f"{what} {value!r} is not a dtype") from None
    if dtype.kind not in _NUMERIC or dtype.fields is not None or dtype.subdtype is not None:
        raise ManifestError(f"{what} {value!r} is not a numeric dtype")
    return dtype


def _nbytes(shape, dtype) -> int:
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def _range(sizes, rank, offset, nbytes, what) -> None:
    """The ``nbytes`` at ``offset`` of rank ``rank``'s file lie inside the file."""
    if nbytes == 0:
        if offset is not None:
            _int(offset, f"{what} offset")
        return
    if offset is None:
        raise ManifestError(f"{what} holds {nbytes} bytes but has no offset")
    _int(offset, f"{what} offset")
    if offset + nbytes > sizes[rank]:
        raise ManifestError(f"{what} reads bytes {offset}..{offset + nbytes} of "
                            f"{rank_filename(rank)}, which has {sizes[rank]}")


def _counts(e, what, ranks, total) -> list:
    counts = [_int(c, f"{what} count") for c in _list(e.get("counts"), f"{what} counts", ranks)]
    if sum(counts) != total:
        raise ManifestError(f"{what} counts add up to {sum(counts)} rows, not {total}")
    return counts


def _check_entry(name, e, ranks, sizes, datasets, version=1) -> None:
    what = f"entry {name!r}"
    if not isinstance(e, dict) or e.get("kind") not in _KINDS:
        raise ManifestError(f"{what} has no valid kind")
    kind = e["kind"]
    if kind == "json":
        if "value" not in e:
            raise ManifestError(f"{what} has no value")
        return
    if kind == "scalar":
        dtype = parse_dtype(e.get("dtype"), f"{what} dtype")
        text = e.get("hex")
        if not isinstance(text, str) or len(text) != 2 * dtype.itemsize \
                or re.fullmatch(r"[0-9a-f]*", text) is None:
            raise ManifestError(f"{what} hex is not {dtype.itemsize} bytes")
        return
    names = [e.get("dataset")] if kind != "table" else []
    if kind == "array":
        dtype = parse_dtype(e.get("dtype"), f"{what} dtype")
        shape = _shape(e.get("shape"), f"{what} shape", 1)
        counts = _counts(e, what, ranks, shape[0])
        offsets = _list(e.get("offsets"), f"{what} offsets", ranks)
        row = _nbytes(shape[1:], dtype)
        for r in range(ranks):
            _range(sizes, r, offsets[r], counts[r] * row, what)
    elif kind == "table":
        rows = _int(e.get("num_rows"), f"{what} num_rows")
        counts = _counts(e, what, ranks, rows)
        cols = _list(e.get("columns"), f"{what} columns")
        seen = set()
        for c in cols:
            if not isinstance(c, dict) or not isinstance(c.get("name"), str) \
                    or c["name"] in seen:
                raise ManifestError(f"{what} has a bad or repeated column")
            seen.add(c["name"])
            cw = f"{what} column {c['name']!r}"
            dtype = parse_dtype(c.get("dtype"), f"{cw} dtype")
            row = _nbytes(_shape(c.get("shape"), f"{cw} shape"), dtype)
            offsets = _list(c.get("offsets"), f"{cw} offsets", ranks)
            for r in range(ranks):
                _range(sizes, r, offsets[r], counts[r] * row, cw)
            if not _good_name(c.get("dataset"), version, name, c["name"]):
                raise ManifestError(f"{cw} has a bad dataset name")
            names.append(c["dataset"])
    elif kind == "local":
        dtypes = _list(e.get("dtypes"), f"{what} dtypes", ranks)
        shapes = _list(e.get("shapes"), f"{what} shapes", ranks)
        offsets = _list(e.get("offsets"), f"{what} offsets", ranks)
        for r in range(ranks):
            dtype = parse_dtype(dtypes[r], f"{what} dtype")
            shape = _shape(shapes[r], f"{what} shape")
            _range(sizes, r, offsets[r], _nbytes(shape or (1,), dtype), what)
    else:  # rng
        nbytes = _list(e.get("sizes"), f"{what} sizes", ranks)
        offsets = _list(e.get("offsets"), f"{what} offsets", ranks)
        for r in range(ranks):
            _range(sizes, r, offsets[r], _int(nbytes[r], f"{what} size", 1), what)
    if kind != "table" and not _good_name(names[0], version, name):
        raise ManifestError(f"{what} has a bad dataset name")
    for ds in names:
        if ds in datasets:
            raise ManifestError(f"{what}: dataset {ds} is used twice")
        datasets.add(ds)


def check_manifest(doc: dict, step: int | None = None) -> None:
    """Raise :class:`ManifestError` unless ``doc`` is structurally sound (and is for
    ``step``, when given). Not collective."""
    got = _int(doc["step"], "step")
    if step is not None and got != step:
        raise ManifestError(f"manifest is for step {got}")
    ranks = _int(doc["ranks"], "ranks", 1)
    files = doc["files"]
    if not isinstance(files, dict) or set(files) != {rank_filename(r) for r in range(ranks)}:
        names = sorted(files)[:4] if isinstance(files, dict) else files
        raise ManifestError(f"manifest files must be exactly rank-00000.h5 .. "
                            f"{rank_filename(ranks - 1)}, not {names!r}"[:300])
    sizes = []
    for r in range(ranks):
        meta = files[rank_filename(r)]
        if not isinstance(meta, dict) or not isinstance(meta.get("checksum"), str) \
                or not _HEX32.match(meta["checksum"]):
            raise ManifestError(f"{rank_filename(r)} has no valid checksum")
        sizes.append(_int(meta.get("size"), f"{rank_filename(r)} size"))
    entries = doc["entries"]
    if not isinstance(entries, dict):
        raise ManifestError("manifest entries must be a mapping")
    datasets: set = set()
    version = doc.get("version", 1)
    for name, e in entries.items():
        if not isinstance(name, str):
            raise ManifestError("manifest entry names must be strings")
        _check_entry(name, e, ranks, sizes, datasets, version)


def load_manifest(path: str) -> dict:
    """Read and check a manifest; raise :class:`ManifestError` if it is not valid."""
    try:
        with open_regular(path) as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        raise ManifestError("manifest missing") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"manifest unreadable ({exc})") from None
    if not isinstance(doc, dict) or "manifest_checksum" not in doc:
        raise ManifestError("manifest has no checksum")
    want = doc.pop("manifest_checksum")
    if hash_bytes(canonical(doc)) != want:
        raise ManifestError("manifest checksum mismatch")
    if doc.get("format") != FORMAT:
        raise ManifestError(f"not an {FORMAT} manifest")
    if doc.get("version") not in VERSIONS or isinstance(doc.get("version"), bool):
        raise ManifestError(f"unsupported format version {doc.get('version')!r} "
                            f"(this hpcproc reads versions {', '.join(map(str, VERSIONS))})")
    if doc.get("checksum") != CHECKSUM:
        raise ManifestError(f"unknown checksum algorithm {doc.get('checksum')!r}")
    for key in ("step", "ranks", "files", "entries"):
        if key not in doc:
            raise ManifestError(f"manifest lacks {key!r}")
    check_manifest(doc)
    return doc
