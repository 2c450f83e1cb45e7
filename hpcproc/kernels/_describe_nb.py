"""Numba kernels of the one-pass describe: moments, histogram and sketch fused per slice.

A block is processed in slices of ``SLICE`` elements (the histogram's
:data:`._hist_nb.SLICE`, a multiple of the moment kernel's chunk, checked at import;
256 KiB of float64: the slice stays in the L2 cache while it is visited several times).
Each slice goes through the existing kernels, called, not copied:

* :func:`._moments_nb.moments_1d` can accumulate a moment state (``moments=True``).
  ``hp.describe`` does not use it: its statistics come from ``hp.stats``' reproducible
  state (:mod:`.describe_state`), so they are bit-identical to ``hp.stats``;
* :func:`._hist_nb.count_slice` (``hp.histogram``'s slice kernel too) counts the slice
  with numpy's rules into ``SUBS`` (4) interleaved sub-histograms (consecutive
  increments of one bin never wait for each other; :func:`fold_subs` adds them up).
  Uniform edges: a vectorised pass of float64 bin estimates into an int32 scratch
  array, then the exact correction against the edges and the counts, as the native
  reference does (measured 25% faster than both per element); other edges:
  :func:`._hist_nb.find_bin`'s binary search;
* :func:`._select_nb.sketch_add` adds the slice to the quantile sketch when one is given.

``moments=False``, an empty ``subs`` (0 bins) or ``sketch`` (0 entries) skips that part.

:func:`fold_hist_1d` is ``hp.describe``'s default kernel (no sketch): per slice,
:func:`._repro_nb.fold_1d` (``hp.stats``' reproducible moment state, the same calls on the
same chunks) and the histogram, one call per piece of whole chunks.
"""

from __future__ import annotations

import os

import numpy as np

from . import _hist_nb as hnb
from . import _moments_nb as mnb
from . import _repro_nb as rn
from . import _select_nb as snb
from ._aot import REALS, signatures
from ._kernel import kernel

__all__ = ["SLICE", "SUBS", "describe_1d", "fold_hist_1d", "fold_subs"]

SLICE = hnb.SLICE  # the histogram's slice: one slice constant for both
SUBS = hnb.SUBS
if SLICE % mnb.CHUNK or SLICE % rn.CHUNK:  # the moment kernels see whole chunks per slice
    raise RuntimeError(f"SLICE={SLICE} is not a multiple of the moment chunk "
                       f"({mnb.CHUNK}, {rn.CHUNK})")


@kernel(aot=signatures("{x}[::1], f8[:, ::1], b1, f8[::1], b1, f8, i8[:, ::1], f8, f8, i8, f8, "
                       "i8[::1]", x=REALS))
def describe_1d(x, state, moments, edges, uniform, norm, subs, log_gamma, log_min, nbuck,
                min_pos, sketch):
    """Moments of ``x`` into ``state`` (``(1, 8)``; skipped unless ``moments``), its
    histogram into ``subs`` (``(SUBS, bins)``, int64) and its sketch into ``sketch``
    (the arguments of ``sketch_add``); returns the sketch's NaN count (0 without one)."""
    n = x.shape[0]
    hist = subs.shape[1] > 0
    sk = sketch.shape[0] > 0
    nan = 0
    est = np.empty(min(n, SLICE) if hist and uniform else 0, dtype=np.int32)
    for r0 in range(0, n, SLICE):
        r1 = min(n, r0 + SLICE)
        part = x[r0:r1]
        if moments:
            mnb.moments_1d(part, state)
        if hist:
            hnb.count_slice(x, r0, r1, edges, uniform, norm, subs, est[:r1 - r0])
        if sk:
            nan += snb.sketch_add(part, log_gamma, log_min, nbuck, min_pos, sketch)
    return nan


# fold_1d's arguments (the reproducible moment stack), then the histogram's
_FOLD_HIST = ("{x}[::1], i8, i8[::1], i8[::1], f8[:, :, ::1], i8, f8[:, ::1], f8[:, ::1], "
              "f8[:, :, ::1], f8[::1], b1, f8, i8[:, ::1]")


@kernel(aot=signatures(_FOLD_HIST, x=REALS))
def fold_hist_1d(x, c0, lvl, idx, val, top, tot, mm, leaf, edges, uniform, norm, subs):
    """:func:`._repro_nb.fold_1d` of ``x`` (whole chunks from global chunk ``c0``) and
    its histogram into ``subs``, slice by slice: each slice is folded and counted while
    it is in the L2 cache. The moment stack is exactly ``fold_1d``'s (the same calls on
    the same chunks, in order; ``SLICE`` is a multiple of the chunk); returns its top."""
    n = x.shape[0]
    est = np.empty(min(n, SLICE) if uniform else 0, dtype=np.int32)  # bin estimates
    for r0 in range(0, n, SLICE):
        r1 = min(n, r0 + SLICE)
        top = rn.fold_1d(x[r0:r1], c0 + r0 // rn.CHUNK, lvl, idx, val, top, tot, mm, leaf)
        hnb.count_slice(x, r0, r1, edges, uniform, norm, subs, est[:r1 - r0])
    return top


def _stamp_callees(kern, modules) -> None:
    """Make ``disp``'s on-disk cache stale when a module it calls into changes.

    Numba keys a cached kernel on the modification time and size of its own file only,
    but these kernels compile the kernels of other modules into themselves: without
    this, editing ``_moments_nb.py`` would leave a cached ``describe_1d`` running the old
    moment code. The callees' stamps are added to the cache's source stamp (a Numba
    internal, checked here: if it ever moves, caching still works as before).
    """
    def stamp(disp):
        f = getattr(getattr(disp, "_cache", None), "_cache_file", None)
        if f is None or not hasattr(f, "_source_stamp"):  # caching off
            return
        stamps = tuple((os.stat(m.__file__).st_mtime, os.stat(m.__file__).st_size)
                       for m in modules)
        f._source_stamp = (f._source_stamp, stamps)
    kern.on_dispatcher(stamp)  # when Numba is first needed for it (kernels are lazy)


_stamp_callees(describe_1d, (hnb, mnb, snb))
_stamp_callees(fold_hist_1d, (hnb, rn, mnb))


def fold_subs(subs: np.ndarray) -> np.ndarray:
    """The histogram counts: the sum of the sub-histograms."""
    return subs.sum(axis=0)
