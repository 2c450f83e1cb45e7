"""The ``hpcproc lineage``, ``hpcproc validate`` and ``hpcproc diff`` commands.

``validate`` and ``diff`` exit 0 when the data passes (or is
equal) and 1 when it does not, for CI pipelines; usage errors exit 2.
"""

from __future__ import annotations

from ..errors import UsageError
from .common import READ_METHODS, dumps, echo, split
from .types import integer, parse_size, real

__all__ = ["add_parsers", "COMMANDS"]


def add_parsers(sub) -> None:
    lin = sub.add_parser("lineage", help="print the provenance of a dataset hpcproc wrote")
    lin.add_argument("target", metavar="FILE:DSET", help="e.g. out.h5:/x")
    lin.add_argument("--json", action="store_true", help="print the JSON document")

    val = sub.add_parser("validate", help="check datasets against rules (exit 1 on violations)")
    val.add_argument("targets", nargs="+", metavar="FILE:DSET", help="e.g. data.h5:/x")
    val.add_argument("--rules", required=True, metavar="RULES.toml",
                     help="rules file (TOML or JSON; see the README)")
    val.add_argument("--block-bytes", type=parse_size, default=64 << 20,
                     help="bytes read per rank per step (bounded memory; default 64M)")
    val.add_argument("--method", default="auto",
                     choices=READ_METHODS)
    val.add_argument("--json", action="store_true", help="print JSON")

    d = sub.add_parser("diff", help="compare two datasets (exit 1 if they differ)")
    d.add_argument("a", metavar="A.h5:/x")
    d.add_argument("b", metavar="B.h5:/x")
    d.add_argument("--rtol", type=real(0), default=0.0, help="relative tolerance (default 0)")
    d.add_argument("--atol", type=real(0), default=0.0, help="absolute tolerance (default 0)")
    d.add_argument("--limit", type=integer(0), default=10, help="differing indices to list")
    d.add_argument("--block-bytes", type=parse_size, default=64 << 20,
                   help="bytes read per rank per step and dataset (default 64M)")
    d.add_argument("--json", action="store_true", help="print JSON")


def cmd_lineage(args, comm) -> int:
    from ..comm import root_call
    from ..io.lineage import format_lineage, read_lineage

    path, name = split(args.target)
    rec = root_call(lambda: read_lineage(path, name), comm)
    echo(dumps(rec, sort_keys=True) if args.json else format_lineage(rec), comm)
    return 0


def cmd_validate(args, comm) -> int:
    from ..comm import root_call
    from ..quality.rules import check_rules, format_report, load_rules, split_file_rules
    from ..quality.validate import validate_dataset

    targets = [split(t) for t in args.targets]
    try:
        raw = root_call(lambda: load_rules(args.rules), comm)
        per = [split_file_rules(raw, name) for _, name in targets]
        for rules in per:
            check_rules(rules)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{args.rules}: {exc}") from None
    reports = []
    for (path, name), rules in zip(targets, per):
        reports.append(validate_dataset(path, name, rules, comm=comm, method=args.method,
                                        block_bytes=args.block_bytes))
    if raw.get("same_rows") and len(reports) > 1:
        rows = [r["shape"][0] for r in reports]
        ok = len(set(rows)) == 1
        reports.append({"target": "same_rows", "shape": [len(rows)], "dtype": "", "ok": ok,
                        "checks": [{"rule": "same_rows", "expected": True, "actual": rows,
                                    "violations": 0 if ok else 1, "first": [], "ok": ok}]})
    good = all(r["ok"] for r in reports)
    if args.json:
        echo(dumps({"ok": good, "reports": reports}), comm)
    else:
        echo(format_report(reports) + f"\n{'PASSED' if good else 'FAILED'}", comm)
    return 0 if good else 1


def cmd_diff(args, comm) -> int:
    from ..quality.diff import diff, format_diff

    (pa, da), (pb, db) = split(args.a), split(args.b)
    try:
        r = diff(pa, da, pb, db, rtol=args.rtol, atol=args.atol, comm=comm,
                 block_bytes=args.block_bytes, limit=args.limit)
    except ValueError as exc:
        if "rtol" in str(exc) or "atol" in str(exc) or "limit" in str(exc):
            raise UsageError(str(exc)) from None
        raise
    echo(dumps(r) if args.json else format_diff(r), comm)
    return 0 if r["equal"] else 1


COMMANDS = {"lineage": cmd_lineage, "validate": cmd_validate, "diff": cmd_diff}
