"""Options every ``hpcproc`` command shares, and what they switch on around a command.

``-v/--verbose``, ``-q/--quiet``, ``--trace FILE``, ``--plot FILE`` (``--phase-plot``) and
``--no-progress`` are added to the main parser and to every subcommand (after all of them
are registered, so commands defined in other modules get them too). Around the command:
logging (:mod:`hpcproc._log`), phase timing and the end-of-run report
(:mod:`hpcproc.observe.report`, gathered once at the end) and rank 0's progress bar
(:mod:`hpcproc.progress`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys

from ..errors import UsageError
from .common import dumps, echo

__all__ = ["add_global_options", "run_observed", "check_outputs"]

# (option strings, keyword arguments, default on the main parser)
_OPTIONS = (
    (("-v", "--verbose"), dict(action="count", help="more output: -v logs info and prints the "
                               "per-phase report, -vv debug of every rank"), 0),
    (("-q", "--quiet"), dict(action="store_true", help="only errors (no report, no progress)"),
     False),
    (("--trace",), dict(metavar="FILE", help="write a Chrome trace (one track per rank; open "
                                            "in ui.perfetto.dev)"), None),
    (("--plot", "--phase-plot"), dict(dest="phase_plot", metavar="FILE",
                                      help="save a per-rank stacked bar of the phases "
                                           "(needs matplotlib)"), None),
    (("--no-progress",), dict(action="store_true", dest="no_progress",
                              help="no progress bar (it is off anyway when output is not a "
                                   "terminal)"), False),
)


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.values()


def add_global_options(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """Add the shared options to ``parser`` and, recursively, to its subcommands.

    On subcommands the defaults are suppressed (so ``hpcproc -v stats ...`` and
    ``hpcproc stats ... -v`` both work) and option strings a subcommand already uses
    keep their meaning there (``hist --plot`` plots the histogram, ``quantile -q``
    takes quantiles): there the long aliases ``--phase-plot`` and ``--quiet`` remain.
    """
    taken = parser._option_string_actions
    for flags, kwargs, default in _OPTIONS:
        free = [f for f in flags if f not in taken]
        if free:
            parser.add_argument(*free, **kwargs,
                                default=default if top else argparse.SUPPRESS)
    for sub in _subparsers(parser):
        add_global_options(sub, top=False)


def _unwritable(path: str) -> str | None:
    """Why a file cannot be written at ``path`` (None if it can). Local, no MPI."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "is a directory"
    if not os.path.isdir(parent):
        return f"directory does not exist: {os.path.dirname(path) or parent}"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "exists and is not writable"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory is not writable: {os.path.dirname(path) or parent}"
    return None


def check_outputs(comm, *options) -> None:
    """Check, before any work, that rank 0 can write every ``(option, path)`` given.

    Collective (one broadcast; rank 0 looks at the file system). Raises the same
    ``OSError`` on every rank, naming the option and the path, when one cannot be written
    (results are never printed and then followed by an error about a report file).
    """
    from ..comm import root_call

    wanted = [(opt, path) for opt, path in options if path is not None]
    if not wanted:
        return

    def check():
        for opt, path in wanted:
            why = _unwritable(path)
            if why:
                raise OSError(f"{opt} {path}: cannot write there ({why})")
    root_call(check, comm)


def check_outside_checkpoint(args) -> None:
    """Refuse an output file (``--out``, ``--trace``, ``--plot``) inside the ``--checkpoint``
    directory: it could replace a step's file that a resume reads. Same on every rank."""
    directory = getattr(args, "checkpoint", None)
    if not directory:
        return
    top = os.path.realpath(directory)
    for opt, value in (("--out", getattr(args, "out", None)), ("--trace", args.trace),
                       ("--plot", args.phase_plot)):
        if value and os.path.commonpath([top, os.path.realpath(value)]) == top:
            raise UsageError(f"{opt} {value} is inside the --checkpoint directory "
                             f"{directory}: write it elsewhere")


def run_observed(command, args, comm) -> int:
    """Run ``command(args, comm)`` with logging, phase timing, report and progress."""
    from ..observe import log as _log
    from ..observe import phases, progress
    from ..observe.report import format_report, report
    from .shuffle import check_side_outputs

    hist = args.command == "hist"  # hist's own --plot is the histogram
    check_outputs(comm, ("--trace", args.trace),
                  ("--phase-plot" if hist else "--plot", args.phase_plot),
                  *([("--plot", args.plot)] if hist else []))
    check_side_outputs(args, comm)  # a --trace/--plot file never replaces an input
    check_outside_checkpoint(args)
    verbosity = -1 if args.quiet else args.verbose
    _log.configure(verbosity)
    rank = comm.Get_rank()
    as_json = bool(getattr(args, "json", False))
    timed = verbosity > 0 or as_json or args.trace is not None or args.phase_plot is not None
    if timed:
        phases.start_tracing()
    interval = progress.interval_from_env()  # on every rank: a bad value is agreed
    if progress.should_enable(rank, args.no_progress, args.quiet):
        progress.enable(sys.stderr, interval)
    _log.get_logger("hpcproc.cli").info("%s on %d ranks", args.command, comm.Get_size())
    captured = io.StringIO() if timed and as_json and rank == 0 else None
    try:
        with contextlib.redirect_stdout(captured) if captured else contextlib.nullcontext():
            status = command(args, comm)
    finally:
        progress.disable()
    if not timed:
        return status
    phases.stop_tracing()
    summary = report(comm, file=None, trace=args.trace, plot=args.phase_plot)
    if rank != 0:
        return status
    if verbosity > 0:
        print(format_report(summary), file=sys.stderr, flush=True)
    if captured is not None:
        worked = set(summary["phases"]) - {"wait", "other"}  # not for info, ckpt ls...
        echo(_with_report(captured.getvalue(), summary) if worked
             else captured.getvalue().rstrip("\n"), comm)
    return status


def _with_report(text: str, summary: dict) -> str:
    """The command's JSON with ``"report"`` added (to every element of a list).

    Only for commands that read, computed or wrote something (a phase other than
    ``wait``): ``info --json`` and ``ckpt ls --json`` print exactly what they did before.
    """
    try:
        doc = json.loads(text)
    except ValueError:
        return text.rstrip("\n") + "\n" + dumps({"report": summary})
    if isinstance(doc, dict):
        doc["report"] = summary
    elif isinstance(doc, list) and all(isinstance(d, dict) for d in doc):
        for d in doc:
            d["report"] = summary
    return dumps(doc)
