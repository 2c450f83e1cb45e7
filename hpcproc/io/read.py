"""Parallel reads of HDF5 datasets into DistArrays and DistTables.

Strategy per dataset (``method="auto"``):

* contiguous, unfiltered, allocated: ``direct`` -- every rank ``pread``s its byte range;
* chunked (compressed or not): ``chunked`` -- chunk-aligned decomposition, every rank
  reads its own whole chunks through h5py;
* anything else (compact, virtual, external storage, never-written data): ``h5py`` --
  balanced decomposition, every rank reads its rows through h5py.

``method="mpio"`` forces collective MPI-IO reads (parallel h5py only).

Links are followed as h5py follows them (the metadata names the file that holds the
data). A failure while reading on any rank is raised on every rank. CF packing and
masking (netCDF ``scale_factor``, ``add_offset``, ``_FillValue``...) is decoded block by
block after the read (:mod:`hpcproc.io.cf`) unless ``mask_and_scale=False``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ..agreement import collective
from ..array import DistArray, tiled
from ..comm import get_comm, lib_comm
from ..errors import ShapeMismatchError
from ..observe import progress
from ..partition import block_range
from ..table import DistTable
from . import ingest
from ._meta import dataset_info
from .plan import LAYOUTS, METHODS, ReadPlan, row_selection, strategy

__all__ = ["read", "read_table", "blocks", "METHODS", "LAYOUTS", "strategy"]



@collective("hp.read", local=("out", "local_rows"), paths=("path",))
def read(path: str, dataset: str, comm=None, rows=None, method: str = "auto",
         out: np.ndarray | None = None, validate=None, *, local_rows=None,
         layout: str = "auto", mask_and_scale: bool = True) -> DistArray:
    """Read this rank's block of an HDF5 dataset along axis 0.

    Collective. Metadata is read on rank 0 and broadcast; then each rank reads only its
    own rows (see the module docstring for the strategies).

    Parameters
    ----------
    path, dataset : str
        File and dataset name (``"/group/x"``). netCDF4 files are HDF5 files.
    comm : mpi4py.MPI.Intracomm, optional
        Communicator; ``None`` means COMM_WORLD.
    rows : slice or (start, stop), optional
        Contiguous row selection of the dataset (default: all rows).
    method : {"auto", "direct", "chunked", "h5py", "mpio"}
        Force a read strategy; ``"auto"`` picks the fastest available one.
    out : numpy.ndarray, optional
        Read this rank's block into this array (the result's dtype, C-contiguous, the
        block's shape), e.g. to reuse memory across reads; checked on every rank first.
    local_rows : (int, int), optional, keyword-only
        This rank's own rows ``(start, stop)`` of the selection (per rank: a simulation
        code's own decomposition). The blocks must tile the selection: contiguous, in
        rank order, non-overlapping, covering every row (``ShapeMismatchError`` on every
        rank otherwise). Any strategy reads any block (a chunk shared by two ranks is
        read by both).
    layout : {"auto", "balanced"}, keyword-only
        Decomposition when ``local_rows`` is not given: ``"auto"`` uses chunk-aligned
        blocks for chunked datasets (the fastest: no chunk is read twice) and balanced
        blocks otherwise; ``"balanced"`` always uses :func:`hpcproc.block_range`'s
        blocks (sizes differ by at most one row), whatever the storage.
    validate : dict or str, optional
        Validation rules (a dict, or a TOML/JSON file; see :mod:`hpcproc.quality.rules`),
        checked in the same pass as the read; ``ValidationError`` (with ``.report``) on
        every rank if the data breaks one.
    mask_and_scale : bool
        Decode netCDF/CF packing and missing values where the dataset has the attributes
        (``scale_factor``, ``add_offset``, ``_FillValue``, ``missing_value``,
        ``valid_min``/``valid_max``/``valid_range``), as netCDF4-python and xarray do:
        missing values become NaN (see :mod:`hpcproc.io.cf`). ``False``: the stored values.

    The rows read are recorded (with a crc32 of their content) as an input of the
    lineage stored on everything this process writes next (:mod:`hpcproc.io.lineage`).

    Returns
    -------
    DistArray
        ``global_shape`` is the selection's shape; ``offset`` counts from the start of
        the selection and ``origin`` is the row in the file. Data is in native byte order
        (and decoded, see ``mask_and_scale``).

    Raises
    ------
    FileNotFoundError, OSError, DatasetNotFoundError, NotADatasetError, DtypeError,
    ValueError
        On every rank, before any data is read.
    """
    comm = get_comm(comm)
    plan = ReadPlan.make(path, dataset, comm, rows, method, layout=layout,
                         local_rows=local_rows, mask_and_scale=mask_and_scale, out=out)
    info, start, stop = plan.info, plan.start, plan.stop
    rules = ingest.prepare_rules(validate, info, comm)
    lo, hi = plan.ranges[comm.Get_rank()]
    local, crc = plan.read(lo, hi, comm, out)
    ingest.check_report(ingest.after_read(info, start, stop, local, lo - start, comm, rules,
                                            crc=crc))
    return tiled(DistArray(local, (stop - start,) + info.shape[1:], lo - start, comm,
                           origin=lo))


@collective("hp.read_table", paths=("path",))
def read_table(path: str, columns: Mapping[str, str], comm=None, rows=None,
               method: str = "auto", *, mask_and_scale: bool = True) -> DistTable:
    """Read several datasets of one file as the columns of a DistTable.

    Collective. ``columns`` maps column names to dataset names, e.g.
    ``{"x": "/p/x", "id": "/p/id"}``. All datasets must have the same number of rows
    (``ShapeMismatchError`` on every rank otherwise); the rows are split identically
    (balanced, not chunk-aligned, so chunked columns of different chunk sizes line up).
    ``mask_and_scale`` decodes CF attributes as in :func:`read`.
    """
    comm = get_comm(comm)
    if not columns:
        raise ValueError("read_table needs at least one column")
    infos = {k: dataset_info(path, name, comm) for k, name in columns.items()}
    lengths = {k: i.rows for k, i in infos.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} ({columns[k]}): {n}" for k, n in lengths.items())
        raise ShapeMismatchError(f"columns of {path} have different lengths: {detail}")
    first = next(iter(infos.values()))
    start, stop = row_selection(rows, first.rows, first.name)
    hows = {k: strategy(i, method) for k, i in infos.items()}
    lo, hi = (start + b for b in block_range(stop - start, comm.Get_size(), comm.Get_rank()))
    local = {}
    for k, i in infos.items():
        plan = ReadPlan(i, start, stop, "h5py" if hows[k] == "chunked" else hows[k],
                        None, "balanced", None, mask_and_scale)
        local[k], crc = plan.read(lo, hi, comm)
        ingest.after_read(i, start, stop, local[k], lo - start, comm, crc=crc)
    table = DistTable(local, stop - start, lo - start, comm)
    table._tiled = table._layout()[2]  # balanced blocks: tiles by construction
    return table


@collective("hp.blocks", local=("local_rows",), paths=("path",))
def blocks(path: str, dataset: str, block_bytes: int = 64 << 20, comm=None, rows=None,
           method: str = "auto", reuse: bool = False, *, local_rows=None,
           layout: str = "auto", mask_and_scale: bool = True,
           first: int = 0) -> Iterator[DistArray]:
    """Iterate over a dataset in successive blocks of at most ``block_bytes`` per rank.

    Collective: every rank receives the same number of blocks (ranks that run out get
    empty ones), so the loop body may itself call collectives. Each yielded DistArray is
    one step of the scan: rank r holds the next rows of its own share of the dataset;
    ``origin`` gives their row in the file. A file far larger than memory is processed
    with memory bounded by ``block_bytes`` per rank (rounded up to one row, or to one
    chunk length for chunked datasets).

    With ``reuse=True`` every block is read into the same buffer: faster (no new memory
    to fault in per step), but a block is valid only until the next step; copy what you
    keep. ``first``: start with that block (a resumed scan: not the whole selection, so no
    lineage record).

    ``local_rows`` and ``layout`` (keyword-only) choose each rank's share as in
    :func:`read`.

    ``mask_and_scale`` decodes CF attributes block by block, as in :func:`read`
    (``block_bytes`` counts the stored bytes).
    """
    comm = get_comm(comm)
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise ValueError(f"first must be an int >= 0, got {first!r}")
    if int(block_bytes) < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    plan = ReadPlan.make(path, dataset, comm, rows, method, layout=layout,
                         local_rows=local_rows, mask_and_scale=mask_and_scale, what="hp.blocks")
    info, start, stop, ranges = plan.info, plan.start, plan.stop, plan.ranges
    rank = comm.Get_rank()
    step = max(1, int(block_bytes) // max(1, info.row_bytes))
    if plan.aligned:
        step = max(1, step // info.chunks[0]) * info.chunks[0]
    nsteps = max(-(-(hi - lo) // step) for lo, hi in ranges) if ranges else 0
    lib_comm(comm)  # create the library communicator before the first block on all ranks
    mine = ranges[rank][1] - ranges[rank][0]
    dtype = plan.dtype
    buf = (np.empty((min(step, mine),) + info.shape[1:], dtype=dtype) if reuse else None)
    raw = (np.empty_like(buf, dtype=info.native_dtype)
           if reuse and dtype != info.native_dtype else buf)
    bar = progress.scan(f"{path}:{info.name}", mine * info.row_bytes,
                        (stop - start) * info.row_bytes)
    crc = ingest.BlockChecksum(info, start, stop)
    crc.active = crc.active and not first
    for i in range(first, nsteps):
        pieces = [(min(hi, lo + i * step), min(hi, lo + (i + 1) * step)) for lo, hi in ranges]
        counts = [b - a for a, b in pieces]
        a, b = pieces[rank]
        local, running = plan.read(a, b, comm, None if buf is None else buf[:b - a], crc.crc,
                                   crc.active, None if raw is None else raw[:b - a])
        bar.update(local.nbytes)
        crc.update(local, running)
        yield tiled(DistArray(local, (sum(counts),) + info.shape[1:], sum(counts[:rank]),
                               comm, origin=a))
    bar.close()
    if not first:
        crc.finish(info, start, stop, comm)  # a complete scan is an input of the lineage
