"""All-to-all shuffle engine: exchange, shuffle, sort, group-by, join, rebalance.

Strategies live in one module each: :mod:`._exchange` (bounded-memory Alltoallv),
:mod:`.hash` and :mod:`.range` (partitioners), :mod:`.repartition` (``shuffle``),
:mod:`.sort` (sample sort), :mod:`.groupby`, :mod:`.join`, :mod:`.rebalance`.
"""

from ._exchange import exchange
from .groupby import GroupBy, groupby
from .repartition import shuffle
from .sort import sort

__all__ = ["exchange", "shuffle", "sort", "groupby", "GroupBy"]
