"""The running state of a one-pass describe: moments, histogram counts, sketch counts.

:class:`DescribeState` folds blocks in, one call per block. The moment state is built
exactly as :func:`.moment_state.block_state` builds it for ``hp.stats`` (the same thread
ranges, each a fresh state merged in order, the block's state merged into the running
one), so the statistics are bit-identical to ``hp.stats``'s. Histogram and sketch counts
are integers: each thread adds into its own arrays, summed at the end (any order gives
the same counts).
"""

from __future__ import annotations

import math

import numpy as np

from . import _describe_nb as nb
from . import _moments_nb as mnb
from ._engine import ensure_compiled, map_threads, signature_of, split_rows
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
        The reproducible moment state (:mod:`.exact_state`): the moments are then
        computed by ``block_state`` and the histogram and sketch by the fused kernel.
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

    def add(self, flat: np.ndarray, comm) -> None:
        """Fold one block (1-D, contiguous, kernel dtype, bool as uint8) into the state.

        Collective the first time a dtype is seen (kernels are compiled once per node).
        """
        if self.moments and self.exact:
            s, _ = block_state(flat.reshape(-1, 1), comm, exact=True)
            self.state = merge(self.state, s)
        first = flat.dtype not in self._ready  # then compile (collective), else skip the
        self._ready.add(flat.dtype)            # signature check: it costs more than merges
        if self.ints and self.moments:
            col, ints = flat.reshape(-1, 1), empty_int_state(1, self.unsigned)
            if first:
                ensure_compiled(mnb.int_extras, signature_of(col, ints), comm)
            mnb.int_extras(col, ints)
            self.istate = merge_int(self.istate, ints)
        fused = self.moments and not self.exact  # the kernel computes the moments too
        if not fused and self.bins == 0 and self.sketch is None:
            return
        if first:
            ensure_compiled(nb.describe_1d, signature_of(*self._args(flat, empty_state(1),
                                                                     fused, 0)), comm)
        ranges = split_rows(flat.shape[0])
        index = {lo: i for i, (lo, _) in enumerate(ranges)}
        self._acc(len(ranges) - 1)  # every thread's accumulators, before the threads run

        def run(lo, hi):
            state = empty_state(1)
            nan = nb.describe_1d(*self._args(flat[lo:hi], state, fused, index[lo]))
            return state, nan

        s = empty_state(1)
        for state, nan in map_threads(run, ranges):  # in order: the states of hp.stats
            s = merge(s, state)
            if self.sketch is not None:
                self.sketch.nan += int(nan)
        if fused:
            self.state = merge(self.state, s)

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
