"""Import Numba configured for hpcproc: cache directory, cache on/off, thread count.

Importing this module imports Numba (slow); ``import hpcproc`` never does. The cache
directory is used only when it can be trusted (:mod:`._cache_trust`); otherwise one
warning is logged and kernels are cached in a private directory, or not at all. The
built-in kernel modules decorate their functions with :func:`kernel`, which is
``numba.njit`` with ``cache`` following ``HPCPROC_CACHE`` and ``nogil=True`` (blocks
can be split over threads of one rank).
"""

from __future__ import annotations

import os
import sys

from ..observe import log as _log
from . import _cache_trust
from ._config import cache_dir, cache_enabled, default_threads

__all__ = ["numba", "kernel", "CACHE", "CONFIG_ERROR", "set_threads", "get_threads"]

try:
    _THREADS = default_threads()
    CONFIG_ERROR = None
except ValueError as exc:  # a bad HPCPROC_THREADS: raised by ensure_compiled on every
    _THREADS, CONFIG_ERROR = 1, exc  # rank together (agreed), before any kernel runs
CACHE = cache_enabled()
_DIR = None
if CACHE:
    _DIR, _why = _cache_trust.choose(
        cache_dir(), "HPCPROC_CACHE_DIR" if os.environ.get("HPCPROC_CACHE_DIR") else None)
    if _why:  # once per process, on rank 0 (Numba's cache files are pickles: see docs)
        _log.warn_once(_log.get_logger(__name__), "%s (see docs/dtypes.md)", _why)
    CACHE = _DIR is not None
if CACHE:
    os.environ["NUMBA_CACHE_DIR"] = _DIR  # numba re-reads its config before compiling
if "numba" not in sys.modules:
    os.environ.setdefault("NUMBA_NUM_THREADS", str(_THREADS))

import numba  # noqa: E402

if CACHE:
    numba.config.CACHE_DIR = _DIR


def kernel(fn=None, **options):
    """``numba.njit`` with hpcproc's cache setting and ``nogil=True``."""
    options.setdefault("cache", CACHE)
    options.setdefault("nogil", True)
    if fn is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(fn)


def set_threads(n: int | None = None) -> int:
    """Set this rank's thread count (``None``: from the environment); returns it.

    Not collective. Applies to hpcproc's block kernels (blocks are split over threads)
    and to Numba's own parallel regions (``numba.set_num_threads``, capped at
    ``NUMBA_NUM_THREADS``).
    """
    global _THREADS
    n = default_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    _THREADS = n
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n


def get_threads() -> int:
    """This rank's thread count for hpcproc kernels."""
    return _THREADS
