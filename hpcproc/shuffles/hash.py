"""Hash partitioning: row -> ``hash(key) % ranks``.

Equal keys (after encoding: ``-0.0 == 0.0``, all NaNs equal, integers of any width
equal by value) always go to the same rank; distinct keys spread uniformly, whatever
their distribution. Local, no communication.
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from ._encode import encoded_chunks
from ._exchange import dest_dtype

__all__ = ["hash_partition"]


def hash_partition(key_cols, size: int) -> np.ndarray:
    """Destination rank of every row of the key columns ``key_cols``. Not collective.

    Keys are encoded a chunk at a time: the only per-row memory is the result (one
    byte per row up to 256 ranks).
    """
    dest = np.empty(key_cols[0].shape[0], dtype=dest_dtype(size))
    for a, b, K in encoded_chunks(key_cols):
        _kernels.hash_dest(K, size, dest[a:b])
    return dest
