"""The environment variables that decide what HDF5 reads, agreed between ranks.

Rank 0 reads a dataset's metadata and resolves its links, but every rank's HDF5 library
opens files with its own environment. Where one of :data:`VARIABLES` differs between
ranks (a per-rank wrapper script, an MPMD launch, a module loaded on some nodes only),
ranks would read different files or decode with different filters: a wrong answer
with exit status 0. :func:`check_same` compares them when a read's metadata is made
(:func:`hpcproc.io._meta.dataset_info`), before any file is opened.
"""

from __future__ import annotations

import os

from mpi4py import MPI

from ..agreement import disagreements
from ..comm import agreed
from ..errors import ArgumentMismatchError

__all__ = ["VARIABLES", "check_same"]

#: variable -> what a difference between ranks would do
VARIABLES = {
    "HDF5_EXT_PREFIX": "external links would resolve to different files",
    "HDF5_VDS_PREFIX": "virtual dataset sources would resolve to different files",
    "HDF5_EXTFILE_PREFIX": "external raw data files would resolve to different files",
    "HDF5_PLUGIN_PATH": "ranks would load different compression filter plugins",
    "HDF5_PLUGIN_PRELOAD": "ranks would load different compression filter plugins",
    "HDF5_DRIVER": "ranks would open files through different file drivers",
    "HDF5_DRIVER_CONFIG": "ranks would open files through different file drivers",
    "HDF5_VOL_CONNECTOR": "ranks would open files through different VOL connectors",
}
#: directory lists: a relative directory is relative to the rank's working directory
_DIRECTORIES = ("HDF5_EXT_PREFIX", "HDF5_VDS_PREFIX", "HDF5_EXTFILE_PREFIX",
                "HDF5_PLUGIN_PATH")


def _shown(name: str) -> str:
    """This rank's value of ``name`` as compared and shown (``unset``, or quoted; a
    relative directory with the working directory it is relative to)."""
    value = os.environ.get(name)
    if value is None:
        return "unset"
    text = repr(value)
    if name in _DIRECTORIES and any(p and not os.path.isabs(p) and not p.startswith("${ORIGIN}")
                                    for p in value.split(":")):
        try:
            text += f" (relative to {os.getcwd()})"
        except OSError:  # the working directory was removed
            text += " (relative to a removed directory)"
    return text


def check_same(comm: MPI.Comm | None = None) -> None:
    """Raise on every rank when a variable of :data:`VARIABLES` differs between ranks.

    Collective: one ``MPI_Allreduce`` of two int64 (:func:`hpcproc.agreement.disagreements`).
    Raises :class:`~hpcproc.errors.ArgumentMismatchError` (agreed: on every rank alike)
    naming each variable that differs, the values per rank and what the difference
    would do, e.g. ``HDF5_EXT_PREFIX differs between ranks (rank 0: '/a'; rank 2: '/b'):
    external links would resolve to different files``.
    """
    differ = disagreements({name: _shown(name) for name in VARIABLES}, comm)
    if differ:
        raise agreed(ArgumentMismatchError("; ".join(
            f"{name} differs between ranks ({ranks}): {VARIABLES[name]}"
            for name, ranks in differ.items())))
