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

from .errors import RemoteError, UsageError
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


def error_message(exc: BaseException) -> str:
    """The one-line message printed for an exception that ends a job."""
    text = str(exc) if not isinstance(exc, KeyError) else str(exc.args[0]) if exc.args else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# Exit statuses used by the command line and the abort guard.
EXIT_ERROR = 1
EXIT_USAGE = 2


@contextlib.contextmanager
def abort_on_error(comm: MPI.Comm | None = None, *, prog: str = "hpcproc",
                   traceback_env: str = "HPCPROC_TRACEBACK", grace: float = 1.0):
    """End the whole MPI job when the body raises on any rank, instead of hanging.

    Use around the body of an SPMD program (the ``hpcproc`` command uses it). An
    exception on one rank would otherwise leave the other ranks waiting forever in their
    next collective. On an unhandled exception the guard prints ``prog: error: message``
    to stderr once and calls ``MPI_Abort`` with a non-zero code, which makes the launcher
    (mpiexec, srun) kill every rank.

    Errors that every rank raised together (bad input found by :func:`root_call` or
    :func:`check_all`, bad command-line usage) need no abort: rank 0 prints the message
    and every rank exits with the same status. Any other error may have happened on one
    rank only: rank 0 prints and aborts at once; any other failing rank waits ``grace``
    seconds first, so when the error happened on every rank only rank 0's message
    appears, and when it happened on one rank only, that rank's message appears.
    Set the environment variable ``HPCPROC_TRACEBACK=1`` for full tracebacks.

    With a single rank the exception is printed the same way and the process exits with
    a non-zero status through ``SystemExit`` (no ``MPI_Abort`` banner).
    """
    try:
        yield
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - everything must end the job
        code = EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR
        if isinstance(exc, KeyboardInterrupt):
            code = 130
        comm = get_comm(comm)
        rank, size = comm.Get_rank(), comm.Get_size()
        if raised_on_all_ranks(exc):
            if rank == 0:
                if os.environ.get(traceback_env):
                    traceback.print_exc()
                print(f"{prog}: error: {error_message(exc)}", file=sys.stderr, flush=True)
            raise SystemExit(code) from None
        if rank != 0 and size > 1:
            time.sleep(grace)
        where = f" (rank {rank})" if size > 1 and rank != 0 else ""
        if os.environ.get(traceback_env):
            traceback.print_exc()
        _say(f"{prog}: error{where}: {error_message(exc)}\n")
        if size > 1:
            time.sleep(_FORWARD_DELAY)  # let the launcher forward it before the kill
            comm.Abort(code)
        raise SystemExit(code) from None


#: Seconds between printing the message of a lone failure and ``MPI_Abort``: the launcher
#: (mpiexec's proxy, srun) forwards a rank's stderr asynchronously and may drop what it has
#: not forwarded yet when it tears the job down (then the job ends with no message at all).
_FORWARD_DELAY = 0.3


def _say(text: str) -> None:
    """Write ``text`` to file descriptor 2 now, past Python's buffers (flushed first)."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    data = text.encode(errors="replace")
    while data:
        try:
            data = data[os.write(2, data):]
        except InterruptedError:
            continue
        except OSError:
            return
