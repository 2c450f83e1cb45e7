"""Argument types of the ``hpcproc`` command: every value is checked when it is parsed.

:func:`about` names the target (``FILE:/dataset``) in an error that does not.
A bad value is then a usage error that argparse reports with the option's name
(``hpcproc: error: argument --block-bytes: must be a size >= 1 ..., got '0'``), on every
rank alike, before any file is opened or any rank communicates.
"""

from __future__ import annotations

import argparse
import contextlib
import math

from .. import _units

__all__ = ["size", "count", "integer", "real", "about"]


def _bad(what: str, text) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"must be {what}, got {text!r}")


def _at_least(parse_text, name: str, examples: str, minimum: int):
    """An argparse type: ``parse_text(text)`` (ValueError if malformed), at least ``minimum``."""
    def parse(text):
        try:
            value = parse_text(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise _bad(f"a {name} >= {minimum} (examples: {examples})", text)
        return value
    parse.__name__ = name
    return parse


def size(minimum: int = 0):
    """A byte size (``4096``, ``64M``, ``1.5G``; powers of 1024) of at least ``minimum``."""
    return _at_least(_units.parse_size, "size", "4096, 64M, 1.5G", minimum)


def count(minimum: int = 0):
    """A count (``1000``, ``10M``, ``2^20``; powers of 1000) of at least ``minimum``."""
    return _at_least(_units.parse_count, "count", "1000, 10M, 2^20", minimum)


def integer(minimum: int | None = None):
    """A whole number of at least ``minimum``."""
    def parse(text):
        try:
            value = int(str(text).strip())
        except ValueError:
            value = None
        if value is None or (minimum is not None and value < minimum):
            raise _bad("an integer" + ("" if minimum is None else f" >= {minimum}"), text)
        return value
    parse.__name__ = "integer"
    return parse


def real(low: float | None = None, high: float | None = None, *, open_low: bool = False,
         open_high: bool = False):
    """A finite number in the interval given (``[low, high]``, ends open on request)."""
    lo_b, hi_b = "(" if open_low else "[", ")" if open_high else "]"
    if low is None and high is None:
        what = "a finite number"
    elif high is None:
        what = f"a finite number {'>' if open_low else '>='} {low:g}"
    elif low is None:
        what = f"a finite number {'<' if open_high else '<='} {high:g}"
    else:
        what = f"a number in {lo_b}{low:g}, {high:g}{hi_b}"

    def parse(text):
        try:
            value = float(str(text).strip())
        except ValueError:
            value = math.nan
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if open_low else value >= low
        if ok and high is not None:
            ok = value < high if open_high else value <= high
        if not ok:
            raise _bad(what, text)
        return value
    parse.__name__ = "number"
    return parse


@contextlib.contextmanager
def about(target: str):
    """Prefix ``target: `` to a ``ValueError``/``TypeError`` raised in the body whose
    message does not name it (e.g. the quantile of an empty dataset), keeping its type."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        name = target.rpartition(":")[2]
        if target in str(exc) or name in str(exc):
            raise
        try:
            renamed = type(exc)(f"{target}: {exc}")
        except Exception:  # noqa: BLE001 - a type that takes other arguments: unchanged
            raise exc from None
        raise renamed from None


#: argparse type of ``--block-bytes`` and the other positive sizes (``64M``, ``1.5G``)
parse_size = size(1)
#: argparse type of row counts (``10M``, ``2^20``)
parse_count = count(0)
