"""CF conventions: decode packed and masked netCDF variables, block by block.

A netCDF variable (an HDF5 dataset) may store packed integers with ``scale_factor`` and
``add_offset``, and mark missing values with ``_FillValue``, ``missing_value``,
``valid_min``/``valid_max``/``valid_range``. Reading decodes them by default, with
netCDF4-python's rules (``set_auto_maskandscale(True)``):

* masks are computed on the stored values: equal to ``_FillValue`` or to any
  ``missing_value`` (NaN-aware), below ``valid_min`` or above ``valid_max``
  (``valid_range`` when it has two values replaces both); an attribute whose value does
  not survive a cast to the variable's type is ignored, as netCDF4-python ignores it;
  ``_Unsigned = "true"`` makes signed integers unsigned first;
* unpacking is ``data * scale_factor + add_offset`` in numpy's arithmetic, so the type is
  numpy's promotion of the stored type with the attributes' types (int16 with float32
  attributes gives float32) and the values are bit-identical to netCDF4-python's;
* a masked element becomes NaN. Data that is masked but not unpacked to floats (integers
  with a fill value) is returned as float64 (netCDF4-python returns a masked integer
  array; float64 holds every 32-bit integer exactly).

Unlike netCDF4-python, nothing is masked when a variable has no such attribute (no
implicit default fill value), as in xarray. The attributes are read once, on rank 0, with
the rest of the metadata (:attr:`DatasetInfo.attrs`); a dataset without them is read
with no decoding step at all.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..observe.log import rank

__all__ = ["PACKING", "ATTRS", "read_attrs", "Decoder", "decoder"]

_WARNED: set = set()

#: The packing attributes (the others mask).
PACKING = ("scale_factor", "add_offset")
#: The attributes decoding looks at (nothing else is read).
ATTRS = ("scale_factor", "add_offset", "_FillValue", "missing_value", "valid_min",
         "valid_max", "valid_range", "_Unsigned")


def read_attrs(dset) -> dict:
    """The CF attributes of an open h5py dataset: ``{name: 1-d numpy array}`` (``_Unsigned``:
    a string), only those present, numeric, and (for the masking attributes) exactly
    representable in the dataset's type: others are left out with a warning, as
    netCDF4-python leaves them out."""
    out = {}
    stored = dset.dtype.newbyteorder("=")
    names = [n for n in dset.attrs.keys() if n in ATTRS]
    for name in names:
        try:
            value = dset.attrs[name]
        except Exception:  # noqa: BLE001 - an unreadable attribute is not used
            continue
        if name == "_Unsigned":
            out[name] = value.decode() if isinstance(value, bytes) else str(value)
            continue
        arr = np.asarray(value)
        if name in PACKING and (arr.dtype.kind not in "biuf" or arr.size != 1):
            out[name] = arr  # kept as it is: decoding refuses or skips it (_packing)
            continue
        if arr.dtype.kind not in "biuf" or not arr.size:
            continue
        arr = arr.reshape(-1)
        if name not in ("scale_factor", "add_offset") and stored.kind in "iuf" \
                and _safe(arr, stored) is None:
            _warn(f"dataset {dset.name!r}: CF attribute {name}={arr.tolist()} cannot be "
                  f"cast to the variable's type {stored} without change; it is not used "
                  "(as in netCDF4-python)", dset.file.filename)
            continue
        out[name] = arr
    return out


def _warn(message: str, path) -> None:
    """A warning about a variable's attributes: every rank decodes alike and a read looks
    at the attributes several times, so it is given once per process and file, by rank 0
    (the same variable of another file gets its own)."""
    message = f"{message} (in {path})"
    if message in _WARNED or rank() != 0:
        return
    _WARNED.add(message)
    warnings.warn(message, UserWarning, stacklevel=3)


def _safe(att: np.ndarray, dtype: np.dtype):
    """``att`` cast to ``dtype``, or None when the cast changes a value (netCDF4-python's
    ``_check_safecast``)."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cast = att.astype(dtype)
            same = (cast == att) | (np.isnan(cast.astype(np.float64))
                                    & np.isnan(att.astype(np.float64)))
    except (ValueError, OverflowError, TypeError):
        return None
    return cast if same.all() else None


@dataclass(frozen=True)
class Decoder:
    """Decodes blocks of one variable's stored values (see the module docstring)."""

    stored: np.dtype  # native dtype of the stored values
    view: np.dtype | None  # unsigned view of signed data (_Unsigned)
    equal: tuple  # values masked by equality (in the compared dtype)
    nan: bool  # mask NaNs (a NaN _FillValue or missing_value)
    vmin: object
    vmax: object
    scale: object  # numpy scalar or None
    offset: object
    cast: bool  # scale_factor 1 and add_offset 0 both present: just the type changes
    dtype: np.dtype  # dtype of the decoded values
    masks: bool  # the variable declares missing values

    def mask(self, data: np.ndarray) -> np.ndarray | None:
        """True where ``data`` (stored values, after the unsigned view) is missing."""
        if not self.masks:
            return None
        m = np.zeros(data.shape, dtype=bool)
        for v in self.equal:
            m |= data == v
        if self.nan:
            m |= np.isnan(data)
        if self.vmin is not None:
            m |= data < self.vmin
        if self.vmax is not None:
            m |= data > self.vmax
        return m

    def __call__(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Decoded values of the stored block ``raw`` (into ``out`` when given).

        ``raw`` may be overwritten (when the decoded type is the stored type).
        """
        data = raw.view(self.view) if self.view is not None else raw
        with np.errstate(all="ignore"):
            m = self.mask(data)
            if self.scale is not None and self.offset is not None:
                value = data * self.scale + self.offset
            elif self.scale is not None:
                value = data * self.scale
            elif self.offset is not None:
                value = data + self.offset
            else:
                value = data
            if value.dtype != self.dtype:
                value = value.astype(self.dtype)
        if out is None:
            out = value  # a new array, or the stored block itself decoded in place
        elif out is not value:
            out[...] = value
        if m is not None and m.any():
            out[m] = np.nan
        return out


def _packing(attrs: dict, name: str, path=None):
    """``(scale_factor, add_offset)`` as numpy scalars (None: absent).

    A packing attribute that is not one number (a string, several numbers) is not
    applied, and neither is its partner, with a warning: the stored values are returned,
    as netCDF4-python returns them ("invalid scale_factor or add_offset attribute, no
    unpacking done").
    """
    present = {n: attrs[n] for n in PACKING if n in attrs}
    wrong = [n for n, att in present.items() if att.dtype.kind not in "biuf" or att.size != 1]
    if wrong:
        _warn(f"dataset {name!r}: CF attribute {wrong[0]}={_shown(present[wrong[0]])} is "
              "not a single number; no unpacking done (as in netCDF4-python): the stored "
              "values are returned", path)
        return None, None
    return tuple(None if att is None else att.reshape(-1)[0]
                 for att in (present.get(n) for n in PACKING))


def _shown(att: np.ndarray) -> str:
    text = repr(att.tolist() if att.ndim else att.item())
    return text if len(text) <= 60 else text[:57] + "..."


def decoder(info, decode: bool = True) -> Decoder | None:
    """The :class:`Decoder` of a dataset (``DatasetInfo``), or None when there is nothing
    to decode (no CF attributes, ``decode=False``, or non-numeric data)."""
    attrs = info.attrs
    if not decode or not attrs or info.native_dtype.kind not in "iuf":
        return None
    stored = info.native_dtype
    view = None
    if attrs.get("_Unsigned", "").lower() == "true" and stored.kind == "i":
        view = np.dtype(f"u{stored.itemsize}")
    compared = view or stored

    def value(name):
        att = attrs.get(name)
        if att is None:
            return None
        cast = _safe(att, stored)  # checked by read_attrs: exact
        return None if cast is None else (cast.view(view) if view is not None else cast)

    equal, nan = [], False
    for name in ("missing_value", "_FillValue"):
        v = value(name)
        for x in (() if v is None else v):
            if compared.kind == "f" and np.isnan(x):
                nan = True
            else:
                equal.append(x)
    vmin = vmax = None
    vrange = value("valid_range")
    if vrange is not None and vrange.size == 2:
        vmin, vmax = vrange[0], vrange[1]
    else:
        vmin = None if value("valid_min") is None else value("valid_min")[0]
        vmax = None if value("valid_max") is None else value("valid_max")[0]
    masks = bool(equal or nan or vmin is not None or vmax is not None)

    scale, offset = _packing(attrs, info.name, getattr(info, "path", None))
    cast = False
    if scale is not None and offset is not None:
        if scale == 1 and offset == 0:  # netCDF4-python: only the type changes
            scale = offset = None
            cast = True
            result = np.dtype(attrs["scale_factor"].dtype)
        else:
            result = np.result_type(compared, scale, offset)
    elif scale is not None:
        scale = None if scale == 1 else scale
        result = compared if scale is None else np.result_type(compared, scale)
    elif offset is not None:
        offset = None if offset == 0 else offset
        result = compared if offset is None else np.result_type(compared, offset)
    else:
        result = compared
    result = np.dtype(result).newbyteorder("=")  # attributes may be stored big-endian
    if masks and result.kind != "f":
        result = np.dtype(np.float64)
    if not masks and scale is None and offset is None and not cast and view is None:
        return None  # nothing changes: read the stored values as they are
    return Decoder(stored, view, tuple(equal), nan, vmin, vmax, scale, offset, cast,
                   np.dtype(result), masks)
