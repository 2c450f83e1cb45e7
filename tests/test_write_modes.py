"""``hp.write(mode="a", if_exists=...)``: snapshot series that a restarted run re-writes."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.errors import DatasetExistsError
from hpcproc.io import _target
from support import on_root

pytestmark = pytest.mark.mpi


def _uneven(comm, data, shift=0):
    """A DistArray with deliberately unbalanced blocks (``shift`` moves the cuts)."""
    n = data.shape[0]
    cuts = [0] + [min(n, max(0, (r * n) // comm.size + shift * r)) for r in
                  range(1, comm.size)] + [n]
    cuts = np.maximum.accumulate(cuts)
    lo, hi = cuts[comm.rank], cuts[comm.rank + 1]
    return hp.DistArray(data[lo:hi], data.shape, int(lo), comm)


def _snapshot(step):
    data = np.sin(np.arange(37 * 3, dtype="f8") * (step + 1)).reshape(37, 3)
    data[step % 37, 1] = np.nan  # NaN equals NaN bit for bit: still identical
    return data


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _leftovers(path):
    with h5py.File(path, "r") as f:
        names = []
        f.visit(lambda n: names.append(n) if _target.TMP_MARK in n else None)
    return names


def test_restart_rewrites_snapshots_idempotently(comm, shared_tmp):
    path = str(shared_tmp / "snap.h5")
    for step in range(4):
        hp.write(path, f"/snap/{step}", _uneven(comm, _snapshot(step)), comm=comm, mode="a")
    with pytest.raises(DatasetExistsError, match="already exists"):
        hp.write(path, "/snap/2", _uneven(comm, _snapshot(2)), comm=comm, mode="a")
    # the restarted run replays steps 2..5 with other blocks: 2, 3 skipped, 4, 5 written
    for step in range(2, 6):
        hp.write(path, f"/snap/{step}", _uneven(comm, _snapshot(step), shift=3), comm=comm,
                 mode="a", if_exists="skip_identical")
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            assert sorted(f["snap"]) == [str(s) for s in range(6)]
            for step in range(6):
                np.testing.assert_array_equal(f[f"snap/{step}"][...], _snapshot(step))
        assert not _leftovers(path)


def test_skip_identical_changes_no_byte(comm, shared_tmp):
    path = str(shared_tmp / "same.h5")
    hp.write(path, "x", _uneven(comm, _snapshot(0)), comm=comm, mode="a")
    comm.Barrier()
    before = comm.bcast(_bytes(path) if comm.rank == 0 else None)
    hp.write(path, "x", _uneven(comm, _snapshot(0), shift=2), comm=comm, mode="a",
             if_exists="skip_identical")
    comm.Barrier()
    assert _bytes(path) == before


@pytest.mark.parametrize("change", ["one_value", "last_row", "negative_zero", "shape",
                                    "dtype", "byte_order"])
def test_skip_identical_refuses_a_different_dataset(comm, shared_tmp, change):
    path = str(shared_tmp / "diff.h5")
    data = np.zeros((31, 2), dtype="<f8")
    data[:, 0] = np.arange(31)
    hp.write(path, "x", _uneven(comm, data), comm=comm, mode="a")
    other = data.copy()
    if change == "one_value":
        other[13, 1] = 1e-300
    elif change == "last_row":
        other[-1, 0] += 1
    elif change == "negative_zero":
        other[0, 1] = -0.0  # equal as numbers, not as bytes
    elif change == "shape":
        other = data[:30]
    elif change == "dtype":
        other = data.astype("<f4")
    else:
        other = data.astype(">f8")
    comm.Barrier()
    before = comm.bcast(_bytes(path) if comm.rank == 0 else None)
    with pytest.raises(DatasetExistsError, match="'/x' already exists"):
        hp.write(path, "x", _uneven(comm, other), comm=comm, mode="a",
                 if_exists="skip_identical")
    comm.Barrier()
    assert _bytes(path) == before


def test_skip_identical_table_writes_the_missing_columns(comm, shared_tmp):
    path = str(shared_tmp / "tab.h5")
    rng = np.random.default_rng(3)
    cols = {"a": rng.standard_normal(50), "b": rng.integers(0, 9, 50)}
    lo, hi = hp.block_range(50, comm.size, comm.rank)
    t = hp.DistTable.from_local({"a": cols["a"][lo:hi]}, comm)
    hp.write_table(path, t, group="/t", comm=comm, mode="a")
    t2 = hp.DistTable.from_local({k: v[lo:hi] for k, v in cols.items()}, comm)
    hp.write_table(path, t2, group="/t", comm=comm, mode="a", if_exists="skip_identical")
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            for k, v in cols.items():
                np.testing.assert_array_equal(f["t"][k][...], v)


@pytest.mark.parametrize("layout", [{}, {"compression": "gzip", "chunks": (7, 3)}])
def test_replace_swaps_in_the_new_dataset(comm, shared_tmp, layout):
    path = str(shared_tmp / "rep.h5")
    hp.write(path, "keep", _uneven(comm, _snapshot(9)), comm=comm, mode="a")
    hp.write(path, "/g/x", _uneven(comm, _snapshot(0)), comm=comm, mode="a",
             attrs={"old": 1})
    new = _snapshot(1)
    hp.write(path, "/g/x", _uneven(comm, new, shift=2), comm=comm, mode="a",
             if_exists="replace", attrs={"units": "K"}, **layout)
    # a different shape and dtype replaces too
    hp.write(path, "/g/y", _uneven(comm, new), comm=comm, mode="a", if_exists="replace")
    hp.write(path, "/g/y", _uneven(comm, np.arange(5, dtype="i2")), comm=comm, mode="a",
             if_exists="replace")
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            np.testing.assert_array_equal(f["g/x"][...], new)
            assert f["g/x"].attrs["units"] == "K" and "old" not in f["g/x"].attrs
            assert f["g/x"].compression == layout.get("compression")
            np.testing.assert_array_equal(f["keep"][...], _snapshot(9))
            np.testing.assert_array_equal(f["g/y"][...], np.arange(5, dtype="i2"))
            assert sorted(f) == ["g", "keep"] and sorted(f["g"]) == ["x", "y"]
        assert not _leftovers(path)


def test_replace_that_fails_keeps_the_old_dataset(comm, shared_tmp):
    from hpcproc import _faults

    path = str(shared_tmp / "fail.h5")
    hp.write(path, "x", _uneven(comm, _snapshot(0)), comm=comm, mode="a")
    _faults.arm("write.data", ranks=[comm.size - 1])
    try:
        with pytest.raises(OSError, match="No space left"):
            hp.write(path, "x", _uneven(comm, _snapshot(1)), comm=comm, mode="a",
                     if_exists="replace")
    finally:
        _faults.disarm()
    np.testing.assert_array_equal(hp.read(path, "x", comm=comm).allgather(), _snapshot(0))
    comm.Barrier()
    if comm.rank == 0:
        assert not _leftovers(path)


def test_replace_refuses_a_group(comm, shared_tmp):
    path = str(shared_tmp / "grp.h5")
    hp.write(path, "/g/x", _uneven(comm, _snapshot(0)), comm=comm, mode="a")
    with pytest.raises(DatasetExistsError, match="is a group"):
        hp.write(path, "/g", _uneven(comm, _snapshot(0)), comm=comm, mode="a",
                 if_exists="replace")


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("final_present", [False, True])
def test_dataset_moved_aside_by_a_killed_replace(comm, shared_tmp, final_present):
    """A replacement killed between "old aside" and "new in place" left the old dataset
    under its aside name: the next append puts it back (or drops it if the new one made
    it in)."""
    path = str(shared_tmp / "aside.h5")

    def setup():
        tag = f"{_target._host()}-{_dead_pid()}-{'ab' * 6}"
        with h5py.File(path, "w") as f:
            f["/g/" + _target.TMP_MARK + tag + "-old-x"] = np.arange(4.0)
            f["/" + _target.TMP_MARK + tag + "-0"] = np.ones(4)  # the new one, unfinished
            if final_present:
                f["/g/x"] = np.full(4, 7.0)

    on_root(comm, setup)
    hp.write(path, "/g/other", _uneven(comm, _snapshot(0)), comm=comm, mode="a")
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            want = np.full(4, 7.0) if final_present else np.arange(4.0)
            np.testing.assert_array_equal(f["g/x"][...], want)
            assert sorted(f["g"]) == ["other", "x"] and sorted(f) == ["g"]


def test_bad_if_exists(comm, shared_tmp):
    x = _uneven(comm, _snapshot(0))
    with pytest.raises(ValueError, match="if_exists must be one of"):
        hp.write(str(shared_tmp / "o.h5"), "x", x, comm=comm, mode="a", if_exists="overwrite")
    with pytest.raises(ValueError, match="applies to mode='a'"):
        hp.write(str(shared_tmp / "o.h5"), "x", x, comm=comm, if_exists="replace")
    comm.Barrier()
    if comm.rank == 0:
        assert list(shared_tmp.iterdir()) == []


def test_ranks_that_disagree_on_if_exists(comm, shared_tmp):
    if comm.size < 2:
        pytest.skip("needs 2 ranks")
    path = str(shared_tmp / "dis.h5")
    x = _uneven(comm, _snapshot(0))
    hp.write(path, "x", x, comm=comm, mode="a")
    with pytest.raises(ValueError, match="different `?if_exists"):
        hp.write(path, "x", x, comm=comm, mode="a",
                 if_exists="replace" if comm.rank else "skip_identical")
    np.testing.assert_array_equal(hp.read(path, "x", comm=comm).allgather(), _snapshot(0))


def test_swap_that_fails_half_way_puts_everything_back(comm, shared_tmp):
    """Two columns replaced together; the swap fails after the first old column was
    moved aside: both old columns are back, no new one is visible, nothing is left."""
    from hpcproc import _faults

    path = str(shared_tmp / "swap.h5")
    lo, hi = hp.block_range(40, comm.size, comm.rank)
    old = {"a": np.arange(40.0), "b": np.arange(40) * 2}
    hp.write_table(path, hp.DistTable.from_local({k: v[lo:hi] for k, v in old.items()},
                                                 comm), group="/t", comm=comm, mode="a")
    new = hp.DistTable.from_local({k: v[lo:hi] + 1 for k, v in old.items()}, comm)
    _faults.arm("write.swap", ranks=[1])  # the second swap (index 1), on rank 0
    try:
        with pytest.raises(OSError, match="injected at write.swap"):
            hp.write_table(path, new, group="/t", comm=comm, mode="a", if_exists="replace")
    finally:
        _faults.disarm()
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            for k, v in old.items():
                np.testing.assert_array_equal(f["t"][k][...], v)
            assert sorted(f) == ["t"] and sorted(f["t"]) == ["a", "b"]
    hp.write_table(path, new, group="/t", comm=comm, mode="a", if_exists="replace")
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            for k, v in old.items():
                np.testing.assert_array_equal(f["t"][k][...], v + 1)
        assert not _leftovers(path)
