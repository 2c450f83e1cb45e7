"""Reductions over distributed inputs: statistics, histograms, quantiles, sketches, user
kernels, and the one-pass :func:`~hpcproc.compute.describe.describe`."""
