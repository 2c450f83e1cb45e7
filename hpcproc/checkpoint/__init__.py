"""Checkpoint/restart: atomic, checksummed, rank-count-independent checkpoints.

``Checkpointer`` is the API (``hp.Checkpointer``); the format is described in
``_format``, the commit protocol in ``_writer``, restore in ``_reader``. Names are loaded
on first use, so ``install_signal_handlers`` can be called before MPI is initialised.
"""

from .._lazy import lazy_exports

_EXPORTS = {"Checkpointer": "._core", "CheckpointError": "._errors",
            "CheckpointWarning": "._errors", "RankCountError": "._errors",
            "rng_state": "._rng", "rng_from_state": "._rng", "list_steps": "._inspect",
            "verify_steps": "._inspect", "install_signal_handlers": "._triggers"}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
