"""The ``hpcproc`` command (also ``python -m hpcproc``).

Run it alone (one rank) or under ``mpiexec -n N`` / ``srun``. Every rank parses the same
arguments and runs the same job; only rank 0 prints results. An error on any rank ends
the whole job with one message and a non-zero exit status (see
:func:`hpcproc.comm.abort_on_error`). This is the only module that names COMM_WORLD.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time

from . import __version__
from . import _cli_types as types
from ._cli_json import dumps
from .errors import UsageError

#: argparse type of ``--block-bytes`` and the other positive sizes (``64M``, ``1.5G``)
parse_size = types.size(1)
#: argparse type of row counts (``10M``, ``2^20``)
parse_count = types.count(0)


class _Parser(argparse.ArgumentParser):
    """argparse that raises (printed once by the abort guard) instead of exiting per rank."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def _print_message(self, message, file=None):
        if _rank() == 0 and message:
            (file or sys.stdout).write(message)


def _rank() -> int:
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank()


def add_scan_checkpoint_options(p) -> None:
    """--checkpoint/--checkpoint-every of the streaming scans (stats, hist)."""
    p.add_argument("--checkpoint", metavar="DIR", help="save progress in DIR and resume "
                   "from it when run again (one sub-directory per target)")
    p.add_argument("--checkpoint-every", type=types.real(0), default=60.0, metavar="SECONDS",
                   help="seconds between checkpoints (0: after every block; default 60)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hpcproc", description="MPI-parallel processing of HDF5 datasets. "
                "Run under mpiexec/srun for several ranks.")
    p.add_argument("--version", action="version", version=f"hpcproc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="versions, MPI library, ranks, parallel HDF5; "
                                       "with FILE: its datasets (as 'hpcproc ls')")
    info.add_argument("file", nargs="?", metavar="FILE", help="list this file's datasets")
    info.add_argument("group", nargs="?", metavar="GROUP", help="only under this group")
    info.add_argument("--json", action="store_true", help="print JSON")
    from ._cli_ls import add_parser as add_ls_parser
    add_ls_parser(sub)  # ls

    gen = sub.add_parser("generate", help="write a synthetic dataset (fixed seed)")
    gen.add_argument("output", help="output HDF5 file")
    gen.add_argument("--kind", default="normal", choices=("normal", "uniform", "zipf", "particles"))
    size = gen.add_mutually_exclusive_group()
    size.add_argument("--rows", type=parse_count, help="number of rows (e.g. 10M, 2^20)")
    size.add_argument("--bytes", type=types.size(0), help="total size instead of rows (e.g. 1G)")
    gen.add_argument("--cols", type=types.integer(1), default=1,
                     help="columns of /x for kind normal")
    gen.add_argument("--keys", type=types.count(1), default=1 << 20,
                     help="key range (uniform, zipf)")
    gen.add_argument("--zipf-a", type=types.real(1, open_low=True), default=1.2,
                     help="Zipf exponent (> 1)")
    gen.add_argument("--seed", type=types.integer(0), default=0, help="random seed (>= 0)")
    gen.add_argument("--chunks", type=types.count(1), help="chunk length in rows (chunked layout)")
    gen.add_argument("--compression", choices=("gzip",), help="compress (implies chunks)")
    gen.add_argument("--json", action="store_true", help="print JSON")

    st = sub.add_parser("stats", help="count, sum, mean, std, min, max of datasets")
    st.add_argument("targets", nargs="+", metavar="FILE:DSET", help="e.g. data.h5:/x")
    st.add_argument("--block-bytes", type=parse_size, default=64 << 20,
                    help="bytes read per rank per step (bounded memory; default 64M)")
    st.add_argument("--method", default="auto", choices=("auto", "direct", "chunked", "h5py", "mpio"))
    st.add_argument("--ddof", type=types.integer(0), default=0,
                    help="delta degrees of freedom for std")
    st.add_argument("--timings", action="store_true", help="print read/compute times")
    st.add_argument("--exact", action="store_true", help="correctly rounded sum/mean/var "
                    "(exact sums; slower; the default is already bit-identical for any "
                    "rank count and block size)")
    st.add_argument("--raw", action="store_true", help="read the stored values: no CF (netCDF) decoding of scale_factor/add_offset/_FillValue/missing_value/valid_*")
    st.add_argument("--json", action="store_true", help="print JSON")
    add_scan_checkpoint_options(st)

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

    from ._cli_kernels import add_parsers as add_kernel_parsers
    from ._cli_shuffle import add_parsers as add_shuffle_parsers
    add_kernel_parsers(sub, parse_size)  # hist, quantile
    add_shuffle_parsers(sub, parse_size)  # sort, groupby
    from ._cli_join import add_parser as add_join_parser
    add_join_parser(sub, parse_size)  # join
    from ._cli_data import add_parsers as add_data_parsers
    add_data_parsers(sub, parse_size)  # lineage, validate, diff
    return p


def _with_global_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from ._cli_observe import add_global_options
    add_global_options(p)  # -v -q --trace --plot --no-progress, on every subcommand
    return p


def _print(text: str, comm) -> None:
    if comm.Get_rank() == 0:
        try:
            print(text, flush=True)
        except BrokenPipeError:  # `hpcproc ... | head`: the reader left, not an error
            sys.stdout = open(os.devnull, "w")


def cmd_info(args, comm) -> int:
    if args.file is not None:  # `hpcproc info FILE` lists the file, as `hpcproc ls FILE`
        return cmd_ls(args, comm)
    import h5py
    import mpi4py
    import numba
    import numpy
    from mpi4py import MPI

    info = {
        "hpcproc": __version__, "python": sys.version.split()[0], "numpy": numpy.__version__,
        "numba": numba.__version__, "numba_threading_layer": numba.config.THREADING_LAYER,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "h5py": h5py.version.version, "hdf5": h5py.version.hdf5_version,
        "h5py_parallel": bool(h5py.get_config().mpi), "mpi4py": mpi4py.__version__,
        "mpi_library": MPI.Get_library_version().splitlines()[0].strip(),
        "mpi_standard": "%d.%d" % MPI.Get_version(), "ranks": comm.Get_size(),
        "nodes": len(set(comm.allgather(MPI.Get_processor_name()))),
    }
    if args.json:
        _print(dumps(info), comm)
    else:
        _print("\n".join(f"{k:22s} {v}" for k, v in info.items()), comm)
    return 0


def cmd_generate(args, comm) -> int:
    from .generate import generate, row_bytes

    if args.rows is None and args.bytes is None:
        args.rows = 1 << 20
    rows = args.rows if args.rows is not None else args.bytes // row_bytes(args.kind, args.cols)
    if ":/" in args.output and not os.path.exists(os.path.dirname(args.output) or "."):
        raise UsageError(f"generate writes a whole file (its datasets are named by --kind): "
                         f"give a file name, not {args.output!r}")
    from ._cli_observe import check_outputs
    check_outputs(comm, ("output", args.output))  # before generating anything
    chunks = None
    if args.chunks or args.compression:
        chunks = True if not args.chunks else (args.chunks,) + ((args.cols,) if args.kind == "normal"
                                                                 and args.cols > 1 else ())
    t0 = time.perf_counter()
    shapes = generate(args.output, args.kind, rows, cols=args.cols, seed=args.seed,
                      keys=args.keys, zipf_a=args.zipf_a, comm=comm, chunks=chunks,
                      compression=args.compression)
    elapsed = time.perf_counter() - t0
    nbytes = rows * row_bytes(args.kind, args.cols)
    out = {"file": args.output, "datasets": {k: list(v) for k, v in shapes.items()},
           "bytes": nbytes, "seconds": elapsed, "ranks": comm.Get_size()}
    if args.json:
        _print(dumps(out), comm)
    else:
        lines = [f"wrote {args.output}: {nbytes / 2**20:.1f} MiB in {elapsed:.2f} s "
                 f"({nbytes / 2**30 / max(elapsed, 1e-9):.2f} GiB/s) on {comm.Get_size()} ranks"]
        lines += [f"  {k}  shape {tuple(v)}" for k, v in shapes.items()]
        _print("\n".join(lines), comm)
    return 0


def _fmt(v) -> str:
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    return f"{v:.10g}"


def cmd_stats(args, comm) -> int:
    from .io import split_target
    from .stats import stats_file

    try:
        targets = [split_target(t) for t in args.targets]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.exact and args.checkpoint:
        raise UsageError("--exact cannot be combined with --checkpoint")
    results = []
    for i, (path, name) in enumerate(targets):
        if args.checkpoint:
            from .checkpoint._stats import stats_file_resumable
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
        _print(dumps(results if len(results) > 1 else results[0]), comm)
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
    _print("\n".join(lines), comm)
    return 0


def cmd_sort(args, comm) -> int:
    from ._cli_shuffle import cmd_sort as run
    return run(args, comm, _print)


def cmd_groupby(args, comm) -> int:
    from ._cli_shuffle import cmd_groupby as run
    return run(args, comm, _print)


def cmd_join(args, comm) -> int:
    from ._cli_join import cmd_join as run
    return run(args, comm, _print)


def cmd_ls(args, comm) -> int:
    from ._cli_ls import cmd_ls as run
    return run(args, comm)


def cmd_ckpt(args, comm) -> int:
    from .checkpoint._cli import cmd_ckpt as run
    return run(args, comm)


COMMANDS = {"info": cmd_info, "ls": cmd_ls, "generate": cmd_generate, "stats": cmd_stats,
            "ckpt": cmd_ckpt, "sort": cmd_sort, "groupby": cmd_groupby, "join": cmd_join}


def _kernel_commands():
    from ._cli_data import COMMANDS as data
    from ._cli_kernels import COMMANDS as more
    return {**more, **data}


COMMANDS.update(_kernel_commands())


def main(argv=None) -> int:
    """Entry point of the ``hpcproc`` command. Returns the exit status."""
    from mpi4py import MPI

    from .comm import abort_on_error, agree

    comm = MPI.COMM_WORLD
    with abort_on_error(comm):
        args = _with_global_options(build_parser()).parse_args(argv)
        # ranks started with different command lines (MPMD launches, a typo in a batch
        # script) fail together, naming the option, before anything is read or written
        agree(comm, f"hpcproc {args.command}", vars(args))
        from ._cli_observe import run_observed
        return run_observed(COMMANDS[args.command], args, comm)
    return 1  # not reached: abort_on_error exits on errors


def _early_signals(argv) -> None:
    """Before MPI and the imports: with ``--checkpoint``, remember SIGUSR1/SIGTERM until
    the command's Checkpointer acts on them (without it they keep their default action);
    SIGINT always ends the job, even if Python swallows its ``KeyboardInterrupt``."""
    from .checkpoint._triggers import install_interrupt_guard, install_signal_handlers

    if any(a == "--checkpoint" or a.startswith("--checkpoint=") for a in argv):
        install_signal_handlers()
    install_interrupt_guard()


def run() -> None:
    """Console entry point (``hpcproc`` and ``python -m hpcproc``): exit with :func:`main`'s status.

    The interpreter exits normally (MPI_Finalize, atexit handlers, buffered output), but
    the cyclic garbage collections of interpreter shutdown are skipped: with Numba's
    compiled-function objects loaded they took 0.5-1 s per rank at every job end. All
    files and communicators are closed explicitly before this point. (Ending with
    ``os._exit`` after ``MPI_Finalize`` was tried first; with PyPI's MPICH it made one
    rank in ~10 3-rank jobs die with SIGKILL at exit.)
    """
    _early_signals(sys.argv[1:])
    try:
        status = main()
    finally:  # also for SystemExit (usage errors, exit 85 after a checkpoint)
        gc.freeze()  # shutdown then frees objects by reference count only
    raise SystemExit(status)


if __name__ == "__main__":
    run()
