"""The adversarial API case table: files, dtypes and byte orders, layouts, CF variables,
numpy's own edge vectors, and per-rank argument disagreement.

Each case is ``Case(id, setup, call, expect)``: ``setup(d)`` writes the inputs into an
empty directory with plain numpy/h5py/netCDF4 (rank 0 only); ``call(d, comm)`` runs the
hpcproc API on every rank and returns something JSON-able; ``expect`` is judged by pytest
(``test_adversarial_api.py``) from the per-rank outcomes, against a reference computed
here with numpy/h5py/netCDF4-python only. The checkpoint cases are in
``_adversarial_ckpt_cases.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
from _adversarial import numpy_or_error, numpy_stats

F = "f.h5"


# --- expectations -----------------------------------------------------------------------
@dataclass(frozen=True)
class Value:
    """Every rank returns ``ref(d)`` (compared by ``_adversarial.same``)."""
    ref: Callable
    rtol: float = 1e-9


@dataclass(frozen=True)
class NumpyOrError:
    """``ref(d)`` is ``numpy_or_error(...)``: numpy's value, or an error on every rank
    wherever numpy refuses the same input."""
    ref: Callable
    rtol: float = 1e-9


@dataclass(frozen=True)
class Raises:
    """Every rank raises one of ``types`` (names in the exception's MRO); the message
    names at least one of ``words`` (if given)."""
    types: tuple = ("ValueError", "TypeError", "KeyError", "OSError", "HpcprocError")
    words: tuple = ()


@dataclass(frozen=True)
class Either:
    """A clean error on every rank, or ``ref(d)`` on every rank."""
    ref: Callable
    rtol: float = 1e-9


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable
    call: Callable
    expect: object
    min_ranks: int = 1
    #: pre-existing files (relative path prefixes) the case may legitimately change
    may_change: tuple = field(default=())


# --- inputs -----------------------------------------------------------------------------
def values(dtype, n: int = 257, seed: int = 3) -> np.ndarray:
    """Deterministic test data of ``dtype`` covering negatives, extremes, ties."""
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dt.kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)  # 8-byte: a range whose sum fits (extremes: EDGE_VECTORS)
        lo, hi = (info.min, info.max) if dt.itemsize < 8 else (max(info.min, -2**40), 2**40)
        a = rng.integers(lo, hi, n, dtype=dt.newbyteorder("=").type, endpoint=True).astype(dt)
        a[:2] = [lo, hi]
        return a
    a = (rng.standard_normal(n) * 1000).astype(dt)
    a[:3] = np.array([-0.0, 0.0, 1.5], dtype=dt)
    return a


def h5file(**datasets):
    """A setup writing ``F`` with ``name=array`` or ``name=(array, create_dataset kw)``."""
    def setup(d):
        with h5py.File(d / F, "w") as f:
            for name, spec in datasets.items():
                data, kw = spec if isinstance(spec, tuple) else (spec, {})
                f.create_dataset(name, data=data, **kw)
    return setup


def load(d, name="x", path=F):
    with h5py.File(Path(d) / path) as f:
        return f[name][()]


def f(d):
    return str(Path(d) / F)


# --- the operations under test (every rank) ------------------------------------------------
def op_read(name="x"):
    def call(d, comm):
        import hpcproc as hp
        a = hp.read(f(d), "/" + name, comm=comm).allgather()
        return {"values": a.astype(np.float64).tolist(), "native": a.dtype.isnative,
                "kind": a.dtype.kind, "itemsize": a.dtype.itemsize}
    return call


def ref_read(name="x"):
    def ref(d):
        a = np.asarray(load(d, name))
        return {"values": a.astype(np.float64).tolist(), "native": True,
                "kind": a.dtype.kind, "itemsize": a.dtype.itemsize}
    return ref


STAT_KEYS = ("count", "sum", "mean", "std", "min", "max")


def op_stats(name="x", axis=None):
    def call(d, comm):
        import hpcproc as hp
        r = hp.stats((f(d), "/" + name), axis=axis, comm=comm)
        return {k: r[k] for k in STAT_KEYS if k in r}
    return call


def ref_stats(name="x"):
    return lambda d: numpy_stats(load(d, name))


def op_hist(name="x", bins=7, range=None):
    def call(d, comm):
        import hpcproc as hp
        counts, edges = hp.histogram((f(d), "/" + name), bins=bins, range=range, comm=comm)
        return [np.asarray(counts).tolist(), np.asarray(edges, dtype=np.float64).tolist()]
    return call


def ref_hist(name="x", bins=7, range=None):
    def ref(d):
        kind, v = numpy_or_error(np.histogram, load(d, name), bins=bins, range=range)
        return (kind, v) if kind == "error" else \
            ("value", [v[0].tolist(), v[1].astype(np.float64).tolist()])
    return ref


QS = [0.0, 0.1, 0.5, 0.9, 1.0]


def op_quantile(name="x", q=QS):
    def call(d, comm):
        import hpcproc as hp
        return np.asarray(hp.quantile((f(d), "/" + name), q, comm=comm),
                          dtype=np.float64).tolist()
    return call


def ref_quantile(name="x", q=QS):
    def ref(d):
        kind, v = numpy_or_error(np.quantile, load(d, name), q)
        return (kind, v) if kind == "error" else ("value", np.asarray(v, np.float64).tolist())
    return ref


def tol(dtype) -> float:
    dt = np.dtype(dtype)
    return max(4 * float(np.finfo(dt).eps), 1e-12) if dt.kind == "f" else 1e-12


# --- 1. every dtype and byte order, through the file API ----------------------------------
DTYPES = ["i1", "u1", "<i2", ">i2", ">u2", "<i4", ">i4", ">u4", "<i8", ">i8", ">u8",
          "<f2", ">f2", "<f4", ">f4", "<f8", ">f8", "longdouble", "bool"]


def _dtype_cases():
    out = []
    for dt in DTYPES:
        tag = dt.replace("<", "le").replace(">", "be")
        setup = h5file(x=values(dt))
        strict = dt != "bool"  # bool: numpy's answer or a clean refusal
        rt = tol("f8" if dt == "longdouble" else dt if np.dtype(dt).kind == "f" else "f8")
        wrap = (lambda r: Value(r, rt)) if strict else (lambda r: Either(r, rt))
        if dt == "longdouble":  # refused, never rounded to float64 (docs/dtypes.md)
            refused = Raises(("DtypeError",), ("long double",))
            out += [Case("dtype-longdouble-read", setup, op_read(), wrap(ref_read()))]
            out += [Case(f"dtype-longdouble-{op}", setup, fn(), refused)
                    for op, fn in (("stats", op_stats), ("hist", op_hist),
                                   ("quantile", op_quantile))]
            continue
        out += [
            Case(f"dtype-{tag}-read", setup, op_read(), wrap(ref_read())),
            Case(f"dtype-{tag}-stats", setup, op_stats(), wrap(ref_stats())),
            Case(f"dtype-{tag}-hist", setup, op_hist(), NumpyOrError(ref_hist(), rt)
                 if strict else Either(lambda d: ref_hist()(d)[1], rt)),
            Case(f"dtype-{tag}-quantile", setup, op_quantile(), NumpyOrError(ref_quantile(), rt)
                 if strict else Either(lambda d: ref_quantile()(d)[1], rt)),
        ]
    for dt in ("c8", ">c16"):  # complex: a clean, agreed refusal (issue 14)
        out.append(Case(f"dtype-{dt.replace('>', 'be')}-stats-refused", h5file(x=values("f8")
                   .astype(dt)), op_stats(), Raises(words=("complex",))))
    return out


# --- 2. byte order, float16, longdouble inside the kernels (a DistArray in memory) ------
def _mem(dtype, fn):
    def call(d, comm):
        import hpcproc as hp
        x = hp.DistArray.from_global(values(dtype, 101), comm=comm)
        return fn(hp, x)
    return call


def _mem_cases():
    out = []
    refused = Raises(("DtypeError",), ("long double",))
    out += [Case(f"memory-longdouble-{op}", lambda d: None, _mem("longdouble", fn), refused)
            for op, fn in (("stats", lambda hp, x: hp.stats(x)),
                           ("quantile", lambda hp, x: hp.quantile(x, QS)),
                           ("hist", lambda hp, x: hp.histogram(x, bins=5)))]
    for dt in (">f4", ">f8", ">i4", "<f2"):
        tag = dt.replace("<", "le").replace(">", "be")
        a = values(dt, 101)
        rt = tol("f8" if dt == "longdouble" else dt if np.dtype(dt).kind == "f" else "f8")
        out += [
            Case(f"memory-{tag}-stats", lambda d: None, _mem(dt, lambda hp, x: {
                k: v for k, v in hp.stats(x).items() if k in STAT_KEYS}),
                Value(lambda d, a=a: numpy_stats(a), rt)),
            Case(f"memory-{tag}-quantile", lambda d: None, _mem(dt, lambda hp, x: np.asarray(
                hp.quantile(x, QS), np.float64).tolist()),
                Value(lambda d, a=a: np.asarray(np.quantile(a, QS), np.float64).tolist(), rt)),
            Case(f"memory-{tag}-hist", lambda d: None, _mem(dt, lambda hp, x: [
                np.asarray(c).tolist() for c in hp.histogram(x, bins=5)]),
                Value(lambda d, a=a: [v.tolist() for v in np.histogram(a, bins=5)], rt)),
        ]
    out.append(Case("memory-bef4-quantile-issue-example", lambda d: None,
                    lambda d, comm: float(__import__("hpcproc").quantile(
                        __import__("hpcproc").DistArray.from_global(
                            np.arange(3, dtype=">f4"), comm=comm), 1.0)),
                    Value(lambda d: 2.0)))
    return out


# --- 3. numpy's own edge vectors, written to files -----------------------------------------
EDGE_VECTORS = {
    "empty": np.array([], dtype="f8"),
    "one": np.array([3.5]),
    "all-equal": np.full(9, 7.25),
    "nan": np.array([1.0, np.nan, 3.0, 4.0]),
    "inf": np.array([1.0, np.inf, 3.0]),
    "neg-inf": np.array([-np.inf, 0.0, 2.0]),
    "signed-zeros": np.array([-0.0, 0.0, -0.0, 0.0, 1.0]),
    "huge": np.array([-1.7e308, 1.7e308, 0.0]),
    "subnormal": np.array([5e-324, 1e-310, 0.0, -5e-324]),
    "int8-extremes": np.array([-128, 127, 0, -1], dtype="i1"),
    "uint64-extremes": np.array([0, 2**64 - 1, 2**63, 1], dtype="u8"),
    "int64-extremes": np.array([-(2**63), 2**63 - 1, 0], dtype="i8"),
    # np.histogram tests: "test_one_bin", "test_outlier"-like, float32 bin edges
    "f4-round": np.array([0.1, 0.2, 0.3, 0.30000001, 1.0], dtype="f4"),
    "ties": np.array([1, 1, 1, 2, 2, 3] * 5, dtype="i4"),
}


def _edge_cases():
    out = []
    for tag, vec in EDGE_VECTORS.items():
        setup = h5file(x=vec)
        rt = tol(vec.dtype if vec.dtype.kind == "f" else "f8")
        out += [
            Case(f"edge-{tag}-stats", setup, op_stats(), Value(ref_stats(), rt)),
            Case(f"edge-{tag}-hist", setup, op_hist(bins=4), NumpyOrError(ref_hist(bins=4), rt)),
            Case(f"edge-{tag}-quantile", setup, op_quantile(),
                 NumpyOrError(ref_quantile(), rt)),
        ]
    x = h5file(x=np.arange(20.0))
    out += [  # numpy's argument edge cases
        Case("edge-hist-explicit-edges", x, op_hist(bins=[0.0, 1.5, 2.0, 19.0]),
             NumpyOrError(ref_hist(bins=[0.0, 1.5, 2.0, 19.0]))),
        Case("edge-hist-unsorted-edges", x, op_hist(bins=[0.0, 5.0, 2.0]),
             NumpyOrError(ref_hist(bins=[0.0, 5.0, 2.0]))),
        Case("edge-hist-bins-0", x, op_hist(bins=0), NumpyOrError(ref_hist(bins=0))),
        Case("edge-hist-range-inf", x, op_hist(range=(0.0, np.inf)),
             NumpyOrError(ref_hist(range=(0.0, np.inf)))),
        Case("edge-hist-range-reversed", x, op_hist(range=(5.0, 1.0)),
             NumpyOrError(ref_hist(range=(5.0, 1.0)))),
        Case("edge-hist-range-equal", x, op_hist(range=(3.0, 3.0)),
             NumpyOrError(ref_hist(range=(3.0, 3.0)))),
        Case("edge-quantile-q-1.5", x, op_quantile(q=[1.5]), Raises(words=("q", "quantile"))),
        Case("edge-quantile-q-nan", x, op_quantile(q=[np.nan]), Raises(words=("q", "quantile"))),
        Case("edge-quantile-q-negative", x, op_quantile(q=[-0.1]),
             Raises(words=("q", "quantile"))),
    ]
    return out


# --- 4. layouts, links and storage that is not in the file --------------------------------
def _layout_setup(kind):
    def setup(d):
        data = np.arange(100.0) * 1.5 - 7
        if kind == "external-link":
            with h5py.File(d / "target.h5", "w") as t:
                t["pad"] = np.full(4096, -1.0)  # something else at the target's offsets
                t["x"] = data
            with h5py.File(d / F, "w") as f:
                f["pad"] = np.full(4096, 99.0)
                f["x"] = h5py.ExternalLink("target.h5", "/x")
        elif kind == "external-raw":  # HDF5 external storage: raw data in another file
            raw = d / "raw.bin"
            data.tofile(raw)
            with h5py.File(d / F, "w") as f:
                f["pad"] = np.full(4096, 99.0)
                f.create_dataset("x", shape=data.shape, dtype="f8",
                                 external=[(str(raw), 0, h5py.h5f.UNLIMITED)])
        elif kind == "virtual":
            with h5py.File(d / "src.h5", "w") as s:
                s["a"] = data[:60]
                s["b"] = data[60:]
            lay = h5py.VirtualLayout(shape=data.shape, dtype="f8")
            lay[:60] = h5py.VirtualSource(str(d / "src.h5"), "a", shape=(60,))
            lay[60:] = h5py.VirtualSource(str(d / "src.h5"), "b", shape=(40,))
            with h5py.File(d / F, "w") as f:
                f.create_virtual_dataset("x", lay, fillvalue=np.nan)
        elif kind == "soft-link":
            with h5py.File(d / F, "w") as f:
                f["g/real"] = data
                f["x"] = h5py.SoftLink("/g/real")
        elif kind == "unallocated":  # created, never written: reads give the fill value
            with h5py.File(d / F, "w") as f:
                f.create_dataset("x", shape=(100,), dtype="f8", fillvalue=2.5)
        elif kind == "compact":
            with h5py.File(d / F, "w") as f:
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_layout(h5py.h5d.COMPACT)
                sid = h5py.h5s.create_simple(data.shape)
                ds = h5py.h5d.create(f.id, b"x", h5py.h5t.IEEE_F64LE, sid, dcpl=dcpl)
                ds.write(h5py.h5s.ALL, h5py.h5s.ALL, data)
        elif kind == "gzip-shuffle-fletcher":
            with h5py.File(d / F, "w") as f:
                f.create_dataset("x", data=data, chunks=(7,), compression="gzip",
                                 shuffle=True, fletcher32=True)
        elif kind == "scaleoffset-int":
            with h5py.File(d / F, "w") as f:
                f.create_dataset("x", data=(data * 2).astype("i4"), chunks=(16,), scaleoffset=0)
        elif kind == "2d-be-chunked":
            with h5py.File(d / F, "w") as f:
                f.create_dataset("x", data=data.reshape(25, 4).astype(">f4"), chunks=(3, 4),
                                 compression="gzip")
        elif kind == "resizable-partial":  # maxshape None, only some chunks written
            with h5py.File(d / F, "w") as f:
                ds = f.create_dataset("x", shape=(100,), maxshape=(None,), chunks=(10,),
                                      dtype="f8", fillvalue=-3.0)
                ds[20:35] = data[20:35]
        else:
            raise ValueError(kind)
    return setup


LAYOUTS = ["external-link", "external-raw", "virtual", "soft-link", "unallocated", "compact",
           "gzip-shuffle-fletcher", "scaleoffset-int", "2d-be-chunked", "resizable-partial"]


def _layout_cases():
    out = []
    for kind in LAYOUTS:
        s = _layout_setup(kind)
        out += [Case(f"layout-{kind}-read", s, op_read(), Value(ref_read(), 1e-7)),
                Case(f"layout-{kind}-stats", s, op_stats(), Value(ref_stats(), 1e-7))]
    out += [
        Case("layout-2d-axis0-stats", _layout_setup("2d-be-chunked"), op_stats(axis=0),
             Value(lambda d: {"count": [25] * 4, "min": load(d).astype("f8").min(0).tolist(),
                              "max": load(d).astype("f8").max(0).tolist(),
                              "mean": load(d).astype("f8").mean(0).tolist()}, 1e-6)),
        Case("layout-scalar-dataset", h5file(x=np.float64(3.0)), op_stats(),
             Either(ref_stats())),
        Case("layout-null-dataspace", h5file(x=h5py.Empty("f8")), op_stats(), Raises()),
        Case("layout-string-dataset", h5file(x=np.array([b"a", b"b"])), op_stats(),
             Raises(types=("DtypeError", "TypeError"))),
        Case("layout-compound-dataset", h5file(x=np.zeros(4, dtype=[("a", "f8"), ("b", "i4")])),
             op_stats(), Raises(types=("DtypeError", "TypeError"))),
        Case("layout-group-not-dataset", lambda d: h5py.File(d / F, "w").create_group(
            "x").file.close(), op_stats(), Raises(types=("NotADatasetError", "TypeError"))),
        Case("layout-missing-dataset", h5file(y=np.arange(3.0)), op_stats(),
             Raises(types=("KeyError",), words=("/x",))),
        Case("layout-dangling-external-link", lambda d: _dangling(d), op_stats(),
             Raises(words=("x", "nope.h5", "link"))),
        Case("layout-not-hdf5", lambda d: (d / F).write_text("hello\n" * 100), op_stats(),
             Raises(types=("OSError",), words=(F,))),
        Case("layout-zero-byte-file", lambda d: (d / F).write_bytes(b""), op_stats(),
             Raises(types=("OSError",), words=(F,))),
        Case("layout-truncated-file", lambda d: _truncated(d), op_stats(),
             Raises(types=("OSError",), words=(F,))),
    ]
    return out


def _dangling(d):
    with h5py.File(d / F, "w") as f:
        f["x"] = h5py.ExternalLink("nope.h5", "/x")


def _truncated(d):
    with h5py.File(d / "full.h5", "w") as f:
        f["x"] = np.arange(10000.0)
    blob = (d / "full.h5").read_bytes()
    (d / F).write_bytes(blob[: len(blob) // 2])
    (d / "full.h5").unlink()


# --- 5. netCDF / CF conventions -------------------------------------------------------------
def _cf_setup(d):
    import netCDF4
    rng = np.random.default_rng(8)
    temp = 273.15 + 10 * rng.standard_normal((100, 50))
    fill_mask = rng.random((100, 50)) < 0.05
    with netCDF4.Dataset(d / "cf.nc", "w") as nc:
        nc.createDimension("lat", 100)
        nc.createDimension("lon", 50)
        v = nc.createVariable("t2m", "i2", ("lat", "lon"), fill_value=np.int16(-32767))
        v.scale_factor, v.add_offset, v.units = 0.002, 273.0, "K"
        v[:] = np.ma.masked_array(temp, mask=fill_mask)
        w = nc.createVariable("sst", "f4", ("lat", "lon"), fill_value=np.float32(-999.0))
        w[:] = np.ma.masked_array(temp.astype("f4"), mask=fill_mask)
        m = nc.createVariable("rh", "f8", ("lat",))
        m.missing_value = -1.0
        rh = rng.random(100) * 100
        rh[::10] = -1.0
        m[:] = rh
        r = nc.createVariable("q", "f4", ("lat",))
        r.valid_range = np.array([0.0, 50.0], dtype="f4")
        r[:] = (rng.random(100) * 60).astype("f4")


def _cf_ref(var, what):
    def ref(d):
        import netCDF4
        with netCDF4.Dataset(d / "cf.nc") as nc:
            a = nc[var][:]  # masked and scaled, as netCDF4-python returns it by default
        valid = np.ma.compressed(a).astype(np.float64)
        if what == "stats":
            return numpy_stats(valid)
        if what == "quantile":
            return np.quantile(valid, QS).tolist()
        return {"values": np.ma.filled(a.astype(np.float64), np.nan).tolist()}
    return ref


def _cf_call(var, what):
    def call(d, comm):
        import hpcproc as hp
        p = str(Path(d) / "cf.nc")
        if what == "stats":
            r = hp.stats((p, "/" + var), comm=comm)
            return {k: r[k] for k in STAT_KEYS}
        if what == "quantile":
            return np.asarray(hp.quantile((p, "/" + var), QS, comm=comm), np.float64).tolist()
        return {"values": hp.read(p, "/" + var, comm=comm).allgather().astype(
            np.float64).tolist()}
    return call


def _cf_cases():
    out = []
    for var in ("t2m", "sst", "rh", "q"):
        out.append(Case(f"cf-{var}-stats", _cf_setup, _cf_call(var, "stats"),
                        Value(_cf_ref(var, "stats"), 1e-6)))
    out += [Case("cf-t2m-read", _cf_setup, _cf_call("t2m", "read"),
                 Value(_cf_ref("t2m", "read"), 1e-6)),
            Case("cf-t2m-quantile", _cf_setup, _cf_call("t2m", "quantile"),
                 Value(_cf_ref("t2m", "quantile"), 1e-6))]
    return out


# --- 6. ranks that disagree, communicators that do not match, blocks that do not tile ------
def _two_files(d):
    with h5py.File(d / "a.h5", "w") as f:
        f["x"] = np.arange(50.0)
        f["y"] = np.arange(50.0) * 2
        f["k"] = np.arange(50) % 7
    with h5py.File(d / "b.h5", "w") as f:
        f["x"] = np.arange(50.0) + 1000


def _per_rank(fn):
    """A call whose arguments depend on the rank: ``fn(hp, d, comm, rank)``."""
    def call(d, comm):
        import hpcproc as hp
        return _plain(fn(hp, Path(d), comm, comm.rank))
    return call


def _plain(r):
    """DistArray/ShuffledTable results gathered whole; everything else as it is."""
    return r.allgather() if hasattr(r, "allgather") else r


def _arr(hp, d, comm):
    return hp.read(str(d / "a.h5"), "/x", comm=comm)


def _table(hp, comm, key_offset=0):
    from hpcproc.partition import block_range
    lo, hi = block_range(40, comm.size, comm.rank)
    return hp.DistTable.from_local({"a": (np.arange(lo, hi) * 7919) % 13 + key_offset,
                                    "b": np.arange(lo, hi) % 5, "v": np.arange(lo, hi) * 1.0},
                                   comm=comm)


def _sub(comm):
    return comm.Split(0 if comm.rank == 0 else 1, comm.rank)


def _rows_asked(hp, d, comm, r):
    rows = (0, 10) if r == 0 else (5, 30)
    a = hp.read(str(d / "a.h5"), "/x", comm=comm, rows=rows)
    mine = np.arange(50.0)[rows[0]:rows[1]][a.offset:a.offset + a.local.shape[0]]
    return {"local_is_asked": bool(np.array_equal(a.local, mine))}


DISAGREE = {  # id -> (call(hp, d, comm, rank), words the message should name)
    "stats-file": (lambda hp, d, c, r: hp.stats((str(d / ("a.h5" if r == 0 else "b.h5")), "/x"),
                                                comm=c), ("path", "file", "x")),
    "stats-dataset": (lambda hp, d, c, r: hp.stats((str(d / "a.h5"), "/x" if r == 0 else "/y"),
                                                   comm=c), ("dataset", "x")),
    "read-dataset": (lambda hp, d, c, r: hp.read(str(d / "a.h5"), "/x" if r == 0 else "/y",
                                                 comm=c).local, ("dataset",)),
    "stats-ddof": (lambda hp, d, c, r: hp.stats(_arr(hp, d, c), ddof=r), ("ddof",)),
    "hist-bins": (lambda hp, d, c, r: hp.histogram(_arr(hp, d, c), bins=10 + r), ("bins",)),
    "hist-range": (lambda hp, d, c, r: hp.histogram(_arr(hp, d, c), bins=5,
                                                    range=(0.0, 10.0 + r)), ("range",)),
    "hist-edges": (lambda hp, d, c, r: hp.histogram(_arr(hp, d, c), bins=[0.0, 1.0 + r, 50.0]),
                   ("bins",)),
    "quantile-q": (lambda hp, d, c, r: hp.quantile(_arr(hp, d, c), 0.5 + 0.1 * r), ("q",)),
    "quantile-q-length": (lambda hp, d, c, r: hp.quantile(_arr(hp, d, c), [0.5] * (1 + r)),
                          ("q",)),
    "quantile-method": (lambda hp, d, c, r: hp.quantile(_arr(hp, d, c), 0.5,
                                                        method="exact" if r == 0 else "sketch"),
                        ("method",)),
    "sort-by": (lambda hp, d, c, r: hp.sort(_table(hp, c), "a" if r == 0 else "b").allgather(),
                ("by",)),
    "sort-ascending": (lambda hp, d, c, r: hp.sort(_table(hp, c), "a",
                                                   ascending=r == 0).allgather(), ("ascending",)),
    "groupby-by": (lambda hp, d, c, r: hp.groupby(_table(hp, c), "a" if r == 0 else "b")
                   .size().allgather(), ("by",)),
    "join-how": (lambda hp, d, c, r: hp.join(_table(hp, c), _table(hp, c, 3), "a",
                                             how="inner" if r == 0 else "left").allgather(),
                 ("how",)),
    "join-on": (lambda hp, d, c, r: hp.join(_table(hp, c), _table(hp, c, 3),
                                            "a" if r == 0 else "b").allgather(), ("on",)),
    "write-path": (lambda hp, d, c, r: hp.write(str(d / f"out{r}.h5"), "/x", _arr(hp, d, c)),
                   ("path", "file")),
    "write-dataset": (lambda hp, d, c, r: hp.write(str(d / "out.h5"), f"/x{r}", _arr(hp, d, c)),
                      ("dataset",)),
    "checkpointer-directory": (lambda hp, d, c, r: hp.Checkpointer(str(d / f"ck{r}"), comm=c)
                               .close(), ("directory",)),
    "checkpointer-keep": (lambda hp, d, c, r: hp.Checkpointer(str(d / "ck"), comm=c,
                                                              keep=1 + r).close(), ("keep",)),
    "value-counts-by": (lambda hp, d, c, r: hp.value_counts(_table(hp, c), "a" if r == 0
                                                            else "b").allgather(), ("by",)),
}


def _disagree_cases():
    out = [Case(f"disagree-{k}", _two_files, _per_rank(fn), Raises(words=words), min_ranks=2)
           for k, (fn, words) in DISAGREE.items()]
    out += [
        Case("disagree-read-rows", _two_files, _per_rank(_rows_asked),
             Either(lambda d: {"local_is_asked": True}), min_ranks=2),
        Case("comm-sub-vs-array", _two_files, _per_rank(
            lambda hp, d, c, r: hp.stats(_arr(hp, d, c), comm=_sub(c))),
            Raises(words=("comm",)), min_ranks=2),
        Case("comm-sub-vs-array-hist", _two_files, _per_rank(
            lambda hp, d, c, r: hp.histogram(_arr(hp, d, c), bins=4, comm=_sub(c))),
            Raises(words=("comm",)), min_ranks=2),
        Case("tiling-all-offset-0-stats", _two_files, _per_rank(
            lambda hp, d, c, r: hp.stats(hp.DistArray(np.arange(5.0) + 5 * r, (5 * c.size,), 0,
                                                      c))), Raises(words=("offset", "tile")),
            min_ranks=2),
        Case("tiling-rows-exceed-shape-stats", _two_files, _per_rank(
            lambda hp, d, c, r: hp.stats(hp.DistArray(np.arange(5.0), (5,), 5 * r, c))),
            Raises(words=("shape", "tile", "rows")), min_ranks=2),
        Case("tiling-all-offset-0-write", _two_files, _per_rank(
            lambda hp, d, c, r: hp.write(str(d / "o.h5"), "/x", hp.DistArray(
                np.arange(5.0) + 5 * r, (5 * c.size,), 0, c))), Raises(words=("offset", "tile")),
            min_ranks=2),
        Case("tiling-gap-quantile", _two_files, _per_rank(
            lambda hp, d, c, r: hp.quantile(hp.DistArray(np.arange(5.0), (10 * c.size,), 10 * r,
                                                         c), 0.5)),
            Raises(words=("offset", "tile", "rows")), min_ranks=2),
        Case("dtype-differs-per-rank-stats", _two_files, _per_rank(
            lambda hp, d, c, r: hp.stats(hp.DistArray(np.arange(5, dtype="f8" if r == 0
                                                                else "f4"), (5 * c.size,), 5 * r,
                                                      c))), Raises(words=("dtype",)), min_ranks=2),
        Case("numpy-array-to-stats", _two_files, _per_rank(
            lambda hp, d, c, r: hp.stats(np.arange(5.0))), Raises(types=("TypeError",))),
        Case("write-mode-a-existing-dataset", _two_files, _per_rank(
            lambda hp, d, c, r: hp.write(str(d / "a.h5"), "/x", _arr(hp, d, c), mode="a")),
            Raises(types=("FileExistsError", "DatasetExistsError"))),
        Case("write-into-directory", _two_files, _per_rank(
            lambda hp, d, c, r: hp.write(str(d), "/z", _arr(hp, d, c))), Raises()),
    ]
    return out


CASES = (_dtype_cases() + _mem_cases() + _edge_cases() + _layout_cases() + _cf_cases()
         + _disagree_cases())
