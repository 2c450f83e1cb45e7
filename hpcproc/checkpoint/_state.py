"""What can be checkpointed, and how each kind of value is laid out in a checkpoint.

A state is a dict with string keys. Each value is one of:

========== ===================================== ==============================================
kind       value                                 stored as
========== ===================================== ==============================================
``array``  :class:`~hpcproc.DistArray`           every rank's rows in its own file, by global row
``table``  :class:`~hpcproc.DistTable`           the same, one dataset per column
``local``  ``numpy.ndarray``                     this rank's array (same rank count to restore)
``rng``    ``numpy.random.Generator``            this rank's bit generator state (JSON bytes)
``scalar`` numpy scalar (``np.float32(1)``)      dtype + exact bytes in the manifest (rank 0's)
``json``   None, bool, int, float, str, list,    the manifest (rank 0's value)
           dict of those
========== ===================================== ==============================================

No pickle anywhere: restoring a checkpoint never runs code from the files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..array import DistArray
from ..table import DistTable
from ._format import column_dataset, dataset_name
from ._rng import rng_to_bytes

__all__ = ["Prepared", "prepare", "check_layout", "NUMERIC_KINDS"]

NUMERIC_KINDS = "biufc"


@dataclass
class Prepared:
    """One rank's state, validated and ready to write (a snapshot when copied)."""

    items: list = field(default_factory=list)      # (dataset name, contiguous ndarray)
    signature: list = field(default_factory=list)  # must be identical on every rank
    rows: dict = field(default_factory=dict)       # distributed entry -> (start, count)
    local: dict = field(default_factory=dict)      # per-rank facts for the manifest
    shared: dict = field(default_factory=dict)     # manifest entries taken from rank 0
    attrs: dict = field(default_factory=dict)      # dataset -> attributes in the rank file


def _native(a: np.ndarray, copy, key=None) -> np.ndarray:
    """``a`` as a C-contiguous native-order array; a copy if ``copy`` (a dict of spare
    buffers from an earlier snapshot, reused when ``key`` matches: no new memory)."""
    if a.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"cannot checkpoint arrays of dtype {a.dtype} "
                        f"(numeric and bool arrays only)")
    if not a.dtype.isnative:
        return np.asarray(a.astype(a.dtype.newbyteorder("=")), order="C")
    if copy is False or copy is None:
        return np.asarray(a, order="C")
    spare = copy.pop((key, a.shape, a.dtype.str), None) if isinstance(copy, dict) else None
    if spare is None:
        return np.array(a, order="C", copy=True)
    np.copyto(spare, a)
    return spare


def _check_comm(value, name, size):
    if value.comm.Get_size() != size:
        raise ValueError(f"state[{name!r}] is distributed over {value.comm.Get_size()} ranks, "
                         f"the checkpointer's communicator has {size}")


def prepare(state: Mapping, size: int, copy=False) -> Prepared:
    """Validate ``state`` and lay it out for this rank's file. Not collective.

    With ``copy`` true every array is copied, so later changes to the state cannot change
    what is saved (asynchronous saves); ``copy`` may be a dict of spare buffers
    ``{(dataset, shape, dtype): array}`` of an earlier snapshot, reused where they fit.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a dict, not {type(state).__name__}")
    out = Prepared()
    for name, value in state.items():
        if not isinstance(name, str):
            raise TypeError(f"state keys must be strings, got {name!r}")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise TypeError(f"state key {name!r} is not valid Unicode") from None
        ds = dataset_name(name)
        if isinstance(value, DistArray):
            _check_comm(value, name, size)
            local = _native(value.local, copy, ds)
            out.items.append((ds, local))
            out.attrs[ds] = {"hpcproc_entry": name, "hpcproc_kind": "array",
                             "hpcproc_offset": value.offset,
                             "hpcproc_global_shape": list(value.global_shape)}
            out.signature.append((name, "array", local.dtype.str, list(value.global_shape)))
            out.rows[name] = (value.offset, local.shape[0])
        elif isinstance(value, DistTable):
            _check_comm(value, name, size)
            cols = []
            for col in value.columns:
                cds = column_dataset(name, col)
                local = _native(value.local(col), copy, cds)
                out.items.append((cds, local))
                out.attrs[cds] = {"hpcproc_entry": name, "hpcproc_kind": "table",
                                  "hpcproc_column": col, "hpcproc_offset": value.offset,
                                  "hpcproc_global_shape": [value.num_rows,
                                                           *local.shape[1:]]}
                cols.append((col, local.dtype.str, list(local.shape[1:])))
            out.signature.append((name, "table", cols, value.num_rows))
            out.rows[name] = (value.offset, value.local_rows)
        elif isinstance(value, np.random.Generator):
            data = rng_to_bytes(value)
            out.items.append((ds, data))
            out.attrs[ds] = {"hpcproc_entry": name, "hpcproc_kind": "rng"}
            out.signature.append((name, "rng"))
            out.local[name] = {"size": int(data.size)}
        elif isinstance(value, np.ndarray):
            local = _native(value, copy, ds)
            out.items.append((ds, local.reshape(-1) if local.ndim == 0 else local))
            out.attrs[ds] = {"hpcproc_entry": name, "hpcproc_kind": "local"}
            out.signature.append((name, "local"))
            out.local[name] = {"dtype": local.dtype.str, "shape": list(local.shape)}
        elif isinstance(value, np.generic):
            if value.dtype.kind not in NUMERIC_KINDS:
                raise TypeError(f"state[{name!r}]: numpy scalars of dtype {value.dtype} "
                                f"are not supported")
            out.signature.append((name, "scalar"))
            out.shared[name] = {"kind": "scalar", "dtype": value.dtype.str,
                                "hex": value.tobytes().hex()}
        elif value is None or isinstance(value, (bool, int, float, str, list, dict)):
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"state[{name!r}] is not JSON-serialisable ({exc}); store "
                                f"arrays as numpy arrays, DistArrays or DistTables") from None
            out.signature.append((name, "json"))
            out.shared[name] = {"kind": "json", "value": json.loads(json.dumps(value))}
        else:
            raise TypeError(f"cannot checkpoint state[{name!r}] of type {type(value).__name__} "
                            f"(DistArray, DistTable, numpy arrays and scalars, numpy "
                            f"Generators and JSON values only; no pickle)")
    return out


def check_layout(signatures, rows) -> None:
    """Raise ``ValueError`` if the ranks' states do not fit together (run on rank 0).

    ``signatures`` and ``rows`` are the gathered :attr:`Prepared.signature` and
    :attr:`Prepared.rows` of every rank.
    """
    first = signatures[0]
    for rank, sig in enumerate(signatures):
        if sig != first:
            raise ValueError(f"ranks 0 and {rank} pass different state layouts "
                             f"(names, kinds, dtypes or global shapes): {first} vs {sig}")
    for entry in first:
        if entry[1] not in ("array", "table"):
            continue
        name = entry[0]
        total = entry[3][0] if entry[1] == "array" else entry[3]
        pos = 0
        for rank, r in enumerate(rows):
            start, count = r[name]
            if start != pos:
                raise ValueError(f"state[{name!r}]: rank {rank}'s rows start at {start}, "
                                 f"expected {pos} (blocks must tile the rows in rank order)")
            pos += count
        if pos != total:
            raise ValueError(f"state[{name!r}]: ranks hold {pos} rows in total, the global "
                             f"shape says {total}")
