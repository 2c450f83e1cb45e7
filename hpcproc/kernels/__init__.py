"""Local kernels and the mergeable partial states that reductions combine."""

from .moments import Moments, moments_of, merge_moments

__all__ = ["Moments", "moments_of", "merge_moments"]
