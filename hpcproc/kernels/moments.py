"""Mergeable moment states: count, sum, mean, M2 (sum of squared deviations), min, max.

A state is computed per block and merged across blocks and ranks with Chan et al.'s
pairwise update, which is numerically stable (no catastrophic cancellation of
``sum(x**2) - n*mean**2``). Merging is associative, so results do not depend on the
number of ranks beyond floating-point rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Moments", "moments_of", "merge_moments"]


@dataclass(frozen=True)
class Moments:
    """Partial state of a moment reduction over ``count`` values."""

    count: int = 0
    sum: float = 0.0
    mean: float = 0.0
    m2: float = 0.0
    min: float = np.inf
    max: float = -np.inf

    def var(self, ddof: int = 0) -> float:
        return self.m2 / (self.count - ddof) if self.count > ddof else float("nan")

    def std(self, ddof: int = 0) -> float:
        return float(np.sqrt(self.var(ddof)))

    def as_dict(self, ddof: int = 0) -> dict:
        empty = self.count == 0
        return {"count": int(self.count), "sum": float(self.sum),
                "mean": float("nan") if empty else float(self.mean),
                "std": self.std(ddof), "var": self.var(ddof),
                "min": float("nan") if empty else float(self.min),
                "max": float("nan") if empty else float(self.max)}


def moments_of(block: np.ndarray) -> Moments:
    """The state of one local block (all elements, float64 arithmetic)."""
    x = np.asarray(block).reshape(-1)
    n = x.size
    if n == 0:
        return Moments()
    xf = x.astype(np.float64, copy=False)
    total = float(np.sum(xf))  # numpy sums pairwise
    mean = total / n
    dev = xf - mean
    return Moments(n, total, mean, float(np.dot(dev, dev)), float(xf.min()), float(xf.max()))


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Combine two states (Chan, Golub & LeVeque pairwise update)."""
    if a.count == 0:
        return b
    if b.count == 0:
        return a
    n = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / n)
    m2 = a.m2 + b.m2 + delta * delta * (a.count * b.count / n)
    return Moments(n, a.sum + b.sum, mean, m2, min(a.min, b.min), max(a.max, b.max))
