"""The environment variables that decide what HDF5 reads, agreed between ranks.

Rank 0 reads a dataset's metadata and resolves its links, but every rank's HDF5 library
opens files with its own environment. Where one of :data:`VARIABLES` differs between
ranks (a per-rank wrapper script, an MPMD launch, a module loaded on some nodes only),
ranks would read different files or decode with different filters: a wrong answer
with exit status 0. :func:`check_same` compares them when a read's metadata is made
(:func:`hpcproc.io._meta.dataset_info`), before any file is opened.

``HDF5_PLUGIN_PATH`` is compared by its effect, not its text: HDF5 reads it once, when
its plugin interface is first used (the first ``H5PL`` call or the first search for a
filter it does not have built in), and ignores it afterwards; each module also loads its
own copy of HDF5 (h5py's wheel and netCDF4's each bundle one). Importing netCDF4 sets
the variable in that process (to netCDF4's own plugin directory), which changes what
h5py's HDF5 loads only if its plugin interface had not started yet. So what is compared
is the search path of h5py's HDF5 (``h5py.h5pl``, the list HDF5 searches; asking for it
starts the interface with the environment of this moment, so it stays what was compared).
"""

from __future__ import annotations

import os

from mpi4py import MPI

from ..agreement import disagreements
from ..comm import agreed
from ..errors import ArgumentMismatchError

__all__ = ["VARIABLES", "check_same", "plugin_path"]

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


def plugin_path() -> str | None:
    """The filter plugin search path of h5py's HDF5, ``:``-joined as HDF5_PLUGIN_PATH is
    written (None when this h5py cannot tell: the variable is compared instead).

    Not collective. Starts HDF5's plugin interface if it has not started (it then reads
    HDF5_PLUGIN_PATH, as the first plugin search would have), so the path stays this.
    """
    try:
        from h5py import h5pl
        return ":".join(os.fsdecode(h5pl.get(i)) for i in range(h5pl.size()))
    except Exception:  # noqa: BLE001 - an h5py without h5pl (before 2.10)
        return None


def _plugins_shown() -> str:
    """This rank's filter plugin search path as compared and shown: each directory as
    the file system resolves it (:func:`os.path.realpath`: relative to the working
    directory, symlinks, ``.``, ``..`` and trailing slashes resolved), so that texts
    naming the same directories in the same order compare equal."""
    path = plugin_path()
    if path is None:
        return _shown("HDF5_PLUGIN_PATH")
    try:
        return repr(":".join(os.path.realpath(p) if p and not p.startswith("${ORIGIN}")
                             else p for p in path.split(":")))
    except OSError:  # a relative directory in a working directory that was removed
        return f"{path!r} (relative to a removed directory)"


def check_same(comm: MPI.Comm | None = None) -> None:
    """Raise on every rank when a variable of :data:`VARIABLES` differs between ranks.

    Collective: one ``MPI_Allreduce`` of two int64 (:func:`hpcproc.agreement.disagreements`).
    ``HDF5_PLUGIN_PATH`` is compared as the plugin search path h5py's HDF5 uses
    (:func:`plugin_path`): a variable set after HDF5 read it (importing netCDF4 sets it)
    changes nothing and is not refused. Raises
    :class:`~hpcproc.errors.ArgumentMismatchError` (agreed: on every rank alike) naming
    each variable that differs, the values per rank and what the difference
    would do, e.g. ``HDF5_EXT_PREFIX differs between ranks (rank 0: '/a'; rank 2: '/b'):
    external links would resolve to different files``.
    """
    differ = disagreements({name: _plugins_shown() if name == "HDF5_PLUGIN_PATH"
                            else _shown(name) for name in VARIABLES}, comm)
    if differ:
        raise agreed(ArgumentMismatchError("; ".join(
            f"{_LABELS.get(name, name)} differs between ranks ({ranks}): {VARIABLES[name]}"
            for name, ranks in differ.items())))


#: how a compared value is named in the error (the plugin path: HDF5's, not the variable)
_LABELS = {"HDF5_PLUGIN_PATH": "HDF5's filter plugin search path (HDF5_PLUGIN_PATH when "
                               "HDF5 first looked for a plugin)"}
