"""HDF5 input and output: one module per strategy (``direct``, ``chunked``, ``mpio``)."""

from ._links import read_files
from ._meta import DatasetInfo, dataset_info, split_target
from .read import blocks, read, read_table
from .write import write, write_table

__all__ = ["read", "read_table", "blocks", "write", "write_table", "dataset_info",
           "DatasetInfo", "split_target", "read_files"]
