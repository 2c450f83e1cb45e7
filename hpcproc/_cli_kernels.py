"""The ``hpcproc hist`` and ``hpcproc quantile`` commands (registered by ``cli.py``)."""

from __future__ import annotations

from ._cli_json import dumps
from ._cli_types import about, integer, real
from .errors import UsageError

__all__ = ["add_parsers", "COMMANDS"]


def add_parsers(sub, parse_size) -> None:
    from .cli import add_scan_checkpoint_options

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
        p.add_argument("--block-bytes", type=parse_size, default=64 << 20,
                       help="bytes read per rank per step (bounded memory; default 64M)")
        p.add_argument("--method", default="auto",
                       choices=("auto", "direct", "chunked", "h5py", "mpio"))
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--raw", action="store_true", help="read the stored values: no CF (netCDF) decoding of scale_factor/add_offset/_FillValue/missing_value/valid_*")


def _targets(args):
    from .io import split_target
    try:
        return [split_target(t) for t in args.targets]
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _print(text, comm):
    if comm.Get_rank() == 0:
        print(text, flush=True)


def cmd_hist(args, comm) -> int:
    from .histogram import histogram

    if args.range is not None and not args.range[0] <= args.range[1]:
        raise UsageError(f"--range MIN MAX needs MIN <= MAX, got {args.range}")
    if args.plot:
        from ._cli_observe import check_outputs
        check_outputs(comm, ("--plot", args.plot))
    results = []
    for i, (path, name) in enumerate(_targets(args)):
        extra = {}
        if args.checkpoint:
            from .checkpoint._hist import histogram_file_resumable
            counts, edges, extra = histogram_file_resumable(
                path, name, args.bins, f"{args.checkpoint}/target-{i}", range=args.range,
                comm=comm, block_bytes=args.block_bytes, method=args.method,
                every_seconds=args.checkpoint_every or None, mask_and_scale=not args.raw)
        else:
            with about(f"{path}:{name}"):
                counts, edges = histogram((path, name), args.bins, range=args.range, comm=comm,
                                          block_bytes=args.block_bytes, method=args.method,
                                          mask_and_scale=not args.raw)
        results.append({"target": f"{path}:{name}", "counts": counts.tolist(),
                        "edges": [float(e) for e in edges], **extra})
    if args.plot and comm.Get_rank() == 0:
        _plot(results, args.plot)
    if args.json:
        _print(dumps(results if len(results) > 1 else results[0]), comm)
        return 0
    lines = []
    for r in results:
        lines.append(f"{r['target']}  ({sum(r['counts'])} values in range)")
        lines += _bars(r["counts"], r["edges"])
    _print("\n".join(lines), comm)
    return 0


def _bars(c, e) -> list:
    top = max(c, default=0) or 1
    return [f"  [{e[i]:>12.6g}, {e[i + 1]:>12.6g}{']' if i == len(c) - 1 else ')'} {n:>12d} "
            f"{'#' * round(40 * n / top)}" for i, n in enumerate(c)]


def cmd_describe(args, comm, targets) -> int:
    """``hpcproc stats --hist BINS``: statistics and histogram from one read
    (:func:`hpcproc.describe`)."""
    import time

    from .cli import _fmt
    from .compute.describe import describe

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
        _print(dumps(results if len(results) > 1 else results[0]), comm)
        return 0
    lines = []
    for r in results:
        lines.append(r["target"])
        lines += [f"  {k:8s} {_fmt(r[k])}" for k in ("count", "sum", "mean", "std", "min", "max")]
        if args.timings:
            lines.append(f"  time     {r['seconds']:.3f} s ({r['passes']} read"
                         f"{'s' if r['passes'] > 1 else ''} of the data)")
        lines.append(f"  histogram ({sum(r['counts'])} values in range)")
        lines += _bars(r["counts"], r["edges"])
    _print("\n".join(lines), comm)
    return 0


def _plot(results, out) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ._log import get_logger, warn_once
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
    from .quantile import quantile

    results = []
    for path, name in _targets(args):
        with about(f"{path}:{name}"):
            v = quantile((path, name), list(args.q), method="sketch" if args.sketch else "exact",
                         rel_err=args.rel_err, comm=comm, block_bytes=args.block_bytes,
                         read_method=args.method, mask_and_scale=not args.raw)
        results.append({"target": f"{path}:{name}", "q": list(args.q),
                        "values": [float(x) for x in v],
                        "method": "sketch" if args.sketch else "exact"})
    if args.json:
        _print(dumps(results if len(results) > 1 else results[0]), comm)
        return 0
    lines = []
    for r in results:
        lines.append(r["target"] + ("  (sketch, relative error <= %g)" % args.rel_err
                                    if args.sketch else ""))
        lines += [f"  q={q:<8g} {v:.17g}" for q, v in zip(r["q"], r["values"])]
    _print("\n".join(lines), comm)
    return 0


COMMANDS = {"hist": cmd_hist, "quantile": cmd_quantile}
