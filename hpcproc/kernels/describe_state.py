"""The running state of a one-pass describe: moments, histogram counts, sketch counts.

:class:`DescribeState` folds blocks in, one call per block. The moment state is
:func:`.moment_state.block_state`'s, from the block and its global position, exactly as
``hp.stats`` builds it (the reproducible state: bit-identical statistics). By default
(reproducible state, a histogram, no sketch) one kernel folds the moments of the block's
whole chunks and counts them in the histogram slice by slice, each slice while it is in
the L2 cache (:func:`._describe_nb.fold_hist_1d`, given to ``block_state`` as its fold);
the few rows outside whole chunks, and every block of the other cases, are counted by
:func:`._describe_nb.describe_1d` (a second pass over the block in memory). Counts are
integers: each thread adds into its own arrays, summed at the end (any order gives the
same counts).
"""

from __future__ import annotations

import math

import numpy as np

from . import _describe_nb as nb
from . import _moments_nb as mnb
from . import _repro_nb as rn
from . import repro_state as rs
from ._engine import ensure_compiled, map_threads, signature_of, split_rows
from ._numba import get_threads
from .moment_state import block_state, empty_int_state, empty_state, merge, merge_int

__all__ = ["DescribeState"]

_NO_SKETCH = np.zeros(0, dtype=np.int64)
_TINY = float(np.finfo(np.float64).tiny)  # the sketch's smallest magnitude


class DescribeState:
    """This rank's running describe state.

    Parameters
    ----------
    edges, uniform, norm : the histogram edges as the kernels compare them
        (``histogram.edge_args``); ``edges=None``: no histogram.
    sketch : QuantileSketch or None
        Counts are added to ``sketch.counts``/``sketch.nan``.
    ints : bool
        Integer (or bool) data: also the exact integer sum, min and max (``unsigned``:
        as uint64).
    exact : bool
        The correctly rounded moment state (:mod:`.exact_state`) instead of the default
        reproducible one.
    moments : bool
        False: histogram and sketch only (the second pass of ``range=None``).
    """

    def __init__(self, edges=None, uniform=False, norm=0.0, sketch=None, ints=False,
                 unsigned=False, exact=False, moments=True):
        self.edges = np.zeros(1) if edges is None else edges
        self.uniform, self.norm = bool(uniform), float(norm)
        self.bins = 0 if edges is None else edges.size - 1
        self.sketch = sketch
        self.ints, self.unsigned, self.exact, self.moments = ints, unsigned, exact, moments
        self.state = empty_state(1, exact)
        self.istate = empty_int_state(1, unsigned) if ints else None
        self._subs: list = []  # per thread: (sub-histograms, sketch counts)
        self._ready: set = set()  # block dtypes whose kernels are compiled

    def _acc(self, i: int):
        while len(self._subs) <= i:
            sk = (np.zeros_like(self.sketch.counts) if self._subs else self.sketch.counts) \
                if self.sketch is not None else _NO_SKETCH
            self._subs.append((np.zeros((nb.SUBS, self.bins), dtype=np.int64), sk))
        return self._subs[i]

    def _args(self, flat, state, moments, i):
        subs, sk = self._acc(i)
        s = self.sketch
        if s is None:
            return (flat, state, moments, self.edges, self.uniform, self.norm, subs, 1.0,
                    0.0, np.int64(0), 0.0, sk)
        return (flat, state, moments, self.edges, self.uniform, self.norm, subs,
                s.log_gamma, math.log(_TINY), np.int64(s.nbuck), _TINY, sk)

    def add(self, flat: np.ndarray, comm, start: int = 0) -> None:
        """Fold one block (1-D, contiguous, kernel dtype, bool as uint8) whose first
        element is element ``start`` of the whole input into the state.

        Collective the first time a dtype is seen (kernels are compiled once per node).
        """
        first = flat.dtype not in self._ready  # then compile (collective), else skip the
        self._ready.add(flat.dtype)            # signature check: it costs more than merges
        # the default case: moments and histogram of the whole chunks in one kernel, the
        # few rows outside them (at most a chunk at each end) below
        fused = self.moments and not self.exact and self.bins > 0 and self.sketch is None
        if self.moments:
            fold = None
            if fused:
                if first:
                    ensure_compiled(nb.fold_hist_1d, signature_of(
                        *self._fused_args(0, flat, 0, rs.empty_state(1))), comm)
                self._acc(get_threads())
                fold = self._fused_fold
            s, _ = block_state(flat.reshape(-1, 1), comm, exact=self.exact, start=start,
                               fold=fold)
            self.state = merge(self.state, s)
        if self.ints and self.moments:
            col, ints = flat.reshape(-1, 1), empty_int_state(1, self.unsigned)
            if first:
                ensure_compiled(mnb.int_extras, signature_of(col, ints), comm)
            mnb.int_extras(col, ints)
            self.istate = merge_int(self.istate, ints)
        if self.bins == 0 and self.sketch is None:
            return
        if first:
            ensure_compiled(nb.describe_1d, signature_of(*self._args(flat, mnb.empty_state(1),
                                                                     False, 0)), comm)
        if fused:  # the rows that block_state kept raw (not given to the fused kernel)
            h0, h1 = rs.whole_rows(flat.shape[0], 1, start)
            for part in (flat[:h0], flat[h1:]):
                if part.shape[0]:
                    nb.describe_1d(*self._args(part, mnb.empty_state(1), False, 0))
            return
        ranges = split_rows(flat.shape[0])
        index = {lo: i for i, (lo, _) in enumerate(ranges)}
        self._acc(len(ranges) - 1)  # every thread's accumulators, before the threads run

        def run(lo, hi):
            return nb.describe_1d(*self._args(flat[lo:hi], mnb.empty_state(1), False,
                                              index[lo]))

        for nan in map_threads(run, ranges):
            if self.sketch is not None:
                self.sketch.nan += int(nan)

    def _fused_args(self, part, rows, c0, state):
        subs, _ = self._acc(part)
        return (rows, c0, state.lvl, state.idx, state.val, state.top, state.tot, state.mm,
                np.zeros((1, 1, rn.NODE)), self.edges, self.uniform, self.norm, subs)

    def _fused_fold(self, part, rows, c0, state):
        """``block_state``'s fold: moments and histogram of the whole chunks ``rows``."""
        return nb.fold_hist_1d(*self._fused_args(part, rows.reshape(-1), c0, state))

    def counts(self) -> np.ndarray:
        """This rank's histogram counts (int64, ``bins`` entries)."""
        out = np.zeros(self.bins, dtype=np.int64)
        for subs, _ in self._subs:
            out += nb.fold_subs(subs)
        return out

    def fold_sketch(self) -> None:
        """Add the other threads' sketch counts into ``sketch.counts``."""
        for _, sk in self._subs[1:]:
            self.sketch.counts += sk
