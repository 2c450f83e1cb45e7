"""Synthetic datasets with a fixed seed, generated and written in parallel.

Rows are produced in fixed generation blocks of ``GEN_BLOCK`` rows, each from its own
``SeedSequence(seed, spawn_key=(column, block))``: every rank generates only the blocks
that overlap its rows, and the output is identical whatever the number of ranks.

Kinds
-----
normal     ``/x``: float64 N(0, 1), shape (rows,) or (rows, cols)
uniform    ``/key``: int64 uniform in [0, keys); ``/value``: float64 N(0, 1)
zipf       ``/key``: int64 in [0, keys), P(k) ~ (k+1)**-a (Zipf truncated to ``keys`` values;
           0 most frequent); ``/value``: float64 N(0, 1)
particles  ``/particles/{id,x,y,z,vx,vy,vz,mass}``: id int64 (= row), positions uniform in
           [0, 1), velocities N(0, 1), mass float32 in [0.5, 1.5)
"""

from __future__ import annotations

import functools

import numpy as np

from .agreement import collective
from .array import DistArray
from .comm import get_comm
from .io.write import write_many
from .partition import block_range

__all__ = ["generate", "KINDS", "row_bytes"]

GEN_BLOCK = 1 << 20
KINDS = ("normal", "uniform", "zipf", "particles")
_PARTICLE_COLS = ("id", "x", "y", "z", "vx", "vy", "vz", "mass")


def _columns(kind: str, cols: int):
    """(dataset name, dtype, trailing shape) of every column of ``kind``."""
    if kind == "normal":
        return [("/x", np.float64, () if cols == 1 else (cols,))]
    if kind in ("uniform", "zipf"):
        return [("/key", np.int64, ()), ("/value", np.float64, ())]
    if kind == "particles":
        return [(f"/particles/{c}", np.int64 if c == "id" else np.float32 if c == "mass"
                 else np.float64, ()) for c in _PARTICLE_COLS]
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def row_bytes(kind: str, cols: int = 1) -> int:
    """Bytes per row of ``kind`` over all its columns (to turn a byte size into rows)."""
    return sum(np.dtype(dt).itemsize * int(np.prod(shape, dtype=np.int64))
               for _, dt, shape in _columns(kind, cols))


@functools.lru_cache(maxsize=4)
def _zipf_cdf(keys: int, a: float) -> np.ndarray:
    """Cumulative weights of a Zipf law truncated to ``keys`` values: P(k) ~ (k+1)**-a."""
    return np.cumsum(np.arange(1, keys + 1, dtype=np.float64) ** -a)


def _fill(name: str, col: int, kind: str, start: int, stop: int, shape, seed: int,
          keys: int, zipf_a: float) -> np.ndarray:
    parts = []
    for blk in range(start // GEN_BLOCK, -(-stop // GEN_BLOCK)):
        b0 = blk * GEN_BLOCK
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(col, blk)))
        n = GEN_BLOCK  # always draw the whole block: the values do not depend on `stop`
        if name.endswith("/id"):
            vals = np.arange(b0, b0 + n, dtype=np.int64)
        elif name == "/key" and kind == "uniform":
            vals = rng.integers(0, keys, size=n, dtype=np.int64)
        elif name == "/key":
            cdf = _zipf_cdf(keys, zipf_a)
            vals = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right").astype(np.int64)
        elif name.split("/")[-1] in ("x", "y", "z") and kind == "particles":
            vals = rng.random(n)
        elif name.endswith("/mass"):
            vals = (0.5 + rng.random(n, dtype=np.float32)).astype(np.float32)
        else:
            vals = rng.standard_normal((n,) + shape)
        lo, hi = max(start, b0) - b0, min(stop, b0 + n) - b0
        parts.append(vals[lo:hi])
    if not parts:
        return np.empty((0,) + shape)
    return np.concatenate(parts)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_arguments(kind, rows, cols, seed, keys, zipf_a) -> None:
    """The same ``ValueError``/``TypeError`` on every rank, before any communication."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    for name, value, low in (("rows", rows, 0), ("cols", cols, 1), ("seed", seed, 0),
                             ("keys", keys, 1)):
        if not _is_int(value):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if kind == "zipf" and not 1 < zipf_a < float("inf"):
        raise ValueError(f"zipf_a (the Zipf exponent) must be a finite number > 1, got {zipf_a}")


@collective("hp.generate", paths=("path",))
def generate(path: str, kind: str = "normal", rows: int = 1 << 20, *, cols: int = 1,
             seed: int = 0, keys: int = 1 << 20, zipf_a: float = 1.2, comm=None,
             chunks=None, compression: str | None = None, method: str = "auto") -> dict:
    """Generate a synthetic dataset of ``rows`` rows and write it to ``path`` (mode "w").

    Collective. Returns ``{dataset name: global shape}``.
    """
    comm = get_comm(comm)
    _check_arguments(kind, rows, cols, seed, keys, zipf_a)
    specs = _columns(kind, cols)
    rows = int(rows)
    start, stop = block_range(rows, comm.Get_size(), comm.Get_rank())
    arrays = {}
    for col, (name, dtype, shape) in enumerate(specs):
        local = _fill(name, col, kind, start, stop, shape, seed, keys, zipf_a).astype(dtype)
        arrays[name] = DistArray(local, (rows,) + shape, start, comm)
    write_many(path, arrays, comm, "w", chunks=chunks, compression=compression,
               shuffle=compression is not None, method=method,
               attrs={name: {"hpcproc_kind": kind, "hpcproc_seed": seed} for name in arrays})
    return {name: a.global_shape for name, a in arrays.items()}
