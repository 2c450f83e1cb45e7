"""Local (per-rank) stable argsort of encoded keys: a compiled LSD radix sort.

Keys are ``uint64`` words (see :mod:`._encode`), several columns compared
lexicographically. The radix sort carries (digit word, row index) pairs through 11-bit
passes and skips every pass whose digit is the same for all rows (small key ranges cost
few passes). Measured on this machine against ``np.argsort(kind="stable")`` (numpy's
timsort for 64-bit integers): see the README; ``method="numpy"`` selects numpy's.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["argsort_keys"]

_BITS = 11                      # digit width: 6 passes per 64-bit word
_RADIX = 1 << _BITS
_PASSES = -(-64 // _BITS)


@jit
def _radix_word(word, perm):
    """Stable reorder of ``perm`` by ``word[perm]`` (LSD, 11-bit digits, trivial passes
    skipped). Returns the new permutation."""
    n = perm.shape[0]
    keys = np.empty(n, dtype=np.uint64)
    for i in range(n):
        keys[i] = word[perm[i]]
    hist = np.zeros((_PASSES, _RADIX), dtype=np.int64)
    mask = np.uint64(_RADIX - 1)
    for i in range(n):
        x = keys[i]
        for b in range(_PASSES):
            hist[b, (x >> np.uint64(_BITS * b)) & mask] += 1
    keys2 = np.empty(n, dtype=np.uint64)
    perm2 = np.empty(n, dtype=perm.dtype)
    pos = np.empty(_RADIX, dtype=np.int64)
    for b in range(_PASSES):
        trivial = False
        for d in range(_RADIX):
            if hist[b, d] == n:
                trivial = True
        if trivial:
            continue
        acc = 0
        for d in range(_RADIX):
            pos[d] = acc
            acc += hist[b, d]
        shift = np.uint64(_BITS * b)
        for i in range(n):
            d = (keys[i] >> shift) & mask
            p = pos[d]
            pos[d] = p + 1
            keys2[p] = keys[i]
            perm2[p] = perm[i]
        keys, keys2 = keys2, keys
        perm, perm2 = perm2, perm
    return perm


def argsort_keys(K: np.ndarray, method: str = "radix") -> np.ndarray:
    """Stable permutation that sorts the rows of the ``(n, m)`` uint64 key matrix ``K``."""
    n, m = K.shape
    if m == 0 or n < 2:
        return np.arange(n, dtype=np.int64)
    if method == "numpy":
        if m == 1:
            return np.argsort(K[:, 0], kind="stable")
        return np.lexsort([K[:, j] for j in range(m - 1, -1, -1)])
    perm = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    for j in range(m - 1, -1, -1):  # least significant column first
        perm = _radix_word(np.ascontiguousarray(K[:, j]), perm)
    return perm.astype(np.int64, copy=False)
