"""Crash injection for the kill -9 tests: die with SIGKILL at a named point of a save.

``HPCPROC_CKPT_CRASH="POINT:RANKS:N"`` kills the process the N-th time (1-based) rank(s)
``RANKS`` (a rank number, or ``*`` for every rank) reach ``POINT``. Points, in save order:
``write-mid`` (half of a rank file's data written), ``write-done`` (rank file fsynced),
``manifest`` (manifest written, before the rename), ``renamed`` (step renamed into place,
before ``latest``), ``latest`` (``latest`` replaced, before retention), ``retention`` (an
old step moved to the trash, not yet deleted). Unset, a check costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_ENV = "HPCPROC_CKPT_CRASH"
_counts: dict[str, int] = {}
_spec = None


def _parse():
    text = os.environ.get(_ENV, "")
    if not text:
        return ()
    point, ranks, nth = text.split(":")
    return (point, None if ranks == "*" else int(ranks), int(nth))


def point(name: str, rank: int) -> None:
    """SIGKILL this process if the crash spec names this point, rank and occurrence."""
    global _spec
    if _spec is None:
        _spec = _parse()
    if not _spec or _spec[0] != name or _spec[1] not in (None, rank):
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == _spec[2]:
        os.kill(os.getpid(), signal.SIGKILL)
