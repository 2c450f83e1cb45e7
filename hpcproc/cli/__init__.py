"""The ``hpcproc`` command (also ``python -m hpcproc``).

Run it alone (one rank) or under ``mpiexec -n N`` / ``srun``. Every rank parses the same
arguments and runs the same job; only rank 0 prints results. An error on any rank ends
the whole job with one message and a non-zero exit status (see
:func:`hpcproc.abort.abort_on_error`). This is the only module that names COMM_WORLD.

One module per command group: :mod:`.files` (info, ls, generate), :mod:`.stats` (stats,
hist, quantile), :mod:`.ckpt`, :mod:`.shuffle` (sort, groupby), :mod:`.join`, :mod:`.data`
(lineage, validate, diff); each has ``add_parsers(sub)`` and ``COMMANDS``. Shared helpers:
:mod:`.common`, :mod:`.types` (argparse types), :mod:`.observe` (-v/--trace/--json...).
"""

from __future__ import annotations

import argparse
import gc
import sys

from .. import __version__
from ..errors import UsageError
from .types import parse_count, parse_size

__all__ = ["main", "run", "build_parser", "commands", "parse_size", "parse_count"]


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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hpcproc", description="MPI-parallel processing of HDF5 datasets. "
                "Run under mpiexec/srun for several ranks.")
    p.add_argument("--version", action="version", version=f"hpcproc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in _groups():
        group.add_parsers(sub)
    return p


def _groups() -> list:
    """The command modules, in ``--help`` order."""
    from . import ckpt, data, files, join, shuffle, stats
    return [files, stats, ckpt, shuffle, join, data]


def commands() -> dict:
    """Command name -> ``function(args, comm) -> exit status``."""
    return {name: fn for group in _groups() for name, fn in group.COMMANDS.items()}


def _with_global_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .observe import add_global_options
    add_global_options(p)  # -v -q --trace --plot --no-progress, on every subcommand
    return p


def main(argv=None) -> int:
    """Entry point of the ``hpcproc`` command. Returns the exit status."""
    from mpi4py import MPI

    from ..abort import abort_on_error
    from ..agreement import agree

    comm = MPI.COMM_WORLD
    with abort_on_error(comm):
        args = _with_global_options(build_parser()).parse_args(argv)
        # ranks started with different command lines (MPMD launches, a typo in a batch
        # script) fail together, naming the option, before anything is read or written
        agree(comm, f"hpcproc {args.command}", vars(args))
        from .observe import run_observed
        return run_observed(commands()[args.command], args, comm)
    return 1  # not reached: abort_on_error exits on errors


def _early_signals(argv) -> None:
    """Before MPI and the imports: with ``--checkpoint``, remember SIGUSR1/SIGTERM until
    the command's Checkpointer acts on them (without it they keep their default action);
    SIGINT always ends the job, even if Python swallows its ``KeyboardInterrupt``."""
    from ..checkpoint._triggers import install_interrupt_guard, install_signal_handlers

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
