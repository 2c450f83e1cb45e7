"""What makes a save due besides the step count: signals and the job's time limit.

Signal handlers only record that a signal arrived; the Checkpointer acts on it at the
next step boundary, where all ranks agree (an allreduce), so no MPI call or file IO ever
happens inside a handler. The job's end time comes from, in this order: a walltime the
user gives, ``SLURM_JOB_END_TIME`` (set by recent Slurm versions), or ``squeue -h -j
$SLURM_JOB_ID -o %L`` (time left).

A signal can arrive before any Checkpointer exists (a requeued job is signalled while
it imports or reads metadata). :func:`install_signal_handlers` (``hpcproc ...
--checkpoint`` calls it first thing; programs call ``hp.install_signal_handlers()``)
records such a signal process-wide; the next Checkpointer created adopts it and acts on
it at its first step boundary. Nothing is installed by ``import hpcproc``: a program that
never checkpoints keeps the default actions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from .. import _interrupt

__all__ = ["SignalFlag", "install_signal_handlers", "install_interrupt_guard",
           "parse_duration", "job_end_time"]

DEFAULT_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
_early: dict = {"pending": 0, "installed": set()}


def _remember(signum, frame):  # a Python-level handler: set a flag, nothing else
    _early["pending"] = signum


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install_signal_handlers(signals=DEFAULT_SIGNALS) -> None:
    """Remember ``signals`` (default SIGUSR1, SIGTERM) from now on, for the next
    :class:`~hpcproc.Checkpointer`. Not collective; idempotent; main thread only.

    Call it first thing in a checkpointed program: a signal that arrives before the
    Checkpointer exists is then not lost (nor does it kill the process with the signal's
    default action): the Checkpointer adopts it when it is created, saves at its first
    step boundary and exits with its ``exit_code`` (85). Once this is called, the
    signals no longer end a program that never creates a Checkpointer.
    """
    if not all(isinstance(s, int) for s in signals):
        raise TypeError("signals must be signal numbers (e.g. signal.SIGUSR1)")
    if not _on_main_thread():
        return
    for sig in signals:
        if sig not in _early["installed"]:
            signal.signal(sig, _remember)
            _early["installed"].add(sig)


def install_interrupt_guard(grace: float = 10.0) -> None:
    """SIGINT raises ``KeyboardInterrupt`` inside :func:`hpcproc.abort_on_error` (which
    ends the whole job); before it (MPI starting) the interrupt is remembered and raised
    when the guard is entered. If the process still runs
    ``grace`` seconds later (Python swallows an exception raised while it runs a
    ``__del__`` or a weakref callback: "Exception ignored in ..."), a watchdog thread
    prints one line and ends the process with SIGINT's default action, so the launcher
    ends the whole job. Not collective; main thread only."""
    if not _on_main_thread():
        return

    def interrupted(signum, frame):
        timer = threading.Timer(grace, _die, args=(signum,))
        timer.daemon = True
        timer.start()
        if not _interrupt.guarded():
            # MPI is starting (or the imports before it): a KeyboardInterrupt raised here
            # could not reach the other ranks, which would wait in MPI_Init for this one
            # forever. The abort guard raises it as soon as it is entered.
            _interrupt.request()
            return
        raise KeyboardInterrupt

    interrupted.raises_interrupt = True  # like Python's default: temp-file guards take over
    signal.signal(signal.SIGINT, interrupted)


def _die(signum) -> None:
    os.write(2, f"hpcproc: error: {signal.Signals(signum).name} was not acted on within "
                f"the grace period (swallowed by the interpreter?); ending the job\n".encode())
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


class SignalFlag:
    """Install handlers for ``signals`` that only record the last signal received.

    A signal remembered by :func:`install_signal_handlers` before this object existed
    counts as received. A signal received but not :meth:`consume`-d when the flag is
    closed is handed back to the process-wide record (for the next Checkpointer).
    """

    def __init__(self, signals=()):
        self.received = 0
        self._previous = {}
        if signals and _early["pending"] in signals:
            self.received, _early["pending"] = _early["pending"], 0
        if not _on_main_thread():
            return  # Python only allows handlers in the main thread
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum, frame):  # a Python-level handler: set a flag, nothing else
        self.received = signum

    def consume(self) -> int:
        """The signal received (0: none), now acted on: not handed back on close."""
        signum, self.received = self.received, 0
        return signum

    def close(self) -> None:
        """Restore the handlers that were installed before (idempotent)."""
        for sig, old in self._previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._previous = {}
        if self.received and _early["installed"]:
            _early["pending"] = self.received
        self.received = 0


def parse_duration(text) -> float | None:
    """Seconds in a Slurm time (``D-HH:MM:SS``, ``D-HH:MM``, ``D-HH``, ``HH:MM:SS``,
    ``MM:SS``) or a number of seconds; None for ``UNLIMITED``, ``INVALID``, ``NOT_SET``
    or an empty string."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"walltime must be >= 0, got {text}")
        return float(text)
    text = str(text).strip()
    if not text or text.upper() in ("UNLIMITED", "INVALID", "NOT_SET", "N/A"):
        return None
    try:
        if "-" in text:
            days, rest = text.split("-", 1)
            parts = [float(p) for p in rest.split(":")]
            if not 1 <= len(parts) <= 3:
                raise ValueError
            seconds = int(days) * 86400 + sum(p * u for p, u in zip(parts, (3600, 60, 1)))
        else:
            parts = [float(p) for p in text.split(":")]
            if not 1 <= len(parts) <= 3:
                raise ValueError
            seconds = sum(p * u for p, u in zip(reversed(parts), (1, 60, 3600)))
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (examples: 3600, 1:00:00, "
                         f"2-00:00:00)") from None
    if seconds < 0:
        raise ValueError(f"walltime must be >= 0, got {text!r}")
    return float(seconds)


def job_end_time(walltime=None, env=None, now=None) -> float | None:
    """The job's end as a Unix time, or None when unknown. Not collective (call on one
    rank and broadcast: it may run ``squeue``)."""
    env = os.environ if env is None else env
    now = time.time() if now is None else now
    if walltime is not None:
        seconds = parse_duration(walltime)
        return None if seconds is None else now + seconds
    end = env.get("SLURM_JOB_END_TIME")
    if end and end.strip().isdigit() and int(end) > 0:
        return float(end)
    job = env.get("SLURM_JOB_ID")
    if job:
        try:
            out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True,
                                 text=True, timeout=30, check=False)
            text = out.stdout.strip()
            left = parse_duration(text.splitlines()[0]) if text else None
        except (OSError, subprocess.SubprocessError, ValueError):
            left = None
        if left is not None:
            return now + left
    return None
