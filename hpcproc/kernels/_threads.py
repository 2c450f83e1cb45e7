"""This rank's thread count for hpcproc's kernels (no Numba import here).

``HPCPROC_THREADS``, else ``SLURM_CPUS_PER_TASK``, else 1 (see :mod:`._config`). A bad
value is kept as :data:`CONFIG_ERROR` and raised by ``ensure_compiled`` on every rank
together (agreed), before any kernel runs.
"""

from __future__ import annotations

import sys

from ._config import default_threads

__all__ = ["CONFIG_ERROR", "set_threads", "get_threads"]

try:
    _THREADS = default_threads()
    CONFIG_ERROR = None
except ValueError as exc:
    _THREADS, CONFIG_ERROR = 1, exc


def set_threads(n: int | None = None) -> int:
    """Set this rank's thread count (``None``: from the environment); returns it.

    Not collective. Applies to hpcproc's block kernels (blocks are split over threads)
    and to Numba's own parallel regions (``numba.set_num_threads``, capped at
    ``NUMBA_NUM_THREADS``) once Numba is loaded.
    """
    global _THREADS
    n = default_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    _THREADS = n
    numba = sys.modules.get("numba")
    if numba is not None and hasattr(numba, "set_num_threads"):
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n


def get_threads() -> int:
    """This rank's thread count for hpcproc kernels."""
    return _THREADS
