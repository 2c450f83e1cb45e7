"""Hash partitioning: row -> ``hash(key) % ranks``.

Equal keys (after encoding: ``-0.0 == 0.0``, all NaNs equal, integers of any width
equal by value) always go to the same rank; distinct keys spread uniformly, whatever
their distribution. Local, no communication.
"""

from __future__ import annotations

import numpy as np

from . import _kernels

__all__ = ["hash_partition"]


def hash_partition(K: np.ndarray, size: int) -> np.ndarray:
    """Destination rank of every row of the encoded key matrix ``K``. Not collective."""
    dest = np.empty(K.shape[0], dtype=np.int32)
    _kernels.hash_dest(K, size, dest)
    return dest
