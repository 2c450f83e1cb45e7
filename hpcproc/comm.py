"""Communicators: resolve ``comm=None``, the library's private duplicate, and errors that
every rank raises together (:func:`check_all`, :func:`root_call`).

``comm=None`` means ``MPI.COMM_WORLD`` everywhere in hpcproc, and this module is the one
place that resolves it. Library traffic (shuffles, broadcasts of metadata, checkpoint
agreement) goes over a duplicate of the user's communicator, created lazily on first use
and cached on the communicator itself (an MPI attribute), so a library message can never
match a message the user's own code posts on the same communicator.
"""

from __future__ import annotations

import pickle
import threading

from mpi4py import MPI

from .errors import HpcprocError, RemoteError, UsageError
from .observe.phases import phase

__all__ = ["get_comm", "lib_comm", "node_comm", "cached_comm", "is_root", "root_call",
           "check_all", "first_failure", "fail_together", "failed_on", "agreed",
           "error_message"]


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
_LOCK = threading.Lock()  # guards _KEYVALS and _MAKING
_MAKING: dict = {}  # (name, comm handle) -> the lock of a derivation in progress


def cached_comm(comm: MPI.Comm, name: str, make) -> MPI.Intracomm:
    """``make(comm)``, created once per communicator and cached on it as an MPI attribute.

    The derived communicator is freed when ``comm`` is (attribute delete callback), so the
    cache never outlives its communicator and a reused handle never returns a stale
    entry. Collective on ``comm`` whenever ``make`` is (the first call only).
    Thread-safe: threads making the first call at once create one keyval and call
    ``make`` once (the others wait for it); a cached entry is read without a lock.
    """
    keyval = _KEYVALS.get(name)
    derived = None if keyval is None else comm.Get_attr(keyval)
    if derived is not None:
        return derived
    with _LOCK:
        keyval = _KEYVALS.get(name)
        if keyval is None:
            keyval = _KEYVALS[name] = MPI.Comm.Create_keyval(delete_fn=_free_derived)
        key = (name, comm.py2f())
        making = _MAKING.setdefault(key, threading.Lock())
    # one lock per communicator and name, not the module lock: a collective ``make``
    # must not wait for another communicator's (ranks may make them in other orders)
    with making:
        derived = comm.Get_attr(keyval)
        if derived is None:
            derived = make(comm)
            comm.Set_attr(keyval, derived)
        with _LOCK:  # done (after a failed make the lock stays: callers still queue)
            _MAKING.pop(key, None)
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


def agreed(exc: BaseException) -> BaseException:
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
        raise agreed(error if error is not None else value)
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
        raise agreed(exc if rank == lib_comm(comm).Get_rank() else first)
    return result


def failed_on(exc: BaseException, rank: int, what: str) -> BaseException:
    """The exception every rank raises for ``exc``, raised by ``rank`` inside ``what``:
    ``exc``'s type when it can be made from a message (``MemoryError``, ``OSError``,
    ``ValueError``...), else its nearest base class that can (numpy's
    ``_ArrayMemoryError``: ``MemoryError``), else :class:`RemoteError`; the message names
    the rank and the original error. Not collective."""
    message = error_message(exc)
    if message.startswith(f"{what}: "):  # said once: "exchange: rank 1 failed: out[..."
        message = message[len(what) + 2:]
    text = f"{what}: rank {rank} failed: {message}"
    for kind in type(exc).__mro__:  # numpy's _ArrayMemoryError: a MemoryError
        if kind in (BaseException, Exception, object):
            break
        try:
            made = kind(text)
        except Exception:  # noqa: BLE001 - a type that needs other arguments
            continue
        if type(made) is kind and str(made).strip("'\"") == text:
            return made
    return RemoteError(text)


def fail_together(exc: BaseException | None, what: str, comm: MPI.Comm | None = None):
    """The error path of a failure flag folded into a collective that already happened.

    Collective: every rank calls it once the flag (a count or a sentinel carried by
    that collective, the same on every rank) says that some rank raised locally; ``exc``
    is this rank's exception or None. One ``MPI_Allreduce`` finds the lowest failing
    rank and one ``MPI_Bcast`` sends its exception; every rank then raises the same
    agreed exception (:func:`failed_on`: its type, a message naming the rank and the
    original error; the original is its ``__cause__`` on the failing rank). Used where
    a separate :func:`check_all` would add a collective to a hot path.
    """
    found = first_failure(exc, comm)
    if found is None:  # the flag said a rank failed: a caller's bug, never silent
        raise agreed(RuntimeError(f"{what}: a failure flag was set, but no rank failed"))
    rank, first = found
    err = failed_on(first, rank, what)
    raise agreed(err) from (exc if lib_comm(comm).Get_rank() == rank else None)


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
