"""Exports of gathered phase records: Chrome trace event file and per-rank bar chart."""

from __future__ import annotations

import json
import os

__all__ = ["write_chrome_trace", "chrome_trace_events", "plot_phases"]


def chrome_trace_events(gathered: list) -> list:
    """Trace events (Chrome's "Trace Event Format") for every rank's spans.

    One track per rank (``pid`` = ``tid`` = rank, named ``rank r``); every phase (category
    ``hpcproc``) and every outermost library call (category ``call``, e.g. ``hp.quantile``,
    enclosing the phases it ran) is a complete ("X") event with microsecond ``ts``/``dur``;
    ranks are aligned on their wall clocks when tracing started.
    """
    base = min(r["epoch"] for r in gathered)
    events = []
    for rank, rec in enumerate(gathered):
        events.append({"name": "process_name", "ph": "M", "pid": rank, "tid": rank,
                       "args": {"name": f"rank {rank}"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": rank, "tid": rank,
                       "args": {"sort_index": rank}})
        events.append({"name": "thread_name", "ph": "M", "pid": rank, "tid": rank,
                       "args": {"name": f"rank {rank}"}})
        shift = (rec["epoch"] - base) * 1e6
        spans = [(s[0], s[1], s[2], s[4], s[5], s[6], "hpcproc") for s in rec["spans"] or ()]
        spans += [(c[0], c[1], c[2], 0, 0, 0, "call") for c in rec.get("call_spans") or ()]
        spans.sort(key=lambda s: (s[1], -s[2]))  # an enclosing span first
        for name, start, stop, nread, nwritten, nsent, cat in spans:
            args = {k: v for k, v in (("bytes_read", nread), ("bytes_written", nwritten),
                                      ("bytes_sent", nsent)) if v}
            events.append({"name": name, "cat": cat, "ph": "X", "pid": rank,
                           "tid": rank, "ts": round(shift + start * 1e6, 3),
                           "dur": round((stop - start) * 1e6, 3), "args": args})
    return events


def write_chrome_trace(path, gathered: list) -> None:
    """Write the trace events to ``path`` as JSON (atomically: temporary name, rename)."""
    doc = {"traceEvents": chrome_trace_events(gathered), "displayTimeUnit": "ms",
           "otherData": {"producer": "hpcproc", "ranks": len(gathered),
                         "dropped_spans": sum(r["dropped"] for r in gathered)}}
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


_COLORS = {"read": "#4C72B0", "compute": "#55A868", "exchange": "#C44E52", "write": "#8172B2",
           "checkpoint": "#CCB974", "wait": "#DD8452", "compile": "#937860", "other": "#BBBBBB"}


def plot_phases(path, summary: dict) -> bool:
    """Save a horizontal stacked bar per rank (exclusive seconds per phase) to ``path``.

    Returns False (and logs one warning) when matplotlib is not installed.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from .log import get_logger
        get_logger(__name__).warning("the phase plot needs matplotlib (pip install "
                                     "matplotlib); %s not written", path)
        return False
    ranks = summary["ranks"]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.35 * min(ranks, 64)))
    left = [0.0] * ranks
    extra = ["#64B5CD", "#8C8C8C", "#E377C2", "#17BECF", "#BCBD22"]
    for i, (name, p) in enumerate(summary["phases"].items()):
        secs = p["seconds"]
        color = _COLORS.get(name, extra[i % len(extra)])
        ax.barh(range(ranks), secs, left=left, color=color, label=name, height=0.7,
                edgecolor="white", linewidth=0.5)
        left = [a + b for a, b in zip(left, secs)]
    ax.set_yticks(range(ranks), [f"rank {r}" for r in range(ranks)]
                  if ranks <= 64 else None)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (exclusive time per phase)")
    worst = max(summary["phases"].items(), key=lambda kv: kv[1]["max"] if kv[0] != "other"
                else -1)
    ax.set_title(f"hpcproc phases per rank (wall {summary['wall']['max']:.2f} s; "
                 f"largest phase {worst[0]!r}, max/mean {worst[1]['imbalance']:.2f})",
                 fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if ranks < 4 else -0.12),
              ncol=min(7, len(summary["phases"])), frameon=False, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True
