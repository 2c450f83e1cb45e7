"""Fault injection for tests: make a named point fail on chosen ranks.

Production code calls :func:`check` at points where real IO can fail (ENOSPC, EIO);
tests arm a point with :func:`arm` to prove that the failure ends the operation on every
rank with a clear error and leaves no damage. Disarmed, a check costs a dict lookup.
"""

from __future__ import annotations

import errno
import os

_armed: dict[str, set | None] = {}


def arm(point: str, ranks=None, err: int = errno.ENOSPC) -> None:
    """Make ``point`` raise ``OSError(err)`` on ``ranks`` (None: every rank)."""
    _armed[point] = (None if ranks is None else set(ranks), err)


def disarm(point: str | None = None) -> None:
    """Disarm ``point`` (or every point)."""
    if point is None:
        _armed.clear()
    else:
        _armed.pop(point, None)


def check(point: str, rank: int) -> None:
    """Raise the armed error if ``point`` is armed for ``rank``."""
    if point in _armed:
        ranks, err = _armed[point]
        if ranks is None or rank in ranks:
            raise OSError(err, f"{os.strerror(err)} (injected at {point})")
