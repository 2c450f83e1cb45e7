"""Local kernels and the mergeable partial states that reductions combine.

The Numba-compiled kernels live in private ``_*_nb`` modules, imported only when a
reduction first runs (``import hpcproc`` never imports Numba). ``KernelCompileError``
and the thread/cache helpers are loaded lazily too.
"""

from .._lazy import lazy_exports

__all__ = ["KernelCompileError", "set_threads", "get_threads", "compile_stats"]

_LAZY = {"KernelCompileError": "._engine", "compile_stats": "._engine",
         "set_threads": "._numba", "get_threads": "._numba"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
