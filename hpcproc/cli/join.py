"""The ``hpcproc join`` command (registered by :mod:`hpcproc.cli`).

``hpcproc join LEFT RIGHT --on /key [--left-with /a ...] [--right-with /b ...]
[--how inner|left] --out out.h5``: the key and value datasets of each file are read as
the columns of a table (``hp.read_table``), the tables are joined with ``hp.join`` and
every result column is written as one dataset of ``--out`` (``hp.write_table``, with
lineage). ``LEFT``/``RIGHT`` are files, or ``FILE:/key`` to name that side's key
dataset in place of ``--on`` (as ``hpcproc sort in.h5:/key`` does); ``--left-on`` /
``--right-on`` name keys that differ between the files. Several keys: repeat the option.

Output columns: the keys (named after the left key datasets), the left ``--left-with``
columns, then the right ``--right-with`` columns (a name already taken gets
``--suffix``, default ``_right``). ``--no-skew``: every key is hash-partitioned
(``skew=False``); ``--replicate-bytes SIZE`` bounds the rows replicated to every rank
for heavy keys (``replicate_bytes``, default 64M; 0: none). Everything that can be
checked from the files' metadata is checked before any data is read, on every rank
alike: a missing file or dataset, a key that is not a 1-D bool/integer/float dataset,
an integer key joined with a float key (they do not compare exactly: convert one),
datasets of one side with different lengths, an output file that is one of the inputs.
"""

from __future__ import annotations

from ..errors import DtypeError, ShapeMismatchError, UsageError
from .common import split
from .shuffle import column_names, run_table_command
from .types import parse_size, size

__all__ = ["add_parsers", "COMMANDS"]


def add_parsers(sub) -> None:
    jo = sub.add_parser(
        "join", help="join two files' tables on key datasets (distributed hash join)",
        description="Join the rows of two HDF5 files on equal keys. Example: hpcproc join "
                    "left.h5 right.h5 --on /key --left-with /a --right-with /b --out j.h5")
    jo.add_argument("left", metavar="LEFT", help="left file, or FILE:/key")
    jo.add_argument("right", metavar="RIGHT", help="right file, or FILE:/key")
    jo.add_argument("--on", action="append", default=[], metavar="DSET",
                    help="key dataset present in both files (repeatable: several keys)")
    jo.add_argument("--left-on", action="append", default=[], metavar="DSET",
                    help="key dataset of the left file (with --right-on; repeatable)")
    jo.add_argument("--right-on", action="append", default=[], metavar="DSET",
                    help="key dataset of the right file (with --left-on; repeatable)")
    jo.add_argument("--left-with", action="append", default=[], metavar="DSET",
                    help="left dataset carried into the output (repeatable)")
    jo.add_argument("--right-with", action="append", default=[], metavar="DSET",
                    help="right dataset carried into the output (repeatable)")
    jo.add_argument("--how", default="inner", choices=("inner", "left"),
                    help="inner: matching pairs only; left: also unmatched left rows, "
                         "with NaN in the right columns (default inner)")
    jo.add_argument("--suffix", default="_right",
                    help="added to a right column whose name is taken (default _right)")
    jo.add_argument("--out", required=True, help="output HDF5 file")
    jo.add_argument("--strategy", default="auto", choices=("auto", "hash", "broadcast"))
    jo.add_argument("--broadcast-bytes", type=size(0), default=None, metavar="SIZE",
                    help="largest table that auto broadcasts instead of shuffling "
                         "(default 64M)")
    jo.add_argument("--memory-budget", type=parse_size, help="exchange budget per rank")
    jo.add_argument("--no-skew", dest="skew", action="store_false",
                    help="hash-partition every key, also heavy ones (default: the rows of "
                         "a key holding 1/8 of a rank's share stay on their ranks and the "
                         "other side's rows of it are replicated, up to 64M)")
    jo.add_argument("--replicate-bytes", type=size(0), default=None, metavar="SIZE",
                    help="most bytes of rows (over all ranks) replicated to every rank for "
                         "heavy keys, heaviest first; a heavy key whose rows do not fit is "
                         "hash-partitioned; 0: none (default 64M)")
    jo.add_argument("--json", action="store_true", help="print a JSON summary")
    jo.add_argument("--checkpoint", metavar="DIR", help="save the joined table in DIR; "
                    "run again, skip straight to writing --out")


def _side(target: str) -> tuple[str, list]:
    """``FILE`` -> (FILE, []); ``FILE:/key`` -> (FILE, ["/key"])."""
    if ":" not in target:
        return target, []
    path, key = split(target)
    return path, [key]


def _plan(args):
    """Paths, key datasets and value datasets of both sides (usage checks only)."""
    lpath, lkeys = _side(args.left)
    rpath, rkeys = _side(args.right)
    if len(args.left_on) != len(args.right_on):
        raise UsageError(f"--left-on and --right-on must be given as often as each other "
                         f"({len(args.left_on)} vs {len(args.right_on)})")
    lkeys += args.left_on + args.on
    rkeys += args.right_on + args.on
    if not lkeys and not rkeys:
        raise UsageError("no key: give --on DSET (or --left-on/--right-on, or LEFT/RIGHT "
                         "as FILE:/key)")
    if len(lkeys) != len(rkeys):
        raise UsageError(f"the left side has {len(lkeys)} key dataset(s) {lkeys}, the right "
                         f"side {len(rkeys)} {rkeys}: give the same number")
    left = column_names(lkeys + args.left_with)
    right = column_names(rkeys + args.right_with)
    return lpath, rpath, left, right, len(lkeys)


def _check_files(lpath, rpath, left, right, nkeys, comm) -> None:
    """Metadata checks of both sides. Collective: rank 0 reads the metadata, every rank
    checks the same and raises the same error."""
    from ..comm import check_all
    from ..io import dataset_info

    sides = [{f"{path}:{dset}": dataset_info(path, dset, comm) for dset in columns.values()}
             for path, columns in ((lpath, left), (rpath, right))]
    check_all(lambda: _check_infos(sides, nkeys), comm)


def _check_infos(sides, nkeys) -> None:
    for infos in sides:
        lengths = {name: info.rows for name, info in infos.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k} has {n} rows" for k, n in lengths.items())
            raise ShapeMismatchError(f"datasets of one side must have equal lengths: {detail}")
    keys = [list(infos.items())[:nkeys] for infos in sides]
    for (lname, li), (rname, ri) in zip(*keys):
        for name, info in ((lname, li), (rname, ri)):
            dt = info.native_dtype
            if len(info.shape) != 1 or dt.kind not in "biuf" or dt.itemsize > 8:
                raise DtypeError(f"key {name} must be a 1-D bool, integer or float dataset "
                                 f"(<= 64 bits), not {dt} of shape {info.shape}")
        lk, rk = li.native_dtype, ri.native_dtype
        if (lk.kind == "f") != (rk.kind == "f"):
            raise DtypeError(f"cannot join key {lname} ({lk}) with {rname} ({rk}): integer "
                             f"and float keys do not compare exactly; convert one of them")


def cmd_join(args, comm) -> int:
    from ..io.write import check_output
    from ..shuffles import join
    from ..shuffles.joins import BROADCAST_BYTES, REPLICATE_BYTES

    lpath, rpath, left, right, nkeys = _plan(args)
    if not args.suffix:
        raise UsageError("--suffix must not be empty")
    check_output(args.out, [lpath, rpath], comm)  # same file (links too): refused first
    _check_files(lpath, rpath, left, right, nkeys, comm)
    lnames, rnames = list(left), list(right)
    on = lnames[:nkeys]
    # the right keys take the left keys' names; right values keep theirs unless taken
    rename = dict(zip(rnames[:nkeys], on))
    for name in rnames[nkeys:]:
        new = name
        while new in on or new in rename.values():
            new += args.suffix
        rename[name] = new
    right = {rename[k]: v for k, v in right.items()}
    budget = BROADCAST_BYTES if args.broadcast_bytes is None else args.broadcast_bytes
    replicate = REPLICATE_BYTES if args.replicate_bytes is None else args.replicate_bytes

    def op(lt, rt):
        return join(lt, rt, on, how=args.how, suffix=args.suffix, strategy=args.strategy,
                    broadcast_bytes=budget, memory_budget=args.memory_budget,
                    skew=args.skew, replicate_bytes=replicate)

    return run_table_command(args, comm, [(lpath, left), (rpath, right)], op, "join",
                             {"on": on, "how": args.how, "suffix": args.suffix})


COMMANDS = {"join": cmd_join}
