"""Validation rules: the pure rule engine (no MPI import; a ``comm`` object is passed in).

Used at ingestion, in the same parallel pass as the read (:mod:`hpcproc.io.ingest`), and
by :func:`hpcproc.quality.validate.validate_dataset`.

Rules are data (a dict, or a TOML/JSON file), never code. One rule set applies to one
dataset; a rules *file* may hold top-level rules for every target, per-dataset tables
``[datasets."/x"]`` and ``same_rows = true`` (all targets must have the same rows).

======================  ===================================================================
rule                    meaning
======================  ===================================================================
``dtype``               numpy dtype name, or a list of allowed ones (``"float64"``)
``ndim``                number of dimensions
``shape``               list; ``-1`` accepts any length in that dimension
``rows``                exact number of rows (of the selection)
``max_nan``             at most this many NaN elements (``0``: none allowed)
``max_inf``             at most this many +-inf elements
``min`` / ``max``       every (non-NaN) element within ``[min, max]``
``monotonic``           key column ``increasing`` (strictly), ``non_decreasing``,
                        ``decreasing`` (strictly) or ``non_increasing``
``unique``              no key value occurs twice
``key_column``          the key column of a 2-D dataset (default: the 1-D dataset itself)
``limit``               how many offending indices to report (default 10)
======================  ===================================================================

Offending indices are *global row indices* of the read selection (the row in the file
when the whole dataset is read). Uniqueness: if the key turns out globally sorted (local
check plus the neighbouring ranks' boundary values) duplicates are adjacent and found
without communication of the data; otherwise keys are hashed to owner ranks (one
all-to-all) and duplicates found there.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..errors import HpcprocError

__all__ = ["load_rules", "check_rules", "split_file_rules", "local_partial", "key_values",
           "ordered", "merge", "format_report", "ValidationError", "RULES"]

RULES = ("dtype", "ndim", "shape", "rows", "max_nan", "max_inf", "min", "max", "monotonic",
         "unique", "key_column", "limit")
MONOTONIC = ("increasing", "non_decreasing", "decreasing", "non_increasing")
FILE_KEYS = ("datasets", "same_rows")


class ValidationError(HpcprocError, ValueError):
    """Raised by ``hp.read(..., validate=rules)`` when the data breaks a rule.

    ``report`` holds the full report (the same on every rank).
    """

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report

    def __reduce__(self):
        return (type(self), (self.args[0], self.report))


def load_rules(source) -> dict:
    """A rules dict from a dict, or from a ``.toml`` / ``.json`` file path. Not collective."""
    if isinstance(source, dict):
        return dict(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"rules must be a dict or a TOML/JSON file path, not "
                        f"{type(source).__name__}")
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such rules file: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if path.endswith(".json"):
            return json.loads(raw)
        import tomllib
        return tomllib.loads(raw.decode())
    except ValueError as exc:
        raise ValueError(f"cannot parse rules file {path}: {exc}") from None


def check_rules(rules: dict, ndim: int | None = None) -> dict:
    """Check a single-dataset rule set; return it normalised. Raises ValueError/TypeError."""
    if not isinstance(rules, dict):
        raise TypeError(f"rules must be a dict, not {type(rules).__name__}")
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown validation rule(s) {unknown}; known: {list(RULES)}")
    r = dict(rules)
    if "dtype" in r:
        allowed = r["dtype"] if isinstance(r["dtype"], list) else [r["dtype"]]
        try:
            r["dtype"] = [str(np.dtype(d)) for d in allowed]
        except TypeError as exc:
            raise ValueError(f"rule dtype: {exc}") from None
    for key in ("ndim", "rows", "max_nan", "max_inf", "limit"):
        if key in r and (not isinstance(r[key], int) or isinstance(r[key], bool) or r[key] < 0):
            raise ValueError(f"rule {key} must be a non-negative integer, got {r[key]!r}")
    for key in ("min", "max"):
        if key in r and (isinstance(r[key], bool) or not isinstance(r[key], (int, float))):
            raise ValueError(f"rule {key} must be a number, got {r[key]!r}")
    if "shape" in r and not (isinstance(r["shape"], list)
                             and all(isinstance(n, int) and n >= -1 for n in r["shape"])):
        raise ValueError(f"rule shape must be a list of integers (-1: any), got {r['shape']!r}")
    if "monotonic" in r and r["monotonic"] not in MONOTONIC:
        raise ValueError(f"rule monotonic must be one of {MONOTONIC}, got {r['monotonic']!r}")
    if "unique" in r and not isinstance(r["unique"], bool):
        raise ValueError(f"rule unique must be true or false, got {r['unique']!r}")
    if "key_column" in r and (not isinstance(r["key_column"], int) or r["key_column"] < 0):
        raise ValueError("rule key_column must be a non-negative integer")
    if ndim is not None and ndim > 1 and ("monotonic" in r or "unique" in r) \
            and "key_column" not in r:
        raise ValueError("rules monotonic/unique on a multi-dimensional dataset need key_column")
    r.setdefault("limit", 10)
    return r


def split_file_rules(rules: dict, name: str) -> dict:
    """The rule set for dataset ``name`` from a rules file (top level + its own table)."""
    unknown = sorted(set(rules) - set(RULES) - set(FILE_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in rules file; known: "
                         f"{list(RULES) + list(FILE_KEYS)}")
    base = {k: v for k, v in rules.items() if k in RULES}
    per = rules.get("datasets", {})
    if not isinstance(per, dict):
        raise ValueError("'datasets' in a rules file must be a table of dataset names")
    own = per.get(name, per.get(name.lstrip("/"), {}))
    return {**base, **own}


# local (per-rank) part -------------------------------------------------------------------
def _first(mask_rows: np.ndarray, offset: int, limit: int) -> tuple[int, list[int]]:
    idx = np.flatnonzero(mask_rows)
    return int(idx.size), [int(i) + offset for i in idx[:limit]]


def _row_any(mask: np.ndarray) -> np.ndarray:
    return mask.reshape(mask.shape[0], -1).any(axis=1) if mask.ndim > 1 else mask


def key_values(rules: dict, block: np.ndarray) -> np.ndarray:
    """The key column of ``block`` (the block itself when 1-D)."""
    if block.ndim == 1:
        return block
    width = int(np.prod(block.shape[1:], dtype=np.int64))
    return block.reshape(block.shape[0], width)[:, rules.get("key_column", 0)]


def local_partial(rules: dict, block: np.ndarray, offset: int) -> dict:
    """This rank's share of the checks (counts, first indices, boundary values)."""
    lim, out = rules["limit"], {"n": int(block.shape[0])}
    floating = block.dtype.kind in "fc"
    # Fast path: two vectorised reductions prove clean data clean (min is NaN if any
    # element is NaN); element masks are built only for a rule that may be broken.
    lo = hi = None
    if block.size and any(k in rules for k in ("max_nan", "max_inf", "min", "max")) \
            and block.dtype.kind != "c":
        lo, hi = block.min(), block.max()
    finite = lo is not None and not floating or (lo is not None and np.isfinite(lo)
                                                 and np.isfinite(hi))
    clean = {"max_nan": finite or (lo is not None and not np.isnan(lo) and not np.isnan(hi)),
             "max_inf": finite, "min": finite and "min" in rules and lo >= rules["min"],
             "max": finite and "max" in rules and hi <= rules["max"]}
    if not block.size:
        clean = dict.fromkeys(clean, True)
    masks = {"max_nan": lambda: np.isnan(block) if floating else np.zeros(block.shape, bool),
             "max_inf": lambda: np.isinf(block) if floating else np.zeros(block.shape, bool),
             # NaN compares False: counted by max_nan, not by the range rules
             "min": lambda: np.less(block, rules["min"]),
             "max": lambda: np.greater(block, rules["max"])}
    for key in ("max_nan", "max_inf", "min", "max"):
        if key in rules:
            if clean[key]:
                out[key] = (0, [])
            else:
                m = masks[key]()
                out[key] = (int(m.sum()), _first(_row_any(m), offset, lim)[1])
    if "monotonic" in rules or "unique" in rules:
        if block.ndim > 1 and rules.get("key_column", 0) >= int(np.prod(block.shape[1:])):
            raise ValueError(f"key_column {rules['key_column']} out of range for rows of "
                             f"shape {block.shape[1:]}")
        key = key_values(rules, block)
        if key.size:
            out["ends"] = (key[0].item(), key[-1].item())
        if "monotonic" in rules:
            good = ordered(key[:-1], key[1:], rules["monotonic"])
            out["monotonic"] = (0, []) if good.all() else _first(~good, offset + 1, lim)
        if "unique" in rules:
            sorted_ = bool(np.all(key[1:] >= key[:-1])) if key.size else True
            out["sorted"] = sorted_
            out["adjacent"] = _first(key[1:] == key[:-1], offset + 1, lim) if sorted_ else None
    return out


def ordered(a, b, how: str) -> np.ndarray:
    return {"increasing": np.greater, "non_decreasing": np.greater_equal,
            "decreasing": np.less, "non_increasing": np.less_equal}[how](b, a)


# combining -------------------------------------------------------------------------------
def _merge_counts(parts, key, limit):
    count = sum(p[key][0] for p in parts)
    first = sorted(i for p in parts for i in p[key][1])[:limit]
    return count, first


def _boundaries(parts, offsets):
    """(previous rank's last key, this rank's first key, global index) at rank seams."""
    prev, out = None, []
    for p, off in zip(parts, offsets):
        if "ends" not in p:
            continue
        if prev is not None:
            out.append((prev, p["ends"][0], off))
        prev = p["ends"][1]
    return out


def _unique_by_hash(key: np.ndarray, offset: int, limit: int, comm) -> tuple[int, list[int]]:
    """Collective: count rows whose key occurred at a lower global index (hash shuffle)."""
    size = comm.Get_size()
    if key.dtype.kind in "fc":
        bits = (key.astype(np.float64) + 0.0).view(np.uint64)  # -0.0 == 0.0
    else:
        bits = key.astype(np.int64).view(np.uint64)
    idx = np.arange(offset, offset + key.size, dtype=np.int64)
    owner = ((bits * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(33)) % np.uint64(size)
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner.astype(np.int64), minlength=size)
    splits = np.cumsum(counts)[:-1]
    send = list(zip(np.split(bits[order], splits), np.split(idx[order], splits)))
    got = comm.alltoall(send)
    kb = np.concatenate([g[0] for g in got]) if got else np.empty(0, np.uint64)
    ki = np.concatenate([g[1] for g in got]) if got else np.empty(0, np.int64)
    o = np.lexsort((ki, kb))
    kb, ki = kb[o], ki[o]
    dup = ki[1:][kb[1:] == kb[:-1]]
    local = (int(dup.size), sorted(int(i) for i in np.sort(dup)[:limit]))
    every = comm.allgather(local)
    return sum(c for c, _ in every), sorted(i for _, f in every for i in f)[:limit]


def merge(rules: dict, info, parts: list, offsets: list, key_local, my_offset, comm) -> dict:
    """Collective: the validation report from every rank's partial results."""
    lim = rules["limit"]
    checks = []

    def add(rule, expected, violations, first=(), ok=None, actual=None):
        checks.append({"rule": rule, "expected": expected, "actual": actual,
                       "violations": int(violations), "first": list(first),
                       "ok": (violations == 0) if ok is None else bool(ok)})

    native = str(np.dtype(info.dtype).newbyteorder("="))
    if "dtype" in rules:
        bad = str(np.dtype(native)) not in rules["dtype"]
        add("dtype", rules["dtype"], int(bad), actual=str(np.dtype(native)))
    shape = (sum(p["n"] for p in parts),) + tuple(info.shape[1:])
    if "ndim" in rules:
        add("ndim", rules["ndim"], int(len(shape) != rules["ndim"]), actual=len(shape))
    if "shape" in rules:
        want = rules["shape"]
        bad = len(want) != len(shape) or any(w not in (-1, n) for w, n in zip(want, shape))
        add("shape", want, int(bad), actual=list(shape))
    if "rows" in rules:
        add("rows", rules["rows"], int(shape[0] != rules["rows"]), actual=shape[0])
    for key in ("max_nan", "max_inf"):
        if key in rules:
            n, first = _merge_counts(parts, key, lim)
            add(key, rules[key], n, first, ok=n <= rules[key], actual=n)
    for key in ("min", "max"):
        if key in rules:
            n, first = _merge_counts(parts, key, lim)
            add(key, rules[key], n, first)
    seams = _boundaries(parts, offsets)
    if "monotonic" in rules:
        n, first = _merge_counts(parts, "monotonic", len(parts) * lim + lim)
        bad = [i for a, b, i in seams
               if not ordered(np.array([a]), np.array([b]), rules["monotonic"])[0]]
        first = sorted(first + bad)[:lim]
        add("monotonic", rules["monotonic"], n + len(bad), first)
    if rules.get("unique"):
        if all(p["sorted"] for p in parts) and all(b >= a for a, b, _ in seams):
            n, first = _merge_counts(parts, "adjacent", lim)
            eq = [i for a, b, i in seams if a == b]
            add("unique", True, n + len(eq), sorted(first + eq)[:lim])
        else:
            n, first = _unique_by_hash(key_local, my_offset, lim, comm)
            add("unique", True, n, first)
    return {"shape": list(shape), "dtype": native, "ok": all(c["ok"] for c in checks),
            "checks": checks}


def format_report(report: dict) -> str:
    """A readable table of one or more validation reports."""
    reports = report if isinstance(report, list) else [report]
    lines = []
    for r in reports:
        status = "OK" if r["ok"] else "FAILED"
        lines.append(f"{r.get('target', '')}  {status}  shape {tuple(r['shape'])} {r['dtype']}"
                     + (f"  {r['checksum']}" if r.get("checksum") else ""))
        lines.append(f"  {'rule':10s} {'expected':>22s} {'violations':>11s}  first indices")
        for c in r["checks"]:
            exp = json.dumps(c["expected"])
            mark = "ok" if c["ok"] else "FAIL"
            first = ", ".join(map(str, c["first"])) if c["first"] else ""
            if c.get("actual") is not None and not c["ok"] and not c["first"]:
                first = f"actual {json.dumps(c['actual'])}"
            lines.append(f"  {c['rule']:10s} {exp:>22s} {c['violations']:>11d}  {mark:4s} {first}")
    return "\n".join(lines)
