"""Reductions of mergeable partial states across ranks."""

from __future__ import annotations

from functools import reduce

from .comm import lib_comm

__all__ = ["allreduce_state", "reduce_state"]


def allreduce_state(state, merge, comm=None):
    """Merge every rank's ``state`` with ``merge(a, b)``; the result on every rank.

    Collective. States are gathered and merged in rank order on every rank, so the
    result is bit-identical everywhere (merge need not be commutative).
    """
    return reduce(merge, lib_comm(comm).allgather(state))


def reduce_state(state, merge, comm=None, root: int = 0):
    """Like :func:`allreduce_state`, but the result only on ``root`` (None elsewhere)."""
    states = lib_comm(comm).gather(state, root=root)
    return None if states is None else reduce(merge, states)
