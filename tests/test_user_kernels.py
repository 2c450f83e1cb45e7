"""User kernels: hp.map, hp.map_blocks, hp.reduce against numpy (serial and 2/3 ranks)."""

import math

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import first_empty, on_root

pytestmark = pytest.mark.mpi


def softplus(v):
    return math.log1p(math.exp(-abs(v))) + max(v, 0.0)


def clip_mul(a, b):
    return min(a * b, 10)


def test_map_elementwise(comm):
    rng = np.random.default_rng(11)
    a = rng.standard_normal(1001)
    b = rng.integers(-5, 5, 1001)
    x, y = first_empty(a, comm), first_empty(b, comm)
    got = hp.map(softplus, x)
    ref = np.logaddexp(0, a)
    np.testing.assert_allclose(got.allgather(), ref, rtol=1e-14)
    assert got.global_shape == x.global_shape and got.offset == x.offset
    got = hp.map(clip_mul, x, y)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got.allgather(), np.minimum(a * b, 10))
    got = hp.map(lambda u: u * 3 + 1, y)  # a lambda (no on-disk cache) on int64
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.allgather(), b * 3 + 1)


def test_map_blocks_and_reduce(comm):
    rng = np.random.default_rng(12)
    a = rng.standard_normal((2001, 3))
    x = first_empty(a, comm)

    def positive_norms(block):
        out = np.sqrt((block * block).sum(axis=1))
        return out[block[:, 0] > 0]

    got = hp.map_blocks(positive_norms, x)
    np.testing.assert_allclose(got.allgather(), np.sqrt((a * a).sum(1))[a[:, 0] > 0],
                               rtol=1e-15)

    def block_fn(b):
        return b.shape[0], (b[:, 1] ** 2).sum(), b[:, 2].max() if b.shape[0] else -np.inf

    def merge_fn(s, t):
        return s[0] + t[0], s[1] + t[1], max(s[2], t[2])

    n, ss, mx = hp.reduce(block_fn, merge_fn, x)
    assert n == a.shape[0] and mx == a[:, 2].max()
    np.testing.assert_allclose(ss, (a[:, 1] ** 2).sum(), rtol=1e-12)


def test_reduce_streaming(comm, shared_tmp):
    data = np.arange(5000, dtype="i8") % 97
    path = shared_tmp / "r.h5"
    on_root(comm, lambda: h5py.File(path, "w").create_dataset("k", data=data).file.close())

    def counts(b):
        c = np.zeros(97, np.int64)
        for v in b:
            c[v] += 1
        return c

    def add(s, t):
        return s + t

    for src in (f"{path}:/k", hp.blocks(str(path), "/k", block_bytes=256, comm=comm)):
        got = hp.reduce(counts, add, src, comm=comm, block_bytes=256)
        np.testing.assert_array_equal(got, np.bincount(data, minlength=97))


def not_compilable(v):
    return {"a": object()}.get("a")


def test_compile_error_on_every_rank(comm):
    x = first_empty(np.arange(10.0), comm)
    with pytest.raises(hp.KernelCompileError, match="(?s)not_compilable.*Numba said"):
        hp.map(not_compilable, x)
    with pytest.raises(hp.KernelCompileError, match="not_compilable"):
        hp.map_blocks(not_compilable, x)
    with pytest.raises(hp.KernelCompileError, match="must return a number"):
        hp.map(lambda v: (v, v), x)
    with pytest.raises(TypeError, match="DistArray"):
        hp.map(softplus, np.arange(3.0))
    # fails at run time on one rank only (the last): raised everywhere, no hang
    last = comm.size - 1

    def odd(b):
        if b.shape[0] == 0 or b[0] < 0:
            return b
        return b[:0] if b[-1] < 9.0 else np.zeros((1, 1))

    y = hp.DistArray.from_local(np.arange(10.0)[comm.rank * 10 // comm.size:
                                                (comm.rank + 1) * 10 // comm.size], comm)
    with pytest.raises(Exception, match="dimension|ndim|array|Mismatch|shape"):
        hp.map_blocks(odd, y)
    assert last >= 0
