"""Sizes and counts as people write them (``64M``, ``1.5GiB``, ``10M`` rows, ``2^20``).

One parser each, shared by the command line (``--block-bytes 64M``) and the environment
variables that take a size (``HPCPROC_MEMORY_BUDGET=4G``). Not collective, no MPI.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction

__all__ = ["parse_size", "parse_count", "env_size"]

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b?)?\s*$", re.IGNORECASE)
_COUNT = re.compile(r"^([0-9]*\.?[0-9]+)([kmg]?)$", re.IGNORECASE)
#: sizes and counts above this are refused (they do not fit an int64)
LARGEST = (1 << 63) - 1


def _exact(digits: str, scale: int, what: str, text) -> int:
    """``digits * scale`` rounded down, computed exactly (not through a float, which
    loses digits above 2**53 and overflows to infinity); ValueError above LARGEST."""
    value = int(Fraction(digits) * scale)
    if value > LARGEST:
        raise ValueError(f"{what}: {text!r} is too large (at most {LARGEST})")
    return value


def parse_size(text) -> int:
    """``"1.5G"``, ``"64MiB"``, ``"64m"``, ``"1000"`` -> bytes (powers of 1024).

    Raises ``ValueError`` (with examples of valid sizes) for anything else, including
    negative numbers.
    """
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (examples: 4096, 64M, 1.5G)")
    return _exact(m.group(1), 1024 ** " kmgt".index(m.group(2).lower() or " "), "not a size",
                  text)


def parse_count(text) -> int:
    """A row count: ``"1000"``, ``"10M"``, ``"1.5k"`` (powers of 1000) or ``"2^20"``.

    Raises ``ValueError`` for anything else, including negative numbers.
    """
    t = str(text).strip()
    if t.startswith("2^") and t[2:].isdigit():
        bits = int(t[2:])
        return _exact("1", 2 ** min(bits, 64), "not a row count", text)  # 2^64: too large
    m = _COUNT.match(t)
    if not m:
        raise ValueError(f"not a row count: {text!r} (examples: 1000, 10M, 2^20)")
    return _exact(m.group(1), 1000 ** " kmg".index(m.group(2).lower() or " "),
                  "not a row count", text)


def env_size(name: str, minimum: int = 1) -> int | None:
    """The size in environment variable ``name`` (None when unset or empty).

    ``ValueError`` naming the variable when it is not a size or is below ``minimum``.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        size = parse_size(value)
    except ValueError:
        size = None
    if size is None or size < minimum:
        raise ValueError(f"{name} must be a size of at least {minimum} byte(s) (examples: "
                         f"4096, 64M, 1.5G), got {value!r}")
    return size
