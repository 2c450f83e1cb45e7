"""Carrying a source variable's CF attributes and dimensions over to an output (``like=``).

netCDF-4 files are HDF5 files whose dimensions are HDF5 dimension scales: a coordinate
variable (``lat``) is a 1-D dataset marked as a scale (``CLASS="DIMENSION_SCALE"``,
``NAME``), and every variable lists its dimensions' scales in ``DIMENSION_LIST``. An
output written without them shows up in netCDF readers and xarray with phony dimensions.

:func:`read_source` (rank 0, read-only) collects what applies to the output: the
variable's attributes except the HDF5/netCDF bookkeeping ones (and the packing ones
when the output's dtype is not the source's: the values were decoded), and, per axis,
the first attached scale (its path, ``NAME``, values and attributes) -- for axis 0 only
when the output keeps the source's rows in order (``same_rows``). :func:`apply` writes
them into the output file being built: the scale datasets are created at the same path
(or reused when an identical one is there already) and attached with
``h5py.Dataset.dims``; netCDF readers then derive dimension ids themselves.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from ..errors import DatasetNotFoundError

__all__ = ["check_source_arg", "read_source", "apply"]

#: attributes that are HDF5 dimension-scale or netCDF-4 bookkeeping, never copied
INTERNAL = {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid",
            "_Netcdf4Coordinates", "_nc3_strict", "_NCProperties", "hpcproc_lineage"}
#: CF attributes that describe raw (packed) values: copied only to the same dtype
PACKING = {"scale_factor", "add_offset", "_FillValue", "missing_value", "valid_min",
           "valid_max", "valid_range", "_Unsigned", "actual_range"}


def check_source_arg(source, name: str) -> None:
    """Raise TypeError unless ``source`` is ``(file, dataset)``. Not collective."""
    if not (isinstance(source, tuple) and len(source) == 2
            and isinstance(source[0], (str, os.PathLike)) and isinstance(source[1], str)):
        raise TypeError(f"like for {name!r} must be a (file, dataset) tuple, got {source!r}"
                        [:200])


def _attrs(obj, skip=()) -> dict:
    out = {}
    for key in obj.attrs:
        if key in INTERNAL or key in skip or key.startswith("hpcproc_"):
            continue  # lineage is hpcproc's own (provenance), not the source's
        try:
            value = obj.attrs[key]
        except (OSError, TypeError, ValueError):  # e.g. references: not portable
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind == "O":
            continue
        out[key] = value
    return out


def read_source(path, dataset: str, shape, dtype, same_rows: bool) -> dict:
    """What of ``path:dataset`` applies to an output of ``shape``/``dtype``. Not
    collective (rank 0)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"like: no file {path}")
    with h5py.File(path, "r") as f:
        d = f.get(dataset)
        if not isinstance(d, h5py.Dataset):
            raise DatasetNotFoundError(f"like: no dataset {dataset!r} in {path}")
        if len(d.shape) != len(shape) or tuple(d.shape[1:]) != tuple(shape[1:]) \
                or (same_rows and d.shape[0] != shape[0]):
            hint = "" if same_rows else " (trailing dimensions must match)"
            raise ValueError(f"like: {path}:{dataset} has shape {d.shape}, the output "
                             f"{tuple(shape)}{hint}; pass same_rows=False if the rows "
                             f"were reordered or regrouped"[:300])
        raw = np.dtype(dtype).newbyteorder("=") == d.dtype.newbyteorder("=")
        scales = []
        for axis in range(len(shape)):
            if axis == 0 and not same_rows:
                continue
            dim = d.dims[axis]
            if len(dim) == 0:
                continue
            scale = dim[0]
            if scale.name is None or scale.shape != (shape[axis],):
                continue
            name = h5py.h5ds.get_scale_name(scale.id)
            scales.append({"axis": axis, "path": scale.name, "label": dim.label,
                           "name": name.decode() if isinstance(name, bytes) else name,
                           "data": scale[...], "attrs": _attrs(scale)})
        return {"source": f"{path}:{dataset}", "scales": scales,
                "attrs": _attrs(d, () if raw else PACKING)}


def _same(a: h5py.Dataset, data: np.ndarray) -> bool:
    return (a.shape == data.shape and a.dtype == data.dtype
            and a[...].tobytes() == np.ascontiguousarray(data).tobytes())


def apply(f: h5py.File, name: str, source: dict, given: dict, created: list) -> None:
    """Give dataset ``name`` of ``f`` the attributes (those not in ``given``) and the
    dimension scales of ``source``; the paths of the scales it creates are appended to
    ``created`` as they are made (so a failure half-way can remove them)."""
    dset = f[name]
    for key, value in source["attrs"].items():
        if key not in given and key not in dset.attrs:
            dset.attrs[key] = value
    for s in source["scales"]:
        existing = f.get(s["path"])
        if existing is None:
            scale = f.create_dataset(s["path"], data=s["data"])
            created.append(s["path"])
            for key, value in s["attrs"].items():
                scale.attrs[key] = value
            scale.make_scale(s["name"] or "")
        elif isinstance(existing, h5py.Dataset) and existing.is_scale \
                and _same(existing, s["data"]):
            scale = existing
        else:
            raise ValueError(f"like: the output already has {s['path']!r}, which is not "
                             f"the coordinate of {source['source']} (different values)")
        dset.dims[s["axis"]].attach_scale(scale)
        if s["label"]:
            dset.dims[s["axis"]].label = s["label"]
