"""Distributed computations on DistArrays and streamed datasets: statistics, histograms,
quantiles and sketches, the one-pass ``describe``, user kernels (``map``, ``map_blocks``,
``reduce``) and the resumable (checkpointed) scans. Built on the kernels, io and
checkpoint layers."""
