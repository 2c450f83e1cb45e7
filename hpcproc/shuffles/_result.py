"""Inputs and outputs of the shuffle layer.

Every operation accepts a :class:`~hpcproc.DistTable`, a 1-D :class:`~hpcproc.DistArray`
or a mapping of local numpy columns, validates it on every rank (so a bad block on one
rank raises the same error everywhere) and returns a :class:`ShuffledTable` or
:class:`ShuffledArray`: a DistTable/DistArray with a ``meta`` dict (strategy, rounds of
the exchange, rows held by every rank after the operation in ``meta["rank_rows"]``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..array import DistArray, dtype_key
from ..comm import check_all, fail_together, get_comm, lib_comm
from ..errors import ShapeMismatchError
from ..table import DistTable, check_names

__all__ = ["ShuffledTable", "ShuffledArray", "as_columns", "make_result", "key_list"]

ARRAY_COLUMN = "value"


class ShuffledTable(DistTable):
    """A :class:`DistTable` produced by a shuffle operation, with ``meta`` (a dict)."""

    __slots__ = ("meta",)


class ShuffledArray(DistArray):
    """A :class:`DistArray` produced by a shuffle operation, with ``meta`` (a dict)."""

    __slots__ = ("meta",)


def _local_check(columns) -> None:
    if not columns:
        raise ValueError("the input has no columns")
    lengths = {k: (np.shape(v)[0] if np.ndim(v) else None) for k, v in columns.items()}
    if any(n is None for n in lengths.values()):
        raise ShapeMismatchError("columns must be arrays with at least one dimension")
    for k, v in columns.items():
        if v.dtype.hasobject:  # pointers: meaningless on another rank
            raise TypeError(f"column {k!r} is {v.dtype}: object columns cannot move between "
                            "ranks (convert to a numeric, string or bytes type)")
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ShapeMismatchError(f"columns have different lengths on this rank: {detail}")


def as_columns(data, comm=None, what: str = "input"):
    """``(columns, comm, kind)`` of a table, 1-D array or mapping of local columns.

    Collective: checks on every rank that local columns have equal lengths and that all
    ranks agree on names, dtypes and trailing shapes (same error on every rank).
    ``kind`` is ``"array"`` for DistArray / ndarray input (one column ``"value"``).
    """
    given = ()  # a mapping's keys, as given
    if isinstance(data, DistTable):
        columns, kind = data.local(), "table"
        comm = data.comm if comm is None else comm
    elif isinstance(data, DistArray):
        columns, kind = {ARRAY_COLUMN: data.local}, "array"
        comm = data.comm if comm is None else comm
    elif isinstance(data, np.ndarray):
        columns, kind = {ARRAY_COLUMN: data}, "array"
    elif isinstance(data, Mapping):
        given = list(data)  # keys equal as strings (1 and '1'): an error on every rank
        columns, kind = {str(k): np.asarray(v) for k, v in data.items()}, "table"
    else:
        raise TypeError(f"{what} must be a DistTable, DistArray or mapping of columns, "
                        f"not {type(data).__name__}")
    comm = get_comm(comm)
    check_all(lambda: (check_names(given, what), _local_check(columns)), comm)
    sigs = lib_comm(comm).allgather([(k, dtype_key(v.dtype), v.shape[1:])
                                      for k, v in columns.items()])

    def agree():
        if any(s != sigs[0] for s in sigs):
            raise TypeError(f"{what}: ranks hold columns with different names, dtypes or "
                            f"shapes: {sigs}")

    check_all(agree, comm)
    return columns, comm, kind


def key_list(by, columns, what: str = "by") -> list[str]:
    """The key column names of ``by`` (a name or a list of names), checked locally."""
    names = [by] if isinstance(by, str) else list(by) if by is not None else []
    if not names:
        raise ValueError(f"{what} needs at least one key column")
    for name in names:
        if name not in columns:
            raise KeyError(f"no column {name!r} (columns: {list(columns)})")
    return names


def make_result(columns, comm, kind: str, meta: dict, error=None, what: str = "shuffle"):
    """Wrap this rank's result columns; fills ``meta["rank_rows"]``. Collective.

    ``error``: an exception this rank raised since its last collective (``columns`` is
    then ignored); it rides on the row counts' allgather and is raised on every rank
    (:func:`hpcproc.comm.fail_together`; the message begins with ``what``)."""
    n = -1 if error is not None else (next(iter(columns.values())).shape[0] if columns else 0)
    counts = lib_comm(comm).allgather(int(n))
    if min(counts) < 0:
        fail_together(error, what, comm)
    meta = dict(meta, rank_rows=counts)
    offset, total = sum(counts[:comm.Get_rank()]), sum(counts)
    if kind == "array":
        col = next(iter(columns.values()))
        out = ShuffledArray(col, (total,) + col.shape[1:], offset, comm)
    else:
        out = ShuffledTable(columns, total, offset, comm)
    out.meta = meta
    out._tiled = out._layout()[2]  # offsets from the gathered counts: tiles by construction
    return out
