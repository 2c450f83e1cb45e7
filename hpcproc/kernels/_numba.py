"""hpcproc's kernel decorator, and Numba configured for hpcproc (imported on demand).

Importing this module does not import Numba: :func:`kernel` returns a lazy
:class:`~._kernel.Kernel`, which runs an ahead-of-time compiled build of the function
when one matches the arguments (:mod:`._aot`) and otherwise the Numba dispatcher, made
on first need. Numba itself, the cache directory, the cache switch and the thread count
are set up by :func:`load`, which the module attributes ``numba`` and ``CACHE`` trigger
(``from ._numba import numba``). The cache directory is used only when it can be
trusted (:mod:`._cache_trust`); otherwise one warning is logged and kernels are cached
in a private directory, or not at all. Dispatchers are ``numba.njit`` with ``cache``
following ``HPCPROC_CACHE`` and ``nogil=True`` (blocks can be split over threads).
"""

from __future__ import annotations

import os
import sys
import threading

from ._kernel import Kernel
from ._threads import CONFIG_ERROR, get_threads, set_threads

# also the lazy attributes ``numba`` and ``CACHE`` (module ``__getattr__``)
__all__ = ["kernel", "CONFIG_ERROR", "set_threads", "get_threads", "load", "loaded"]

_LOCK = threading.Lock()
_STATE: dict = {}


def load():
    """Import and configure Numba (once per process); returns the ``numba`` module."""
    with _LOCK:
        if "numba" in _STATE:
            return _STATE["numba"]
        from ..observe import log as _log
        from . import _cache_trust
        from ._config import cache_dir, cache_enabled

        cache, path = cache_enabled(), None
        if cache:
            path, why = _cache_trust.choose(
                cache_dir(), "HPCPROC_CACHE_DIR" if os.environ.get("HPCPROC_CACHE_DIR") else None)
            if why:  # once per process, on rank 0 (Numba's cache files are pickles: see docs)
                _log.warn_once(_log.get_logger(__name__), "%s (see docs/dtypes.md)", why)
            cache = path is not None
        if cache:
            os.environ["NUMBA_CACHE_DIR"] = path  # numba re-reads its config before compiling
        if "numba" not in sys.modules:
            os.environ.setdefault("NUMBA_NUM_THREADS", str(get_threads()))
        import numba

        if cache:
            numba.config.CACHE_DIR = path
        _STATE["CACHE"] = cache
        _STATE["numba"] = numba
        return numba


def loaded() -> bool:
    """Whether :func:`load` has run in this process (Numba imported for hpcproc)."""
    return "numba" in _STATE


def __getattr__(name):
    if name in ("numba", "CACHE"):
        load()
        return _STATE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def kernel(fn=None, *, aot=(), **options):
    """Declare a built-in kernel: ``numba.njit(cache=CACHE, nogil=True, **options)``, lazy.

    ``aot``: argument signatures (Numba type strings, e.g. from :func:`._aot.signatures`)
    to build ahead of time at install; calls with exactly these argument types then run
    without Numba (see docs/kernels.md, *Start-up*).
    """
    if fn is None:
        return lambda f: Kernel(f, options, aot)
    return Kernel(fn, options, aot)
