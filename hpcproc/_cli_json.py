"""The one JSON serializer of every ``hpcproc ... --json`` output.

Standard JSON only: ``NaN`` and infinities (the mean of an empty dataset, the min of
all-NaN data) become ``null``, numpy scalars and arrays become numbers and lists, so
every output parses with any JSON reader (``jq``, JavaScript, Python's ``json``).
"""

from __future__ import annotations

import json
import math

__all__ = ["dumps"]


def _plain(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    for method in ("tolist", "item"):  # numpy arrays, scalars and dtypes' kin
        if hasattr(obj, method):
            return _plain(getattr(obj, method)())
    return str(obj)


def dumps(obj, *, sort_keys: bool = False) -> str:
    """``obj`` as indented standard JSON (non-finite numbers as ``null``)."""
    return json.dumps(_plain(obj), indent=2, sort_keys=sort_keys, allow_nan=False)
