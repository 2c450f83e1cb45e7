"""hpcproc: MPI-native processing of large HDF5 datasets on HPC clusters.

``import hpcproc as hp`` is cheap: it initialises neither MPI nor Numba. The public names
below are loaded from their modules on first use (PEP 562).
"""

import sys as _sys
import types as _types

from ._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "DistArray": ".array",
    "DistTable": ".table",
    "read": ".io",
    "read_table": ".io",
    "blocks": ".io",
    "write": ".io",
    "write_table": ".io",
    "dataset_info": ".io",
    "stats": ".stats",
    "stats_file": ".stats",
    "histogram": ".histogram",
    "histogram2d": ".histogram",
    "describe": ".compute.describe",
    "quantile": ".quantile",
    "QuantileSketch": ".sketch",
    "map": ".user",
    "map_blocks": ".user",
    "reduce": ".user",
    "KernelCompileError": ".kernels",
    "set_threads": ".kernels",
    "scan": ".collectives",
    "generate": ".generate",
    "get_comm": ".comm",
    "lib_comm": ".comm",
    "abort_on_error": ".comm",
    "block_range": ".partition",
    "block_counts": ".partition",
    "shuffle": ".shuffle",
    "sort": ".shuffle",
    "groupby": ".shuffle",
    "join": ".shuffle",
    "unique": ".shuffle",
    "value_counts": ".shuffle",
    "rebalance": ".shuffle",
    "exchange": ".shuffle",
    "HpcprocError": ".errors",
    "DatasetNotFoundError": ".errors",
    "NotADatasetError": ".errors",
    "DtypeError": ".errors",
    "ShapeMismatchError": ".errors",
    "DatasetExistsError": ".errors",
    "ArgumentMismatchError": ".errors",
    "Checkpointer": ".checkpoint",
    "CheckpointError": ".checkpoint",
    "CheckpointWarning": ".checkpoint",
    "RankCountError": ".checkpoint",
    "rng_state": ".checkpoint",
    "rng_from_state": ".checkpoint",
    "install_signal_handlers": ".checkpoint",
    "phase": ".trace",
    "traced": ".trace",
    "report": ".trace",
    "start_tracing": ".trace",
    "stop_tracing": ".trace",
    "reset_tracing": ".trace",
    "diff": ".diff",
    "validate_dataset": ".validate",
    "ValidationError": ".validate",
    "read_lineage": ".provenance",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hpcproc' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)


class _Package(_types.ModuleType):
    """Keeps public functions named like their modules (``hp.stats``, ``hp.histogram``,
    ``hp.quantile``, ``hp.generate``) from being replaced by the submodule object when
    the submodule is imported (the import system sets it as a package attribute)."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
