"""``Checkpointer``: periodic, signal- and walltime-triggered checkpoints of a step loop."""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from mpi4py import MPI

from ..agreement import collective
from ..comm import agreed, check_all, get_comm, lib_comm, root_call
from ..io import lineage
from ..observe.log import get_logger
from ..observe.phases import add_bytes, phase, traced
from ._dirs import cleanup, trim_below
from ._errors import CheckpointError, CheckpointWarning
from ._format import step_dirname
from ._reader import check_rank_count, load_state, newest_manifest, verify
from ._save import finish_save, start_save
from ._triggers import DEFAULT_SIGNALS as _DEFAULT_SIGNALS
from ._triggers import SignalFlag, job_end_time

__all__ = ["Checkpointer"]
_LOG = get_logger(__name__)


def _positive(name, value, kind=(int, float)):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")
    return value


class Checkpointer:
    """Atomic, checksummed checkpoints of a step loop that restart on any rank count.

    Collective: the constructor, :meth:`restore`, :meth:`save`, :meth:`due`,
    :meth:`wait`, :meth:`close` and every iteration of :meth:`steps` must be called by all
    ranks of ``comm`` in the same order.

    Parameters
    ----------
    directory : str or path
        Checkpoint directory (created if missing; shared by all ranks).
    comm : mpi4py.MPI.Intracomm, optional
        Communicator (``None``: COMM_WORLD).
    keep : int
        Number of committed steps kept; older ones are deleted after each commit.
    every_seconds, every_steps : float, int, optional
        Make :meth:`due` true when this much time passed since the last save, or when
        the step number is a multiple of ``every_steps``.
    signals : tuple of signal numbers
        Signals that request "save and exit" (default SIGUSR1, SIGTERM). The handlers
        only set a flag; ranks agree on it at the next step boundary (:meth:`due`). A
        signal received before this object existed counts too when the program called
        :func:`hpcproc.install_signal_handlers` first.
    exit_code : int
        Exit status of :meth:`steps` after a signal- or walltime-triggered save
        (85: "checkpointed, please requeue").
    walltime : float or str, optional
        Time limit of the job from now (seconds or ``"HH:MM:SS"``); default: the Slurm
        job's end (``SLURM_JOB_END_TIME`` or ``squeue``), if any.
    walltime_margin : float, optional
        Save and exit when less than this many seconds are left (default: 60 s or twice
        the slowest step plus save seen so far, whichever is larger).

    A loop that :meth:`steps` does not drive (e.g. adaptive time steps, run until a
    simulated time) calls, at the end of every step on every rank, ``if ck.due(step):
    ck.save(step, state)`` then ``if ck.should_exit(): raise SystemExit(ck.exit_code)``
    (or :meth:`boundary`, which does both); see docs/simulation.md.

    On start, leftovers of interrupted saves and deletions are removed (rank 0). Old
    steps are deleted only after a new step has committed, or after :meth:`restore`
    verified the step it returns (then only steps older than it beyond ``keep``), so
    the step a restore falls back to is never deleted.
    """

    @collective("Checkpointer", paths=("directory",))
    def __init__(self, directory, comm: MPI.Comm | None = None, keep: int = 3,
                 every_seconds: float | None = None, every_steps: int | None = None,
                 signals=_DEFAULT_SIGNALS, exit_code: int = 85, walltime=None,
                 walltime_margin: float | None = None):
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a path, not {type(directory).__name__}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        self.every_seconds = _positive("every_seconds", every_seconds)
        self.every_steps = _positive("every_steps", every_steps, int)
        self.walltime_margin = _positive("walltime_margin", walltime_margin)
        if isinstance(exit_code, bool) or not isinstance(exit_code, int) \
                or not 0 <= exit_code < 256:
            raise ValueError(f"exit_code must be an int in [0, 256), got {exit_code!r}")
        signals = tuple(signals or ())
        if not all(isinstance(s, int) for s in signals):
            raise TypeError("signals must be signal numbers (e.g. signal.SIGUSR1)")
        if walltime is not None:
            from ._triggers import parse_duration
            parse_duration(walltime)  # raises ValueError now, on every rank
        self.comm = get_comm(comm)
        self.keep, self.exit_code = keep, exit_code
        self.directory = os.path.abspath(os.fspath(directory))
        self._lcomm = lib_comm(self.comm)
        self._rank = self.comm.Get_rank()

        def setup():
            os.makedirs(self.directory, exist_ok=True)
            cleanup(self.directory)  # retention runs only after a new step commits
            return job_end_time(walltime)

        self.job_end = root_call(setup, self.comm)
        self._pending = None
        self._spare = {}  # buffers of the last asynchronous snapshot, reused by the next
        self._closed = False
        self._exit_requested = self._exit_ready = False
        self._exit_reason = None  # "SIGUSR1", "walltime": logged once when acted on
        self._last_save = self._last_boundary = time.monotonic()
        self._slowest_save = self._slowest_step = 0.0
        self.last_step: int | None = None  #: newest step saved or restored by this object
        self._signals = SignalFlag(signals)

    # context manager ------------------------------------------------------------------
    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or exc_type is SystemExit and self._exit_ready:
            self.close()
        else:  # an error, maybe on this rank only: no collective calls
            self._abandon()

    def close(self) -> None:
        """Wait for a pending asynchronous save, restore the signal handlers.

        Collective when an asynchronous save is pending; idempotent.
        """
        if self._closed:
            return
        try:
            self.wait()
        finally:
            self._closed = True
            self._signals.close()

    def _abandon(self) -> None:
        if self._pending is not None:
            self._pending.join()  # its temporary directory is removed at the next start
            self._pending = None
        self._spare = {}
        self._closed = True
        self._signals.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the Checkpointer is closed")

    # saving ---------------------------------------------------------------------------
    @traced("checkpoint")
    @collective("Checkpointer.save", local=("state",))
    def save(self, step: int, state: Mapping, blocking: bool = True) -> None:
        """Save ``state`` as checkpoint ``step``. Collective.

        ``state`` is a dict of DistArray, DistTable, numpy arrays (rank-local), numpy
        scalars, numpy Generators and JSON values (see the README). The step is
        committed atomically; on failure on any rank every rank raises
        :class:`CheckpointError` and the previous checkpoints are unchanged.

        With ``blocking=False`` the state is copied and this rank's file written in a
        background thread; at most one save is in flight: the next ``save``, ``wait``,
        ``close`` or a :meth:`due` that finds every rank done commits it.
        """
        self._check_open()
        if self._exit_requested and self._exit_reason:
            if self._rank == 0:  # one line when a signal or the walltime is acted on
                print(f"hpcproc: {self._exit_reason}: saving step {step}, exiting "
                      f"{self.exit_code}", file=sys.stderr, flush=True)
            self._exit_reason = None
        self.wait()
        t0 = time.monotonic()
        copy = False
        if not blocking:
            copy, self._spare = self._spare, {}
        job = start_save(self.directory, step, state, self.comm, copy=copy)
        job.for_exit = self._exit_requested  # only a save started after the request counts
        if blocking:
            job.run()
            self._finish(job, t0)
        else:
            job.start()
            self._pending = job

    @traced("checkpoint")
    def wait(self) -> None:
        """Commit the pending asynchronous save, if any. Collective."""
        if self._pending is not None:
            job, self._pending = self._pending, None
            self._finish(job, job.started, reuse=True)

    def _finish(self, job, t0, reuse: bool = False) -> None:
        add_bytes(written=int((job.result or {}).get("size", 0)))
        try:
            finish_save(job, self.comm, self.keep)
        finally:  # an async snapshot's buffers are reused by the next async save
            if reuse:
                self._spare = {(ds, a.shape, a.dtype.str): a for ds, a in job.prepared.items}
            job.prepared.items = []
        self.last_step = job.step
        self._last_save = time.monotonic()
        if self._rank == 0:
            _LOG.info("checkpoint step %d committed in %s", job.step, self.directory)
        self._slowest_save = max(self._slowest_save, self._last_save - t0)
        if job.for_exit:
            self._exit_ready = True

    # deciding -------------------------------------------------------------------------
    def _margin(self) -> float:
        if self.walltime_margin is not None:
            return self.walltime_margin
        return max(60.0, 2 * (self._slowest_save + self._slowest_step))

    def due(self, step: int) -> bool:
        """True when a save is due at ``step``: every ``every_steps`` steps, after
        ``every_seconds``, after a signal, or when the walltime is nearly over. Collective.

        All ranks get the same answer (one small allreduce). A signal or the walltime
        also makes :meth:`should_exit` true once the next save has completed.
        """
        self._check_open()
        now = time.monotonic()
        self._slowest_step = max(self._slowest_step, now - self._last_boundary)
        self._last_boundary = now
        flags = np.array([
            self._signals.received,
            self.every_seconds is not None and now - self._last_save >= self.every_seconds,
            self.job_end is not None and time.time() + self._margin() >= self.job_end,
            self._pending is not None and not self._pending.done(),
        ], dtype=np.int8)
        with phase("wait"):
            self._lcomm.Allreduce(MPI.IN_PLACE, flags, op=MPI.MAX)
        if self._pending is not None and not flags[3]:
            self.wait()  # every rank has written its file: commit now
        if flags[0] or flags[2]:
            self._signals.consume()
            if not self._exit_requested:
                self._exit_reason = (signal.Signals(int(flags[0])).name if flags[0]
                                     else "walltime")
            self._exit_requested = True
        by_steps = self.every_steps is not None and step % self.every_steps == 0
        return bool(by_steps or flags[0] or flags[1] or flags[2])

    def should_exit(self) -> bool:
        """True once a save requested by a signal or the walltime has completed.

        Not collective (the request was agreed on in :meth:`due`).
        """
        return self._exit_ready

    def steps(self, start: int, stop: int, state: Mapping | Callable[[], Mapping],
              blocking: bool = True, save_last: bool = True) -> Iterator[int]:
        """Iterate over ``range(start, stop)``, saving when due. Collective per step.

        After the body of step ``s`` the state is "``s + 1`` steps done": when a save is
        due it is saved as step ``s + 1`` (so a restart continues with
        ``ck.steps(restored_step, stop, ...)``). ``state`` is the state dict (read at
        each boundary) or a function returning it. After a signal- or walltime-triggered
        save the loop raises ``SystemExit(exit_code)`` on every rank. With
        ``save_last`` the final step is saved too.
        """
        self._check_open()
        for step in range(int(start), int(stop)):
            yield step
            done = step + 1
            self.boundary(done, state, blocking, last=save_last and done == stop)

    def boundary(self, step: int, state: Mapping | Callable[[], Mapping],
                 blocking: bool = True, last: bool = False) -> None:
        """The end of a step of a loop that :meth:`steps` does not drive. Collective.

        Saves ``state`` (a dict or a function returning it) as ``step`` when a save is
        due, or when ``last`` and ``step`` is not saved yet; after a signal- or
        walltime-triggered save, logs one line on rank 0 and raises
        ``SystemExit(exit_code)`` on every rank.
        """
        if self.due(step) or (last and self.last_step != step):
            self.save(step, state() if callable(state) else state,  # exit: no delay
                      blocking=blocking or self._exit_requested)
        if self.should_exit():
            self.close()
            raise SystemExit(self.exit_code)

    # restoring ------------------------------------------------------------------------
    @traced("checkpoint")
    def restore(self) -> tuple[int, dict] | None:
        """The newest checkpoint that is complete and valid on every rank, as
        ``(step, state)``, or None on a fresh start. Collective.

        Corrupt or partial steps are reported once (a :class:`CheckpointWarning` on rank
        0) and skipped. Distributed entries come back on any rank count; rank-local
        entries only on the rank count they were saved with (:class:`RankCountError`).
        """
        self._check_open()
        self.wait()
        rejected, reported = set(), set()
        while True:
            # Rank 0 reads the manifests (newest valid one), every rank gets it by a bcast;
            # then every rank checks and checksums only the files it reads (O(P)
            # file-system operations in all) and one Allreduce tells whether all did.
            step, manifest, skipped = root_call(
                lambda: newest_manifest(self.directory, rejected), self.comm)
            for s in sorted(skipped, reverse=True):
                if s not in reported:
                    self._report(s, skipped[s])
                    reported.add(s)
            if step < 0:
                if reported:  # steps exist, none valid: starting afresh would lose them
                    raise agreed(CheckpointError(
                        f"no valid checkpoint step in {self.directory}: every step is "
                        f"corrupt or incomplete ({len(reported)} found); see "
                        f"'hpcproc ckpt verify'"))
                return None
            try:
                check_rank_count(manifest, self.comm.Get_size())
            except ValueError as exc:
                raise agreed(exc) from None
            stepdir = os.path.join(self.directory, step_dirname(step))
            err, buf = verify(stepdir, manifest, self._rank, self.comm.Get_size())
            if self._lcomm.allreduce(err is not None, op=MPI.LOR):
                errors = self._lcomm.gather(err, root=0)
                self._report(step, "; ".join(e for e in errors or () if e))
                rejected.add(step)
                reported.add(step)
                continue
            try:  # consistent checksums, undecodable content (e.g. a rewritten rng state)
                state = check_all(lambda: load_state(stepdir, manifest, self.comm, buf),
                                  self.comm)
            except (ValueError, TypeError, KeyError, OSError) as exc:
                self._report(step, f"unreadable content: {exc}")
                rejected.add(step)
                reported.add(step)
                continue
            root_call(lambda: trim_below(self.directory, self.keep, step), self.comm)
            lineage.restore_inputs(manifest.get("lineage"), stepdir)  # lineage goes on
            self.last_step = step
            self._last_save = time.monotonic()
            return step, state

    def _report(self, step: int, why: str) -> None:
        if self._rank == 0:
            warnings.warn(f"checkpoint {step_dirname(step)} in {self.directory} is corrupt or "
                          f"incomplete ({why}); using an older step", CheckpointWarning,
                          stacklevel=3)

    def __repr__(self) -> str:
        return (f"Checkpointer({self.directory!r}, keep={self.keep}, "
                f"every_steps={self.every_steps}, every_seconds={self.every_seconds}, "
                f"last_step={self.last_step})")
