"""Local kernels and the mergeable partial states that reductions combine.

The kernels live in private ``_*_nb`` modules, imported only when a reduction first
runs; they run ahead-of-time compiled (:mod:`._aot`, built at install) or compiled by
Numba on first need (``import hpcproc`` never imports Numba). ``KernelCompileError``
and the thread/cache helpers are loaded lazily too.
"""

from .._lazy import lazy_exports

__all__ = ["KernelCompileError", "set_threads", "get_threads", "compile_stats"]

_LAZY = {"KernelCompileError": "._engine", "compile_stats": "._engine",
         "set_threads": "._threads", "get_threads": "._threads"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
