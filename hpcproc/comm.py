"""Communicators: resolve ``comm=None``, the library's private duplicate, abort guard.

``comm=None`` means ``MPI.COMM_WORLD`` everywhere in hpcproc, and this module is the one
place that resolves it. Library traffic (shuffles, broadcasts of metadata, checkpoint
agreement) goes over a duplicate of the user's communicator, created lazily on first use
and cached on the communicator itself (an MPI attribute), so a library message can never
match a message the user's own code posts on the same communicator.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
import traceback

from mpi4py import MPI

from .errors import HpcprocError, RemoteError, UsageError
from .trace import phase

__all__ = ["get_comm", "lib_comm", "node_comm", "cached_comm", "abort_on_error", "is_root",
           "root_call", "check_all", "first_failure"]


def get_comm(comm: MPI.Comm | None = None) -> MPI.Comm:
    """Return ``comm``, or ``MPI.COMM_WORLD`` when it is ``None``.

    Not collective. Raises ``TypeError`` for anything that is not an intracommunicator.
    """
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py Intracomm or None, not {type(comm).__name__}")
    if comm == MPI.COMM_NULL:
        raise ValueError("comm is MPI.COMM_NULL")
    return comm


def _free_derived(comm, keyval, derived):  # MPI attribute delete callback
    if not MPI.Is_finalized() and derived != MPI.COMM_NULL:
        derived.Free()


_KEYVALS: dict = {}


def cached_comm(comm: MPI.Comm, name: str, make) -> MPI.Intracomm:
    """``make(comm)``, created once per communicator and cached on it as an MPI attribute.

    The derived communicator is freed when ``comm`` is (attribute delete callback), so the
    cache never outlives its communicator and a reused handle never returns a stale
    entry. Collective on ``comm`` whenever ``make`` is (the first call only).
    """
    keyval = _KEYVALS.get(name)
    if keyval is None:
        keyval = _KEYVALS[name] = MPI.Comm.Create_keyval(delete_fn=_free_derived)
    derived = comm.Get_attr(keyval)
    if derived is None:
        derived = make(comm)
        comm.Set_attr(keyval, derived)
    return derived


def lib_comm(comm: MPI.Comm | None = None) -> MPI.Intracomm:
    """Return the library's private duplicate of ``comm`` (created on first use).

    Collective on ``comm`` the first time it is called for that communicator (it calls
    ``MPI_Comm_dup``), local afterwards. The duplicate lives as long as ``comm``.
    """
    return cached_comm(get_comm(comm), "lib", lambda c: c.Dup())


def node_comm(comm: MPI.Comm | None = None) -> MPI.Intracomm:
    """The ranks of ``comm`` that share this rank's node, in rank order (cached).

    ``MPI_Comm_split_type(COMM_TYPE_SHARED)`` of the library communicator: collective the
    first time for a communicator, local afterwards. Everything node-aware (compile once
    per node, the per-node memory budget) uses this one split.
    """
    return cached_comm(lib_comm(comm), "node",
                       lambda c: c.Split_type(MPI.COMM_TYPE_SHARED, key=c.Get_rank()))


def is_root(comm: MPI.Comm | None = None, root: int = 0) -> bool:
    """True on rank ``root`` of ``comm``. Not collective."""
    return get_comm(comm).Get_rank() == root


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to be sent to other ranks), else a RemoteError."""
    try:
        if isinstance(pickle.loads(pickle.dumps(exc)), type(exc)):
            return exc
    except Exception:  # noqa: BLE001 - unpicklable exception types
        pass
    return RemoteError(error_message(exc))


def _agreed(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised identically on every rank (no MPI_Abort needed)."""
    try:
        exc._hpcproc_all_ranks = True
    except AttributeError:  # exceptions without a __dict__
        pass
    return exc


def raised_on_all_ranks(exc: BaseException) -> bool:
    """True for errors that every rank raised together (agreed, or bad usage)."""
    return isinstance(exc, UsageError) or getattr(exc, "_hpcproc_all_ranks", False)


def root_call(fn, comm: MPI.Comm | None = None, root: int = 0):
    """Run ``fn()`` on ``root`` only and return its result on every rank.

    Collective. If ``fn`` raises, the same exception is raised on every rank, so an
    error found while reading metadata on one rank never leaves the others waiting.
    """
    comm = lib_comm(comm)
    error = outcome = None
    if comm.Get_rank() == root:
        try:
            outcome = (True, fn())
        except Exception as exc:  # noqa: BLE001 - sent to every rank, raised there
            error, outcome = exc, (False, _portable(exc))
    with phase("wait"):
        ok, value = comm.bcast(outcome, root=root)
    if not ok:
        raise _agreed(error if error is not None else value)
    return value


def first_failure(exc: BaseException | None, comm: MPI.Comm | None = None):
    """``(rank, exception)`` of the lowest rank whose ``exc`` is not None, or None.

    Collective on the library communicator. The common case (no rank failed) costs one
    integer ``MPI_Allreduce`` (O(log P) messages, nothing gathered); only when a rank
    failed is its exception (or a :class:`RemoteError` with its message) broadcast.
    """
    lc = lib_comm(comm)
    size, rank = lc.Get_size(), lc.Get_rank()
    with phase("wait"):
        first = lc.allreduce(size if exc is None else rank, op=MPI.MIN)
        if first == size:
            return None
        return first, lc.bcast(_portable(exc) if rank == first else None, root=first)


def check_all(fn, comm: MPI.Comm | None = None):
    """Run ``fn()`` on every rank; if it raised anywhere, raise on every rank.

    Collective. The lowest failing rank's exception is raised everywhere (on other ranks
    it keeps its type when it can be re-created, else becomes :class:`RemoteError`).
    Returns ``fn()``'s local result.
    """
    try:
        result, exc = fn(), None
    except Exception as err:  # noqa: BLE001 - agreed on below
        result, exc = None, err
    failed = first_failure(exc, comm)
    if failed is not None:
        rank, first = failed
        raise _agreed(exc if rank == lib_comm(comm).Get_rank() else first)
    return result


#: Error types whose message says what is wrong on its own: printed without the type name
#: (``hpcproc: error: no such file: x.h5``). Other types keep it (``KeyError: 'bins'``,
#: ``ZeroDivisionError: ...``): there the name is part of the information.
_PLAIN = (HpcprocError, ValueError, TypeError, OSError)


def error_message(exc: BaseException) -> str:
    """The one-line message printed for an exception that ends a job.

    The exception's own text, without the type name for hpcproc's errors and for
    ``ValueError``/``TypeError``/``OSError`` (the message names the problem), with it for
    anything else. Always one line (newlines of multi-line messages become ``; ``).
    """
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    sentence = False
    if isinstance(exc, KeyError) and not isinstance(exc, HpcprocError):
        key = exc.args[0] if len(exc.args) == 1 else None
        sentence = isinstance(key, str) and " " in key.strip()  # a message, not a key
        text = key if sentence else repr(key) if len(exc.args) == 1 else str(exc)
    else:
        text = str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror \
            and str(exc.filename) not in text:  # e.g. h5py's "Unable to open file (...)"
        text = f"{exc.filename}: {text}"
    text = "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    if (sentence or isinstance(exc, _PLAIN)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
        yield
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - everything must end the job
        _end_job(exc, comm, agree, prog, bool(os.environ.get(traceback_env)), grace)


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
