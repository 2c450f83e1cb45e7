"""Numba kernels for distributed selection (exact quantiles) and the quantile sketch.

Selection works on order-preserving unsigned 64-bit keys: a float's bits with the sign
handled (negatives reversed), a signed integer's bits with the sign bit flipped. Each
round counts, for every target prefix (the high bits already fixed), how many keys
fall in each of the 65536 values of the next 16 bits.
"""

from __future__ import annotations

import math

import numpy as np

from ._aot import INTS, REALS, signatures
from ._numba import kernel

_U = INTS[4:]  # keys are read through an unsigned view of the data

DIGIT = 16
BUCKETS = 1 << DIGIT


@kernel
def make_key(b, mode, sign, maskw, top):
    """Order-preserving 64-bit key of the raw bits ``b`` (all arguments uint64)."""
    if mode == 0:
        if b & sign:
            k = (~b) & maskw
        else:
            k = b | sign
    elif mode == 1:
        k = b ^ sign
    else:
        k = b
    return k << top


@kernel
def find_prefix(prefixes, h):
    """Index of ``h`` in the sorted array ``prefixes``, or -1 when it is not there."""
    lo, up = 0, prefixes.shape[0] - 1
    if up < 0:
        return -1
    while lo < up:
        mid = (lo + up) // 2
        if prefixes[mid] < h:
            lo = mid + 1
        else:
            up = mid
    return lo if prefixes[lo] == h else -1


@kernel(aot=signatures("{u}[::1], i8, u8, u8, u8, u8, u8, u8[::1], i8[:, ::1]", u=_U))
def radix_counts(u, mode, sign, maskw, top, infbits, shift, prefixes, counts):
    """Add to ``counts[p, digit]`` the keys whose bits above ``shift + 16`` equal
    ``prefixes[p]`` (all keys when ``shift == 48``); returns the NaN count."""
    nan = 0
    absmask = sign - np.uint64(1)
    hi = shift + np.uint64(DIGIT)
    dmask = np.uint64(BUCKETS - 1)
    for i in range(u.shape[0]):
        b = np.uint64(u[i])
        if mode == 0 and (b & absmask) > infbits:
            nan += 1
            continue
        key = make_key(b, mode, sign, maskw, top)
        p = 0 if hi >= np.uint64(64) else find_prefix(prefixes, key >> hi)
        if p < 0:
            continue
        counts[p, np.int64((key >> shift) & dmask)] += 1
    return nan


@kernel(aot=signatures("{x}[::1], f8, f8, i8, f8, i8[::1]", x=REALS))
def sketch_add(x, log_gamma, log_min, nbuck, min_pos, counts):
    """Add the elements of ``x`` to a log-bucket sketch; returns the NaN count.

    Layout of ``counts`` (length ``2 * nbuck + 3``): -inf, negative buckets from the
    largest magnitude down, zero (``|v| < min_pos``), positive buckets up, +inf.
    """
    nan = 0
    zero = nbuck + 1
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        if v != v:
            nan += 1
        elif v == np.inf:
            counts[2 * nbuck + 2] += 1
        elif v == -np.inf:
            counts[0] += 1
        elif abs(v) < min_pos:
            counts[zero] += 1
        else:
            j = int(math.ceil((math.log(abs(v)) - log_min) / log_gamma))
            if j < 1:
                j = 1
            if j > nbuck:
                j = nbuck
            if v > 0:
                counts[zero + j] += 1
            else:
                counts[zero - j] += 1
    return nan


@kernel(aot=signatures("{u}[::1], i8, u8, u8, u8, u8, u8[::1], u8[::1], i8", u=_U))
def radix_collect(u, mode, sign, maskw, top, infbits, prefixes, out, pos):
    """Copy to ``out[pos:]`` the keys whose top 16 bits are in ``prefixes`` (sorted);
    returns the new ``pos``. NaNs are skipped."""
    absmask = sign - np.uint64(1)
    hi = np.uint64(64 - DIGIT)
    for i in range(u.shape[0]):
        b = np.uint64(u[i])
        if mode == 0 and (b & absmask) > infbits:
            continue
        key = make_key(b, mode, sign, maskw, top)
        if find_prefix(prefixes, key >> hi) >= 0:
            out[pos] = key
            pos += 1
    return pos
