"""The statistics commands: ``hpcproc stats``, ``hpcproc hist`` and ``hpcproc quantile``."""

from __future__ import annotations

import math

from ..errors import UsageError
from .common import add_read_options, add_scan_checkpoint_options, dumps, echo, split
from .types import about, integer, parse_size, real

__all__ = ["add_parsers", "COMMANDS"]


def add_parsers(sub) -> None:
    st = sub.add_parser("stats", help="count, sum, mean, std, min, max of datasets")
    st.add_argument("targets", nargs="+", metavar="FILE:DSET", help="e.g. data.h5:/x")
    st.add_argument("--ddof", type=integer(0), default=0,
                    help="delta degrees of freedom for std")
    st.add_argument("--timings", action="store_true", help="print read/compute times")
    st.add_argument("--exact", action="store_true", help="correctly rounded sum/mean/var "
                    "(exact sums; slower; the default is already bit-identical for any "
                    "rank count and block size)")
    st.add_argument("--hist", type=integer(1), metavar="BINS", help="also a BINS-bin "
                    "histogram (hp.describe): over --range in the same read, else over "
                    "[min, max] (a second read)")
    st.add_argument("--range", type=real(), nargs=2, metavar=("MIN", "MAX"),
                    help="with --hist: the histogram range (one read of the data)")
    add_read_options(st, parse_size)
    add_scan_checkpoint_options(st)

    h = sub.add_parser("hist", help="histogram of datasets (identical to numpy's)")
    h.add_argument("targets", nargs="+", metavar="FILE:DSET", help="e.g. data.h5:/x")
    h.add_argument("--bins", type=integer(1), default=64, help="number of bins (default 64)")
    h.add_argument("--range", type=real(), nargs=2, metavar=("MIN", "MAX"),
                   help="histogram range (default: the data's min and max)")
    h.add_argument("--plot", metavar="OUT.png", help="also save a bar plot (matplotlib)")
    add_scan_checkpoint_options(h)
    q = sub.add_parser("quantile", help="exact (or sketched) quantiles of datasets")
    q.add_argument("targets", nargs="+", metavar="FILE:DSET", help="e.g. data.h5:/x")
    q.add_argument("-q", "--q", type=real(0, 1), nargs="+", default=[0.5], metavar="Q",
                   help="quantiles in [0, 1] (default 0.5)")
    q.add_argument("--sketch", action="store_true",
                   help="one-pass sketch (relative error --rel-err) instead of exact")
    q.add_argument("--rel-err", type=real(0, 1, open_low=True, open_high=True), default=0.01,
                   help="sketch accuracy, in (0, 1) (default 0.01)")
    for p in (h, q):
        add_read_options(p, parse_size)


def _fmt(v) -> str:
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    return f"{v:.10g}"


def cmd_stats(args, comm) -> int:
    from ..compute.stats import stats_file

    targets = [split(t) for t in args.targets]
    if args.exact and args.checkpoint:
        raise UsageError("--exact cannot be combined with --checkpoint")
    if args.hist or args.range:
        return cmd_describe(args, comm, targets)
    results = []
    for i, (path, name) in enumerate(targets):
        if args.checkpoint:
            from ..compute.resumable_stats import stats_file_resumable
            r = stats_file_resumable(path, name, f"{args.checkpoint}/target-{i}", comm=comm,
                                     block_bytes=args.block_bytes, method=args.method,
                                     ddof=args.ddof, every_seconds=args.checkpoint_every or None,
                                     mask_and_scale=not args.raw)
        else:
            r = stats_file(path, name, comm=comm, block_bytes=args.block_bytes,
                           method=args.method, ddof=args.ddof, mask_and_scale=not args.raw,
                           exact=args.exact)
        results.append({"target": f"{path}:{name}", **r})
    if args.json:
        echo(dumps(results if len(results) > 1 else results[0]), comm)
        return 0
    keys = ("count", "sum", "mean", "std", "min", "max")
    lines = []
    for r in results:
        lines.append(r["target"])
        lines += [f"  {k:8s} {_fmt(r[k])}" for k in keys]
        if args.timings:
            t = r["timings"]
            rate = r["bytes"] / 2**30 / max(t["total"], 1e-9)
            lines.append(f"  time     {t['total']:.3f} s total (read {t['read']:.3f} s, compute "
                         f"{t['compute']:.3f} s, kernel compile/load {t['compile']:.3f} s; "
                         f"slowest rank) {rate:.2f} GiB/s on {comm.Get_size()} ranks")
            busy = max(t["total"] - t["compile"], 1e-9)
            lines.append(f"           {r['bytes'] / 2**30 / busy:.2f} GiB/s without the one-time "
                         f"kernel compile/load")
    echo("\n".join(lines), comm)
    return 0


def cmd_hist(args, comm) -> int:
    import numpy as np

    from ..compute.histogram import histogram

    if args.range is not None and not args.range[0] <= args.range[1]:
        raise UsageError(f"--range MIN MAX needs MIN <= MAX, got {args.range}")
    if args.plot:
        from .observe import check_outputs
        check_outputs(comm, ("--plot", args.plot))
    results = []
    for i, (path, name) in enumerate([split(t) for t in args.targets]):
        extra = {}
        if args.checkpoint:
            from ..compute.resumable_hist import histogram_file_resumable
            counts, edges, extra = histogram_file_resumable(
                path, name, args.bins, f"{args.checkpoint}/target-{i}", range=args.range,
                comm=comm, block_bytes=args.block_bytes, method=args.method,
                every_seconds=args.checkpoint_every or None, mask_and_scale=not args.raw)
        else:
            with about(f"{path}:{name}"):
                counts, edges = histogram((path, name), args.bins, range=args.range, comm=comm,
                                          block_bytes=args.block_bytes, method=args.method,
                                          mask_and_scale=not args.raw)
        results.append({"target": f"{path}:{name}", "counts": counts,
                        "edges": np.asarray(edges, dtype=np.float64), **extra})
    if comm.Get_rank() != 0:  # only rank 0 prints: 10**7 bins need no text on the others
        return 0
    if args.plot:
        _plot(results, args.plot)
    if args.json:
        echo(dumps(results if len(results) > 1 else results[0]), comm)
        return 0
    lines = []
    for r in results:
        lines.append(f"{r['target']}  ({int(r['counts'].sum())} values in range)")
        lines += _bars(r["counts"], r["edges"])
    echo("\n".join(lines), comm)
    return 0


#: Most bins the text view lists (``--json`` has them all).
MAX_BARS = 200


def _digits(e, shown) -> int:
    """Significant digits (6 or more) that print the edges of every shown bin apart:
    narrow bins far from zero (``--bins 1000000``) all read ``[2, 2)`` with 6."""
    for p in range(6, 17):
        if all(f"{e[i]:.{p}g}" != f"{e[i + 1]:.{p}g}" for i in shown if e[i] != e[i + 1]):
            return p
    return 17


def _bars(c, e) -> list:
    """The text view of a histogram (``c`` counts, ``e`` edges: numpy arrays): one bar
    per bin; with more than :data:`MAX_BARS` bins, the non-empty ones only, and of those
    the first and last ``MAX_BARS // 2``. Work and memory grow with the bins shown, not
    with ``len(c)`` (numpy does the scan of 10**7 bins)."""
    import numpy as np

    c, e = np.asarray(c), np.asarray(e, dtype=np.float64)
    top = int(c.max()) if c.size and c.max() > 0 else 1
    shown = np.arange(c.size) if c.size <= MAX_BARS else np.flatnonzero(c)
    nonempty = shown.size
    half = MAX_BARS // 2
    cut = shown.size - 2 * half if shown.size > MAX_BARS else 0
    if cut:
        shown = np.concatenate([shown[:half], shown[-half:]])
    shown = shown.tolist()
    p = _digits(e, shown)
    lines = [f"  [{e[i]:>12.{p}g}, {e[i + 1]:>12.{p}g}{']' if i == c.size - 1 else ')'} "
             f"{int(c[i]):>12d} {'#' * round(40 * int(c[i]) / top)}" for i in shown]
    if cut:
        lines.insert(half, f"  ... {cut} more non-empty bins (--json lists every bin)")
    if c.size > MAX_BARS:
        lines.append(f"  ({c.size} bins; {c.size - nonempty} empty ones not "
                     "listed: --json lists every bin)")
    return lines


def cmd_describe(args, comm, targets) -> int:
    """``hpcproc stats --hist BINS``: statistics and histogram from one read
    (:func:`hpcproc.describe`)."""
    import time

    from ..compute.describe import describe

    if not args.hist:
        raise UsageError("--range needs --hist BINS")
    if args.range is not None and not args.range[0] <= args.range[1]:
        raise UsageError(f"--range MIN MAX needs MIN <= MAX, got {args.range}")
    if args.checkpoint:
        raise UsageError("--hist cannot be combined with --checkpoint")
    results = []
    for path, name in targets:
        t0 = time.perf_counter()
        with about(f"{path}:{name}"):
            r = describe((path, name), args.hist, args.range, ddof=args.ddof, comm=comm,
                         block_bytes=args.block_bytes, method=args.method,
                         mask_and_scale=not args.raw, exact=args.exact)
        results.append({"target": f"{path}:{name}", **r,
                        "seconds": comm.allreduce(time.perf_counter() - t0, op=max)})
    if args.json:
        echo(dumps(results if len(results) > 1 else results[0]), comm)
        return 0
    lines = []
    for r in results:
        lines.append(r["target"])
        lines += [f"  {k:8s} {_fmt(r[k])}" for k in ("count", "sum", "mean", "std", "min", "max")]
        if args.timings:
            lines.append(f"  time     {r['seconds']:.3f} s ({r['passes']} read"
                         f"{'s' if r['passes'] > 1 else ''} of the data)")
        lines.append(f"  histogram ({int(r['counts'].sum())} values in range)")
        lines += _bars(r["counts"], r["edges"])
    echo("\n".join(lines), comm)
    return 0


def _plot(results, out) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..observe.log import get_logger, warn_once
        warn_once(get_logger(__name__), "--plot needs matplotlib (not installed); skipped")
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    for r in results:
        ax.stairs(r["counts"], r["edges"], label=r["target"])
    ax.set_xlabel("value")
    ax.set_ylabel("count")
    ax.legend()
    fig.savefig(out, dpi=100, bbox_inches="tight")


def cmd_quantile(args, comm) -> int:
    from ..compute.quantile import quantile

    results = []
    for path, name in [split(t) for t in args.targets]:
        with about(f"{path}:{name}"):
            v = quantile((path, name), list(args.q), method="sketch" if args.sketch else "exact",
                         rel_err=args.rel_err, comm=comm, block_bytes=args.block_bytes,
                         read_method=args.method, mask_and_scale=not args.raw)
        results.append({"target": f"{path}:{name}", "q": list(args.q),
                        "values": [float(x) for x in v],
                        "method": "sketch" if args.sketch else "exact"})
    if args.json:
        echo(dumps(results if len(results) > 1 else results[0]), comm)
        return 0
    lines = []
    for r in results:
        lines.append(r["target"] + ("  (sketch, relative error <= %g)" % args.rel_err
                                    if args.sketch else ""))
        lines += [f"  q={q:<8g} {v:.17g}" for q, v in zip(r["q"], r["values"])]
    echo("\n".join(lines), comm)
    return 0


COMMANDS = {"stats": cmd_stats, "hist": cmd_hist, "quantile": cmd_quantile}
