"""Checkpoint/restart: atomic, checksummed, rank-count-independent checkpoints.

``Checkpointer`` is the API (``hp.Checkpointer``); the format is described in
``_format``, the commit protocol in ``_writer``, restore in ``_reader``. Names are loaded
on first use, so ``install_signal_handlers`` can be called before MPI is initialised.
"""

import importlib as _importlib

_EXPORTS = {"Checkpointer": "._core", "CheckpointError": "._errors",
            "CheckpointWarning": "._errors", "RankCountError": "._errors",
            "rng_state": "._rng", "rng_from_state": "._rng", "list_steps": "._inspect",
            "verify_steps": "._inspect", "install_signal_handlers": "._triggers"}

__all__ = list(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
