"""A progress bar on rank 0 for long scans: bytes done, rate, ETA.

No communication: rank 0 extrapolates the whole job's progress from its own share (every
rank scans an equal share of the rows, so rank 0's fraction done is the job's). The bar
is drawn on stderr at most once per second and only where it was enabled, which the
command line does on rank 0 when the output is a terminal and ``--no-progress`` and
``--quiet`` are not given. Other ranks never print.

Under ``mpiexec`` a rank's stdout and stderr are pipes to the launcher, so "is the output
a terminal" is asked of the launcher: on Linux, of the nearest ancestor process named
like an MPI launcher (``mpiexec``, ``mpirun``, ``srun``...). ``HPCPROC_PROGRESS=1``
forces the bar on (``0``: off).
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["enable", "disable", "enabled", "scan", "Scan", "should_enable", "interval_from_env"]

_ON = False
_stream = None
_interval = 1.0
_open = None  # the stream of a bar line drawn and not yet ended
_passes: dict = {}  # label -> scans started (a file read twice shows pass 2)


_LAUNCHERS = ("mpiexec", "mpirun", "orterun", "prterun", "srun", "hydra_pmi_proxy",
              "mpiexec.hydra", "orted", "prted")


def _launcher_on_tty(pid: int, depth: int = 4) -> bool:
    """True if the nearest launcher ancestor of ``pid`` writes stdout and stderr to a tty."""
    for _ in range(depth):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            name, ppid = stat[stat.index("(") + 1:stat.rindex(")")], int(
                stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid != os.getpid() and name in _LAUNCHERS and name not in (
                "hydra_pmi_proxy", "orted", "prted"):
            try:
                return all(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(("/dev/pts/", "/dev/tty"))
                           for fd in (1, 2))
            except OSError:
                return False
        pid = ppid
        if pid <= 1:
            return False
    return False


def should_enable(rank: int, no_progress: bool = False, quiet: bool = False,
                  streams=None) -> bool:
    """True on rank 0 when the output is a terminal (see the module docstring)."""
    streams = streams or (sys.stdout, sys.stderr)
    forced = os.environ.get("HPCPROC_PROGRESS", "")
    if rank != 0 or no_progress or quiet or forced == "0":
        return False
    if forced == "1":
        return True
    try:
        if all(s.isatty() for s in streams):
            return True
    except (AttributeError, ValueError):
        return False
    return _launcher_on_tty(os.getpid())


def enable(stream=None, interval: float | None = None) -> None:
    """Draw progress bars on ``stream`` (stderr) in this process, at most once per
    ``interval`` seconds (default 1, or ``HPCPROC_PROGRESS_INTERVAL``). Not collective."""
    global _ON, _stream, _interval
    if interval is None:
        interval = interval_from_env()
    _ON, _stream, _interval = True, stream or sys.stderr, interval


def interval_from_env() -> float:
    """``HPCPROC_PROGRESS_INTERVAL`` (seconds, default 1); ``ValueError`` naming it."""
    text = os.environ.get("HPCPROC_PROGRESS_INTERVAL", "").strip()
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError(f"HPCPROC_PROGRESS_INTERVAL must be a number of seconds >= 0, "
                         f"got {text!r}")
    return value


def disable() -> None:
    """Stop drawing progress bars; end a bar line left open (a scan that did not finish,
    e.g. after an error) so the next message starts on its own line. Not collective."""
    global _ON, _open
    _ON = False
    if _open is not None:
        try:
            _open.write("\n")
            _open.flush()
        except (OSError, ValueError):
            pass
        _open = None


def enabled() -> bool:
    return _ON


class _NullScan:
    __slots__ = ()

    def update(self, nbytes):
        pass

    def close(self):
        pass


_NULL = _NullScan()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60}:{s % 60:02d}"


class Scan:
    """One scan's progress: ``update(n)`` after each block of ``n`` local bytes."""

    def __init__(self, label: str, mine: int, total: int, stream, interval: float):
        n = _passes[label] = _passes.get(label, 0) + 1
        self.label = f"{label} [pass {n}]" if n > 1 else label
        self.mine, self.total = max(0, mine), max(0, total)
        self.done = 0
        self.stream, self.interval = stream, interval
        self.t0 = self.last = time.monotonic()
        self.drawn = False

    def line(self, now: float) -> str:
        frac = min(1.0, self.done / self.mine) if self.mine else 1.0
        est = frac * self.total
        elapsed = max(now - self.t0, 1e-9)
        rate = est / elapsed
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("inf")
        width = 24
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        eta_s = _duration(eta) if eta != float("inf") else "?"
        return (f"\r{self.label} [{bar}] {100 * frac:5.1f}% {_size(est)}/{_size(self.total)} "
                f"{_size(rate)}/s ETA {eta_s} ")

    def update(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._draw(now)

    def _draw(self, now):
        global _open
        try:
            self.stream.write(self.line(now))
            self.stream.flush()
            self.drawn, self.shown = True, self.done
            _open = self.stream
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """Draw the final state (if anything was drawn) and end the line."""
        global _open
        if self.drawn:
            if self.shown != self.mine:
                self.done = self.mine
                self._draw(time.monotonic())
            _open = None
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self.drawn = False


def scan(label: str, mine: int, total: int):
    """A progress tracker for a scan where this rank reads ``mine`` of ``total`` bytes.

    Not collective. Returns a no-op tracker unless :func:`enable` was called here.
    """
    if not _ON:
        return _NULL
    return Scan(label, mine, total, _stream, _interval)
