"""Linear interpolation exactly as numpy's quantile does it (shared by quantile and sketch)."""

from __future__ import annotations

import numpy as np


def lerp(a, b, t):
    """numpy's ``_lerp`` (so results agree bit for bit with ``np.quantile``)."""
    diff_b_a = b - a
    lerp_interpolation = np.add(a, diff_b_a * t, out=...)
    np.subtract(b, diff_b_a * (1 - t), out=lerp_interpolation, where=t >= 0.5,
                casting="unsafe", dtype=type(lerp_interpolation.dtype))
    if lerp_interpolation.ndim == 0:
        lerp_interpolation = lerp_interpolation[()]
    return lerp_interpolation
