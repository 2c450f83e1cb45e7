"""Order-preserving encoding of key columns as ``uint64`` words, and back.

Every key column becomes one ``uint64`` word per row whose unsigned order is the key
order: signed integers flip the sign bit; floats flip all bits when negative and the sign
bit otherwise; ``-0.0`` is encoded as ``+0.0`` and every NaN as the largest word, so NaN
sorts last and all NaNs form one group. A descending column is bit-inverted (NaN stays
last). Several key columns make a ``(rows, columns)`` matrix compared lexicographically.
"""

from __future__ import annotations

import numpy as np

__all__ = ["encode_keys", "encoded_chunks", "decode_key", "check_key_dtype", "CHUNK_ROWS"]

#: Rows encoded at a time when only a pass over the keys is needed (bounded memory).
CHUNK_ROWS = 1 << 15

_SIGN = np.uint64(1 << 63)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


def check_key_dtype(name: str, col: np.ndarray) -> None:
    """Raise ``TypeError`` unless ``col`` is a 1-D bool, integer or float column."""
    if col.ndim != 1:
        raise TypeError(f"key column {name!r} must be one-dimensional, has rows of shape "
                        f"{col.shape[1:]}")  # not col.shape: its row count is this rank's
    if col.dtype.kind not in "biuf" or col.dtype.itemsize > 8:
        raise TypeError(f"key column {name!r} must be bool, integer or float (<= 64 bits), "
                        f"not {col.dtype}")


def _encode(col: np.ndarray, ascending: bool) -> np.ndarray:
    kind = col.dtype.kind
    if kind in "bu":
        enc = col.astype(np.uint64)
        nan = None
    elif kind == "i":
        enc = col.astype(np.int64).view(np.uint64) ^ _SIGN
        nan = None
    else:
        x = col.astype(np.float64)  # a copy: safe to canonicalise in place
        x[x == 0] = 0.0
        nan = np.isnan(x)
        bits = x.view(np.uint64)
        neg = (bits >> np.uint64(63)).astype(bool)
        enc = np.where(neg, ~bits, bits | _SIGN)
        enc[nan] = _ALL
    if not ascending:
        enc = ~enc
        if nan is not None:
            enc[nan] = _ALL
    return enc


def encode_keys(cols, ascending=True) -> np.ndarray:
    """The ``(rows, len(cols))`` uint64 matrix of encoded keys (C order)."""
    cols = list(cols)
    if isinstance(ascending, (bool, np.bool_)):
        ascending = [bool(ascending)] * len(cols)
    n = cols[0].shape[0] if cols else 0
    out = np.empty((n, len(cols)), dtype=np.uint64)
    for j, (col, asc) in enumerate(zip(cols, ascending)):
        out[:, j] = _encode(col, asc)
    return out


def encoded_chunks(cols, ascending=True, chunk: int = CHUNK_ROWS):
    """Yield ``(start, stop, K)``: the encoded keys of rows ``[start, stop)``, a chunk at
    a time (so a pass over the keys needs ``chunk * 8 * columns`` bytes, not n * ...)."""
    cols = list(cols)
    n = cols[0].shape[0] if cols else 0
    for a in range(0, max(n, 1), chunk):
        b = min(n, a + chunk)
        yield a, b, encode_keys([c[a:b] for c in cols], ascending)


def decode_key(enc: np.ndarray, dtype) -> np.ndarray:
    """Invert the ascending encoding of one column back to ``dtype``."""
    dtype = np.dtype(dtype)
    enc = np.ascontiguousarray(enc, dtype=np.uint64)
    if dtype.kind in "bu":
        return enc.astype(dtype)
    if dtype.kind == "i":
        return (enc ^ _SIGN).view(np.int64).astype(dtype)
    pos = (enc >> np.uint64(63)).astype(bool)
    bits = np.where(pos, enc ^ _SIGN, ~enc)
    out = bits.view(np.float64).copy()
    out[enc == _ALL] = np.nan
    return out.astype(dtype)
