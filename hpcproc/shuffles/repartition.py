"""``shuffle``: move whole rows so that equal keys share a rank (hash or range)."""

from __future__ import annotations

from ..agreement import collective
from ..comm import check_all, get_comm
from ._encode import check_key_dtype
from ._exchange import MAX_MESSAGE, check_limits, exchange
from ._result import ARRAY_COLUMN, as_columns, key_list, make_result
from .hash import hash_partition
from .range import range_partition, splitters

__all__ = ["shuffle", "PARTITIONERS"]

PARTITIONERS = ("hash", "range")


def _check(columns, kind, key, partitioner):
    if partitioner not in PARTITIONERS:
        raise ValueError(f"partitioner must be one of {PARTITIONERS}, got {partitioner!r}")
    names = [ARRAY_COLUMN] if kind == "array" and key is None else key_list(key, columns, "key")
    for name in names:
        check_key_dtype(name, columns[name])
    return names


@collective("hp.shuffle", local=("data",))
def shuffle(data, key=None, partitioner: str = "hash", comm=None, *,
            memory_budget: int | None = None, max_message: int = MAX_MESSAGE):
    """Move whole rows so that all rows with equal keys end on the same rank.

    Collective.

    Parameters
    ----------
    data : DistTable, DistArray or mapping of local columns
    key : str or list of str
        Key column(s) (an array is its own key).
    partitioner : {"hash", "range"}
        ``"hash"``: rank ``hash(key) % ranks``; distinct keys spread evenly, ranks hold
        unrelated keys. ``"range"``: splitters from samples; rank r's keys are all <=
        rank r+1's (rows within a rank are not sorted). Either way the rows a rank
        receives are ordered by source rank, then by their order on the source.
    memory_budget, max_message : int, optional
        See :func:`hpcproc.shuffles.exchange`.

    Returns
    -------
    ShuffledTable or ShuffledArray
        ``meta["rank_rows"]``: rows per rank after the shuffle.
    """
    columns, comm, kind = as_columns(data, comm, "shuffle input")

    def checks():  # the limits too, before the splitters' sample
        check_limits(memory_budget, max_message)
        return _check(columns, kind, key, partitioner)
    names = check_all(checks, comm)
    keys = [columns[k] for k in names]
    if partitioner == "hash":
        dest = hash_partition(keys, get_comm(comm).Get_size())
    else:
        dest = range_partition(keys, splitters(keys, comm, tiebreak=False))
    out, info = exchange(columns, dest, comm, memory_budget=memory_budget,
                         max_message=max_message, validate=False)
    return make_result(out, comm, kind, {"strategy": partitioner, "rounds": info["rounds"]})
