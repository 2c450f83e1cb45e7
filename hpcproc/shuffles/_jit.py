"""The Numba decorator of the shuffle kernels: hpcproc's kernel settings.

The shuffle kernels use the same configuration as every other hpcproc kernel
(:mod:`hpcproc.kernels._numba`): cached on disk in ``HPCPROC_CACHE_DIR`` unless
``HPCPROC_CACHE=0``, ``nogil=True``. Numba writes cache files under temporary names and
renames them into place, so ranks that compile concurrently do not corrupt the cache.

The argument types listed for a kernel in :mod:`._aot_sigs` are compiled ahead of time
at install (:mod:`hpcproc.kernels._aot`): such calls import no Numba. Numba is imported
when a kernel first runs without an ahead-of-time build.
"""

from __future__ import annotations

from ..kernels._kernel import kernel
from ._aot_sigs import lookup

__all__ = ["jit"]


def jit(fn):
    """``numba.njit(nogil=True)`` with hpcproc's cache setting, and the ahead-of-time
    signatures of ``fn`` from :data:`._aot_sigs.SIGNATURES`."""
    return kernel(fn, aot=lookup(f"{fn.__module__}.{fn.__qualname__}"))
