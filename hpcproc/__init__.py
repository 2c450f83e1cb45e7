"""hpcproc: MPI-native processing of large HDF5 datasets on HPC clusters.

``import hpcproc as hp`` is cheap: it initialises neither MPI nor Numba. The public names
below are loaded from their modules on first use (PEP 562).
"""

from ._lazy import lazy_exports
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
    "stats": ".compute.stats",
    "stats_file": ".compute.stats",
    "histogram": ".compute.histogram",
    "histogram2d": ".compute.histogram",
    "describe": ".compute.describe",
    "quantile": ".compute.quantile",
    "QuantileSketch": ".compute.sketch",
    "map": ".compute.user",
    "map_blocks": ".compute.user",
    "reduce": ".compute.user",
    "KernelCompileError": ".kernels",
    "set_threads": ".kernels",
    "retain_memory": ".memory",
    "scan": ".collectives",
    "generate": ".synthetic",
    "get_comm": ".comm",
    "lib_comm": ".comm",
    "abort_on_error": ".abort",
    "block_range": ".partition",
    "block_counts": ".partition",
    "shuffle": ".shuffles",
    "sort": ".shuffles",
    "groupby": ".shuffles",
    "join": ".shuffles",
    "unique": ".shuffles",
    "value_counts": ".shuffles",
    "rebalance": ".shuffles",
    "exchange": ".shuffles",
    "release_exchange_buffers": ".shuffles",
    "HpcprocError": ".errors",
    "DatasetNotFoundError": ".errors",
    "NotADatasetError": ".errors",
    "DtypeError": ".errors",
    "ShapeMismatchError": ".errors",
    "DatasetExistsError": ".errors",
    "ArgumentMismatchError": ".errors",
    "OutputIsInputError": ".errors",
    "Checkpointer": ".checkpoint",
    "CheckpointError": ".checkpoint",
    "CheckpointWarning": ".checkpoint",
    "RankCountError": ".checkpoint",
    "rng_state": ".checkpoint",
    "rng_from_state": ".checkpoint",
    "install_signal_handlers": ".checkpoint",
    "phase": ".observe.phases",
    "traced": ".observe.phases",
    "report": ".observe.report",
    "start_tracing": ".observe.phases",
    "stop_tracing": ".observe.phases",
    "reset_tracing": ".observe.phases",
    "diff": ".quality.diff",
    "validate_dataset": ".quality.validate",
    "ValidationError": ".quality.rules",
    "read_lineage": ".io.lineage",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__ = lazy_exports(__name__, _EXPORTS)[0]


def __dir__():
    return sorted(__all__)
