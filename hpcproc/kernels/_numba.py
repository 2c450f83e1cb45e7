"""Import Numba configured for hpcproc: cache directory, cache on/off, thread count.

Importing this module imports Numba (slow); ``import hpcproc`` never does. The built-in
kernel modules decorate their functions with :func:`kernel`, which is ``numba.njit``
with ``cache`` following ``HPCPROC_CACHE`` and ``nogil=True`` (blocks can be split over
threads of one rank).
"""

from __future__ import annotations

import os
import sys

from ._config import cache_dir, cache_enabled, default_threads

__all__ = ["numba", "kernel", "CACHE", "set_threads", "get_threads"]

CACHE = cache_enabled()
_DIR = cache_dir()
if CACHE:
    os.makedirs(_DIR, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = _DIR  # numba re-reads its config before compiling
_THREADS = default_threads()
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
