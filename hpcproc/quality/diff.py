"""Parallel, streaming comparison of two HDF5 datasets (``hpcproc diff``).

Both datasets are scanned together with :func:`hpcproc.blocks` under the same balanced
row decomposition, so memory stays bounded by ``block_bytes`` per rank and dataset
whatever the dataset size. Elements ``a`` and ``b`` are equal when
``|a - b| <= atol + rtol * |b|`` (numpy's ``isclose``), or both NaN, or both the same
infinity.
"""

from __future__ import annotations

import math

import numpy as np

from ..agreement import collective
from ..comm import check_all, get_comm, lib_comm
from ..io._meta import dataset_info

__all__ = ["diff", "format_diff"]


def _method(info) -> str:
    # balanced decomposition on both sides (not chunk-aligned): the rows line up
    return "direct" if info.direct_readable else "h5py"


def _compare(a: np.ndarray, b: np.ndarray, rtol: float, atol: float):
    """Boolean mask of differing elements, and the abs/rel differences where they differ.

    Integers are compared exactly (int64 IDs and nanosecond times beyond 2**53 differ by
    one as well): the differences of unequal elements are computed with Python integers,
    and compared exactly with the tolerance; they are reported rounded to float64."""
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        af, bf = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore", over="ignore"):
            delta = np.abs(af - bf)
            same = (delta <= atol + rtol * np.abs(bf)) | (np.isnan(af) & np.isnan(bf)) \
                | (af == bf)
        return ~same, delta, np.abs(bf)
    differs = a != b
    delta = np.zeros(a.shape, np.float64)
    if differs.any():
        exact = np.abs(a[differs].astype(object) - b[differs].astype(object))
        base = np.abs(b[differs].astype(object))
        if atol or rtol:  # Python compares an int with a float exactly
            within = np.array([d <= atol + rtol * float(v) for d, v in zip(exact, base)],
                              dtype=bool)
            differs[differs] = ~within
            exact = exact[~within]
        delta[differs] = exact.astype(np.float64)
    return differs, delta, np.abs(b.astype(np.float64))


def _accumulate(xa, xb, rtol, atol, limit, first, count, max_abs, max_rel):
    """Fold one pair of blocks into the running results (``first`` grows in place)."""
    if xa.local.shape != xb.local.shape:  # cannot happen with equal shapes; be explicit
        raise RuntimeError("internal error: blocks of a and b do not line up")
    differs, delta, base = _compare(xa.local, xb.local, rtol, atol)
    n = int(differs.sum())
    if n:
        count += n
        d = delta[differs]
        d = d[~np.isnan(d)]  # NaN against a number differs, with no |a - b| to report
        if d.size:
            max_abs = max(max_abs, float(d.max()))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = d / base[differs]
        r = r[~np.isnan(r)]
        if r.size:
            max_rel = max(max_rel, float(r.max()))
        if len(first) < limit:
            idx = np.argwhere(differs)[:limit - len(first)]
            idx[:, 0] += xa.origin
            first.extend(tuple(int(v) for v in row) for row in idx)
    return count, max_abs, max_rel


@collective("hp.diff", paths=("a_path", "b_path"))
def diff(a_path: str, a_dset: str, b_path: str, b_dset: str, rtol: float = 0.0,
         atol: float = 0.0, comm=None, block_bytes: int = 64 << 20, limit: int = 10) -> dict:
    """Compare two datasets element by element, in parallel and with bounded memory.

    Collective.

    Parameters
    ----------
    a_path, a_dset, b_path, b_dset : str
        The two datasets.
    rtol, atol : float
        Tolerances (``|a - b| <= atol + rtol * |b|`` counts as equal); default exact.
    block_bytes : int
        Bytes read per rank and step from each dataset.
    limit : int
        How many differing indices to report (the first ones in C order).

    Returns
    -------
    dict
        ``equal`` (bool), ``shape``/``dtype`` of both, ``same_shape``, ``same_dtype``,
        ``compared`` (elements), ``differing``, ``max_abs_diff``, ``max_rel_diff``
        (over differing elements, relative to ``|b|``; ``None`` when nothing differs or
        only NaN against a number does; integers are compared exactly),
        ``first`` (index tuples of the first differing elements). Identical on every rank.
        Datasets of different shapes are not compared element-wise (``equal`` False).
    """
    comm = get_comm(comm)
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0 \
                or math.isinf(v):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if int(block_bytes) < 1 or int(limit) < 0:
        raise ValueError("block_bytes must be positive and limit >= 0")
    ia, ib = dataset_info(a_path, a_dset, comm), dataset_info(b_path, b_dset, comm)
    da, db = str(ia.native_dtype), str(ib.native_dtype)
    result = {"a": f"{a_path}:{ia.name}", "b": f"{b_path}:{ib.name}",
              "shape": [list(ia.shape), list(ib.shape)], "dtype": [da, db],
              "same_shape": ia.shape == ib.shape, "same_dtype": da == db,
              "rtol": rtol, "atol": atol, "compared": 0, "differing": None,
              "max_abs_diff": None, "max_rel_diff": None, "first": []}
    if ia.shape != ib.shape:
        result["equal"] = False
        return result
    from ..io.read import blocks

    step = max(1, int(block_bytes) // max(1, ia.row_bytes, ib.row_bytes))
    count, max_abs, max_rel, first = 0, -1.0, -1.0, []
    scan_a = blocks(a_path, a_dset, step * max(1, ia.row_bytes), comm, method=_method(ia))
    scan_b = blocks(b_path, b_dset, step * max(1, ib.row_bytes), comm, method=_method(ib))
    errors = []
    for xa, xb in zip(scan_a, scan_b):
        if errors:  # keep stepping after a local error: the scans are collective
            continue
        try:
            count, max_abs, max_rel = _accumulate(xa, xb, rtol, atol, limit, first,
                                                  count, max_abs, max_rel)
        except Exception as exc:  # noqa: BLE001 - raised on every rank below
            errors.append(exc)
    for _ in scan_a:  # finish both scans (records both inputs in the lineage)
        pass
    for _ in scan_b:
        pass

    def agree():
        if errors:
            raise errors[0]
    check_all(agree, comm)
    every = lib_comm(comm).allgather((count, max_abs, max_rel, first))
    total = sum(e[0] for e in every)
    result.update(
        compared=int(np.prod(ia.shape, dtype=np.int64)), differing=total,
        max_abs_diff=(max(e[1] for e in every) if total and max(e[1] for e in every) >= 0
                      else None),
        max_rel_diff=(max(e[2] for e in every) if total and max(e[2] for e in every) >= 0
                      else None),
        first=[list(i) for e in every for i in e[3]][:limit])
    result["equal"] = total == 0 and result["same_dtype"]
    return result


def format_diff(r: dict) -> str:
    """A readable summary of a :func:`diff` result."""
    lines = [f"a  {r['a']}  shape {tuple(r['shape'][0])} {r['dtype'][0]}",
             f"b  {r['b']}  shape {tuple(r['shape'][1])} {r['dtype'][1]}"]
    if not r["same_shape"]:
        lines.append("shapes differ: not compared element-wise")
        return "\n".join(lines)
    if not r["same_dtype"]:
        lines.append("dtypes differ (values compared as numbers)")
    lines.append(f"compared   {r['compared']} elements (rtol {r['rtol']}, atol {r['atol']})")
    lines.append(f"differing  {r['differing']}")
    if r["differing"]:
        if r["max_abs_diff"] is not None:
            lines.append(f"max |a-b|  {r['max_abs_diff']:.6g}")
        if r["max_rel_diff"] is not None:
            lines.append(f"max rel    {r['max_rel_diff']:.6g}")
        lines.append("first      " + ", ".join(str(tuple(i)) for i in r["first"]))
    lines.append("EQUAL" if r["equal"] else "DIFFERENT")
    return "\n".join(lines)
