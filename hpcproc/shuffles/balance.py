"""``rebalance``: equalise rows across ranks, keeping the global row order."""

from __future__ import annotations

from .._redistribute import redistribute_rows
from ..agreement import collective
from ..comm import lib_comm
from ..partition import block_range
from ._result import as_columns, make_result

__all__ = ["rebalance"]


@collective("hp.rebalance", local=("data",))
def rebalance(data, comm=None):
    """Move rows so that every rank holds a balanced block (sizes differ by at most one,
    remainder to the first ranks); the global order of the rows does not change.

    Collective. Takes a DistTable, a DistArray or a mapping of local columns and returns
    the same kind (a ShuffledTable or ShuffledArray; ``meta["rank_rows"]``).
    """
    columns, comm, kind = as_columns(data, comm, "rebalance input")
    lc = lib_comm(comm)
    counts = lc.allgather(next(iter(columns.values())).shape[0])
    total, size = sum(counts), lc.Get_size()
    offset = sum(counts[:lc.Get_rank()])
    targets = [block_range(total, size, r) for r in range(size)]
    out = {k: redistribute_rows(v, offset, targets, comm) for k, v in columns.items()}
    return make_result(out, comm, kind, {"strategy": "rebalance", "rounds": 1})
