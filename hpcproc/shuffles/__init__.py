"""All-to-all shuffle engine: exchange, shuffle, sort, group-by, join, rebalance.

One strategy per module: :mod:`._exchange` (the bounded-memory, large-count-safe
Alltoallv), :mod:`.hash` and :mod:`.range` (partitioners), :mod:`.repartition`
(``shuffle``), :mod:`.samplesort` (``sort``), :mod:`.grouping` (``groupby``: dense or
hash), :mod:`.joins` (``join``: hash or broadcast), :mod:`.balance` (``rebalance``),
:mod:`.distinct` (``unique``, ``value_counts``).

``hp.shuffle`` is the function :func:`shuffle` (the package is named ``shuffles`` so that
no module shadows it).
"""

from ._exchange import default_memory_budget, exchange, release_exchange_buffers
from ._result import ShuffledArray, ShuffledTable
from .balance import rebalance
from .distinct import unique, value_counts
from .grouping import GroupBy, groupby
from .joins import join
from .repartition import shuffle
from .samplesort import sort

__all__ = ["exchange", "release_exchange_buffers", "default_memory_budget", "shuffle", "sort",
           "groupby", "GroupBy", "join", "rebalance", "unique", "value_counts", "ShuffledTable",
           "ShuffledArray"]

