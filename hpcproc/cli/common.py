"""What every command shares: printing on rank 0, target parsing, the read options, and
the one JSON serializer of every ``hpcproc ... --json`` output.

Standard JSON only: ``NaN`` and infinities (the mean of an empty dataset, the min of
all-NaN data) become ``null``, numpy scalars and arrays become numbers and lists, so
every output parses with any JSON reader (``jq``, JavaScript, Python's ``json``).
"""

from __future__ import annotations

import json
import math
import os
import sys

from ..errors import UsageError
from .types import real

__all__ = ["dumps", "echo", "split", "READ_METHODS", "add_read_options",
           "add_scan_checkpoint_options"]

#: ``--method`` choices: the read strategies of :data:`hpcproc.io.read.METHODS` (kept here
#: so that building the parser imports neither MPI nor h5py; a test checks they agree)
READ_METHODS = ("auto", "direct", "chunked", "h5py", "mpio")
#: ``--raw``'s help
RAW_HELP = ("read the stored values: no CF (netCDF) decoding of scale_factor/add_offset/"
            "_FillValue/missing_value/valid_*")


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


def echo(text: str, comm) -> None:
    """Print ``text`` on rank 0 (``hpcproc ... | head``: a reader that left is not an
    error; the rest of the output is discarded)."""
    if comm.Get_rank() == 0:
        try:
            print(text, flush=True)
        except BrokenPipeError:
            sys.stdout = open(os.devnull, "w")


def split(target: str) -> tuple[str, str]:
    """``"FILE:/DSET"`` -> ``(FILE, "/DSET")``; a malformed target is a usage error."""
    from ..io import split_target
    try:
        return split_target(target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def add_read_options(p, parse_size, *, block_bytes: bool = True, raw: bool = True) -> None:
    """``--block-bytes``, ``--method``, ``--raw`` and ``--json`` of the reading commands."""
    if block_bytes:
        p.add_argument("--block-bytes", type=parse_size, default=64 << 20,
                       help="bytes read per rank per step (bounded memory; default 64M)")
    p.add_argument("--method", default="auto", choices=READ_METHODS)
    if raw:
        p.add_argument("--raw", action="store_true", help=RAW_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")


def add_scan_checkpoint_options(p) -> None:
    """--checkpoint/--checkpoint-every of the streaming scans (stats, hist)."""
    p.add_argument("--checkpoint", metavar="DIR", help="save progress in DIR and resume "
                   "from it when run again (one sub-directory per target)")
    p.add_argument("--checkpoint-every", type=real(0), default=60.0, metavar="SECONDS",
                   help="seconds between checkpoints (0: after every block; default 60)")
