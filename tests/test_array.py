"""DistArray, DistTable and the communicator helpers (serial and 2/3 ranks)."""

import numpy as np
import pytest
from mpi4py import MPI

import hpcproc as hp
from hpcproc.comm import check_all, get_comm, lib_comm, root_call
from hpcproc.errors import ShapeMismatchError

pytestmark = pytest.mark.mpi


def test_get_comm_and_lib_comm(comm):
    assert get_comm(None) is MPI.COMM_WORLD
    assert get_comm(comm) is comm
    with pytest.raises(TypeError):
        get_comm("world")
    dup = lib_comm(comm)
    assert dup is lib_comm(comm)  # cached
    assert MPI.Comm.Compare(dup, comm) == MPI.CONGRUENT  # same group, different context
    # a user message and a library message with the same tag do not mix
    if comm.size > 1:
        peer = (comm.rank + 1) % comm.size
        src = (comm.rank - 1) % comm.size
        r1 = comm.isend("user", dest=peer, tag=7)
        r2 = dup.isend("lib", dest=peer, tag=7)
        assert dup.recv(source=src, tag=7) == "lib"
        assert comm.recv(source=src, tag=7) == "user"
        r1.wait(), r2.wait()


def test_root_call_and_check_all_raise_everywhere(comm):
    assert root_call(lambda: comm.rank + 41, comm) == 41
    with pytest.raises(KeyError, match="only root"):
        root_call(lambda: (_ for _ in ()).throw(KeyError("only root")), comm)

    def fail_on_last():
        if comm.rank == comm.size - 1:
            raise ValueError(f"bad block on rank {comm.rank}")
        return comm.rank

    with pytest.raises(ValueError, match=f"rank {comm.size - 1}"):
        check_all(fail_on_last, comm)
    assert check_all(lambda: comm.rank, comm) == comm.rank


@pytest.mark.parametrize("n", [0, 1, 2, 5, 100])
def test_from_global_gather_allgather(comm, n):
    data = np.arange(n * 6, dtype="i8").reshape(n, 2, 3)
    x = hp.DistArray.from_global(data, comm)
    assert x.global_shape == (n, 2, 3) and x.shape == data.shape and len(x) == n
    assert x.rows == hp.block_range(n, comm.size, comm.rank)
    np.testing.assert_array_equal(x.local, data[slice(*x.rows)])
    full = x.gather(root=comm.size - 1)
    if comm.rank == comm.size - 1:
        np.testing.assert_array_equal(full, data)
    else:
        assert full is None
    np.testing.assert_array_equal(x.allgather(), data)
    assert x.counts().sum() == n


def test_from_local_uneven(comm):
    local = np.full((comm.rank * 2 + 1, 3), comm.rank, dtype="f4")
    x = hp.DistArray.from_local(local, comm)
    sizes = [r * 2 + 1 for r in range(comm.size)]
    assert x.global_shape == (sum(sizes), 3)
    assert x.offset == sum(sizes[:comm.rank])
    expect = np.concatenate([np.full((s, 3), r, dtype="f4") for r, s in enumerate(sizes)])
    np.testing.assert_array_equal(x.allgather(), expect)


def test_from_local_mismatch_raises_everywhere(comm):
    local = np.zeros((3, 2 if comm.rank == 0 else 3))
    if comm.size > 1:
        with pytest.raises(ShapeMismatchError, match="trailing shape"):
            hp.DistArray.from_local(local, comm)
        with pytest.raises(TypeError, match="dtype"):
            hp.DistArray.from_local(np.zeros(2, dtype="f8" if comm.rank else "i8"), comm)


def test_dist_table(comm):
    n = 50
    lo, hi = hp.block_range(n, comm.size, comm.rank)
    ids = np.arange(n)
    pos = np.arange(n * 3, dtype="f8").reshape(n, 3)
    t = hp.DistTable.from_local({"id": ids[lo:hi], "pos": pos[lo:hi]}, comm)
    assert t.num_rows == n and t.rows == (lo, hi) and t.columns == ["id", "pos"]
    assert t["pos"].global_shape == (n, 3)
    everything = t.allgather()
    np.testing.assert_array_equal(everything["id"], ids)
    np.testing.assert_array_equal(everything["pos"], pos)
    g = t.gather(root=0)
    assert (g is None) == (comm.rank != 0)
    t2 = hp.DistTable.from_arrays({"a": t["id"], "b": t["pos"]})
    assert t2.num_rows == n


def test_dist_table_mismatched_lengths_one_rank(comm):
    """Mismatched column lengths on one rank only: the same clear error on every rank."""
    bad = comm.size - 1
    cols = {"a": np.zeros(4), "b": np.zeros(3 if comm.rank == bad else 4)}
    with pytest.raises(ShapeMismatchError, match="different lengths"):
        hp.DistTable.from_local(cols, comm)


def test_replacing_local_with_another_trailing_shape_is_caught(comm):
    """``x.local`` replaced by a block of another trailing shape (same rows) after the
    array was verified: a reduction must refuse it, not count 1.5x the elements."""
    from hpcproc.errors import ArgumentMismatchError

    x = hp.DistArray.from_global(np.arange(30.0), comm)
    assert hp.stats(x)["count"] == 30
    wide = np.stack([x.local, x.local], axis=1)
    if comm.rank == 0:
        x.local = wide  # on one rank only: the ranks' arguments differ
        expect = ArgumentMismatchError if comm.size > 1 else ShapeMismatchError
    else:
        expect = ArgumentMismatchError
    with pytest.raises(expect):
        hp.stats(x)
    x.local = wide  # on every rank: the blocks are not blocks of a (30,) array
    with pytest.raises(ShapeMismatchError, match=r"trailing shape \(2,\) but the array's"):
        hp.histogram(x, 5, range=(0, 30))
    x.local = wide[:, 0].copy()
    assert hp.stats(x)["sum"] == np.arange(30.0).sum()
