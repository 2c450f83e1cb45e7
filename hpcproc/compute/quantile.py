"""Distributed quantiles: exact by radix selection (no data gathered), or a sketch.

``method="exact"`` finds the order statistics numpy interpolates between with four
rounds of 16-bit radix selection: every rank counts its keys per digit value under the
prefixes fixed so far (one Numba pass over its data), an ``Allreduce`` of the counts
fixes the next 16 bits. After the first round each rank copies the keys that share the
targets' first 16 bits (when they fit in 64 MiB per rank; usually a few percent of the
data) and runs the last three rounds on those only: two passes over the data in all. The
data never moves; the result is then interpolated exactly as ``np.quantile``
(``method="linear"``) does, so the two agree bit for bit.

Small inputs (a DistArray or a dataset of at most ``SMALL_ELEMENTS`` elements in all)
take a small-data path instead: every rank gathers the values (one ``Allgatherv``) and selects
the same order statistics locally with ``np.partition`` on order-preserving keys
(``-0.0`` before ``0.0``, like the radix keys), then the same interpolation: the same
bit-for-bit result at a fraction of the cost (the radix rounds cost tens of
milliseconds whatever the size).

``method="sketch"`` uses :class:`~hpcproc.sketch.QuantileSketch` (one pass, mergeable).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..agreement import collective
from ..array import DistArray
from ..comm import agreed, lib_comm
from ..errors import DtypeError
from ..observe.phases import phase
from ._source import Source, open_source
from .interp import lerp

__all__ = ["quantile"]

_GROUP = 16  # prefixes counted per pass (16 x 65536 x 8 B = 8 MiB of counts)
_COLLECT_BYTES = 64 << 20  # candidate keys kept in memory per rank after round one
#: inputs with at most this many elements (all ranks) are gathered (small-data path)
SMALL_ELEMENTS = 1 << 17


def _check_q(q):
    weak = type(q) in (int, float)
    qa = np.asanyarray(q)
    if qa.dtype.kind not in "iuf" or qa.ndim > 1:
        raise ValueError("q must be a number or a 1-d array of numbers")
    if qa.size and not (np.all(qa >= 0) and np.all(qa <= 1)):
        raise ValueError("Quantiles must be in the range [0, 1]")
    return qa, weak


def _key_params(dtype: np.dtype):
    """(unsigned view dtype, mode, sign, width mask, shift to 64 bits, inf bits)."""
    w = dtype.itemsize * 8
    mode = 0 if dtype.kind == "f" else 1 if dtype.kind == "i" else 2
    sign = 1 << (w - 1)
    inf = {16: 0x7C00, 32: 0x7F800000, 64: 0x7FF0000000000000}.get(w, 0) if mode == 0 else 0
    u64 = np.uint64
    return (np.dtype(f"u{dtype.itemsize}"), mode, u64(sign), u64((1 << w) - 1), u64(64 - w),
            u64(inf))


def _value_of(key: int, dtype: np.dtype):
    """Inverse of the key transform: a scalar of ``dtype``."""
    udt, mode, sign, maskw, top, _ = _key_params(dtype)
    k = int(key) >> int(top)
    if mode == 0:
        bits = k ^ int(sign) if k & int(sign) else (~k) & int(maskw)
    elif mode == 1:
        bits = k ^ int(sign)
    else:
        bits = k
    return np.array(bits, dtype=udt).view(dtype)[()]


def _counts(src, dtype, shift, prefixes, comm):
    from ..kernels import _select_nb as nb
    from ..kernels._engine import ensure_compiled, signature_of
    udt, mode, sign, maskw, top, inf = _key_params(dtype)
    counts = np.zeros((max(1, len(prefixes)), nb.BUCKETS), dtype=np.int64)
    pre = np.asarray(prefixes, dtype=np.uint64)
    nan = 0
    for block in src.blocks():
        u = np.ascontiguousarray(block).reshape(-1).view(udt)
        args = (u, np.int64(mode), sign, maskw, top, inf, np.uint64(shift), pre, counts)
        ensure_compiled(nb.radix_counts, signature_of(*args), comm)
        with phase("compute"):
            nan += nb.radix_counts(*args)
    flat = np.concatenate([counts.reshape(-1), [nan]])
    with phase("wait", sent=flat.nbytes):
        lib_comm(comm).Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
    return flat[:-1].reshape(counts.shape), int(flat[-1]), counts


def _collect(src, dtype, prefixes, count, comm):
    """This rank's keys whose top 16 bits are in ``prefixes`` (``count`` of them)."""
    from ..kernels import _select_nb as nb
    from ..kernels._engine import ensure_compiled, signature_of
    udt, mode, sign, maskw, top, inf = _key_params(dtype)
    pre = np.asarray(prefixes, dtype=np.uint64)
    out = np.empty(count, dtype=np.uint64)
    pos = np.int64(0)
    for block in src.blocks():
        u = np.ascontiguousarray(block).reshape(-1).view(udt)
        args = (u, np.int64(mode), sign, maskw, top, inf, pre, out, pos)
        ensure_compiled(nb.radix_collect, signature_of(*args), comm)
        with phase("compute"):
            pos = np.int64(nb.radix_collect(*args))
    return out


def _select(src, dtype, comm, ranks_fn):
    """Values of the order statistics ``ranks_fn(n)`` (0-based); also n and NaN count."""
    counts, nan, local = _counts(src, dtype, 48, [0], comm)
    n = int(counts.sum())
    if (nan and not src.skipna) or n == 0:
        return {}, n, nan
    targets = sorted(set(int(t) for t in ranks_fn(n)))
    state = {}
    for t in targets:
        cum = np.cumsum(counts[0])
        d = int(np.searchsorted(cum, t, side="right"))
        state[t] = (d, t - (int(cum[d - 1]) if d else 0))
    # Usually few values share the first 16 bits of the targets: copy their keys (in
    # memory, at most _COLLECT_BYTES per rank) and run the next rounds on those alone.
    first = sorted({p for p, _ in state.values()})
    mine = int(local[0, first].sum())
    keydtype = dtype
    with phase("wait"):
        largest = lib_comm(comm).allreduce(mine, op=MPI.MAX)
    if largest * 8 <= _COLLECT_BYTES:
        keys = _collect(src, dtype, first, mine, comm)
        src = Source(comm, np.uint64, (), lambda: iter([keys]), True)
        keydtype = np.dtype(np.uint64)  # keys are already order-preserving unsigned
    for shift in (32, 16, 0):
        prefixes = sorted({p for p, _ in state.values()})
        table = {}
        for g in range(0, len(prefixes), _GROUP):
            group = prefixes[g:g + _GROUP]
            c = _counts(src, keydtype, shift, group, comm)[0]
            table.update({p: c[i] for i, p in enumerate(group)})
        for t, (p, r) in state.items():
            cum = np.cumsum(table[p])
            d = int(np.searchsorted(cum, r, side="right"))
            state[t] = ((p << 16) | d, r - (int(cum[d - 1]) if d else 0))
    return {t: _value_of(p, dtype) for t, (p, _) in state.items()}, n, nan


def _ordered(vals: np.ndarray) -> np.ndarray:
    """Float bits as signed integers in the floats' total order (an involution)."""
    it = np.dtype(f"i{vals.dtype.itemsize}")
    b = vals.view(it)
    return b ^ ((b >> (8 * vals.dtype.itemsize - 1)) & np.iinfo(it).max)


def _select_small(src, dtype, comm, ranks_fn):
    """Like :func:`_select` for small inputs: every rank gathers all values."""
    # copies: a file's blocks share one reused read buffer
    parts = [np.array(b, dtype=dtype).reshape(-1) for b in src.blocks()]
    local = np.concatenate(parts) if parts else np.zeros(0, dtype)
    nan = 0
    if dtype.kind == "f":
        bad = np.isnan(local)
        nan = int(bad.sum())
        local = _ordered(local[~bad]) if nan else _ordered(local)
    lc = lib_comm(comm)
    with phase("wait", sent=local.nbytes):
        info = np.array(lc.allgather((local.size, nan)), dtype=np.int64).reshape(-1, 2)
        sizes = info[:, 0]
        full = np.empty(int(sizes.sum()), dtype=local.dtype)
        lc.Allgatherv(local, [full, sizes])
    n, nan = int(full.size), int(info[:, 1].sum())
    if (nan and not src.skipna) or n == 0:
        return {}, n, nan
    targets = sorted(set(int(t) for t in ranks_fn(n)))
    with phase("compute"):
        full.partition(targets)  # in place: the gathered copy is ours
    picked = full[targets]
    if dtype.kind == "f":
        picked = _ordered(picked).view(dtype)
    return dict(zip(targets, picked)), n, nan


def _indexes(virtual, n, inexact):
    """numpy's ``_get_indexes`` for the linear method (indexes in ``[0, n)``)."""
    prev = np.floor(virtual, out=...)
    nxt = np.add(prev, 1, out=...)
    above = virtual >= n - 1
    prev[above] = n - 1
    nxt[above] = n - 1
    below = virtual < 0
    prev[below] = 0
    nxt[below] = 0
    return prev.astype(np.intp), nxt.astype(np.intp), above


def _exact(src, qa, weak, comm, small=False):
    dtype, kdt = src.dtype, src.kernel_dtype  # keys from the blocks' dtype, values in x's
    vi = {}

    def needed(n):
        virtual = np.asanyarray((n - 1) * qa)
        if np.issubdtype(virtual.dtype, np.integer):
            vi["take"] = virtual
            return virtual.ravel().tolist()
        prev, nxt, above = _indexes(virtual, n, True)
        vi.update(virtual=virtual, prev=prev, nxt=nxt, above=above)
        return prev.ravel().tolist() + nxt.ravel().tolist()

    values, n, nan = (_select_small if small else _select)(src, kdt, comm, needed)
    if src.skipna and n:
        nan = 0  # CF-masked input: missing values are left out
    if n + nan == 0:  # counts are allreduced: every rank raises together
        raise agreed(ValueError("cannot compute the quantile of an empty array"))
    if nan:
        out = np.full(qa.shape, np.nan, dtype=np.result_type(dtype, np.float64)
                      if dtype.kind != "f" else dtype)
        return out[()] if out.ndim == 0 else out
    keys = sorted(values)
    pos = {k: i for i, k in enumerate(keys)}
    arr = np.array([values[k] for k in keys], dtype=kdt).astype(dtype)  # exact (float16)
    if "take" in vi:
        return arr[np.vectorize(pos.get, otypes=[np.intp])(vi["take"])]
    lookup = np.vectorize(pos.get, otypes=[np.intp])
    prev_v = arr[lookup(vi["prev"])]
    next_v = arr[lookup(vi["nxt"])]
    # numpy's gamma uses the index array where "above bounds" is -1
    prev_np = np.where(vi["above"], -1, vi["prev"]).astype(np.intp)
    gamma = np.asanyarray(vi["virtual"] - prev_np, dtype=vi["virtual"].dtype)
    gamma = float(gamma) if weak else gamma.reshape(vi["virtual"].shape)
    with np.errstate(invalid="ignore"):
        return lerp(prev_v, next_v, gamma)


@collective("hp.quantile")
def quantile(x, q, method: str = "exact", rel_err: float = 0.01, comm=None,
             block_bytes: int = 64 << 20, read_method: str = "auto", *,
             mask_and_scale: bool = True):
    """Quantiles ``q`` (in ``[0, 1]``) of all elements of a distributed input.

    Collective. Every rank gets the same result.

    Parameters
    ----------
    x : DistArray, str, (str, str) or hp.blocks iterator
        The data (file inputs are streamed with bounded memory).
    q : float or 1-d array of floats
    method : {"exact", "sketch"}
        ``"exact"``: bit-for-bit equal to ``np.quantile(data, q)`` (linear
        interpolation; NaN if the data holds a NaN). Distributed radix selection: four
        passes over the data, only digit counts are communicated, nothing is gathered.
        Needs a DistArray or a file (several passes). A DistArray or dataset of at most
        ``SMALL_ELEMENTS`` (131,072) elements in all is gathered instead (one
        ``Allgatherv``, same result, much cheaper per call). ``"sketch"``: one pass with a
        :class:`~hpcproc.sketch.QuantileSketch`; the result ``v`` satisfies
        ``|v - exact| <= rel_err * max(|x_lo|, |x_hi|)`` where ``x_lo``, ``x_hi`` are the
        two order statistics numpy interpolates between.
    rel_err : float
        Relative accuracy of the sketch.
    mask_and_scale : bool
        File inputs: decode CF packing and missing values; when the variable declares
        missing values they are left out (like ``np.nanquantile``).
    """
    if method not in ("exact", "sketch"):
        raise ValueError(f"method must be 'exact' or 'sketch', got {method!r}")
    qa, weak = _check_q(q)
    src = open_source(x, comm, block_bytes, read_method, mask_and_scale)
    if method == "sketch":
        from .sketch import QuantileSketch
        sk = QuantileSketch(rel_err)
        for block in src.blocks():
            with phase("compute"):
                sk.add(block, comm=src.comm)
        merged = sk.merged(src.comm)
        if src.skipna and merged.count:
            merged.nan = 0  # CF-masked input: missing values are left out
        if merged.count == 0 and not merged.nan:  # merged: every rank raises together
            raise agreed(ValueError("cannot compute the quantile of an empty array"))
        return merged.quantile(q)
    if not src.multipass:
        raise ValueError("method='exact' needs several passes: pass a DistArray or the file "
                         "and dataset instead of hp.blocks(...), or use method='sketch'")
    if src.dtype is None:
        raise agreed(ValueError("cannot compute the quantile of an empty array"))
    if src.dtype.kind == "b":  # numpy raises TypeError too (no boolean subtract)
        raise agreed(DtypeError("quantile of boolean data is not supported (numpy's "
                                 "neither); convert it to integers"))
    return _exact(src, qa, weak, src.comm, _elements(x, src) <= SMALL_ELEMENTS)


def _elements(x, src) -> int:
    """Elements of the whole input (a DistArray's global shape, or a file dataset's size)."""
    if isinstance(x, DistArray):
        return int(np.prod(x.global_shape))
    return src.nbytes // src.dtype.itemsize if src.nbytes is not None else SMALL_ELEMENTS + 1
