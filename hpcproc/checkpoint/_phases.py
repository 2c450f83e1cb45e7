"""Resumable ``sort`` / ``groupby`` by completed phase: ``--checkpoint DIR``.

The phases are read + exchange/sort/aggregate (one step: the result table is only known
at its end) and write. After the first, the result ``DistTable`` and its summary are
saved as checkpoint step 1; run again, the command restores the table (on any rank count)
and goes straight to writing. A kill before step 1 commits redoes everything; a kill
while writing redoes only the write. The checkpoint records the command, the input
(absolute path, size, mtime), the columns and the options that change the result; another
input or options raise ``ValueError``.
"""

from __future__ import annotations

import os
from typing import Callable

from ..comm import _agreed, get_comm, lib_comm
from ._core import Checkpointer

__all__ = ["run_phase", "input_identity"]


def input_identity(command: str, path: str, columns: dict, options: dict, comm) -> dict:
    """What a saved result depends on, taken on rank 0 (the same on every rank)."""
    ident = None
    if comm.Get_rank() == 0:
        try:
            st = os.stat(path)
            ident = {"command": command, "input": os.path.abspath(path),
                     "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                     "columns": dict(columns), "options": options}
        except OSError as exc:  # raised on every rank below, not only on rank 0
            ident = f"{path}: {exc.strerror or exc}"
    ident = lib_comm(comm).bcast(ident, root=0)
    if isinstance(ident, str):
        raise _agreed(FileNotFoundError(ident))
    return ident


def run_phase(directory, comm, ident: dict, compute: Callable[[], tuple]):
    """``compute() -> (table, summary)`` once; saved after it, restored instead of rerun.

    Returns ``(table, summary, resumed)``. Collective.
    """
    comm = get_comm(comm)
    with Checkpointer(directory, comm, keep=1, every_steps=1) as ck:
        got = ck.restore()
        if got is not None:
            step, state = got
            if state.get("ident") != ident:
                saved = state.get("ident") or {}
                raise _agreed(ValueError(  # ident and state are the same on every rank
                    f"{directory} holds a checkpoint of another run ({saved.get('command')} "
                    f"of {saved.get('input')}); use another directory or remove it"))
            return state["result"], state["summary"], True
        table, summary = compute()
        ck.save(1, {"ident": ident, "summary": summary, "result": table})
    return table, summary, False
