"""Resumable ``sort`` / ``groupby`` by completed phase: ``--checkpoint DIR``.

The phases are read + exchange/sort/aggregate (one step: the result table is only known
at its end) and write. After the first, the result ``DistTable`` and its summary are
saved as checkpoint step 1; run again, the command restores the table (on any rank count)
and goes straight to writing. A kill before step 1 commits redoes everything; a kill
while writing redoes only the write. The checkpoint records the command, every input
column's dataset identity (file, dataset, shape, dtype, size, mtime) and the options that
change the result; a resumed run with anything different is an error naming it.
"""

from __future__ import annotations

import os
from typing import Callable

from ..checkpoint._core import Checkpointer
from ..checkpoint._identity import check_identity, dataset_identity
from ..comm import get_comm

__all__ = ["run_phase", "input_identity", "run_identity"]


def input_identity(path: str, columns: dict, comm) -> dict:
    """What a saved result depends on from one input file: every column's dataset
    identity (file, dataset, shape, dtype, size, mtime). Collective (metadata reads)."""
    from ..io import dataset_info

    return {"file": os.path.abspath(path),
            "columns": {col: dataset_identity(dataset_info(path, name, comm))
                        for col, name in columns.items()}}


def run_identity(command: str, inputs: list, options: dict, comm) -> dict:
    """The identity of a ``sort``/``groupby``/``join`` run over ``inputs`` (a list of
    ``(path, {column: dataset})``) with ``options``. Collective."""
    return {"command": command, "inputs": [input_identity(p, c, comm) for p, c in inputs],
            "options": dict(options)}


def run_phase(directory, comm, ident: dict, compute: Callable[[], tuple]):
    """``compute() -> (table, summary)`` once; saved after it, restored instead of rerun.

    Returns ``(table, summary, resumed)``. Collective. A checkpoint of another run (see
    :mod:`._identity`) raises ``ValueError`` on every rank. A signal received during the
    computation saves the result and exits with the requeue status (85).
    """
    comm = get_comm(comm)
    with Checkpointer(directory, comm, keep=1, every_steps=1) as ck:
        got = ck.restore()
        if got is not None:
            step, state = got
            check_identity(directory, state.get("ident"), ident)
            return state["result"], state["summary"], True
        table, summary = compute()
        ck.boundary(1, {"ident": ident, "summary": summary, "result": table}, last=True)
    return table, summary, False
