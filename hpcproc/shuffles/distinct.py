"""``unique`` and ``value_counts``: group-by without values, sorted by key."""

from __future__ import annotations

import numpy as np

from ..agreement import collective
from ..array import DistArray
from ._result import make_result
from .grouping import groupby

__all__ = ["unique", "value_counts"]


@collective("hp.value_counts", local=("data",))
def value_counts(data, by=None, comm=None, **options):
    """Distinct keys and how many rows hold each, globally sorted by key. Collective.

    ``data``: a 1-D DistArray (column ``value``) or a table with key column(s) ``by``.
    Returns a ShuffledTable with the key column(s) and ``count`` (int64). NaN is one
    value, counted last. ``options`` are those of :func:`hpcproc.groupby`.
    """
    return groupby(data, by, comm, **options).size()


@collective("hp.unique", local=("data",))
def unique(data, by=None, comm=None, **options):
    """The distinct values of a 1-D DistArray (or key rows of a table), sorted.

    Collective. Returns a ShuffledArray for an array (globally sorted, each value once,
    NaN last), a ShuffledTable of the key columns for a table.
    """
    keys = {by} if isinstance(by, str) else set(by or ())
    name = "count"
    while name in keys:  # the counts are dropped: any name but a key's
        name = "_" + name
    counts = groupby(data, by, comm, **options).size(name)
    cols = counts.local()
    del cols[name]
    # an array's distinct values are an array, whether or not its key is named
    # (``by="value"``); a table's key rows a table
    kind = "array" if isinstance(data, (DistArray, np.ndarray)) or by is None else "table"
    return make_result(cols, counts.comm, kind, counts.meta)
