"""Compile once per node; run block kernels over threads; clear compile errors.

Numba compiles a kernel the first time it sees new argument types. With the on-disk
cache on, :func:`ensure_compiled` makes that happen once per node instead of once per
rank: the first rank of every node (``MPI_Comm_split_type(COMM_TYPE_SHARED)``) compiles
and writes the cache while the others wait at a barrier on the node communicator, then
load it. Numba writes cache files to a temporary name and renames them, so leaders of
different nodes sharing a file system never expose a partial file. A compile error is
raised on every rank of the communicator (never a hang). A built-in kernel with an
ahead-of-time build for the signature (:mod:`._aot`) needs neither Numba nor the node
protocol. No Numba import here until a kernel needs compiling.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from mpi4py import MPI

from ..comm import check_all, lib_comm, node_comm
from ..errors import HpcprocError
from ..observe.phases import phase
from . import _aot
from ._kernel import Kernel
from ._threads import CONFIG_ERROR, get_threads

__all__ = ["KernelCompileError", "ensure_compiled", "compile_stats",
           "split_rows", "signature_of"]

_READY_KEYVAL: list = []


def _ready(comm) -> set:
    """The (kernel, signature) pairs made ready collectively on ``comm``: kept on the
    library communicator itself (an MPI attribute), because readiness is a property of a
    communicator, not of a process: a kernel a rank compiled during a call on a
    sub-communicator must still go through the node protocol with the other ranks of a
    larger one, or the ranks would run different collectives."""
    if not _READY_KEYVAL:
        _READY_KEYVAL.append(MPI.Comm.Create_keyval())
    lc = lib_comm(comm)
    ready = lc.Get_attr(_READY_KEYVAL[0])
    if ready is None:
        ready = set()
        lc.Set_attr(_READY_KEYVAL[0], ready)
    return ready
_LOCK = threading.Lock()
#: how this process got each kernel: {(name, signature): "compiled" | "cache" | "memory"}
_HOW: dict = {}
_COMPILE_SECONDS = [0.0]  # time this rank spent obtaining kernels (compile/wait/load)


class KernelCompileError(HpcprocError, TypeError):
    """A function could not be compiled by Numba for the given argument types."""


class ArgKeys(tuple):
    """A signature as argument keys (``"f8a1"``, ``"i8"``...: :func:`._aot.arg_key`),
    made without importing Numba; :func:`numba_signature` turns it into Numba types."""


def signature_of(*args) -> tuple:
    """The argument types of ``args`` for :func:`ensure_compiled` (arrays are typed as
    writable C arrays): an :class:`ArgKeys` for numbers and numeric arrays (no Numba
    import), else a tuple of Numba types."""
    keys = [_aot.arg_key(a) for a in args]
    if None not in keys:
        return ArgKeys(keys)
    return numba_signature(args, typeof=True)


def _key_type(numba, key: str):
    dtype, _, ndim = key.partition("a")
    t = numba.from_dtype(np.dtype(dtype))
    return numba.types.Array(t, int(ndim), "C") if ndim else t


def numba_signature(sig, typeof: bool = False) -> tuple:
    """``sig`` as a tuple of Numba types (``typeof``: ``sig`` holds argument values)."""
    from ._numba import load
    numba = load()
    if typeof:
        return tuple(numba.types.Array(numba.from_dtype(a.dtype), a.ndim, "C")
                     if isinstance(a, np.ndarray) else numba.typeof(a) for a in sig)
    if isinstance(sig, ArgKeys):
        return tuple(_key_type(numba, k) for k in sig)
    return tuple(sig)


def _name(disp) -> str:
    return getattr(disp, "__qualname__", None) or getattr(disp.py_func, "__qualname__", "kernel")


def _label(disp, sig) -> str:
    return f"{_name(disp)}{tuple(str(t) for t in sig)}"


def _compile(disp, sig, what: str, label: str):
    """Compile (or load from cache) one signature; a KernelCompileError if impossible."""
    from ._numba import CACHE
    hits = sum(disp.stats.cache_hits.values()) if CACHE and disp._can_compile else 0
    try:
        disp.compile(sig)
    except Exception as exc:  # noqa: BLE001 - numba raises many types; report one
        first = str(exc).strip().splitlines()
        detail = "\n".join(first[:12]) if first else type(exc).__name__
        types = ", ".join(str(t) for t in sig)
        raise KernelCompileError(
            f"cannot compile {what or _name(disp)!r} with Numba for argument types ({types}); "
            f"use only numpy/math operations Numba supports (nopython mode).\n"
            f"Numba said: {type(exc).__name__}: {detail}") from None
    loaded = CACHE and sum(disp.stats.cache_hits.values()) > hits
    _HOW[label] = "cache" if loaded else "compiled"


def _idle_barrier(comm, poll: float = 0.002) -> None:
    """A barrier that sleeps between polls, so waiting ranks leave the CPU to the
    compiling one (MPI's blocking barrier busy-waits)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(poll)


def ensure_compiled(disp, sig: tuple, comm=None, what: str = "") -> None:
    """Make ``disp`` ready for argument types ``sig`` on every rank of ``comm``.

    Collective (the first time for a given kernel and signature; a local check after).
    Every rank must pass the same kernel and signature. With caching on, the first rank
    of each node compiles and writes the cache, the others wait and then load it.
    Raises :class:`KernelCompileError` on every rank when compilation fails. A built-in
    :class:`~._kernel.Kernel` with an ahead-of-time build for ``sig`` needs no
    compilation: only the configuration is agreed (a bad ``HPCPROC_THREADS`` raises).
    """
    key, ready = (id(disp), sig), _ready(comm)
    if key in ready:
        return
    label = _label(disp, sig)
    if isinstance(disp, Kernel):
        if isinstance(sig, ArgKeys) and disp.aot and _aot.find(disp, tuple(sig)) is not None:
            _HOW[label] = "aot"
            check_all(_check_config, comm)  # the agreed error of a bad HPCPROC_THREADS
            ready.add(key)
            return
        disp = disp.dispatcher
    sig = numba_signature(sig)
    from ._numba import CACHE
    cached = CACHE and type(getattr(disp, "_cache", None)).__name__ != "NullCache"

    def local():
        _check_config()
        node = node_comm(comm)
        leader = node.Get_rank() == 0
        error = None
        if leader or not cached:
            try:
                _compile(disp, sig, what, label)
            except KernelCompileError as exc:
                error = exc
        if cached and node.Get_size() > 1:
            _idle_barrier(node)  # the others sleep (not spin) while the leader compiles
            message = node.bcast(None if error is None else str(error), root=0)
            if not leader:
                if message is not None:
                    raise KernelCompileError(message)
                _compile(disp, sig, what, label)
        if error is not None:
            raise error

    t0 = time.perf_counter()
    try:
        with phase("compile"):
            check_all(local, comm)
    finally:
        _COMPILE_SECONDS[0] += time.perf_counter() - t0
    ready.add(key)


def _check_config() -> None:
    if CONFIG_ERROR is not None:  # e.g. HPCPROC_THREADS=0, the same on every rank
        raise CONFIG_ERROR


def compile_seconds() -> float:
    """Seconds this rank has spent obtaining compiled kernels so far (not collective)."""
    return _COMPILE_SECONDS[0]


def compile_stats() -> dict:
    """How this rank obtained each kernel: ``"compiled"``, loaded from ``"cache"``, or
    ahead-of-time compiled at install (``"aot"``)."""
    return dict(_HOW)


_POOL = None


def _pool(n: int) -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None or _POOL._max_workers < n:
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="hpcproc")
        return _POOL


def split_rows(n: int, min_rows: int = 1 << 16) -> list[tuple[int, int]]:
    """Row ranges for this rank's threads (one range unless the block is large)."""
    t = max(1, min(get_threads(), n // max(1, min_rows)))
    step = -(-n // t) if n else 0
    return [(i, min(n, i + step)) for i in range(0, n, step)] if t > 1 else [(0, n)]


def map_threads(fn, ranges):
    """``[fn(lo, hi) for lo, hi in ranges]``, over this rank's threads when several."""
    if len(ranges) <= 1:
        return [fn(lo, hi) for lo, hi in ranges]
    return list(_pool(len(ranges)).map(lambda r: fn(*r), ranges))
