"""The collective save: prepare, write (inline or in a background thread), agree, commit.

A save is split in two collective halves so that it can run asynchronously:
:func:`start_save` validates the state, agrees on its layout and creates the temporary
directory (cheap); the rank's file is then written by :class:`SaveJob`, inline or in a
background thread that does local IO only (no MPI calls); :func:`finish_save` joins it,
agrees on the outcome and commits. With ``copy=True`` the state is snapshotted in
:func:`start_save`, so changing it afterwards cannot change what is saved.
"""

from __future__ import annotations

import json
import operator
import os
import threading
import time

from ..comm import agreed, check_all, error_message, first_failure, lib_comm, root_call
from ..io import lineage
from ._errors import CheckpointError
from ._format import rank_filename
from ._state import check_layout, prepare
from ._writer import build_manifest, commit_step, make_tmp_dir, remove_tmp, write_rank_file

__all__ = ["SaveJob", "start_save", "finish_save"]


class SaveJob:
    """This rank's part of one save: write its file, inline or in a background thread."""

    def __init__(self, directory, step, prepared, rows, tmp, rank):
        self.directory, self.step, self.prepared, self.rows = directory, step, prepared, rows
        self.tmp, self.rank = tmp, rank
        self.for_exit = False  # started after a signal or walltime asked for an exit
        self.result = self.error = None
        self.started = time.monotonic()
        self._thread = None

    def run(self) -> None:
        try:
            self.result = write_rank_file(os.path.join(self.tmp, rank_filename(self.rank)),
                                          self.prepared.items, self.rank,
                                          getattr(self, "lineage", None),
                                          self.prepared.attrs)
            self.result["local"] = self.prepared.local
        except BaseException as exc:  # noqa: BLE001 - reported to every rank in finish_save
            self.error = exc

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="hpcproc-checkpoint",
                                        daemon=True)
        self._thread.start()

    def done(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def _validate_step(step) -> int:
    try:
        if isinstance(step, bool):
            raise TypeError
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an int, got {type(step).__name__}") from None
    if not 0 <= step < 10**12:
        raise ValueError(f"step must be in [0, 10**12), got {step}")
    return step


def start_save(directory, step, state, comm, copy) -> SaveJob:
    """Validate, agree on the layout and create the temporary step directory. Collective.

    ``copy``: False, True, or a dict of spare snapshot buffers (see ``_state.prepare``).
    """
    size = comm.Get_size()
    step, prepared = check_all(lambda: (_validate_step(step), prepare(state, size, copy)), comm)
    layouts = lib_comm(comm).gather((prepared.signature, prepared.rows), root=0)

    def begin():  # on rank 0: check that the ranks' states fit together, then start
        check_layout([s for s, _ in layouts], [r for _, r in layouts])
        return make_tmp_dir(directory, step)

    tmp = root_call(begin, comm)
    rows = None if layouts is None else [r for _, r in layouts]
    job = SaveJob(directory, step, prepared, rows, tmp, comm.Get_rank())
    job.lineage = lineage.lineage_attrs("checkpoint", size, {"directory": str(directory),
                                                                "step": step})
    return job


def finish_save(job: SaveJob, comm, keep: int) -> list[int]:
    """Wait for this rank's file, agree on the outcome, commit on rank 0. Collective.

    Raises :class:`CheckpointError` on every rank if the save failed on any rank; the
    previous checkpoint is then unchanged. Returns the steps deleted by retention.
    """
    job.join()
    lcomm = lib_comm(comm)
    failed = first_failure(job.error, comm)
    if failed is None:
        results = lcomm.gather(job.result, root=0)

        def commit():  # on rank 0
            body = build_manifest(job.step, job.prepared.signature, job.rows, results,
                                  job.prepared.shared)
            body["lineage"] = json.loads(job.lineage[lineage.ATTR])
            try:
                return commit_step(job.directory, job.tmp, body, keep)
            except BaseException:
                remove_tmp(job.tmp)
                raise
        try:
            return root_call(commit, comm)
        except Exception as exc:  # noqa: BLE001 - the same error on every rank
            failed = (0, exc)
    else:
        root_call(lambda: remove_tmp(job.tmp), comm)
    rank, err = failed
    where = f" on rank {rank}" if comm.Get_size() > 1 else ""
    exc = CheckpointError(f"saving checkpoint step {job.step} in {job.directory} failed{where}: "
                          f"{error_message(err)}; the previous checkpoint is unchanged")
    if isinstance(err, OSError):
        exc.errno = err.errno
    cause = job.error if job.error is not None else err
    raise agreed(exc) from cause
