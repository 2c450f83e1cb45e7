"""``DistArray``: an array distributed over the ranks of a communicator by rows.

Each rank holds one contiguous block of rows (``local``, a numpy array) of a global array
of shape ``global_shape``; the block starts at global row ``offset``. Blocks appear in
rank order: rank r's rows precede rank r+1's. Blocks may be empty and need not be
balanced (a chunk-aligned read or a filter leaves them uneven).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from .agreement import collective, dtype_key
from .comm import check_all, get_comm, lib_comm
from .errors import ShapeMismatchError
from .partition import block_range

__all__ = ["DistArray", "gather_rows", "dtype_key"]


class DistArray:
    """This rank's block of a row-distributed array.

    Parameters
    ----------
    local : numpy.ndarray
        This rank's rows (axis 0 is the distributed axis).
    global_shape : tuple of int
        Shape of the whole array; ``global_shape[1:] == local.shape[1:]``.
    offset : int
        Global index of ``local[0]``.
    comm : mpi4py.MPI.Intracomm, optional
        The communicator the array is distributed over (``None``: COMM_WORLD).

    The constructor trusts its arguments and does not communicate; use
    :meth:`from_local` to build one from blocks of unknown sizes (collective). The first
    collective an array enters verifies (one allgather) that the blocks tile the global
    rows in rank order, and raises ``ShapeMismatchError`` on every rank if not; the
    verified layout is remembered, so later calls cost nothing until ``local`` changes
    its number of rows or ``offset`` changes.
    """

    __slots__ = ("local", "global_shape", "offset", "comm", "origin", "_tiled")

    def __init__(self, local: np.ndarray, global_shape, offset: int, comm: MPI.Comm | None = None,
                 *, origin: int | None = None):
        self.local = local
        self.global_shape = tuple(int(n) for n in global_shape)
        self.offset = int(offset)
        self.comm = get_comm(comm)
        #: Row of ``local[0]`` in the source it was read from (a file dataset); equal to
        #: ``offset`` unless the array is a row selection or a block of ``hp.blocks``.
        self.origin = self.offset if origin is None else int(origin)
        self._tiled = None  # the (offset, rows, global rows) last verified to tile
        if tuple(local.shape[1:]) != self.global_shape[1:]:
            raise ShapeMismatchError(
                f"local block shape {local.shape} does not match global shape {self.global_shape}")

    # construction ---------------------------------------------------------------------
    @classmethod
    @collective("DistArray.from_local", local=("local",))
    def from_local(cls, local, comm: MPI.Comm | None = None) -> "DistArray":
        """Join every rank's block into one distributed array, in rank order.

        Collective. Every rank's block must have the same dtype and trailing shape
        (``ShapeMismatchError``/``TypeError`` on every rank otherwise).
        """
        local = np.asarray(local)
        if local.ndim == 0:
            raise ShapeMismatchError("a DistArray block needs at least one dimension")
        info = lib_comm(comm).allgather((local.shape, dtype_key(local.dtype)))
        check_all(lambda: _check_consistent(info), comm)
        counts = [shape[0] for shape, _ in info]
        rank = get_comm(comm).Get_rank()
        return tiled(cls(local, (sum(counts),) + local.shape[1:], sum(counts[:rank]), comm))

    @classmethod
    def from_global(cls, array, comm: MPI.Comm | None = None) -> "DistArray":
        """Take this rank's balanced block of ``array``, which every rank holds whole.

        Not collective (no communication); every rank must pass the same array.
        """
        array = np.asarray(array)
        comm = get_comm(comm)
        start, stop = block_range(array.shape[0], comm.Get_size(), comm.Get_rank())
        return cls(array[start:stop], array.shape, start, comm)

    # properties -----------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """Global shape (same as ``global_shape``)."""
        return self.global_shape

    @property
    def ndim(self) -> int:
        return len(self.global_shape)

    @property
    def dtype(self) -> np.dtype:
        return self.local.dtype

    @property
    def rows(self) -> tuple[int, int]:
        """Global rows ``[start, stop)`` held by this rank."""
        return self.offset, self.offset + self.local.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the whole (global) array."""
        return int(np.prod(self.global_shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.global_shape[0]

    def _layout(self):
        """(agreement key, comm, (offset, local rows, global rows)): see
        :func:`~hpcproc.agreement.agree`."""
        key = ("DistArray", self.global_shape, self.dtype.str, self.local.shape[1:])
        rows = self.local.shape[0] if self.local.ndim else -1
        return key, self.comm, (self.offset, rows, self.global_shape[0])

    def _local_problem(self) -> str | None:
        """Why this rank's block cannot be a block of the array (``local`` replaced by an
        array of another trailing shape), or None. Local."""
        if self.local.ndim and self.local.shape[1:] != tuple(self.global_shape[1:]):
            return (f"its blocks have trailing shape {self.local.shape[1:]} but the array's "
                    f"shape is {tuple(self.global_shape)}")
        return None

    def __repr__(self) -> str:
        comm = self.comm
        odd = self.local.ndim and self.local.shape[1:] != tuple(self.global_shape[1:])
        block = f", block={self.local.shape}" if odd else ""
        return (f"DistArray(shape={self.global_shape}, dtype={self.dtype}, rows={self.rows}"
                f"{block}, rank={comm.Get_rank()}/{comm.Get_size()})")

    # communication --------------------------------------------------------------------
    def counts(self) -> np.ndarray:
        """Number of rows on every rank (collective)."""
        return np.asarray(lib_comm(self.comm).allgather(self.local.shape[0]), dtype=np.int64)

    def gather(self, root: int = 0) -> np.ndarray | None:
        """The whole array on ``root`` (``None`` elsewhere). Collective."""
        return gather_rows(self.local, self.comm, root)

    def allgather(self) -> np.ndarray:
        """The whole array on every rank. Collective."""
        return gather_rows(self.local, self.comm, None)

    def with_local(self, local: np.ndarray) -> "DistArray":
        """A DistArray of the same layout holding ``local`` (same number of rows)."""
        if local.shape[0] != self.local.shape[0]:
            raise ShapeMismatchError("with_local needs a block with the same number of rows")
        out = DistArray(local, (self.global_shape[0],) + local.shape[1:], self.offset, self.comm)
        out._tiled = self._tiled  # same rows: tiles if this one does
        return out


def tiled(x):
    """``x``, marked as tiling its rows (built by a collective that computed the offsets)."""
    x._tiled = x._layout()[2]
    return x


def _check_consistent(info) -> None:
    shapes = {shape[1:] for shape, _ in info}
    dtypes = {dtype for _, dtype in info}
    if len(shapes) > 1:
        raise ShapeMismatchError(f"blocks differ in trailing shape across ranks: {sorted(shapes)}")
    if len(dtypes) > 1:
        raise TypeError(f"blocks differ in dtype across ranks: {sorted(dtypes)}")


def gather_rows(local: np.ndarray, comm: MPI.Comm | None = None, root: int | None = 0,
                nrows=None, out=None):
    """Concatenate every rank's ``local`` rows on ``root`` (or everywhere if ``None``).

    Collective. Moves raw bytes with ``Gatherv``/``Allgatherv``; counts above 2**31 use
    MPI-4 large-count calls (mpi4py selects them). Internal callers that know every
    rank's row count pass it (``nrows``: no allgather) and may pass the output (``out``,
    on ``root``: an array of the total rows), allocated before a collective that agreed
    on it.
    """
    comm = lib_comm(comm)
    local = np.ascontiguousarray(local)
    rowbytes = local.dtype.itemsize * int(np.prod(local.shape[1:], dtype=np.int64))
    nrows = np.asarray(comm.allgather(local.shape[0]) if nrows is None else nrows,
                       dtype=np.int64)
    total = int(nrows.sum())
    sizes = nrows * rowbytes
    displs = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    send = local.reshape(-1).view(np.uint8)
    if root is None or comm.Get_rank() == root:
        if out is None:
            out = np.empty((total,) + local.shape[1:], dtype=local.dtype)
        recv = [out.reshape(-1).view(np.uint8), (sizes, displs), MPI.BYTE]
    else:
        out, recv = None, None
    if root is None:
        comm.Allgatherv([send, MPI.BYTE], recv)
    else:
        comm.Gatherv([send, MPI.BYTE], recv, root=root)
    return out
