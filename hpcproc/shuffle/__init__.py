"""All-to-all shuffle engine: exchange, shuffle, sort, group-by, join, rebalance.

One strategy per module: :mod:`._exchange` (the bounded-memory, large-count-safe
Alltoallv), :mod:`.hash` and :mod:`.range` (partitioners), :mod:`.repartition`
(``shuffle``), :mod:`.samplesort` (``sort``), :mod:`.grouping` (``groupby``: dense or
hash), :mod:`.joins` (``join``: hash or broadcast), :mod:`.balance` (``rebalance``),
:mod:`.distinct` (``unique``, ``value_counts``).

``hpcproc.shuffle`` is both this package and the function :func:`shuffle`: calling the
package (``hp.shuffle(table, "key")``) calls the function.
"""

import sys
import types

from ._exchange import default_memory_budget, exchange
from ._result import ShuffledArray, ShuffledTable
from .balance import rebalance
from .distinct import unique, value_counts
from .grouping import GroupBy, groupby
from .joins import join
from .repartition import shuffle
from .samplesort import sort

__all__ = ["exchange", "default_memory_budget", "shuffle", "sort", "groupby", "GroupBy",
           "join", "rebalance", "unique", "value_counts", "ShuffledTable", "ShuffledArray"]


class _CallablePackage(types.ModuleType):
    """Lets ``hpcproc.shuffle`` (the package) be called as the function ``shuffle``."""

    def __call__(self, *args, **kwargs):
        return shuffle(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
