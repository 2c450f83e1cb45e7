"""hpcproc: MPI-native processing of large HDF5 datasets on HPC clusters.

``import hpcproc as hp`` is cheap: it initialises neither MPI nor Numba. The public names
below are loaded from their modules on first use (PEP 562).
"""

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
