"""hp.scan (serial and 2/3 ranks) and the thread settings of the kernel engine."""

import numpy as np
import pytest

import hpcproc as hp
from hpcproc.kernels._config import default_threads

pytestmark = pytest.mark.mpi


def test_scan_exclusive_and_inclusive(comm):
    r, size = comm.rank, comm.size
    assert hp.scan(r + 1, comm=comm) == sum(range(1, r + 1))
    assert isinstance(hp.scan(r + 1, comm=comm), int)
    assert hp.scan(r + 1, comm=comm, exclusive=False) == sum(range(1, r + 2))
    vec = np.array([r, 2.5 * r, 1])
    np.testing.assert_array_equal(hp.scan(vec, comm=comm),
                                  sum((np.array([k, 2.5 * k, 1]) for k in range(r)),
                                      np.zeros(3)))
    x = hp.DistArray.from_local(np.zeros(r * 3 + 1), comm)
    assert hp.scan(x.local.shape[0], comm=comm) == x.offset
    if size > 1:  # one rank passes a different shape: every rank raises
        with pytest.raises(ValueError, match="shapes differ"):
            hp.scan(np.zeros(2 if r == size - 1 else 3), comm=comm)
    with pytest.raises(TypeError, match="numbers"):
        hp.scan("text", comm=comm)


def test_default_threads(monkeypatch):
    for var in ("HPCPROC_THREADS", "SLURM_CPUS_PER_TASK"):
        monkeypatch.delenv(var, raising=False)
    assert default_threads() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    assert default_threads() == 4
    monkeypatch.setenv("HPCPROC_THREADS", "2")
    assert default_threads() == 2
    monkeypatch.setenv("HPCPROC_THREADS", "zero")
    with pytest.raises(ValueError, match="HPCPROC_THREADS"):
        default_threads()


def test_threads_split_blocks_same_results(comm):
    from hpcproc.kernels import get_threads
    rng = np.random.default_rng(13)
    data = rng.standard_normal(300_001) + 5
    x = hp.DistArray.from_global(data, comm)
    one = hp.stats(x)
    before = get_threads()
    try:
        assert hp.set_threads(3) == 3
        three = hp.stats(x)
        counts, edges = hp.histogram(x, 50)
        np.testing.assert_array_equal(counts, np.histogram(data, 50)[0])
        w = hp.DistArray.from_global(np.ones_like(data), comm)
        np.testing.assert_array_equal(hp.histogram(x, 50, weights=w)[0], counts)
    finally:
        hp.set_threads(before)
    for k in ("count", "min", "max"):
        assert one[k] == three[k] == {"count": data.size, "min": data.min(),
                                      "max": data.max()}[k]
    for k in ("sum", "mean", "var"):
        np.testing.assert_allclose(three[k], one[k], rtol=1e-13)
    np.testing.assert_allclose(three["var"], data.var(), rtol=1e-12)
    with pytest.raises(ValueError, match="threads"):
        hp.set_threads(0)


def test_state_reductions_merge_in_rank_order(comm):
    """allreduce_state/reduce_state merge along a tree but in rank order: a
    non-commutative merge (list concatenation) gives ranks 0..P-1 in order."""
    from hpcproc.collectives import allreduce_state, reduce_state
    merge = lambda a, b: a + b  # noqa: E731
    assert allreduce_state([comm.rank], merge, comm) == list(range(comm.size))
    last = comm.size - 1
    got = reduce_state([comm.rank], merge, comm, root=last)
    assert got == (list(range(comm.size)) if comm.rank == last else None)
    assert reduce_state([comm.rank], merge, comm) == (list(range(comm.size))
                                                      if comm.rank == 0 else None)
