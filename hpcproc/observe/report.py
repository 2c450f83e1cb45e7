"""The end-of-run summary of the phase timers: one gather, a text table, trace/plot export.

:func:`report` is collective: it gathers every rank's totals (:mod:`.phases`) once.
"""

from __future__ import annotations

import sys

from .phases import PHASES, local_record

__all__ = ["report", "format_report"]


def _summarize(per_rank: list) -> dict:
    """The summary (see :func:`report`) from every rank's local record."""
    size = len(per_rank)
    names = [p for p in PHASES if any(p in r["phases"] for r in per_rank)]
    names += sorted({k for r in per_rank for k in r["phases"]} - set(names))
    walls = [r["wall"] for r in per_rank]
    phases = {}
    for name in names + ["other"]:
        if name == "other":
            secs = [max(0.0, r["wall"] - sum(v[0] for v in r["phases"].values()))
                    for r in per_rank]
            rows = [[s, 0, 0, 0, 0] for s in secs]
        else:
            rows = [r["phases"].get(name, [0.0, 0, 0, 0, 0]) for r in per_rank]
            secs = [row[0] for row in rows]
        mean = sum(secs) / size
        slowest = max(range(size), key=secs.__getitem__)
        nbytes = {k: int(sum(row[i] for row in rows))
                  for i, k in ((2, "read"), (3, "written"), (4, "sent"))}
        moved = sum(nbytes.values())
        phases[name] = {
            "min": min(secs), "mean": mean, "max": secs[slowest],
            "imbalance": secs[slowest] / mean if mean > 0 else 1.0,
            "slowest_rank": slowest, "calls": int(sum(row[1] for row in rows)),
            "bytes_read": nbytes["read"], "bytes_written": nbytes["written"],
            "bytes_sent": nbytes["sent"],
            "gb_per_s": moved / secs[slowest] / 1e9 if moved and secs[slowest] > 0 else None,
            "seconds": secs,
        }
    return {"ranks": size, "wall": {"min": min(walls), "mean": sum(walls) / size,
                                    "max": max(walls), "per_rank": walls},
            "phases": phases, "calls": _summarize_calls(per_rank),
            "dropped_spans": sum(r["dropped"] for r in per_rank)}


def _summarize_calls(per_rank: list) -> dict:
    """Library calls across ranks: inclusive totals, counts, slowest rank; by max total."""
    size = len(per_rank)
    names = {k for r in per_rank for k in r.get("calls", {})}
    calls = {}
    for name in names:
        rows = [r.get("calls", {}).get(name, [0.0, 0, 0.0]) for r in per_rank]
        secs = [row[0] for row in rows]
        counts = [int(row[1]) for row in rows]
        slowest = max(range(size), key=secs.__getitem__)
        mean = sum(secs) / size
        calls[name] = {
            "calls": max(counts), "calls_per_rank": counts,
            "min": min(secs), "mean": mean, "max": secs[slowest],
            "imbalance": secs[slowest] / mean if mean > 0 else 1.0,
            "slowest_rank": slowest, "longest": max(row[2] for row in rows),
            "seconds": secs,
        }
    return dict(sorted(calls.items(), key=lambda kv: (-kv[1]["max"], kv[0])))


def format_report(summary: dict) -> str:
    """The summary of :func:`report` as a text table."""
    w = summary["wall"]
    lines = [f"phase times on {summary['ranks']} ranks (exclusive seconds; wall "
             f"{w['max']:.3f} s on the slowest rank)",
             f"  {'phase':12s} {'min':>9s} {'mean':>9s} {'max':>9s} {'max/mean':>9s} "
             f"{'slowest':>8s} {'GB/s':>8s} {'bytes':>10s}"]
    for name, p in summary["phases"].items():
        moved = p["bytes_read"] + p["bytes_written"] + p["bytes_sent"]
        rate = f"{p['gb_per_s']:.2f}" if p["gb_per_s"] is not None else "-"
        lines.append(f"  {name:12s} {p['min']:9.4f} {p['mean']:9.4f} {p['max']:9.4f} "
                     f"{p['imbalance']:9.2f} {'rank ' + str(p['slowest_rank']):>8s} "
                     f"{rate:>8s} {_size(moved):>10s}")
    if summary.get("calls"):
        lines.append("library calls (inclusive seconds of outermost calls; phases above "
                     "include them)")
        lines.append(f"  {'call':22s} {'calls':>6s} {'min':>9s} {'mean':>9s} {'max':>9s} "
                     f"{'max/mean':>9s} {'slowest':>8s} {'longest':>9s}")
        for name, c in summary["calls"].items():
            lines.append(f"  {name:22s} {c['calls']:6d} {c['min']:9.4f} {c['mean']:9.4f} "
                         f"{c['max']:9.4f} {c['imbalance']:9.2f} "
                         f"{'rank ' + str(c['slowest_rank']):>8s} {c['longest']:9.4f}")
    return "\n".join(lines)


def _size(n: int) -> str:
    if not n:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def report(comm=None, *, file="stdout", trace: str | None = None, plot: str | None = None,
           root: int = 0) -> dict | None:
    """Gather every rank's phase times once and summarise them on ``root``. Collective.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm, optional
        Communicator (``None``: COMM_WORLD).
    file : file object, "stdout" or None
        Where ``root`` prints the text table (default: ``sys.stdout`` at the time of the
        call; ``None``: print nothing).
    trace : str, optional
        Also write a Chrome trace event file (one track per rank, phases as spans,
        each library call a span around its phases; open it in https://ui.perfetto.dev or chrome://tracing).
    plot : str, optional
        Also save a per-rank stacked bar chart of the phases (needs matplotlib; a
        warning is logged once and nothing is written without it).

    Returns
    -------
    dict or None
        On ``root``: ``{"ranks", "wall": {min, mean, max, per_rank}, "phases": {name:
        {min, mean, max, imbalance (max/mean), slowest_rank, calls, bytes_read,
        bytes_written, bytes_sent, gb_per_s, seconds (per rank)}}}``; the phase
        ``"other"`` is wall time outside every phase. ``gb_per_s`` is the bytes moved by
        all ranks in the phase over the slowest rank's time in it. ``"calls"``: per
        library call name (``"hp.quantile"``, ...) the **inclusive** seconds of its
        outermost calls: ``{calls (most calls on one rank), calls_per_rank, min, mean,
        max, imbalance, slowest_rank, longest (one call), seconds (per rank)}``, the
        largest ``max`` first. None on other ranks.
    """
    from ..comm import lib_comm

    lcomm = lib_comm(comm)
    gathered = lcomm.gather(local_record(spans=trace is not None), root=root)
    if lcomm.Get_rank() != root:
        return None
    summary = _summarize(gathered)
    if trace is not None:
        from .export import write_chrome_trace
        write_chrome_trace(trace, gathered)
    if plot is not None:
        from .export import plot_phases
        plot_phases(plot, summary)
    if file is not None:
        print(format_report(summary), file=sys.stdout if file == "stdout" else file,
              flush=True)
    return summary
