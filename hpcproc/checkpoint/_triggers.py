"""What makes a save due besides the step count: signals and the job's time limit.

Signal handlers only record that a signal arrived; the Checkpointer acts on it at the
next step boundary, where all ranks agree (an allreduce), so no MPI call or file IO ever
happens inside a handler. The job's end time comes from, in this order: a walltime the
user gives, ``SLURM_JOB_END_TIME`` (set by recent Slurm versions), or ``squeue -h -j
$SLURM_JOB_ID -o %L`` (time left).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

__all__ = ["SignalFlag", "parse_duration", "job_end_time"]


class SignalFlag:
    """Install handlers for ``signals`` that only record the last signal received."""

    def __init__(self, signals=()):
        self.received = 0
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():
            return  # Python only allows handlers in the main thread
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum, frame):  # async-signal context: set a flag, nothing else
        self.received = signum

    def close(self) -> None:
        """Restore the handlers that were installed before (idempotent)."""
        for sig, old in self._previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._previous = {}


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
            left = parse_duration(out.stdout.strip().splitlines()[0]) if out.stdout.strip() else None
        except (OSError, subprocess.SubprocessError, ValueError):
            left = None
        if left is not None:
            return now + left
    return None
