"""The ``hpcproc sort`` and ``hpcproc groupby`` commands (registered by :mod:`hpcproc.cli`).

Both read datasets of one file as the columns of a table (``hp.read_table``), run the
distributed operation and write every result column as one dataset of the output file
(``hp.write_table``; a column is named after its dataset's last path component).
"""

from __future__ import annotations

import time

from ..errors import UsageError
from .common import dumps, echo, split
from .types import parse_size

__all__ = ["add_parsers", "COMMANDS", "check_side_outputs", "column_names", "input_files",
           "run_table_command"]


def add_parsers(sub) -> None:
    so = sub.add_parser("sort", help="sort rows by a key dataset (distributed sample sort)")
    so.add_argument("target", metavar="FILE:DSET", help="key dataset, e.g. in.h5:/key")
    so.add_argument("--with", dest="extra", action="append", default=[], metavar="DSET",
                    help="another dataset of the same file moved with the key (repeatable)")
    so.add_argument("--out", required=True, help="output HDF5 file")
    so.add_argument("--descending", action="store_true")
    so.add_argument("--memory-budget", type=parse_size, help="exchange budget per rank")
    so.add_argument("--json", action="store_true", help="print a JSON summary")

    gb = sub.add_parser("groupby", help="group rows by a key dataset and aggregate values")
    gb.add_argument("input", help="input HDF5 file")
    gb.add_argument("--key", "--by", dest="key", required=True, metavar="DSET")
    gb.add_argument("--value", action="append", default=[], metavar="DSET",
                    help="value dataset (repeatable)")
    gb.add_argument("--agg", default="sum,count",
                    help="comma-separated aggregates: sum,mean,count,min,max,size")
    gb.add_argument("--out", required=True, help="output HDF5 file")
    gb.add_argument("--strategy", default="auto", choices=("auto", "dense", "hash"))
    gb.add_argument("--memory-budget", type=parse_size, help="exchange budget per rank")
    gb.add_argument("--json", action="store_true", help="print a JSON summary")
    for p in (so, gb):
        p.add_argument("--checkpoint", metavar="DIR", help="save the sorted/aggregated "
                       "table in DIR; run again, skip straight to writing --out")


def input_files(pairs, comm, named=()) -> list:
    """The files named in ``named`` and every file a read of each ``(FILE, dataset)`` of
    ``pairs`` depends on (the file behind links, VDS sources, external raw files: see
    :func:`hpcproc.io.read_files`). Collective: rank 0 looks, one broadcast."""
    from ..comm import root_call
    from ..io import read_files

    return root_call(lambda: list(dict.fromkeys(
        [*named, *(f for path, name in pairs for f in read_files(path, name))])), comm)


def check_side_outputs(args, comm) -> None:
    """Refuse ``--trace``/``--plot`` files (and ``hist --plot``) that are files named by
    any other argument (an input, ``--out``) or read behind one (``FILE:/dset`` targets,
    and a file named with dataset arguments such as ``--key``: the file links lead to,
    VDS sources, external raw files), before the command runs. Collective."""
    import os

    from ..io.write import check_output

    hist = getattr(args, "command", None) == "hist"  # its --plot is the histogram's
    sides = {"--trace": getattr(args, "trace", None),
             "--phase-plot" if hist else "--plot": getattr(args, "phase_plot", None),
             **({"--plot": getattr(args, "plot", None)} if hist else {})}
    if not any(sides.values()):
        return
    named, pairs, names = [], [], []
    for key, value in vars(args).items():
        if key in ("trace", "phase_plot") or (hist and key == "plot"):
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, (str, os.PathLike)):
                v = os.fspath(v)
                path, _, dset = v.rpartition(":")
                named += [p for p in {v, path} if p and os.path.isfile(p)]
                if path and dset and os.path.isfile(path):
                    pairs.append((path, dset))
                elif v and not os.path.exists(v):
                    names.append(v)  # perhaps a dataset of a named file (--key /k)
    pairs += [(path, name) for path in dict.fromkeys(named) for name in names]
    files = input_files(pairs, comm, named)
    for option, path in sides.items():
        if path:
            check_output(path, files, comm, option)


def column_names(datasets) -> dict:
    names = {}
    for d in datasets:
        name = d.rstrip("/").rsplit("/", 1)[-1]
        if not name:
            raise UsageError(f"bad dataset name {d!r}")
        if name in names:
            raise UsageError(f"two datasets named {name!r}: {names[name]} and {d}")
        names[name] = d
    return names


def _report(summary, args, comm) -> None:
    if args.json:
        echo(dumps(summary), comm)
        return
    t = summary["seconds"]
    rows = summary["rows"]
    rows = " + ".join(map(str, rows)) if isinstance(rows, list) else rows
    echo(f"{summary['command']} {rows} rows -> {summary['output']} "
            f"({summary['result_rows']} rows) on {summary['ranks']} ranks: read {t['read']:.3f} s, "
            f"{summary['command']} {t['compute']:.3f} s, write {t['write']:.3f} s "
            f"[{summary['strategy']}, rows per rank {summary['rank_rows']}]"
            + (" (resumed from checkpoint: wrote only)" if summary.get("resumed") else ""),
            comm)


def run_table_command(args, comm, inputs, op, command, options=None, like=None):
    """Read every ``(path, columns)`` of ``inputs`` as a table, ``op(*tables)``, write.

    Rank 0 shows a progress bar over the three steps (read, compute, write) when it
    writes to a terminal (see :mod:`hpcproc.progress`).
    """
    from .. import io
    from ..io.write import check_output
    from ..observe import progress

    t0 = time.perf_counter()
    seconds = [0.0, 0.0]
    paths = [path for path, _ in inputs]
    check_output(args.out, paths, comm)  # before anything is read or computed
    check_output(args.out, input_files([(p, d) for p, columns in inputs
                                        for d in columns.values()], comm), comm)
    nbytes = _input_bytes(inputs, comm)
    bar = progress.scan(f"{command} {' '.join(paths)}", 3 * nbytes[0], 3 * nbytes[1])

    def compute():
        tables = [io.read_table(path, columns, comm=comm) for path, columns in inputs]
        bar.update(nbytes[0])
        t1 = time.perf_counter()
        result = op(*tables)
        seconds[:] = [t1 - t0, time.perf_counter() - t1]
        return result, {"rows": [t.num_rows for t in tables],
                        "strategy": result.meta.get("strategy"),
                        "rounds": result.meta.get("rounds")}

    resumed = False
    if getattr(args, "checkpoint", None):
        from .phases import run_identity, run_phase
        ident = run_identity(command, inputs, options or {}, comm)
        result, info, resumed = run_phase(args.checkpoint, comm, ident, compute)
    else:
        result, info = compute()
    bar.update(nbytes[0] * (2 if resumed else 1))  # read (if resumed) and compute done
    t2 = time.perf_counter()
    io.write_table(args.out, result, group="/", comm=comm, like=like, same_rows=False)
    t3 = time.perf_counter()
    bar.update(nbytes[0])
    bar.close()
    slowest = [max(ts) for ts in zip(*comm.allgather((*seconds, t3 - t2)))]
    rows = info["rows"] if isinstance(info["rows"], list) else [info["rows"]]
    summary = {"command": command, "input": paths[0] if len(paths) == 1 else paths,
               "output": args.out, "rows": rows[0] if len(rows) == 1 else rows,
               "result_rows": result.num_rows, "columns": result.columns,
               "ranks": comm.Get_size(), "strategy": info["strategy"],
               "rounds": info["rounds"], "rank_rows": comm.allgather(result.local_rows),
               "seconds": dict(zip(("read", "compute", "write"), slowest))}
    if getattr(args, "checkpoint", None):
        summary["resumed"] = resumed  # True: the table came from the checkpoint
    _report(summary, args, comm)
    return 0


def _input_bytes(inputs, comm) -> tuple:
    """(bytes this rank reads, bytes of all inputs): sizes from the datasets' metadata."""
    from ..io import dataset_info
    from ..partition import block_range

    mine = total = 0
    for path, columns in inputs:
        for name in columns.values():
            info = dataset_info(path, name, comm)
            a, b = block_range(info.rows, comm.Get_size(), comm.Get_rank())
            mine += (b - a) * info.row_bytes
            total += info.rows * info.row_bytes
    return mine, total


def cmd_sort(args, comm) -> int:
    from ..shuffles import sort

    path, key = split(args.target)
    columns = column_names([key, *args.extra])
    by = next(iter(columns))
    return run_table_command(
        args, comm, [(path, columns)],
        lambda t: sort(t, by, ascending=not args.descending,
                       memory_budget=args.memory_budget), "sort",
        {"descending": bool(args.descending), "by": by},
        like={name: (path, d) for name, d in columns.items()})  # units, netCDF dims


def cmd_groupby(args, comm) -> int:
    from ..shuffles import groupby
    from ..shuffles.grouping import AGGREGATES

    aggs = [a.strip() for a in args.agg.split(",") if a.strip()]
    bad = [a for a in aggs if a not in AGGREGATES]
    if bad or not aggs:
        raise UsageError(f"--agg takes a comma-separated list of {', '.join(AGGREGATES)}; "
                         f"got {args.agg!r}")
    if not args.value and any(a != "size" for a in aggs):
        raise UsageError("--value DSET is needed for aggregates other than size")
    columns = column_names([args.key, *args.value])
    key, values = next(iter(columns)), list(columns)[1:]

    def op(t):
        g = groupby(t, key, strategy=args.strategy, memory_budget=args.memory_budget)
        return g.agg({v: aggs for v in values}) if values else g.size()

    return run_table_command(args, comm, [(args.input, columns)], op, "groupby",
                             {"agg": aggs, "strategy": args.strategy, "key": key,
                              "values": values})


COMMANDS = {"sort": cmd_sort, "groupby": cmd_groupby}
