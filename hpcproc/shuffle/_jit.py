"""The Numba decorator of the shuffle kernels.

Kernels are compiled on first use and cached on disk (Numba's cache, next to the source
or in ``NUMBA_CACHE_DIR``), so a job compiles once per installation, not once per rank
and run: Numba writes cache files under temporary names and renames them into place, so
ranks that compile concurrently do not corrupt it. ``HPCPROC_NUMBA_CACHE=0`` switches
caching off (e.g. on a read-only or slow shared file system).
"""

from __future__ import annotations

import os

from numba import njit

__all__ = ["jit"]

CACHE = os.environ.get("HPCPROC_NUMBA_CACHE", "1") != "0"


def jit(fn):
    """``numba.njit(nogil=True)``, cached unless ``HPCPROC_NUMBA_CACHE=0``."""
    return njit(nogil=True, cache=CACHE)(fn)
