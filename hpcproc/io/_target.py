"""Output targets of a write: checks before any work, temporary names, leftovers, signals.

* :func:`same_file` / :func:`check_not_input`: an output never replaces an input. Files
  are compared as real files (device and inode: symlinks, hard links, ``..`` and
  relative paths all resolve to the same file); a path that does not exist yet is
  compared by its resolved path.
* :func:`check_target`: the target is usable (not a directory, its directory exists and
  is writable, enough free space) before anything is read, computed or written.
* Temporary files are named ``.<name>.hpcproc-tmp-<host>-<pid>-<token>`` next to the
  target: :func:`remove_stale` removes those of earlier runs whose creator is dead (same
  host: the pid no longer exists; other hosts: untouched for :data:`STALE_SECONDS` and
  older than this process).
* :class:`SignalCleanup`: while a temporary file exists, SIGTERM/SIGINT with their
  default action first remove it, then end the process as the signal would have.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import time
import uuid

from ..errors import OutputIsInputError

__all__ = ["same_file", "check_not_input", "check_target",
           "tmp_tag", "tmp_name", "is_stale", "remove_stale", "SignalCleanup", "TMP_MARK",
           "STALE_SECONDS"]

TMP_MARK = ".hpcproc-tmp-"
STALE_SECONDS = 3600.0
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.hpcproc-tmp-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{12}$")
_METADATA_BYTES = 1 << 20  # HDF5 structure and lineage attributes, per write (generous)


def _identity(path: str):
    """``(st_dev, st_ino)`` of the file ``path`` names, or its resolved path if missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def same_file(a: str, b: str) -> bool:
    """True if paths ``a`` and ``b`` name the same file (or would). Not collective."""
    return _identity(os.fspath(a)) == _identity(os.fspath(b))


def check_not_input(out: str, inputs, what: str = "output") -> None:
    """Raise :class:`OutputIsInputError` if ``out`` is one of the files ``inputs``."""
    out = os.fspath(out)
    mine = _identity(out)
    for path in inputs:
        path = os.fspath(path)
        if _identity(path) == mine:
            same = "" if path == out else f" (the same file as input {path})"
            raise OutputIsInputError(
                f"{what} {out} is an input of this job{same}: writing it would replace the "
                f"input; write to another file")


def check_target(path: str, mode: str = "w", nbytes: int = 0) -> str:
    """Check that ``path`` can be written (not a directory, directory exists and is
    writable, ``nbytes`` plus metadata fit on its file system). Returns the absolute
    path. Not collective (run it on one rank and share the outcome)."""
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"output directory does not exist: {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"output directory is not writable: {directory}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"output {path} is a directory; give a file name")
    if os.path.lexists(path) and not os.path.exists(path):
        raise FileNotFoundError(f"output {path} is a dangling symbolic link")
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"output {path} is not a regular file")
    if mode == "a" and os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise PermissionError(f"output {path} is not writable")
    need = int(nbytes) + _METADATA_BYTES
    try:
        vfs = os.statvfs(directory)
    except OSError:
        return path
    free = vfs.f_bavail * vfs.f_frsize
    if need > free:
        raise OSError(28, f"not enough free space for {path}: the write needs about "
                          f"{need} bytes, {free} are free (nothing was written)")
    return path


def _host() -> str:
    return socket.gethostname().split(".")[0] or "host"


def tmp_tag() -> str:
    """``<host>-<pid>-<token>``: a new tag naming this process."""
    return f"{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def tmp_name(path: str) -> str:
    """A new temporary name next to ``path`` naming the target, host and pid."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}{TMP_MARK}{tmp_tag()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_start() -> float:
    try:
        return os.stat(f"/proc/{os.getpid()}").st_mtime
    except OSError:
        return time.time()


def is_stale(name: str, mtime: float, now: float | None = None) -> bool:
    """True if the temporary file ``name`` (a base name) was left by a dead run."""
    m = _TMP_RE.match(name)
    if m is None:
        return False
    pid = int(m.group("pid"))
    if m.group("host") == _host():
        return pid != os.getpid() and not _alive(pid)
    now = time.time() if now is None else now
    return mtime < _process_start() and now - mtime > STALE_SECONDS


def remove_stale(path: str) -> list[str]:
    """Remove temporary files of ``path`` left by crashed runs; return their names."""
    directory, name = os.path.split(os.path.abspath(path))
    prefix = f".{name}{TMP_MARK}"
    removed = []
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            m = _TMP_RE.match(entry.name)
            if m and m.group("name") == name and stat.S_ISREG(st.st_mode) \
                    and is_stale(entry.name, st.st_mtime):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue
    return removed


def _interrupts(handler) -> bool:
    """True for Python's default SIGINT handler and handlers that act like it (raise
    ``KeyboardInterrupt``, e.g. the command line's interrupt guard)."""
    return handler is signal.default_int_handler or getattr(handler, "raises_interrupt", False)


class SignalCleanup:
    """Context manager: while active, SIGTERM and SIGINT remove the temporary file first.

    Enter it before the temporary file exists and name the file with :meth:`set_path`
    once it is known (on every rank): a signal that arrives in between is held until
    then, so no rank can die knowing nothing of a file another rank just created. Only
    signals whose action is the default (terminate; for SIGINT Python's
    KeyboardInterrupt) are taken over: the file is removed, the default action restored
    and the signal re-sent, so the process ends as it would have. A signal that has a
    handler of the program (e.g. a Checkpointer's "save and exit" flag) is passed to
    that handler and the write continues. Not collective; main thread only.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.path, self.ready, self.pending, self.saved = None, False, None, {}

    def set_path(self, path: str | None) -> None:
        """The temporary file to remove (None: nothing); acts on a held signal."""
        self.path, self.ready = path, True
        if self.pending is not None:
            self._fire(self.pending)

    def _handler(self, signum, frame):
        previous = self.saved.get(signum, signal.SIG_DFL)
        if callable(previous) and not _interrupts(previous):
            return previous(signum, frame)
        if previous == signal.SIG_IGN:
            return None
        if not self.ready:
            self.pending = signum  # acted on by set_path (or at exit)
            return None
        return self._fire(signum)

    def _fire(self, signum):
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        previous = self.saved.get(signum, signal.SIG_DFL)
        self._restore()
        if callable(previous) and _interrupts(previous):
            return previous(signum, None)  # raises KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _restore(self):
        for sig, previous in self.saved.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self.saved.clear()

    def __enter__(self):
        import threading
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                try:
                    self.saved[sig] = signal.signal(sig, self._handler)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc):
        pending, self.ready = self.pending, True
        if pending is not None and self.saved:
            self.path = None
            self._fire(pending)
        self._restore()
        return False
