"""Logging: the ``hpcproc`` logger hierarchy, the rank in every record, warnings once per job.

Modules log through ``get_logger(__name__)`` (a child of ``hpcproc``): every record they
emit carries ``record.rank`` (the COMM_WORLD rank; from the launcher's environment
before MPI is initialised), usable as ``%(rank)s`` in any format. ``warn_once`` logs a
warning that every rank would emit alike on rank 0 only, and only once per process.
The command line installs :func:`configure` (``-v``/``-q``); a library user keeps full
control through the standard :mod:`logging` configuration.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["get_logger", "warn_once", "configure", "format_warning", "RankFilter", "rank"]

_ENV_RANK = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
_rank = None
_warned: set = set()


def rank() -> int:
    """This process's COMM_WORLD rank, without initialising MPI."""
    global _rank
    if _rank is None:
        mpi = sys.modules.get("mpi4py.MPI")
        if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
            _rank = mpi.COMM_WORLD.Get_rank()
        else:
            return next((int(os.environ[k]) for k in _ENV_RANK
                         if os.environ.get(k, "").isdigit()), 0)
    return _rank


class RankFilter(logging.Filter):
    """Adds ``record.rank`` to every record (never drops one)."""

    def filter(self, record):
        if not hasattr(record, "rank"):
            record.rank = rank()
        return True


_FILTER = RankFilter()
logging.getLogger("hpcproc").addFilter(_FILTER)


def get_logger(name: str) -> logging.Logger:
    """The logger ``name`` (under ``hpcproc``), with the rank added to its records."""
    log = logging.getLogger(name if name.startswith("hpcproc") else f"hpcproc.{name}")
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log


def warn_once(log: logging.Logger, message: str, *args, comm=None) -> None:
    """Log a warning that all ranks reach alike: on rank 0 of ``comm`` only, and once.

    Not collective (no communication): call it where every rank sees the same condition.
    """
    r = rank() if comm is None else comm.Get_rank()
    key = (log.name, message % args if args else message)
    if r != 0 or key in _warned:
        return
    _warned.add(key)
    log.warning(message, *args)


class _JobFilter(logging.Filter):
    """CLI handler filter: INFO and DEBUG records of ranks other than 0 only with -vv."""

    def __init__(self, all_ranks: bool):
        super().__init__()
        self.all_ranks = all_ranks

    def filter(self, record):
        r = getattr(record, "rank", None)
        if r is None:
            r = record.rank = rank()
        return self.all_ranks or r == 0 or record.levelno >= logging.WARNING


def configure(verbosity: int = 0, stream=None) -> logging.Handler:
    """Log ``hpcproc`` records (and Python warnings) to stderr for the command line.

    ``verbosity``: -1 errors only (``-q``), 0 warnings, 1 info (``-v``), 2 debug and
    info of every rank (``-vv``). Records read ``hpcproc[rank R] LEVEL: message``.
    """
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, min(verbosity, 2)), logging.DEBUG)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("hpcproc[rank %(rank)s] %(levelname)s: %(message)s"))
    handler.addFilter(_JobFilter(verbosity >= 2))
    handler.addFilter(_FILTER)
    for name in ("hpcproc", "py.warnings"):
        log = logging.getLogger(name)
        log.handlers = [h for h in log.handlers if not getattr(h, "_hpcproc", False)]
        log.addHandler(handler)
        log.setLevel(level)
        log.propagate = False
    handler._hpcproc = True
    logging.captureWarnings(True)
    warnings.formatwarning = format_warning
    warnings.showwarning = _show_warning
    return handler


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` of the command line: a warning is one log record; one
    shown on an explicit ``file`` is one line there (:func:`format_warning` has no
    newline, so logging's own fallback ran it into the next line)."""
    text = format_warning(message, category, filename, lineno, line)
    if file is None:
        logging.getLogger("py.warnings").warning("%s", text)
        return
    try:
        file.write(text + "\n")
    except OSError:  # as warnings.showwarning: a closed or broken stream is ignored
        pass


def format_warning(message, category, filename, lineno, line=None) -> str:
    """A Python warning as the command line shows it: the message, and the category when
    it is not a plain ``UserWarning``. The place is given only when it is outside
    hpcproc: a line of hpcproc's source means nothing to the user of the command."""
    text = str(message) if category is UserWarning else f"{category.__name__}: {message}"
    if os.path.abspath(filename).startswith(_PACKAGE):
        return text
    return f"{text} ({filename}:{lineno})"
