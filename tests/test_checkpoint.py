"""Checkpointer: round trips of every kind of state, other rank counts, corruption,
injected IO errors, retention, async saves and signals (collective; any rank count)."""

import errno
import json
import os
import signal
import time
import warnings

import numpy as np
import pytest
from mpi4py import MPI

import hpcproc as hp
from hpcproc import _faults
from hpcproc.checkpoint import CheckpointError, CheckpointWarning, RankCountError
from hpcproc.checkpoint._format import rank_filename
from support import on_root

pytestmark = pytest.mark.mpi
pytest.importorskip("xxhash")  # a dependency of checkpoints (e.g. absent from .venv-phdf5)


def _field(n=1001, cols=3, seed=3):
    return np.random.default_rng(seed).standard_normal((n, cols))


def _uneven(comm, data):
    """Unbalanced blocks (rank 0 holds the most), as after a filter."""
    n = data.shape[0]
    cuts = np.sort(np.r_[0, (np.sqrt(np.linspace(0, 1, comm.size + 1)[1:-1]) * n).astype(int), n])
    return hp.DistArray.from_local(data[cuts[comm.rank]:cuts[comm.rank + 1]], comm)


def _table(comm, n=777):
    ids = np.arange(n, dtype=np.int64)
    lo, hi = hp.block_range(n, comm.size, comm.rank)
    return hp.DistTable({"id": ids[lo:hi], "m": (ids[lo:hi] * 0.5).astype("f4"),
                         "v": np.stack([ids[lo:hi], -ids[lo:hi]], 1).astype("i2")}, n, lo, comm)


def _state(comm):
    rng = np.random.default_rng([11, comm.rank])
    rng.random(3)
    return {
        "field": _uneven(comm, _field()),
        "flags": hp.DistArray.from_global(np.arange(50) % 3 == 0, comm),
        "empty": hp.DistArray.from_global(np.zeros((0, 4), dtype="u2"), comm),
        "particles": _table(comm),
        "local": np.full((2, 2), comm.rank, dtype=">i4"),   # big-endian on purpose
        "zero_d": np.array(comm.rank + 0.5),
        "rng": rng,
        "f32": np.float32(1 / 3), "c128": np.complex128(1 + 2j), "i64": np.int64(-2**62),
        "flag": np.bool_(True),
        "meta": {"name": "run", "dt": 0.1, "list": [1, None, True], "big": 2**70},
        "count": 12345678901234567890,
    }


def _assert_state(comm, got, same_ranks=True):
    ref = _field()
    f = got["field"]
    assert f.global_shape == ref.shape and f.dtype == np.float64
    np.testing.assert_array_equal(f.local, ref[f.rows[0]:f.rows[1]])
    if same_ranks:  # the saved (uneven) distribution comes back exactly
        assert f.rows == _uneven(comm, ref).rows
    else:
        assert f.rows == hp.block_range(ref.shape[0], comm.size, comm.rank)
    np.testing.assert_array_equal(got["flags"].allgather(), np.arange(50) % 3 == 0)
    assert got["empty"].global_shape == (0, 4) and got["empty"].dtype == np.uint16
    t = got["particles"]
    lo, hi = t.rows
    assert t.num_rows == 777 and t.columns == ["id", "m", "v"]
    np.testing.assert_array_equal(t.local("id"), np.arange(lo, hi))
    assert t.local("m").dtype == np.float32 and t.local("v").shape == (hi - lo, 2)
    np.testing.assert_array_equal(t.local("v")[:, 1], -np.arange(lo, hi))
    assert got["f32"] == np.float32(1 / 3) and got["f32"].dtype == np.float32
    assert got["c128"] == 1 + 2j and got["i64"] == -2**62 and got["flag"] is np.True_
    assert got["meta"] == {"name": "run", "dt": 0.1, "list": [1, None, True], "big": 2**70}
    assert got["count"] == 12345678901234567890
    if same_ranks and "local" in got:
        np.testing.assert_array_equal(got["local"], np.full((2, 2), comm.rank))
        assert got["zero_d"].shape == () and got["zero_d"] == comm.rank + 0.5
        ref_rng = np.random.default_rng([11, comm.rank])
        ref_rng.random(3)
        np.testing.assert_array_equal(got["rng"].random(5), ref_rng.random(5))


def test_round_trip_every_kind(comm, shared_tmp):
    with hp.Checkpointer(shared_tmp, comm) as ck:
        assert ck.restore() is None
        ck.save(7, _state(comm))
    with hp.Checkpointer(shared_tmp, comm) as ck:
        step, got = ck.restore()
    assert step == 7
    _assert_state(comm, got)
    if comm.rank == 0:  # plain h5py reads the files; the manifest has the global layout
        import h5py
        m = json.loads((shared_tmp / "step-000000000007" / "manifest.json").read_text())
        assert m["ranks"] == comm.size and m["entries"]["field"]["shape"] == [1001, 3]
        parts = []
        for r in range(comm.size):
            with h5py.File(shared_tmp / "step-000000000007" / f"rank-{r:05d}.h5") as f:
                parts.append(f[m["entries"]["field"]["dataset"]][...])
        np.testing.assert_array_equal(np.concatenate(parts), _field())


def _split_restore(comm, directory, color_of):
    """Restore on a sub-communicator of the ranks whose color is 0."""
    sub = comm.Split(color_of(comm.rank), comm.rank)
    try:
        if color_of(comm.rank) == 0:
            with hp.Checkpointer(directory, sub) as ck:
                return sub, ck.restore()
        return sub, None
    finally:
        comm.Barrier()


@pytest.mark.parametrize("fewer", [1, 2])
def test_restore_on_fewer_ranks(comm, shared_tmp, fewer):
    if comm.size <= fewer - 1 or (fewer == 2 and comm.size < 3):
        pytest.skip("needs more ranks")
    state = _state(comm)
    for key in ("local", "zero_d", "rng"):
        del state[key]
    with hp.Checkpointer(shared_tmp, comm) as ck:
        ck.save(3, state)
    sub, got = _split_restore(comm, shared_tmp, lambda r: 0 if r < fewer else 1)
    if got is not None:
        assert got[0] == 3
        _assert_state(sub, got[1], same_ranks=sub.size == comm.size)
    sub.Free()


def test_restore_touches_each_rank_file_once(comm, shared_tmp, monkeypatch):
    """A restore costs O(P) file-system metadata operations in all, not O(P^2): every
    rank opens or stats only the files it checks (its own, with the saved rank count)."""
    with hp.Checkpointer(shared_tmp, comm) as ck:
        ck.save(2, _state(comm))
    seen = []
    real_stat, real_open = os.stat, os.open

    def stat(path, *a, **k):
        seen.append(os.path.basename(str(path)))
        return real_stat(path, *a, **k)

    def open_(path, *a, **k):
        seen.append(os.path.basename(str(path)))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "open", open_)
    with hp.Checkpointer(shared_tmp, comm) as ck:
        step, got = ck.restore()
    monkeypatch.undo()
    assert step == 2
    _assert_state(comm, got, same_ranks=True)
    touched = {name for name in seen if name.startswith("rank-")}
    # its own file; rank 0's holds the values every rank takes from rank 0
    assert rank_filename(comm.rank) in touched
    assert touched <= {rank_filename(comm.rank), rank_filename(0)}, touched


def test_restore_on_more_ranks(comm, shared_tmp):
    if comm.size < 2:
        pytest.skip("needs 2 ranks")
    self_state = None
    if comm.rank == 0:  # saved by one rank, restored by all
        with hp.Checkpointer(shared_tmp, MPI.COMM_SELF) as ck:
            self_state = _state(MPI.COMM_SELF)
            for key in ("local", "zero_d", "rng"):
                del self_state[key]
            ck.save(5, self_state)
    comm.Barrier()
    with hp.Checkpointer(shared_tmp, comm) as ck:
        step, got = ck.restore()
    assert step == 5
    _assert_state(comm, got, same_ranks=False)


def test_rank_local_entries_need_the_same_rank_count(comm, shared_tmp):
    if comm.size < 2:
        pytest.skip("needs 2 ranks")
    with hp.Checkpointer(shared_tmp, comm) as ck:
        ck.save(1, {"x": hp.DistArray.from_global(np.arange(10), comm), "mine": np.ones(2)})
    sub = comm.Split(0 if comm.rank == 0 else 1, comm.rank)
    if comm.rank == 0:
        with hp.Checkpointer(shared_tmp, sub) as ck:
            with pytest.raises(RankCountError, match="saved on .* ranks"):
                ck.restore()
    comm.Barrier()
    sub.Free()


def _damage(directory, step, how):
    d = directory / f"step-{step:012d}"
    victim = sorted(p for p in d.iterdir() if p.name.startswith("rank-"))[-1]
    if how == "flip-byte":
        data = bytearray(victim.read_bytes())
        data[len(data) - 3] ^= 0x01  # in the last rows of data
        victim.write_bytes(bytes(data))
    elif how == "truncate":
        os.truncate(victim, victim.stat().st_size - 8)
    elif how == "delete-manifest":
        (d / "manifest.json").unlink()
    elif how == "flip-manifest":
        m = (d / "manifest.json").read_text()
        (d / "manifest.json").write_text(m.replace('"step": 2', '"step": 3'))
    elif how == "delete-file":
        victim.unlink()


@pytest.mark.parametrize("how", ["flip-byte", "truncate", "delete-manifest", "flip-manifest",
                                 "delete-file"])
def test_corrupt_step_is_reported_once_and_previous_used(comm, shared_tmp, how):
    x = hp.DistArray.from_global(np.arange(400.0).reshape(100, 4), comm)
    with hp.Checkpointer(shared_tmp, comm) as ck:
        ck.save(1, {"x": x, "v": 1})
        ck.save(2, {"x": x.with_local(x.local * 2), "v": 2})
    on_root(comm, _damage, shared_tmp, 2, how)
    with hp.Checkpointer(shared_tmp, comm) as ck:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step, got = ck.restore()
    assert step == 1 and got["v"] == 1
    np.testing.assert_array_equal(got["x"].allgather(), np.arange(400.0).reshape(100, 4))
    mine = [w for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(mine) == (1 if comm.rank == 0 else 0), [str(w.message) for w in mine]
    if comm.rank == 0:
        assert "step-000000000002" in str(mine[0].message)


@pytest.mark.parametrize("point, err", [("checkpoint.write", errno.ENOSPC),
                                        ("checkpoint.write", errno.EIO),
                                        ("checkpoint.commit", errno.ENOSPC)])
def test_injected_io_error_fails_everywhere_previous_intact(comm, shared_tmp, point, err):
    x = hp.DistArray.from_global(np.arange(300.0), comm)
    victim = comm.size - 1 if point == "checkpoint.write" else 0
    with hp.Checkpointer(shared_tmp, comm) as ck:
        ck.save(1, {"x": x})
        _faults.arm(point, ranks=[victim], err=err)
        try:
            with pytest.raises(CheckpointError, match=os.strerror(err)) as info:
                ck.save(2, {"x": x.with_local(-x.local)})
        finally:
            _faults.disarm()
        assert info.value.errno == err
        if comm.size > 1:
            assert f"rank {victim}" in str(info.value)
        step, got = ck.restore()
        ck.save(3, {"x": x})  # the checkpointer still works
    assert step == 1
    np.testing.assert_array_equal(got["x"].allgather(), np.arange(300.0))
    if comm.rank == 0:
        assert sorted(os.listdir(shared_tmp)) == ["latest", "step-000000000001",
                                                  "step-000000000003"]


def test_retention_keeps_exactly_keep_and_latest(comm, shared_tmp):
    x = hp.DistArray.from_global(np.arange(20), comm)
    with hp.Checkpointer(shared_tmp, comm, keep=3) as ck:
        for step in range(0, 30, 3):
            ck.save(step, {"x": x, "s": step})
    if comm.rank == 0:
        names = sorted(os.listdir(shared_tmp))
        assert names == ["latest", "step-000000000021", "step-000000000024",
                         "step-000000000027"]
        assert (shared_tmp / "latest").read_text() == "step-000000000027\n"
    comm.Barrier()


def test_saving_after_falling_back_removes_the_abandoned_future(comm, shared_tmp):
    x = hp.DistArray.from_global(np.arange(40.0), comm)
    with hp.Checkpointer(shared_tmp, comm, keep=2) as ck:
        for step in (7, 8, 9):
            ck.save(step, {"x": x, "s": step})
    on_root(comm, _damage, shared_tmp, 8, "truncate")
    on_root(comm, _damage, shared_tmp, 9, "delete-manifest")
    with hp.Checkpointer(shared_tmp, comm, keep=2) as ck:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            with pytest.raises(CheckpointError, match="no valid checkpoint step"):
                ck.restore()  # 7 was removed by retention, 8 and 9 are bad: say so
        ck.save(1, {"x": x, "s": 1})     # a fresh start must not be crowded out by 8, 9
        step, got = ck.restore()
    assert step == 1 and got["s"] == 1
    if comm.rank == 0:
        assert sorted(os.listdir(shared_tmp)) == ["latest", "step-000000000001"]
    comm.Barrier()


def test_leftovers_and_excess_steps_cleaned_at_start(comm, shared_tmp):
    x = hp.DistArray.from_global(np.arange(20), comm)
    with hp.Checkpointer(shared_tmp, comm, keep=5) as ck:
        for step in range(5):
            ck.save(step, {"x": x})

    def fake_interrupted():
        os.mkdir(shared_tmp / ".tmp-step-000000000009-deadbeef")
        (shared_tmp / ".tmp-step-000000000009-deadbeef" / "rank-00000.h5").write_bytes(b"x")
        os.rename(shared_tmp / "step-000000000000", shared_tmp / ".trash-step-000000000000-1")
        (shared_tmp / "latest.tmp-123").write_text("junk")

    on_root(comm, fake_interrupted)
    with hp.Checkpointer(shared_tmp, comm, keep=2) as ck:
        step, got = ck.restore()
    assert step == 4
    if comm.rank == 0:
        assert sorted(os.listdir(shared_tmp)) == ["latest", "step-000000000003",
                                                  "step-000000000004"]
    comm.Barrier()


def test_async_save_snapshots_state(comm, shared_tmp):
    data = np.arange(5000.0)
    x = hp.DistArray.from_global(data.copy(), comm)
    loc = np.full(4, comm.rank)
    state = {"x": x, "loc": loc, "meta": {"k": [1]}}
    with hp.Checkpointer(shared_tmp, comm, keep=5) as ck:
        ck.save(1, state, blocking=False)
        x.local[:] = -1.0        # mutate everything right after the call
        loc[:] = -1
        state["meta"]["k"].append(2)
        ck.save(2, state, blocking=False)  # waits for and commits step 1 first
        assert ck.last_step == 1
    with hp.Checkpointer(shared_tmp, comm) as ck:  # close() committed step 2
        step, got = ck.restore()
    assert step == 2 and got["meta"] == {"k": [1, 2]}
    step1 = root_restore_step(comm, shared_tmp, 1)
    np.testing.assert_array_equal(step1["x"].allgather(), data)
    np.testing.assert_array_equal(step1["loc"], np.full(4, comm.rank))
    assert step1["meta"] == {"k": [1]}


def root_restore_step(comm, directory, step):
    """Restore a given step by hiding the newer ones (rank 0 renames them away)."""
    newer = sorted(p for p in directory.iterdir() if p.name.startswith("step-")
                   and int(p.name[5:]) > step)
    on_root(comm, lambda: [p.rename(p.with_name("hidden-" + p.name)) for p in newer])
    with hp.Checkpointer(directory, comm) as ck:
        got_step, got = ck.restore()
    assert got_step == step
    return got


def test_async_commit_at_step_boundary(comm, shared_tmp):
    x = hp.DistArray.from_global(np.arange(64.0), comm)
    with hp.Checkpointer(shared_tmp, comm) as ck:
        ck.save(1, {"x": x}, blocking=False)
        for _ in range(500):  # due() commits once every rank's writer is done
            time.sleep(0.01)
            ck.due(2)
            if ck.last_step == 1:
                break
        assert ck.last_step == 1
        assert ck._pending is None


@pytest.mark.parametrize("blocking", [True, False])
def test_signal_on_one_rank_saves_everywhere_and_exits(comm, shared_tmp, blocking):
    old = signal.getsignal(signal.SIGUSR1)
    state = {"x": hp.DistArray.from_global(np.arange(10), comm), "i": 0}
    with pytest.raises(SystemExit) as info:
        with hp.Checkpointer(shared_tmp, comm, every_steps=3) as ck:
            for step in ck.steps(0, 100, state, blocking=blocking):  # async save of 3
                state["i"] = step + 1
                if step == 3 and comm.rank == comm.size - 1:
                    os.kill(os.getpid(), signal.SIGUSR1)
    assert info.value.code == 85
    assert signal.getsignal(signal.SIGUSR1) == old  # handlers restored on exit
    with hp.Checkpointer(shared_tmp, comm) as ck:
        step, got = ck.restore()
    assert step == 4 and got["i"] == 4


def test_steps_saves_when_due_and_at_the_end(comm, shared_tmp):
    state = {"i": 0}
    with hp.Checkpointer(shared_tmp, comm, every_steps=4, keep=10) as ck:
        for step in ck.steps(0, 10, lambda: state):
            state = {"i": step + 1}
    if comm.rank == 0:
        assert sorted(os.listdir(shared_tmp)) == ["latest", "step-000000000004",
                                                  "step-000000000008", "step-000000000010"]
    comm.Barrier()


def test_every_seconds_and_walltime(comm, shared_tmp):
    with hp.Checkpointer(shared_tmp, comm, every_seconds=3600) as ck:
        assert not ck.due(1)
        ck._last_save -= 3601 if comm.rank == 0 else 0  # only rank 0's clock says due
        assert ck.due(2)
    with hp.Checkpointer(shared_tmp, comm, walltime="1:00:00", walltime_margin=60) as ck:
        assert not ck.due(1) and not ck.should_exit()
    with hp.Checkpointer(shared_tmp, comm, walltime=30, walltime_margin=60) as ck:
        assert ck.due(1) and not ck.should_exit()
        ck.save(1, {})
        assert ck.should_exit()


@pytest.mark.parametrize("bad, exc", [
    ({"a": object()}, TypeError), ({"a": np.array(["s"])}, TypeError),
    ({1: 2}, TypeError), ({"a": float("nan")}, TypeError), ("notadict", TypeError),
])
def test_bad_state_raises_everywhere(comm, shared_tmp, bad, exc):
    with hp.Checkpointer(shared_tmp, comm) as ck:
        with pytest.raises(exc):
            ck.save(1, bad)
        with pytest.raises(TypeError):
            ck.save("1", {})
        with pytest.raises(ValueError):
            ck.save(-1, {})
    if comm.rank == 0:
        assert os.listdir(shared_tmp) == []


def test_layout_mismatch_across_ranks(comm, shared_tmp):
    if comm.size < 2:
        pytest.skip("needs 2 ranks")
    with hp.Checkpointer(shared_tmp, comm) as ck:
        with pytest.raises(ValueError, match="different state layouts|different `state`"):
            ck.save(1, {f"a{comm.rank}": np.ones(2)})
        with pytest.raises(ValueError, match="rows"):  # blocks that do not tile the rows
            ck.save(1, {"x": hp.DistArray(np.ones(2), (2 * comm.size,), 0, comm)})


@pytest.mark.parametrize("kwargs", [{"keep": 0}, {"every_steps": 0}, {"exit_code": 300},
                                    {"every_seconds": -1}, {"walltime": "soon"}])
def test_bad_arguments(comm, shared_tmp, kwargs):
    with pytest.raises(ValueError):
        hp.Checkpointer(shared_tmp, comm, **kwargs)


def test_close_is_idempotent(comm, shared_tmp):
    ck = hp.Checkpointer(shared_tmp, comm)
    ck.close()
    ck.close()
    with pytest.raises(ValueError, match="closed"):
        ck.save(1, {})
