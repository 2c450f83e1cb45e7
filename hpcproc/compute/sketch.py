"""A mergeable quantile sketch with a relative-error guarantee (log buckets).

Values are counted in buckets whose bounds grow geometrically by
``gamma = (1 + a) / (1 - a)``, ``a = rel_err``; every bucket is represented by the value
whose relative distance to any point of the bucket is at most ``a``. Therefore the
sketch's estimate of any order statistic ``x_k`` is within ``a * |x_k|`` of it (up to
floating-point rounding), and a linearly interpolated quantile is within
``a * max(|x_lo|, |x_hi|)`` of ``np.quantile``. Magnitudes below the smallest normal
float64 (2.2e-308) count as zero; +-inf have their own buckets; NaNs are counted (a NaN
makes quantiles NaN, like numpy). Merging two sketches adds their counts: it is exact,
associative and commutative, so results do not depend on the number of ranks or the
block size. The state is a dense int64 array (``2 * ceil(1418 / ln(gamma)) + 5``
entries: 1.1 MiB for ``a = 0.01``), merged across ranks with one ``Allreduce``.
"""

from __future__ import annotations

import math

import numpy as np
from mpi4py import MPI

from ..agreement import agree
from ..comm import lib_comm

__all__ = ["QuantileSketch"]

_MIN = float(np.finfo(np.float64).tiny)
_SPAN = math.log(float(np.finfo(np.float64).max)) - math.log(_MIN)


class QuantileSketch:
    """Mergeable relative-error quantile sketch. ``add`` is local; ``merged`` collective."""

    def __init__(self, rel_err: float = 0.01):
        if not 0 < rel_err < 1:
            raise ValueError(f"rel_err must be in (0, 1), got {rel_err!r}")
        self.rel_err = float(rel_err)
        self.gamma = (1 + rel_err) / (1 - rel_err)
        self.log_gamma = math.log(self.gamma)
        self.nbuck = int(math.ceil(_SPAN / self.log_gamma)) + 1
        self.counts = np.zeros(2 * self.nbuck + 3, dtype=np.int64)
        self.nan = 0

    def add(self, block, comm=None) -> "QuantileSketch":
        """Count the elements of a numpy block (local; compiles once per node the first
        time, which is collective on ``comm``)."""
        from ..kernels import _select_nb as nb
        from ..kernels._dtypes import real_kernel_dtype, to_kernel
        from ..kernels._engine import ensure_compiled, signature_of
        x = np.ascontiguousarray(block).reshape(-1)
        x = to_kernel(x, real_kernel_dtype(x.dtype, "the block"))
        if x.dtype == np.bool_:
            x = x.view(np.uint8)
        x = x if x.flags.writeable else x.copy()
        args = (x, self.log_gamma, math.log(_MIN), np.int64(self.nbuck), _MIN, self.counts)
        ensure_compiled(nb.sketch_add, signature_of(*args), comm)
        self.nan += int(nb.sketch_add(*args))
        return self

    def merge(self, other: "QuantileSketch") -> "QuantileSketch":
        """Add another sketch's counts (same ``rel_err``) into this one (local)."""
        if other.rel_err != self.rel_err:
            raise ValueError("cannot merge sketches with different rel_err")
        self.counts += other.counts
        self.nan += other.nan
        return self

    def merged(self, comm=None) -> "QuantileSketch":
        """A new sketch holding every rank's counts. Collective."""
        comm = agree(comm, "QuantileSketch.merged", {"rel_err": self.rel_err})
        out = QuantileSketch(self.rel_err)
        flat = np.concatenate([self.counts, [self.nan]])
        lib_comm(comm).Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        out.counts, out.nan = flat[:-1], int(flat[-1])
        return out

    @property
    def count(self) -> int:
        """Number of non-NaN values counted."""
        return int(self.counts.sum())

    def _value(self, idx: int) -> float:
        zero, nb = self.nbuck + 1, self.nbuck
        if idx == 0:
            return -math.inf
        if idx == 2 * nb + 2:
            return math.inf
        j = idx - zero
        if j == 0:
            return 0.0
        mag = math.exp(math.log(_MIN) + abs(j) * self.log_gamma) * 2 / (self.gamma + 1)
        return math.copysign(mag, j)

    def quantile(self, q):
        """Estimated quantiles (linear interpolation like ``np.quantile``). Local."""
        qa = np.asarray(q, dtype=np.float64)
        if qa.size and not (np.all(qa >= 0) and np.all(qa <= 1)):
            raise ValueError("Quantiles must be in the range [0, 1]")
        n = self.count
        if n == 0:
            raise ValueError("cannot compute the quantile of an empty sketch")
        if self.nan:
            out = np.full(qa.shape, np.nan)
            return float(out) if out.ndim == 0 else out
        cum = np.cumsum(self.counts)

        def order_stat(k):
            return self._value(int(np.searchsorted(cum, k, side="right")))

        from .interp import lerp
        h = (n - 1) * qa
        lo = np.floor(h)
        a = np.vectorize(lambda k: order_stat(int(k)), otypes=[float])(lo)
        b = np.vectorize(lambda k: order_stat(min(int(k) + 1, n - 1)), otypes=[float])(lo)
        with np.errstate(invalid="ignore"):
            out = np.where(a == b, a, lerp(a, b, np.asarray(h - lo)))
        return float(out) if out.ndim == 0 else out
