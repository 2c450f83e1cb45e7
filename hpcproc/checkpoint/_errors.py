"""Errors and warnings of the checkpoint package."""

from __future__ import annotations

from ..errors import HpcprocError

__all__ = ["CheckpointError", "CheckpointWarning", "RankCountError"]


class CheckpointError(HpcprocError, OSError):
    """A save failed (on any rank); the previous checkpoint is unchanged."""


class CheckpointWarning(UserWarning):
    """A committed step was found corrupt or incomplete and skipped (printed on rank 0)."""


class RankCountError(HpcprocError, ValueError):
    """The checkpoint holds rank-local data saved on a different number of ranks."""
