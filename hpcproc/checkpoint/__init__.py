"""Checkpoint/restart: atomic, checksummed, rank-count-independent checkpoints.

``Checkpointer`` is the API (``hp.Checkpointer``); the format is described in
``_format``, the commit protocol in ``_writer``, restore in ``_reader``.
"""

from ._core import Checkpointer
from ._errors import CheckpointError, CheckpointWarning, RankCountError
from ._inspect import list_steps, verify_steps
from ._rng import rng_from_state, rng_state

__all__ = ["Checkpointer", "CheckpointError", "CheckpointWarning", "RankCountError",
           "rng_state", "rng_from_state", "list_steps", "verify_steps"]
