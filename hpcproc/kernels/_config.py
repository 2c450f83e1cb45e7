"""Kernel engine settings read from the environment (no Numba import here).

* ``HPCPROC_CACHE``: ``0`` switches Numba's on-disk cache off (every rank compiles).
* ``HPCPROC_CACHE_DIR``: where compiled kernels are cached (``NUMBA_CACHE_DIR``);
  default ``$XDG_CACHE_HOME/hpcproc/numba`` (``~/.cache/hpcproc/numba``). Used only if
  it can be trusted (see :mod:`hpcproc.kernels._cache_trust`).
* ``HPCPROC_THREADS``, else ``SLURM_CPUS_PER_TASK``, else 1: threads per rank, so that
  ranks x threads never oversubscribe a node.
"""

from __future__ import annotations

import os

__all__ = ["cache_enabled", "cache_dir", "default_threads"]


def cache_enabled() -> bool:
    """False when ``HPCPROC_CACHE`` is ``0``/``no``/``off``/``false``."""
    return os.environ.get("HPCPROC_CACHE", "1").strip().lower() not in ("0", "no", "off", "false")


def cache_dir() -> str:
    """The directory of the compiled-kernel cache."""
    explicit = os.environ.get("HPCPROC_CACHE_DIR")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hpcproc", "numba")


def default_threads() -> int:
    """Threads per rank: ``HPCPROC_THREADS``, else ``SLURM_CPUS_PER_TASK``, else 1."""
    for var in ("HPCPROC_THREADS", "SLURM_CPUS_PER_TASK"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                n = int(value.split("(")[0])
            except ValueError:
                raise ValueError(f"{var} must be a positive integer, got {value!r}") from None
            if n < 1:
                raise ValueError(f"{var} must be a positive integer, got {value!r}")
            return n
    return 1
