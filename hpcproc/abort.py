"""The abort guard: an error on any rank ends the whole job with one message and a
non-zero exit; errors that every rank raised together end it normally (no MPI_Abort)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback

from mpi4py import MPI

from . import _interrupt
from .comm import cached_comm, error_message, get_comm
from .errors import UsageError

__all__ = ["abort_on_error", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPT"]


# Exit statuses used by the command line and the abort guard.
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPT = 130

#: Seconds a failing rank waits for the others to fail too (see :func:`abort_on_error`).
GRACE = 2.0


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPT
    return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR


def _say(text: str) -> None:
    """Write one line to stderr unbuffered (it must be out before an abort kills us)."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    data = (text.rstrip("\n") + "\n").encode("utf-8", "replace")
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(2, data):]


def _all_failed(agree: MPI.Intracomm, grace: float) -> bool:
    """True if every rank of ``agree`` reaches this call within ``grace`` seconds.

    Each failing rank posts a non-blocking barrier on the private agreement
    communicator and polls it: it completes only when every rank has failed too.
    """
    try:
        req = agree.Ibarrier()
        deadline = time.monotonic() + grace
        while not req.Test():
            if time.monotonic() > deadline:
                return bool(req.Test())  # one last look before giving up
            time.sleep(0.002)
        return True
    except Exception:  # noqa: BLE001 - MPI itself broken: abort
        return False


def _agreement_comm(comm: MPI.Intracomm) -> MPI.Intracomm | None:
    """The private communicator on which failing ranks agree (None for one rank)."""
    if comm.Get_size() == 1:
        return None
    return cached_comm(comm, "abort", lambda c: c.Dup())


@contextlib.contextmanager
def abort_on_error(comm: MPI.Comm | None = None, *, prog: str = "hpcproc",
                   traceback_env: str = "HPCPROC_TRACEBACK", grace: float = GRACE):
    """End the whole MPI job when the body raises on any rank, instead of hanging.

    Collective on entry (the first time for a communicator it duplicates ``comm`` into
    a private communicator reserved for error agreement). Use around the body of an
    SPMD program (the ``hpcproc`` command uses it). An exception on one rank would
    otherwise leave the other ranks waiting forever in their next collective.

    On an unhandled exception the failing rank posts a non-blocking barrier on the
    agreement communicator and waits up to ``grace`` seconds (default 2) for it:

    * it completes when every rank failed (bad input that every rank detects, bad
      command-line usage, errors :func:`root_call`/:func:`check_all` raised everywhere:
      those complete at once): rank 0 prints ``prog: error: message`` on one line and
      every rank exits with rank 0's status (2 for :class:`~hpcproc.errors.UsageError`,
      130 for ``KeyboardInterrupt``, else 1) -- no ``MPI_Abort``;
    * otherwise this rank failed alone: it prints ``prog: error: rank N: message`` (no
      ``rank N:`` on rank 0) and calls ``MPI_Abort``, which makes the launcher (mpiexec,
      srun) kill every rank. MPICH's own abort banner is not shown.

    The line is written unbuffered to stderr before the rank exits or aborts (on rank 0
    at once, before the wait). Set ``HPCPROC_TRACEBACK=1`` for full tracebacks. With a
    single rank the process exits through ``SystemExit`` at once (no wait, no abort).
    """
    comm = get_comm(comm)
    agree = _agreement_comm(comm)
    try:
        _interrupt.enter()
        if _interrupt.take():  # SIGINT while MPI was starting: now the job can end
            raise KeyboardInterrupt
        yield
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - everything must end the job
        _end_job(exc, comm, agree, prog, bool(os.environ.get(traceback_env)), grace)
    finally:
        _interrupt.leave()


def _end_job(exc, comm, agree, prog: str, show_traceback: bool, grace: float):
    """Print the one line and exit (every rank failed) or abort (this rank alone).

    Rank 0's line is the same in both outcomes, so rank 0 writes it at once, before
    waiting; another rank writes its line only once it knows it failed alone.
    """
    code, message = _exit_code(exc), error_message(exc)
    rank = comm.Get_rank()
    if rank == 0 or agree is None or MPI.Is_finalized():
        if show_traceback:
            traceback.print_exc()
        _say(f"{prog}: error: {message}")
    if agree is None or MPI.Is_finalized():
        raise SystemExit(code) from None
    if _all_failed(agree, max(grace, 0.0)):
        try:
            code = agree.bcast(code, root=0)
        except Exception:  # noqa: BLE001 - keep this rank's own status
            pass
        raise SystemExit(code) from None
    if rank != 0:
        if show_traceback:
            traceback.print_exc()
        _say(f"{prog}: error: rank {rank}: {message}")
    _quiet_abort(comm, code)


#: Seconds between printing the message of a lone failure and ``MPI_Abort``: the launcher
#: (mpiexec's proxy, srun) forwards a rank's stderr asynchronously and may drop what it has
#: not forwarded yet when it tears the job down (the job would end with no message at all).
_FORWARD_DELAY = 0.3


def _quiet_abort(comm: MPI.Intracomm, code: int) -> None:
    """``MPI_Abort(code)`` with this process's stderr closed first: the message is out,
    and the MPI library's own banner (several lines) would only repeat it."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    time.sleep(_FORWARD_DELAY)  # let the launcher forward the message before the kill
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
    comm.Abort(code)
    os._exit(code)  # not reached
