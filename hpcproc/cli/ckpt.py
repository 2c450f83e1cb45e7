"""``hpcproc ckpt ls DIR``, ``hpcproc ckpt verify DIR`` and
``hpcproc ckpt export DIR [STEP] OUT``."""

from __future__ import annotations

import json

from ..checkpoint._inspect import list_steps
from ..comm import root_call
from ..errors import UsageError

__all__ = ["add_parsers", "COMMANDS"]


def add_parsers(sub) -> None:
    ck = sub.add_parser("ckpt", help="list, verify or export checkpoints (hp.Checkpointer)")
    cks = ck.add_subparsers(dest="ckpt_command", metavar="{ls,verify,export}")
    cks.required = True
    for name, text in (("ls", "list steps (manifest and file sizes checked)"),
                       ("verify", "verify every checksum; exit 1 if a step is invalid"),
                       ("export", "write a step's global arrays as one plain HDF5 file")):
        c = cks.add_parser(name, help=text)
        c.add_argument("directory", help="checkpoint directory")
        if name == "export":
            c.add_argument("rest", nargs="+", metavar="[STEP] OUT",
                           help="step (default: the newest valid one) and output file")
        c.add_argument("--json", action="store_true", help="print JSON")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _export(args, comm) -> int:
    from ..checkpoint._export import export_step, parse_step

    if len(args.rest) > 2:
        raise UsageError(f"ckpt export takes DIR [STEP] OUT, got {len(args.rest) + 1} "
                         f"arguments")
    try:
        step = parse_step(args.rest[0]) if len(args.rest) == 2 else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    done = export_step(args.directory, args.rest[-1], step, comm)
    if comm.Get_rank() == 0:
        if args.json:
            print(json.dumps(done, indent=2), flush=True)
        else:
            skipped = (f"; rank-local entries not exported: {', '.join(done['skipped'])}"
                       if done["skipped"] else "")
            print(f"step {done['step']} -> {done['output']}: {len(done['datasets'])} "
                  f"dataset(s), {len(done['attributes'])} attribute(s) "
                  f"(saved on {done['ranks_saved']} ranks, written by {done['ranks']})"
                  f"{skipped}", flush=True)
    return 0


def cmd_ckpt(args, comm) -> int:
    """List, verify (runs on rank 0) or export (every rank) checkpoints. Collective."""
    if args.ckpt_command == "export":
        return _export(args, comm)
    verify = args.ckpt_command == "verify"
    report = root_call(lambda: list_steps(args.directory, verify=verify), comm)
    bad = [s for s in report["steps"] if not s["valid"]]
    if comm.Get_rank() == 0:
        if args.json:
            print(json.dumps(report, indent=2), flush=True)
        else:
            lines = [f"{report['directory']}: {len(report['steps'])} step(s), "
                     f"latest -> {report['latest']}"]
            for s in report["steps"]:
                mark = "*" if s["step"] == report["latest"] else " "
                status = ("ok" if s["valid"] else f"INVALID: {s['problem']}")
                if s["valid"] and verify:
                    status = "ok (checksums verified)"
                facts = ""
                if "ranks" in s:
                    facts = (f"{s['ranks']:>4d} ranks {_size(s['bytes']):>10s}  "
                             f"{s.get('created') or '':20s} ")
                lines.append(f"{mark} {s['name']}  {facts}{status}")
            for name in report["leftovers"]:
                lines.append(f"  {name}  (leftover of an interrupted save or deletion)")
            print("\n".join(lines), flush=True)
    if verify and (bad or not report["steps"]):
        return 1
    return 0


COMMANDS = {"ckpt": cmd_ckpt}
