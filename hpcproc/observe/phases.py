"""Per-phase timers on every rank (pure: no communication, no hpcproc imports).

``with hp.phase("read"):`` times a named phase on this rank. Tracing is off by default
and then a phase costs one module-level flag check (a shared no-op context manager is
returned). When on (:func:`start_tracing`, the ``HPCPROC_TRACE=1`` environment variable,
or the command line's ``--verbose``/``--json``/``--trace``/``--plot``), each phase adds
its **exclusive** time (time spent in a nested phase counts for the inner phase only, so
the phases of a rank add up to at most its wall time) and the bytes read, written and
sent inside it to this rank's totals, and records a span for the trace file.

Built-in phases, used by hpcproc itself: ``read`` (io reads), ``compute`` (reduction
kernels), ``exchange`` (moving rows between ranks), ``write`` (io writes),
``checkpoint`` (checkpoint saves and restores), ``wait`` (time inside collectives: load
imbalance shows up here), ``compile`` (Numba compilation or cache loading of kernels).
Any other name may be used for your own phases.

Library calls: every public collective (``hp.quantile``, ``hp.read``, ...) also records,
while tracing is on, its **inclusive** wall time and call count by name (outermost calls
only: a collective called inside another is part of the outer one). Calls are not phases:
they do not change the exclusive phase accounting; :func:`report` shows them in their own
section and the trace file shows each call as a span around its phases.

Nothing is communicated here: :func:`hpcproc.observe.report.report` (collective) gathers
every rank's totals once, at the end. This module imports nothing from hpcproc, so every
layer, the core included, may use :func:`phase`.
"""

from __future__ import annotations

import functools
import os
import threading
import time

__all__ = ["phase", "traced", "call", "add_bytes", "start_tracing", "stop_tracing",
           "tracing_enabled", "reset_tracing", "local_record", "PHASES"]

#: the built-in phase names, in display order
PHASES = ("read", "compute", "exchange", "write", "checkpoint", "wait", "compile")
MAX_SPANS = 200_000  # spans kept per rank for the trace file (totals are always exact)

_ON = False          # the flag every phase checks
_MAIN = threading.main_thread().ident
_clock = time.perf_counter
_t0 = time.perf_counter()  # when tracing (re)started on this rank (first: at import)
_epoch = time.time()       # time.time() at _t0 (aligns ranks' tracks in the trace file)
_totals: dict = {}   # name -> [exclusive seconds, calls, read, written, sent]
_spans: list = []    # (name, start, stop, depth, read, written, sent)
_dropped = 0
_stack: list = []    # open spans of the main thread
_calls: dict = {}    # library call name -> [inclusive seconds, calls, longest call]
_call_spans: list = []  # (name, start, stop)
_gen = 0             # bumped by every reset (a call open across a reset is not recorded)


class _Null:
    """The phase returned while tracing is off: does nothing."""

    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add(self, read=0, written=0, sent=0):
        pass


_NULL = _Null()


class _Span:
    __slots__ = ("name", "start", "child", "read", "written", "sent")

    def __init__(self, name, read, written, sent):
        self.name, self.read, self.written, self.sent = name, read, written, sent

    def add(self, read=0, written=0, sent=0):
        """Count bytes read, written or sent in this phase."""
        self.read += read
        self.written += written
        self.sent += sent

    def __enter__(self):
        if threading.get_ident() != _MAIN:
            self.start = None  # phases of other threads overlap the main one: not counted
            return self
        self.child = 0.0
        _stack.append(self)
        self.start = _clock()
        return self

    def __exit__(self, *exc):
        global _dropped
        if self.start is None:
            return False
        stop = _clock()
        if not _stack or _stack[-1] is not self:
            return False  # tracing was reset inside the phase
        _stack.pop()
        elapsed = stop - self.start
        if _stack:
            _stack[-1].child += elapsed
        tot = _totals.get(self.name)
        if tot is None:
            tot = _totals[self.name] = [0.0, 0, 0, 0, 0]
        tot[0] += elapsed - self.child
        tot[1] += 1
        tot[2] += self.read
        tot[3] += self.written
        tot[4] += self.sent
        if len(_spans) < MAX_SPANS:
            _spans.append((self.name, self.start - _t0, stop - _t0, len(_stack),
                           self.read, self.written, self.sent))
        else:
            _dropped += 1
        return False


class _Call:
    """Times one outermost library call (see :func:`call`)."""

    __slots__ = ("name", "count", "prior", "start", "gen", "elapsed")

    def __init__(self, name, count, prior):
        self.name, self.count, self.prior, self.elapsed = name, count, prior, 0.0

    def __enter__(self):
        self.gen = _gen
        self.start = _clock() if threading.get_ident() == _MAIN else None
        return self

    def __exit__(self, *exc):
        global _dropped
        if self.start is None:
            return False
        stop = _clock()
        self.elapsed = stop - self.start
        if self.gen != _gen or not _ON:
            return False  # tracing was reset or switched off inside the call
        rec = _calls.get(self.name)
        if rec is None:
            rec = _calls[self.name] = [0.0, 0, 0.0]
        rec[0] += self.elapsed
        rec[1] += self.count
        rec[2] = max(rec[2], self.prior + self.elapsed)
        if len(_call_spans) + len(_spans) < MAX_SPANS:
            _call_spans.append((self.name, self.start - _t0, stop - _t0))
        else:
            _dropped += 1
        return False


def call(name: str, count: bool = True, prior: float = 0.0) -> _Call:
    """Time one outermost library call named ``name`` (used by ``agreement.collective``).

    Only called while tracing is on. ``count=False`` adds time to a call already counted
    (a step of a collective iterator); ``prior`` is the time that call took before, so
    the longest call is still right. The elapsed time is left in ``.elapsed``.
    """
    return _Call(name, 1 if count else 0, prior)


def phase(name: str, *, read: int = 0, written: int = 0, sent: int = 0):
    """Time a named phase on this rank: ``with hp.phase("solve"): ...``. Not collective.

    ``read``, ``written``, ``sent`` count bytes moved in the phase (more can be added with
    ``p.add(...)`` on the object the ``with`` statement returns, or :func:`add_bytes`).
    While tracing is off this returns a shared no-op object (one flag check).
    """
    if not _ON:
        return _NULL
    return _Span(name, read, written, sent)


def traced(name: str):
    """Decorator: run the function inside ``phase(name)``. Not collective."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not _ON:
                return fn(*args, **kwargs)
            with _Span(name, 0, 0, 0):
                return fn(*args, **kwargs)
        return wrapper
    return deco


def add_bytes(read: int = 0, written: int = 0, sent: int = 0) -> None:
    """Count bytes for the innermost open phase of this rank (no-op when off)."""
    if _ON and _stack and threading.get_ident() == _MAIN:
        _stack[-1].add(read, written, sent)


def reset_tracing() -> None:
    """Forget every phase recorded so far and restart this rank's clock. Not collective."""
    global _t0, _epoch, _dropped, _gen
    _totals.clear()
    _spans.clear()
    _stack.clear()
    _calls.clear()
    _call_spans.clear()
    _dropped = 0
    _gen += 1
    _t0, _epoch = _clock(), time.time()


def start_tracing(reset: bool = True) -> None:
    """Switch phase timing on for this process (``reset``: start from zero). Not collective."""
    global _ON
    if reset or not _ON and not _totals and not _calls:
        reset_tracing()
    _ON = True


def stop_tracing() -> None:
    """Switch phase timing off (totals are kept for :func:`report`). Not collective."""
    global _ON
    _ON = False


def tracing_enabled() -> bool:
    """True while phases are being timed. Not collective."""
    return _ON


def local_record(spans: bool) -> dict:
    """This rank's totals (and spans) as :func:`hpcproc.observe.report.report` gathers them."""
    return {"wall": _clock() - _t0, "epoch": _epoch,
            "phases": {k: list(v) for k, v in _totals.items()},
            "spans": list(_spans) if spans else None, "dropped": _dropped,
            "calls": {k: list(v) for k, v in _calls.items()},
            "call_spans": list(_call_spans) if spans else None}



if os.environ.get("HPCPROC_TRACE", "") not in ("", "0"):
    start_tracing()
