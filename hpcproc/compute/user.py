"""User kernels: plain Python functions compiled with Numba and run on every block.

``hp.map`` applies a scalar function elementwise, ``hp.map_blocks`` a function from
blocks to a block, ``hp.reduce`` a user-defined mergeable reduction. Functions are
compiled with ``numba.njit`` (with the on-disk cache when their source file allows it,
compiled once per node); an already ``@njit``-decorated function is used as it is. A
function Numba cannot compile raises :class:`~hpcproc.kernels.KernelCompileError` on
every rank, with Numba's explanation. Blocks are given to functions in native byte order
and float16 as float32 (exact); long double wider than float64, and dtypes Numba cannot
compile for, raise :class:`~hpcproc.errors.DtypeError` (see ``docs/dtypes.md``).
"""

from __future__ import annotations

from functools import reduce as _fold

import numpy as np

from ..agreement import collective
from ..array import DistArray
from ..comm import agreed, check_all, lib_comm
from ..errors import DtypeError
from ._source import open_source

__all__ = ["map", "map_blocks", "reduce"]

_JITTED: dict = {}


def _jit(func):
    """A Numba dispatcher for ``func`` (cached per function)."""
    from numba.core.registry import CPUDispatcher

    from ..kernels._numba import CACHE, numba
    if isinstance(func, CPUDispatcher):
        return func
    if not callable(func):
        raise TypeError(f"expected a function, got {type(func).__name__}")
    disp = _JITTED.get(func)
    if disp is None:
        try:
            disp = numba.njit(cache=CACHE, nogil=True)(func)
        except RuntimeError:  # no cache locator (defined in a notebook, exec, <stdin>)
            disp = numba.njit(cache=False, nogil=True)(func)
        _JITTED[func] = disp
    return disp


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


def _arrays(arrays, what):
    if not arrays:
        raise TypeError(f"{what} needs at least one DistArray")
    for a in arrays:
        if not isinstance(a, DistArray):
            raise TypeError(f"{what} expects DistArrays, got {type(a).__name__}")
    return arrays[0].comm


def _local(a: np.ndarray) -> np.ndarray:
    """A C-contiguous, writable block in its kernel dtype (the type Numba compiles for:
    native byte order, float16 as float32; see :mod:`hpcproc.kernels._dtypes`)."""
    from ..kernels._dtypes import to_kernel
    a = to_kernel(np.ascontiguousarray(a))
    return a if a.flags.writeable else a.copy()


def _check_dtypes(arrays, what):
    """Numba types of the arrays' kernel dtypes; ``DtypeError`` (every rank alike: the
    dtype is the same on every rank) for one Numba cannot compile for."""
    from ..kernels._dtypes import kernel_dtype
    from ..kernels._numba import numba
    types = []
    for i, a in enumerate(arrays):
        name = f"{what}: array {i}" if len(arrays) > 1 else f"{what}: the array"
        try:
            kdt = kernel_dtype(a.dtype, name)
        except DtypeError as exc:
            raise agreed(exc) from None
        try:
            types.append(numba.from_dtype(kdt) if kdt.kind != "O" else None)
        except Exception:  # noqa: BLE001 - numba raises several types here
            types.append(None)
        if types[-1] is None:
            raise agreed(DtypeError(f"{name} has dtype {a.dtype}, which Numba cannot "
                                     "compile kernels for"))
    return tuple(types)


_LOOPS: dict = {}


def _loop(disp, nargs: int):
    """A compiled elementwise loop calling ``disp`` (one per function and arity)."""
    from ..kernels._numba import numba
    key = (disp, nargs)
    if key in _LOOPS:
        return _LOOPS[key]
    f = disp
    if nargs == 1:
        def loop(out, a):
            for i in range(out.shape[0]):
                out[i] = f(a[i])
    elif nargs == 2:
        def loop(out, a, b):
            for i in range(out.shape[0]):
                out[i] = f(a[i], b[i])
    elif nargs == 3:
        def loop(out, a, b, c):
            for i in range(out.shape[0]):
                out[i] = f(a[i], b[i], c[i])
    elif nargs == 4:
        def loop(out, a, b, c, d):
            for i in range(out.shape[0]):
                out[i] = f(a[i], b[i], c[i], d[i])
    else:
        raise ValueError("hp.map supports functions of 1 to 4 arrays")
    _LOOPS[key] = numba.njit(nogil=True)(loop)
    return _LOOPS[key]


@collective("hp.map")
def map(func, *arrays, comm=None) -> DistArray:  # noqa: A001 - public name hp.map
    """Apply a scalar function elementwise to DistArrays of the same layout.

    Collective. The first call per function and dtypes compiles once per node.
    ``func(a, b, ...)`` takes one element of each array and returns a number; it is
    compiled with ``numba.njit``. Returns a DistArray laid out like ``arrays[0]`` with
    the function's return dtype. Raises ``KernelCompileError`` on every rank when Numba
    cannot compile ``func`` for these element types.
    """
    from ..kernels._engine import KernelCompileError, ensure_compiled, signature_of
    from ..kernels._numba import numba

    comm = _arrays(arrays, "hp.map")
    if not 1 <= len(arrays) <= 4:
        raise ValueError("hp.map supports functions of 1 to 4 arrays")
    scalar_sig = _check_dtypes(arrays, "hp.map")

    def check():
        shapes = {a.local.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"hp.map: arrays have different block shapes {sorted(shapes)}")
        return _jit(func)
    disp = check_all(check, comm)
    ensure_compiled(disp, scalar_sig, comm, what=_name(func))
    rtype = disp.overloads[scalar_sig].signature.return_type
    try:
        out_dtype = numba.np.numpy_support.as_dtype(rtype)
    except Exception:  # noqa: BLE001 - tuples, lists, None...
        raise KernelCompileError(f"hp.map: {_name(func)!r} must return a number, "
                                 f"it returns {rtype}") from None
    flats = [_local(a.local).reshape(-1) for a in arrays]
    out = np.empty(flats[0].shape[0], dtype=out_dtype)
    loop = _loop(disp, len(arrays))
    ensure_compiled(loop, signature_of(out, *flats), comm, what=_name(func))
    check_all(lambda: loop(out, *flats), comm)
    x = arrays[0]
    result = DistArray(out.reshape(x.local.shape), x.global_shape, x.offset, x.comm,
                       origin=x.origin)
    result._tiled = x._tiled  # x's layout, verified on entry
    return result


@collective("hp.map_blocks")
def map_blocks(func, *arrays, comm=None) -> DistArray:
    """Apply ``func(*blocks) -> block`` to every rank's blocks; join the results.

    Collective. ``func`` receives this rank's numpy blocks (all of the same number of
    rows) and returns a numpy array (any number of rows, same dtype and trailing shape
    on every rank); it is compiled with ``numba.njit``. The result is
    ``DistArray.from_local`` of the returned blocks, in rank order.
    """
    from ..kernels._engine import ensure_compiled, signature_of

    comm = _arrays(arrays, "hp.map_blocks")
    _check_dtypes(arrays, "hp.map_blocks")
    locals_ = [_local(a.local) for a in arrays]

    def check():
        rows = {a.shape[0] for a in locals_}
        if len(rows) > 1:
            raise ValueError(f"hp.map_blocks: blocks have different row counts {sorted(rows)}")
        return _jit(func)
    disp = check_all(check, comm)
    ensure_compiled(disp, signature_of(*locals_), comm, what=_name(func))

    def run():
        out = disp(*locals_)
        if not isinstance(out, np.ndarray) or out.ndim == 0:
            raise TypeError(f"hp.map_blocks: {_name(func)!r} must return an array with at "
                            f"least one dimension, got {type(out).__name__}")
        return out
    return DistArray.from_local(check_all(run, comm), comm)


@collective("hp.reduce")
def reduce(block_fn, merge_fn, x, comm=None, block_bytes: int = 64 << 20, *,
           mask_and_scale: bool = True):
    """A user-defined mergeable reduction: ``merge(block_fn(b1), block_fn(b2), ...)``.

    Collective. Every rank gets the same result. ``block_fn(block)`` maps one numpy
    block (possibly empty) to a state (a number, tuple or array); ``merge_fn(a, b)``
    combines two states and must be associative. Both are compiled with Numba. States
    are merged block by block on each rank, then across ranks in rank order, so the
    result is identical on every rank. ``x`` is a DistArray, a file dataset
    (``"f.h5:/x"``) or an ``hp.blocks`` iterator (streamed, bounded memory). A file
    dataset is CF-decoded unless ``mask_and_scale=False`` (missing values are NaN).
    """
    from ..kernels._engine import KernelCompileError, ensure_compiled, numba_signature

    src = open_source(x, comm, block_bytes, mask_and_scale=mask_and_scale)
    comm = src.comm
    bdisp = check_all(lambda: _jit(block_fn), comm)
    mdisp = check_all(lambda: _jit(merge_fn), comm)
    state = None
    for block in src.blocks():
        block = _local(block)
        sig = numba_signature((block,), typeof=True)
        ensure_compiled(bdisp, sig, comm, what=_name(block_fn))
        rtype = bdisp.overloads[sig].signature.return_type
        ensure_compiled(mdisp, (rtype, rtype), comm, what=_name(merge_fn))
        if mdisp.overloads[(rtype, rtype)].signature.return_type != rtype:
            raise KernelCompileError(
                f"hp.reduce: {_name(merge_fn)!r} must return the state type {rtype}, it "
                f"returns {mdisp.overloads[(rtype, rtype)].signature.return_type}")

        def step(state=state, block=block):
            s = bdisp(block)
            return s if state is None else mdisp(state, s)
        state = check_all(step, comm)
    states = lib_comm(comm).allgather(state)
    states = [s for s in states if s is not None]
    if not states:
        raise ValueError("hp.reduce: the input has no blocks")
    return _fold(lambda a, b: mdisp(a, b), states)
