"""The element types kernels run on: every input block is converted here, and only here.

Numba compiles for native-byte-order bool, integer, float32/float64 and complex types.
Data of any other numeric type is converted block by block, without changing a value:

* any byte order (``>f8``, ``>i4``, ``>u8``...) becomes the native one;
* ``float16`` becomes ``float32`` (exact; numpy's results for float16 input are still
  returned as float16 where numpy returns float16, e.g. exact quantiles);
* ``longdouble`` is accepted only where it is no wider than float64 (it then becomes
  float64, exactly). Where it is wider (80-bit x87 or IEEE quad, on Linux x86-64 and
  aarch64) a :class:`~hpcproc.errors.DtypeError` says so: converting would round every
  value to float64 and histogram counts or quantiles could then differ from numpy's
  long double answer. Convert explicitly (``x.astype(np.float64)``) when float64
  precision is enough.

No Numba import here (``import hpcproc`` stays cheap).
"""

from __future__ import annotations

import numpy as np

from ..errors import DtypeError

__all__ = ["kernel_dtype", "real_kernel_dtype", "to_kernel"]

_F64 = np.finfo(np.float64)


def _wider_than_double(dtype: np.dtype) -> bool:
    """True for a float or complex type whose parts do not fit a double exactly."""
    if dtype.kind not in "fc":
        return False
    info = np.finfo(dtype)  # of the real part for complex types
    return info.nmant > _F64.nmant or info.maxexp > _F64.maxexp or info.minexp < _F64.minexp


def kernel_dtype(dtype, what: str = "the data") -> np.dtype:
    """The native dtype that blocks of ``dtype`` are converted to before a kernel runs.

    Raises :class:`DtypeError` for a long double wider than float64 (see the module
    docstring); other dtypes are returned unchanged apart from the byte order.
    """
    dtype = np.dtype(dtype)
    if _wider_than_double(dtype):
        raise DtypeError(
            f"{what} is {dtype.name} (long double): hpcproc's kernels compute in at most "
            "float64 precision and never round data silently; convert it explicitly "
            "(.astype(np.float64)) if float64 precision is enough")
    if dtype.kind == "f" and dtype.itemsize == 2:
        return np.dtype(np.float32)
    if dtype.kind == "f" and dtype.itemsize > 8:
        return np.dtype(np.float64)  # a long double no wider than a double: exact
    if dtype.kind == "c" and dtype.itemsize > 16:
        return np.dtype(np.complex128)
    return dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype


def real_kernel_dtype(dtype, what: str = "the data") -> np.dtype:
    """:func:`kernel_dtype` of real numeric (or bool) data; a :class:`DtypeError` naming
    ``what`` for complex, non-numeric (strings, compound, object...) and long double."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise DtypeError(f"{what} has non-numeric dtype {dtype} (hpcproc reads numbers only)")
    if dtype.kind == "c":
        raise DtypeError(f"{what} is complex ({dtype}); hpcproc's reductions need real "
                         "numbers (reduce .real and .imag separately)")
    return kernel_dtype(dtype, what)


def to_kernel(block: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    """``block`` in its kernel dtype (``dtype``, else ``kernel_dtype(block.dtype)``).

    Returns ``block`` itself when nothing needs converting (no copy), else a converted
    copy; values are unchanged (see the module docstring).
    """
    target = kernel_dtype(block.dtype) if dtype is None else dtype
    if block.dtype == target and block.dtype.isnative:
        return block
    return block.astype(target)
