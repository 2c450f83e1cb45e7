"""``hpcproc ckpt ls DIR`` and ``hpcproc ckpt verify DIR``."""

from __future__ import annotations

import json

from ..comm import root_call
from ._inspect import list_steps

__all__ = ["cmd_ckpt"]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_ckpt(args, comm) -> int:
    """List or verify the steps of a checkpoint directory (runs on rank 0). Collective."""
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
