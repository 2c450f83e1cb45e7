"""Outputs never replace inputs, bad targets fail before any work, temp files never
outlive a run (errors, a full disk, SIGTERM/SIGINT/SIGKILL to one rank).

Every test compares the bytes of every pre-existing file before and after, and checks
that no temporary file (``*hpcproc-tmp*``) or temporary dataset is left. Tests marked
``mpi`` run in-process at 1, 2 and 3 ranks; the others launch their own ``mpiexec`` jobs
(full-disk tests on a small tmpfs, real signals) and run once, serially.
"""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc import _faults
from hpcproc.errors import DatasetExistsError
from hpcproc.io import lineage
from support import MPIEXEC, SERIAL_ONLY, hpcproc_cmd, on_root, run

N = 1000


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _snapshot(directory) -> dict:
    """name -> sha256 of every regular file under ``directory`` (links by name)."""
    out = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            out[rel] = "link" if os.path.islink(path) else _digest(path)
    return out


def _temps(directory) -> list:
    return [os.path.join(r, n) for r, ds, fs in os.walk(directory) for n in ds + fs
            if "hpcproc-tmp" in n]


def _make_inputs(d):
    rng = np.random.default_rng(5)
    with h5py.File(d / "in.h5", "w") as f:
        f["key"] = rng.integers(0, 50, N)
        f["value"] = rng.standard_normal(N)
        f["other"] = np.arange(7)  # a dataset a replaced input would lose
    with h5py.File(d / "right.h5", "w") as f:
        f["key"] = np.arange(50)
        f["b"] = np.arange(50) * 2.0
    os.mkdir(d / "sub")
    os.symlink("in.h5", d / "link.h5")
    os.link(d / "in.h5", d / "hard.h5")


@pytest.fixture
def inputs(comm, shared_tmp):
    on_root(comm, _make_inputs, shared_tmp)
    lineage.reset()
    yield shared_tmp
    lineage.reset()


def _cli(argv, comm):
    from hpcproc.cli import _with_global_options, build_parser, commands

    args = _with_global_options(build_parser()).parse_args([str(a) for a in argv])
    args.no_progress = True
    return commands()[args.command](args, comm)


OUT_VARIANTS = {
    "same": lambda d: "in.h5",
    "dotdot": lambda d: "sub/../in.h5",
    "absolute": lambda d: str(d / "in.h5"),
    "symlink": lambda d: "link.h5",
    "hardlink": lambda d: "hard.h5",
}
COMMANDS = {
    "sort": lambda out: ["sort", "in.h5:/key", "--with", "/value", "--out", out],
    "groupby": lambda out: ["groupby", "in.h5", "--key", "/key", "--value", "/value",
                            "--out", out],
    "join": lambda out: ["join", "right.h5:/key", "in.h5:/key", "--right-with", "/value",
                         "--out", out],
}


@pytest.mark.mpi
@pytest.mark.parametrize("variant", list(OUT_VARIANTS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_cli_out_that_is_an_input_is_refused_before_reading(comm, inputs, command, variant,
                                                             monkeypatch):
    monkeypatch.chdir(inputs)
    before = _snapshot(inputs) if comm.rank == 0 else None
    out = OUT_VARIANTS[variant](inputs)
    with pytest.raises(hp.OutputIsInputError) as info:
        _cli(COMMANDS[command](out), comm)
    assert out in str(info.value) and "input" in str(info.value)
    if variant != "same":
        assert "in.h5" in str(info.value).split(out, 1)[1]  # the input's own name too
    assert lineage.inputs() == []  # refused before any data was read
    comm.Barrier()
    if comm.rank == 0:
        assert _snapshot(inputs) == before and not _temps(inputs)
    comm.Barrier()


@SERIAL_ONLY
@pytest.mark.parametrize("option, out", [("--trace", "in.h5"), ("--plot", "link.h5"),
                                         ("--trace", "sub/../right.h5")])
def test_trace_or_plot_file_that_is_an_input_is_refused(tmp_path, option, out):
    _make_inputs(tmp_path)
    before = _snapshot(tmp_path)
    proc = run(hpcproc_cmd("join", "in.h5:/key", "right.h5:/key", "--out", "j.h5",
                           option, out), ranks=2, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"hpcproc: error: {option} {out} is an input" in proc.stderr
    assert _snapshot(tmp_path) == before and not _temps(tmp_path)  # j.h5 not written


@pytest.mark.mpi
def test_cli_writes_when_out_differs(comm, inputs, monkeypatch):
    monkeypatch.chdir(inputs)
    before = _digest(inputs / "in.h5") if comm.rank == 0 else None
    assert _cli(COMMANDS["sort"]("sorted.h5"), comm) == 0
    comm.Barrier()
    if comm.rank == 0:
        with h5py.File(inputs / "in.h5", "r") as f, h5py.File(inputs / "sorted.h5") as g:
            np.testing.assert_array_equal(g["key"][()], np.sort(f["key"][()]))
        assert _digest(inputs / "in.h5") == before and not _temps(inputs)
    comm.Barrier()


@pytest.mark.mpi
@pytest.mark.parametrize("variant", ["same", "symlink", "hardlink", "dotdot"])
def test_write_refuses_to_replace_a_file_this_process_read(comm, inputs, variant):
    x = hp.read(str(inputs / "in.h5"), "/value", comm=comm)
    before = _digest(inputs / "in.h5") if comm.rank == 0 else None
    target = str(inputs / OUT_VARIANTS[variant](inputs))
    with pytest.raises(hp.OutputIsInputError, match="is an input of this job"):
        hp.write(target, "/value", x, comm=comm)
    with pytest.raises(hp.OutputIsInputError):
        hp.write_table(target, hp.DistTable({"v": x.local}, N, x.offset, comm), comm=comm)
    # adding a dataset to a file that was read is allowed (mode "a" replaces nothing)
    hp.write(target, "/doubled", hp.DistArray(x.local * 2, x.global_shape, x.offset, comm),
             comm=comm, mode="a")
    comm.Barrier()
    if comm.rank == 0:
        assert _digest(inputs / "in.h5") != before and not _temps(inputs)
        with h5py.File(inputs / "in.h5", "r") as f:
            assert sorted(f) == ["doubled", "key", "other", "value"]
            np.testing.assert_array_equal(f["doubled"][()], 2 * f["value"][()])
    comm.Barrier()


@pytest.mark.mpi
@pytest.mark.parametrize("bad, error, match", [
    ("sub", IsADirectoryError, "is a directory"),
    ("missing/out.h5", FileNotFoundError, "output directory does not exist"),
    ("dangling.h5", FileNotFoundError, "dangling"),
])
def test_cli_bad_out_fails_before_any_work(comm, inputs, monkeypatch, bad, error, match):
    monkeypatch.chdir(inputs)
    on_root(comm, lambda: os.symlink("nowhere.h5", inputs / "dangling.h5"))
    before = _snapshot(inputs) if comm.rank == 0 else None
    t0 = time.monotonic()
    with pytest.raises(error, match=match):
        _cli(COMMANDS["sort"](bad), comm)
    assert lineage.inputs() == [] and time.monotonic() - t0 < 30
    comm.Barrier()
    if comm.rank == 0:
        assert _snapshot(inputs) == before and not _temps(inputs)
    comm.Barrier()


@pytest.mark.mpi
def test_append_to_existing_dataset_changes_no_byte(comm, inputs):
    x = hp.DistArray.from_global(np.arange(N, dtype="f8"), comm)
    before = _digest(inputs / "right.h5") if comm.rank == 0 else None
    with pytest.raises(DatasetExistsError):
        hp.write(str(inputs / "right.h5"), "/b", x, comm=comm, mode="a")
    comm.Barrier()
    if comm.rank == 0:
        assert _digest(inputs / "right.h5") == before and not _temps(inputs)
    comm.Barrier()


@pytest.mark.mpi
@pytest.mark.parametrize("mode", ["w", "a"])
@pytest.mark.parametrize("option", [{}, {"compression": "gzip", "chunks": (64,)}])
def test_failed_write_leaves_no_temp(comm, inputs, mode, option):
    x = hp.DistArray.from_global(np.arange(N, dtype="f8"), comm)
    path = inputs / "right.h5"
    before = _digest(path) if comm.rank == 0 else None
    _faults.arm("write.data", ranks={comm.size - 1})
    try:
        with pytest.raises(OSError, match="injected"):
            hp.write(str(path), "/new", x, comm=comm, mode=mode, **option)
    finally:
        _faults.disarm()
    comm.Barrier()
    if comm.rank == 0:
        assert not _temps(inputs)
        if mode == "w":
            assert _digest(path) == before
        with h5py.File(path, "r") as f:  # mode "a": no temporary dataset, nothing lost
            assert sorted(f) == ["b", "key"]
            np.testing.assert_array_equal(f["b"][()], np.arange(50) * 2.0)
    comm.Barrier()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.mpi
def test_leftovers_of_crashed_runs_are_removed_by_the_next_write(comm, inputs):
    host = socket.gethostname().split(".")[0]
    dead = comm.bcast(_dead_pid() if comm.rank == 0 else None)
    stale = f".out.h5.hpcproc-tmp-{host}-{dead}-0123456789ab"
    live = f".out.h5.hpcproc-tmp-{host}-1-0123456789ab"   # pid 1 is alive
    other = f".in.h5.hpcproc-tmp-{host}-{dead}-0123456789ab"  # another target's
    remote = f".out.h5.hpcproc-tmp-elsewhere-{dead}-0123456789ab"  # another host, fresh

    def plant():
        for name in (stale, live, other, remote):
            (inputs / name).write_bytes(b"partial")
        with h5py.File(inputs / "right.h5", "a") as f:
            f[f".hpcproc-tmp-{host}-{dead}-0123456789ab-0"] = np.arange(3)
            f[f".hpcproc-tmp-{host}-1-0123456789ab-0"] = np.arange(3)

    on_root(comm, plant)
    x = hp.DistArray.from_global(np.arange(N, dtype="i4"), comm)
    hp.write(str(inputs / "out.h5"), "/x", x, comm=comm)
    hp.write(str(inputs / "right.h5"), "/x", x, comm=comm, mode="a")
    comm.Barrier()
    if comm.rank == 0:
        names = set(os.listdir(inputs))
        assert stale not in names and {live, other, remote} <= names
        with h5py.File(inputs / "right.h5", "r") as f:
            assert sorted(f) == [f".hpcproc-tmp-{host}-1-0123456789ab-0", "b", "key", "x"]
        np.testing.assert_array_equal(h5py.File(inputs / "out.h5")["x"][()], np.arange(N))
    comm.Barrier()


# full disk (a 2 MiB tmpfs) ------------------------------------------------------------
_WRITE = """
import sys
import numpy as np
from mpi4py import MPI
import hpcproc as hp
path, mode, comp = sys.argv[1:4]
x = hp.DistArray.from_global(np.random.default_rng(0).standard_normal(400_000), MPI.COMM_WORLD)
opts = {"compression": "gzip", "chunks": (4096,)} if comp == "gzip" else {}
hp.write(path, "/big", x, mode=mode, **opts)
"""


def _free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("mode, comp, new", [
    ("a", "", False),      # append 3.2 MB to a small file: refused before writing
    ("a", "gzip", False),  # the same, compressed (the uncompressed size must fit)
    ("w", "", False),      # replace a small file: refused, the old file stays
    ("w", "", True),       # a new file: refused
    ("w", "gzip", True),   # compressed, not checked ahead: a real ENOSPC mid-write
    ("w", "gzip", False),
])
def test_full_disk_changes_no_byte_and_leaves_nothing(full_disk, ranks, mode, comp, new):
    path = full_disk / "data.h5"
    if not new:
        with h5py.File(path, "w") as f:
            f["small"] = np.arange(10)
    before = _snapshot(full_disk)
    free = _free(full_disk)
    proc = run([sys.executable, "-c", _WRITE, path, mode, comp], ranks=ranks, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "No space left" in text or "not enough free space" in text, text
    assert _snapshot(full_disk) == before and not _temps(full_disk)
    assert _free(full_disk) == free  # the disk is not left full


# signals to one rank during a write ---------------------------------------------------
@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    d = tmp_path_factory.mktemp("signals")
    run(hpcproc_cmd("generate", "--kind", "uniform", "--rows", "4M", "--keys", "1000000",
                    d / "big.h5"), timeout=300, check=True)
    return d


def _children(pid) -> list:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def _rank_pid(launcher: int, rank: int):
    """The pid of rank ``rank`` of the job started by ``launcher`` (mpiexec), or None."""
    todo = [launcher]
    while todo:
        pid = todo.pop()
        kids = _children(pid)
        todo += kids
        for kid in kids:
            try:
                with open(f"/proc/{kid}/environ", "rb") as f:
                    env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
                with open(f"/proc/{kid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if env.get(b"PMI_RANK") == str(rank).encode() and b"hpcproc" in cmdline:
                return kid
    return None


def _sort_and_signal(d, sig, rank):
    """Start ``hpcproc sort`` on 2 ranks; when its temporary output appears, send
    ``sig`` to one rank. Returns (exit status, output) or None if the write was missed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI_LOCAL"))}
    cmd = [MPIEXEC, "-n", "2", *hpcproc_cmd("sort", "big.h5:/key", "--with", "/value",
                                            "--out", "out.h5", "--no-progress")]
    proc = subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    sent, deadline = False, time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if _temps(d):
                pid = _rank_pid(proc.pid, rank)
                if pid is not None:
                    os.kill(pid, sig)
                    sent = True
                    break
            time.sleep(0.001)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return (proc.returncode, out) if sent else None


def _signalled_run(d, sig, rank):
    for _ in range(4):  # the write lasts a fraction of a second: retry if it was missed
        outcome = _sort_and_signal(d, sig, rank)
        if outcome is not None:
            return outcome
        os.unlink(d / "out.h5")
        with h5py.File(d / "out.h5", "w") as f:
            f["old"] = np.arange(5)
    pytest.fail("the write finished before the signal could be sent (4 attempts)")


@SERIAL_ONLY
@pytest.mark.parametrize("sig, rank", [(signal.SIGTERM, 0), (signal.SIGTERM, 1),
                                       (signal.SIGINT, 0), (signal.SIGINT, 1)])
def test_signal_to_one_rank_during_write_leaves_no_temp(big_input, sig, rank):
    d = big_input
    with h5py.File(d / "out.h5", "w") as f:  # an existing output must survive whole
        f["old"] = np.arange(5)
    before = _snapshot(d)
    code, out = _signalled_run(d, sig, rank)
    assert code != 0, out
    assert not _temps(d), (os.listdir(d), out)
    assert _snapshot(d) == before, out  # out.h5 still the old file; big.h5 untouched


@SERIAL_ONLY
def test_sigkill_leftover_is_removed_by_the_next_run(big_input):
    d = big_input
    if (d / "out.h5").exists():
        os.unlink(d / "out.h5")
    code, out = _signalled_run(d, signal.SIGKILL, 0)
    assert code != 0 and not (d / "out.h5").exists(), out
    left = _temps(d)
    assert len(left) == 1, (left, out)  # SIGKILL cannot be caught: the temp stays ...
    run(hpcproc_cmd("sort", "big.h5:/key", "--with", "/value", "--out", "out.h5"),
        ranks=2, timeout=300, check=True, cwd=d)
    assert not _temps(d)  # ... until the next run on the same target removes it
    with h5py.File(d / "big.h5", "r") as f, h5py.File(d / "out.h5", "r") as g:
        np.testing.assert_array_equal(g["key"][()], np.sort(f["key"][()]))
