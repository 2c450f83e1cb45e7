"""``DistTable``: named columns of equal length, distributed over ranks by rows.

A particle set or an event list: every column is a numpy array whose axis 0 is the row,
all columns of a rank hold the same rows (same local length and global offset), so a
whole row can move between ranks as one unit (shuffles, sorts, joins).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
from mpi4py import MPI

from .agreement import collective
from .array import DistArray, dtype_key, gather_rows
from .comm import check_all, get_comm, lib_comm
from .errors import ShapeMismatchError

__all__ = ["DistTable"]


class DistTable:
    """This rank's rows of a table of named, equal-length columns.

    Parameters
    ----------
    columns : mapping of str to numpy.ndarray
        This rank's block of every column; all with the same length along axis 0.
    num_rows : int
        Global number of rows.
    offset : int
        Global index of this rank's first row.
    comm : mpi4py.MPI.Intracomm, optional
        Communicator (``None``: COMM_WORLD).

    The constructor does not communicate; :meth:`from_local` and :meth:`from_arrays`
    compute ``num_rows`` and ``offset`` (collective).
    """

    __slots__ = ("_columns", "num_rows", "offset", "comm", "_tiled")

    def __init__(self, columns: Mapping[str, np.ndarray], num_rows: int, offset: int,
                 comm: MPI.Comm | None = None):
        check_names(columns)
        self._columns = {str(k): np.asarray(v) for k, v in columns.items()}
        _check_lengths(self._columns)
        self.num_rows = int(num_rows)
        self.offset = int(offset)
        self.comm = get_comm(comm)
        self._tiled = None  # the (offset, rows, global rows) last verified to tile

    @classmethod
    @collective("DistTable.from_local", local=("columns",))
    def from_local(cls, columns: Mapping[str, np.ndarray],
                   comm: MPI.Comm | None = None) -> "DistTable":
        """Build a table from every rank's local columns, rows in rank order.

        Collective. Every rank must pass the same column names; mismatched local lengths
        raise ``ShapeMismatchError`` on every rank.
        """
        given = list(columns)  # keys equal as strings: an error on every rank
        columns = {str(k): np.asarray(v) for k, v in columns.items()}
        check_all(lambda: (check_names(given), _check_lengths(columns)), comm)
        names = lib_comm(comm).allgather(list(columns))
        check_all(lambda: _check_names(names), comm)
        n = _local_rows(columns)
        counts = lib_comm(comm).allgather(n)
        rank = get_comm(comm).Get_rank()
        out = cls(columns, sum(counts), sum(counts[:rank]), comm)
        out._tiled = out._layout()[2]
        return out

    @classmethod
    @collective("DistTable.from_arrays")
    def from_arrays(cls, arrays: Mapping[str, DistArray]) -> "DistTable":
        """Build a table from DistArrays with identical row distributions. Collective."""
        if not arrays:
            raise ValueError("a table needs at least one column")
        first = next(iter(arrays.values()))

        def check():
            for name, a in arrays.items():
                if a.global_shape[0] != first.global_shape[0] or a.rows != first.rows:
                    raise ShapeMismatchError(
                        f"column {name!r} has {a.global_shape[0]} rows (local rows {a.rows}), "
                        f"column {next(iter(arrays))!r} has {first.global_shape[0]} "
                        f"(local rows {first.rows})")

        check_all(check, first.comm)
        out = cls({k: a.local for k, a in arrays.items()}, first.global_shape[0],
                  first.offset, first.comm)
        out._tiled = out._layout()[2]  # its columns were verified to tile on entry
        return out

    # access ---------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    @property
    def local_rows(self) -> int:
        return _local_rows(self._columns)

    @property
    def rows(self) -> tuple[int, int]:
        """Global rows ``[start, stop)`` held by this rank."""
        return self.offset, self.offset + self.local_rows

    def local(self, name: str | None = None):
        """This rank's block of column ``name``, or a dict of all columns."""
        if name is None:
            return dict(self._columns)
        return self._columns[name]

    def __getitem__(self, name: str) -> DistArray:
        col = self._columns[name]
        out = DistArray(col, (self.num_rows,) + col.shape[1:], self.offset, self.comm)
        if self._tiled == self._layout()[2]:
            out._tiled = self._tiled  # a column of a verified table tiles too
        return out

    def _layout(self):
        """(agreement key, comm, (offset, local rows, global rows)): see
        :func:`~hpcproc.agreement.agree`."""
        key = ("DistTable", self.num_rows,
               tuple((k, dtype_key(v.dtype), v.shape[1:]) for k, v in self._columns.items()))
        return key, self.comm, (self.offset, self.local_rows, self.num_rows)

    def __contains__(self, name: str) -> bool:
        return name in self._columns

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        cols = ", ".join(f"{k}:{v.dtype}" for k, v in self._columns.items())
        return f"DistTable(rows={self.num_rows}, local_rows={self.rows}, columns=[{cols}])"

    # communication --------------------------------------------------------------------
    def gather(self, root: int = 0) -> dict | None:
        """Every column, whole, on ``root`` (``None`` elsewhere). Collective."""
        out = {k: gather_rows(v, self.comm, root) for k, v in self._columns.items()}
        return out if self.comm.Get_rank() == root else None

    def allgather(self) -> dict:
        """Every column, whole, on every rank. Collective."""
        return {k: gather_rows(v, self.comm, None) for k, v in self._columns.items()}


def _local_rows(columns: Mapping[str, np.ndarray]) -> int:
    return next(iter(columns.values())).shape[0] if columns else 0


def check_names(keys, what: str = "table") -> None:
    """``ValueError`` when two of the column ``keys`` are the same as strings (``1`` and
    ``'1'``): made into names by ``str``, one column would silently replace the other."""
    names = [str(k) for k in keys]
    if len(set(names)) < len(names):
        same = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{what}: column names {same} are given twice (keys that are the "
                         f"same as strings, such as 1 and '1'): one would replace the other")


def _check_lengths(columns: Mapping[str, np.ndarray]) -> None:
    lengths = {k: (v.shape[0] if v.ndim else None) for k, v in columns.items()}
    if any(n is None for n in lengths.values()):
        raise ShapeMismatchError("table columns must be arrays with at least one dimension")
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ShapeMismatchError(f"table columns have different lengths: {detail}")


def _check_names(names_per_rank) -> None:
    if any(n != names_per_rank[0] for n in names_per_rank):
        raise ValueError(f"ranks passed different column names: {names_per_rank}")
