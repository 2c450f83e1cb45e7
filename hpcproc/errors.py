"""Exception types raised by hpcproc.

hpcproc maps errors to built-in types (``KeyError`` for a missing dataset, ``OSError``
for file problems, ``ValueError``/``TypeError`` for bad arguments); the subclasses below
also derive from :class:`HpcprocError` so a caller can catch everything hpcproc raises.
Input is validated before any communication, so every rank raises the same error.
"""

from __future__ import annotations

__all__ = [
    "HpcprocError", "UsageError", "DatasetNotFoundError", "NotADatasetError",
    "DtypeError", "ShapeMismatchError", "DatasetExistsError", "RemoteError",
    "ArgumentMismatchError", "OutputIsInputError",
]


class HpcprocError(Exception):
    """Base class of every error hpcproc raises itself."""


class UsageError(HpcprocError, ValueError):
    """Bad command-line usage (the command exits with status 2)."""


class DatasetNotFoundError(HpcprocError, KeyError):
    """The HDF5 object named does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class NotADatasetError(HpcprocError, TypeError):
    """The HDF5 object named is a group (or other object), not a dataset."""


class DtypeError(HpcprocError, TypeError):
    """The dataset's element type is not supported (e.g. strings, compound types)."""


class ShapeMismatchError(HpcprocError, ValueError):
    """Columns or blocks whose lengths or trailing dimensions do not match."""


class DatasetExistsError(HpcprocError, FileExistsError):
    """The output dataset already exists (``mode="a"`` never overwrites)."""


class RemoteError(HpcprocError, RuntimeError):
    """An error raised on another rank, re-raised here so that every rank fails alike."""


class ArgumentMismatchError(HpcprocError, ValueError):
    """Ranks passed different arguments to the same collective call, or read files with
    different values of an HDF5 environment variable (raised on every rank)."""


class OutputIsInputError(HpcprocError, ValueError):
    """The output of a write is one of the files the job reads (raised on every rank)."""
