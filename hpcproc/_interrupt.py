"""SIGINT that arrives before the abort guard: remembered here, raised by the guard.

Pure (no imports): the CLI's signal handler (:mod:`hpcproc.checkpoint._triggers`) sets
the flag while MPI is starting, when a ``KeyboardInterrupt`` raised on one rank could not
reach the others (they would wait in ``MPI_Init`` for it forever); :func:`hpcproc.abort_on_error`
raises it as soon as it is entered, where the whole job ends with one message.
"""

__all__ = ["guarded", "enter", "leave", "request", "take"]

_state = {"guards": 0, "pending": False}


def guarded() -> bool:
    """True inside :func:`hpcproc.abort_on_error` (an exception there ends the job)."""
    return _state["guards"] > 0


def enter() -> None:
    _state["guards"] += 1


def leave() -> None:
    _state["guards"] -= 1


def request() -> None:
    """Remember an interrupt for the next :func:`hpcproc.abort_on_error`."""
    _state["pending"] = True


def take() -> bool:
    """Whether an interrupt was remembered (and forget it)."""
    pending, _state["pending"] = _state["pending"], False
    return pending
