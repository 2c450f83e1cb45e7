"""HDF5 filter plugins: register ``hdf5plugin``'s filters, check a pipeline before reading.

A dataset compressed with a filter that this HDF5 cannot load fails only when a chunk is
decoded, on the ranks that own such chunks. So the metadata reader (rank 0) checks every
filter of the pipeline first, and the error names the filter and how to get it.
"""

from __future__ import annotations

import h5py

from ..errors import HpcprocError

__all__ = ["FilterUnavailableError", "load_plugins", "check_available", "filter_name"]

#: Registered HDF5 filter ids (https://github.com/HDFGroup/hdf5_plugins/blob/master/docs/
#: RegisteredFilterPlugins.md) that users meet in practice.
KNOWN = {
    1: "deflate (gzip)", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
    6: "scaleoffset", 305: "LZO", 307: "bzip2", 32000: "LZF", 32001: "Blosc",
    32002: "MAFISC", 32003: "Snappy", 32004: "LZ4", 32005: "APAX", 32006: "CBF",
    32007: "JPEG-XR", 32008: "Bitshuffle", 32009: "SPDP", 32010: "LPC-Rice",
    32011: "CCSDS-123", 32012: "JPEG-LS", 32013: "zfp", 32014: "fpzip", 32015: "Zstandard",
    32016: "B3D", 32017: "SZ", 32018: "FCIDECOMP", 32019: "JPEG", 32020: "VBZ",
    32022: "BitGroom", 32023: "Granular BitRound", 32024: "SZ3", 32026: "Blosc2",
}

_loaded = False


class FilterUnavailableError(HpcprocError, OSError):
    """A dataset needs an HDF5 compression filter that cannot be loaded."""


def load_plugins() -> None:
    """Import ``hdf5plugin`` once when it is installed: importing it registers its
    filters (Blosc, LZ4, Zstd, Bitshuffle, bzip2, zfp...) with this process's HDF5."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    try:
        import hdf5plugin  # noqa: F401 - imported for its side effect
    except Exception:  # noqa: BLE001 - not installed (or broken): HDF5_PLUGIN_PATH may serve
        pass


def filter_name(code: int, name: bytes | str = b"") -> str:
    """A readable name for filter ``code`` (the file's own name when it stores one)."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    name = name.strip("\x00 ")
    return KNOWN.get(code) or name or "unregistered filter"


def check_available(dcpl, what: str) -> tuple:
    """The filter ids of the pipeline in ``dcpl``; raise if one of them cannot be loaded.

    Raises :class:`FilterUnavailableError` (an ``OSError``) naming the filter.
    """
    codes = []
    for i in range(dcpl.get_nfilters()):
        code, _flags, _values, name = dcpl.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            raise FilterUnavailableError(
                f"{what} is compressed with HDF5 filter {code} ({filter_name(code, name)}), "
                "which is not available: install it with 'pip install hdf5plugin', or point "
                "HDF5_PLUGIN_PATH at a directory holding the filter plugin")
        codes.append(int(code))
    return tuple(codes)
