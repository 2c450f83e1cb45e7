"""Adversarial matrix, faults: real signals to real ranks, and a full disk (a 2 MiB tmpfs,
mounted when the machine allows it). Per case: a non-zero exit (or the documented
checkpoint exit), the job ends within 10 s of the fault, inputs byte-identical, no
temporary file left, and no space left taken on the full disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from _adversarial import (
    changed_files,
    clean_env,
    error_problems,
    first_json,
    hpcproc,
    kill_group,
    launch,
    leftovers,
    mpiexec,
    numpy_stats,
    same,
    snapshot,
)

from support import SERIAL_ONLY

pytestmark = SERIAL_ONLY
AFTER_FAULT = 10.0  # seconds a job may run on after a fault


# --- signals ------------------------------------------------------------------------------
def _parents() -> dict[int, int]:
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            out[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def _ranks_of(job) -> list[int]:
    """PIDs of the Python ranks of ``job`` (descendants of its mpiexec running hpcproc)."""
    parents = _parents()
    pids = []
    for pid in parents:
        p, seen = pid, 0
        while p not in (0, 1, job.pid) and seen < 10:
            p, seen = parents.get(p, 0), seen + 1
        if p != job.pid or pid == job.pid:
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"hpcproc" in c for c in cmd[1:]) and not any(b"hydra" in c for c in cmd[:1]):
            pids.append(pid)
    return sorted(pids)


def _catches(pid: int, sig: int) -> bool:
    """True when ``pid`` has a handler installed for ``sig`` (/proc SigCgt)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        pass
    return False


def _start(cmd, cwd=None):
    return subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env(), cwd=cwd, start_new_session=True)


def _finish(job, timeout):
    try:
        out, err = job.communicate(timeout=timeout)
        return job.returncode, out, err, False
    except subprocess.TimeoutExpired:
        kill_group(job)
        out, err = job.communicate()
        return job.returncode, out, err, True


@pytest.fixture
def big_input(tmp_path):
    rng = np.random.default_rng(4)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["key"] = rng.integers(0, 1 << 40, 3_000_000)
        f["value"] = rng.standard_normal(3_000_000)
        f["x"] = rng.standard_normal(2_000_000)
    return tmp_path


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_one_rank_during_write_leaves_nothing(big_input, sig):
    d = big_input
    before = snapshot(d)
    job = _start(mpiexec(hpcproc("sort", f"{d}/in.h5:/key", "--with", "/value", "--out",
                                 f"{d}/out.h5"), 2))
    sent = None
    deadline = time.monotonic() + 90
    while job.poll() is None and time.monotonic() < deadline and sent is None:
        if leftovers(d) or (d / "out.h5").exists():  # the write has started
            ranks = _ranks_of(job)
            if ranks:
                os.kill(ranks[-1], sig)
                sent = time.monotonic()
        time.sleep(0.005)
    code, out, err, hung = _finish(job, AFTER_FAULT + 20)
    assert sent is not None, f"the write never started (exit {code})\n{err[-2000:]}"
    assert not hung, "the job did not end after the signal"
    assert time.monotonic() - sent <= AFTER_FAULT + 5, "ended more than 10 s after the signal"
    assert code != 0, "a job whose rank was signalled reported success"
    assert not changed_files(before, snapshot(d)), "the input changed"
    assert not leftovers(d), f"temporary files left: {leftovers(d)}"
    assert not (d / "out.h5").exists(), "a partial output was left under the final name"


@pytest.mark.timeout(180)
def test_sigterm_to_mpiexec_during_generate_leaves_nothing(tmp_path):
    job = _start(mpiexec(hpcproc("generate", tmp_path / "g.h5", "--rows", "20M"), 2))
    deadline = time.monotonic() + 60
    while job.poll() is None and not leftovers(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.005)
    job.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    code, out, err, hung = _finish(job, AFTER_FAULT + 20)
    assert not hung and time.monotonic() - sent <= AFTER_FAULT + 5
    assert code != 0
    assert not leftovers(tmp_path), f"temporary files left: {leftovers(tmp_path)}"


@pytest.mark.timeout(240)
def test_early_sigusr1_checkpoints_and_exits_85(big_input):
    """SIGUSR1 before the Checkpointer exists (issue 13 #14): acted on, not lost, not fatal."""
    d = big_input
    cmd = mpiexec(hpcproc("stats", f"{d}/in.h5:/x", "--checkpoint", d / "ck", "--block-bytes",
                          "64k", "--json"), 2)
    t0 = time.monotonic()
    job = _start(cmd)
    ranks = []
    while job.poll() is None and time.monotonic() - t0 < 30:
        ranks = _ranks_of(job)
        if len(ranks) == 2 and (all(_catches(p, signal.SIGUSR1) for p in ranks)
                                or time.monotonic() - t0 > 1.0):
            break
        time.sleep(0.01)
    assert len(ranks) == 2, f"rank processes not found (job exit {job.poll()})"
    handled = [_catches(p, signal.SIGUSR1) for p in ranks]
    when = time.monotonic() - t0
    for pid in ranks:
        os.kill(pid, signal.SIGUSR1)
    code, out, err, hung = _finish(job, 60)
    sent = f"SIGUSR1 sent {when:.2f} s after launch (handler installed: {handled})"
    assert not hung, f"hung after SIGUSR1; {sent}"
    assert code == 85, f"exit {code}, expected 85 (checkpointed, requeue); {sent}\n{err[-2000:]}"
    assert any(p.name.startswith("step-") for p in (d / "ck").rglob("step-*")), \
        "exit 85 without a committed checkpoint"
    assert any("SIGUSR1" in ln for ln in err.splitlines()), \
        "no log line saying SIGUSR1 was acted on"
    again = launch(cmd, timeout=120)
    assert again.returncode == 0, again.describe()
    with h5py.File(d / "in.h5") as f:
        ref = numpy_stats(f["x"][...])
    assert not same(first_json(again.stdout), ref, rtol=1e-9)
    assert not leftovers(d)


# --- a full disk ------------------------------------------------------------------------------
def _used(mnt) -> int:
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.mark.timeout(120)
def test_full_disk_generate(full_disk):
    res = launch(mpiexec(hpcproc("generate", full_disk / "g.h5", "--rows", "1M"), 2), timeout=60)
    assert not error_problems(res, codes=(1,)), res.describe()
    assert not leftovers(full_disk) and not (full_disk / "g.h5").exists(), \
        sorted(os.listdir(full_disk))
    assert _used(full_disk) < 64 << 10, f"{_used(full_disk)} bytes still taken"


@pytest.mark.timeout(120)
def test_full_disk_sort_out(full_disk, tmp_path):
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["key"] = np.arange(400_000)[::-1].copy()
        f["value"] = np.arange(400_000) * 1.0
    before = snapshot(tmp_path)["in.h5"]
    res = launch(mpiexec(hpcproc("sort", f"{tmp_path}/in.h5:/key", "--with", "/value", "--out",
                                 full_disk / "o.h5"), 2), timeout=60)
    assert not error_problems(res, codes=(1,)), res.describe()
    assert not leftovers(full_disk) and not (full_disk / "o.h5").exists()
    assert _used(full_disk) < 64 << 10
    assert snapshot(tmp_path)["in.h5"] == before, "the input changed"


_API_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    comm = MPI.COMM_WORLD
    what, path = sys.argv[1], sys.argv[2]
    out = {}
    try:
        if what == "write-append":
            x = hp.DistArray.from_global(np.arange(1_000_000.0), comm=comm)
            hp.write(path, "/big", x, mode="a")
        elif what == "checkpoint":
            with hp.Checkpointer(path, comm=comm, keep=3) as ck:
                ck.save(1, {"a": hp.DistArray.from_global(np.arange(10.0), comm=comm)})
                try:
                    ck.save(2, {"a": hp.DistArray.from_global(np.arange(1_000_000.0),
                                                              comm=comm)})
                except Exception as exc:
                    out["save2"] = type(exc).__name__
                step, state = ck.restore()
                out["restored"] = [step, state["a"].allgather().tolist()]
        out["ok"] = True
    except Exception as exc:
        out = {"ok": False, "type": type(exc).__name__, "message": str(exc)}
    gathered = comm.gather(out, root=0)
    if comm.rank == 0:
        print("RANK", json.dumps(gathered), flush=True)
""")


def _api(tmp_path, what, target):
    script = tmp_path / "api.py"
    script.write_text(_API_SCRIPT)
    res = launch(mpiexec([sys.executable, script, what, target], 2), timeout=90)
    assert res.returncode == 0 and "RANK [" in res.stdout, res.describe()
    return json.loads(res.stdout.split("RANK ", 1)[1].splitlines()[0])


@pytest.mark.timeout(120)
def test_full_disk_write_append_leaves_the_file_as_it_was(full_disk, tmp_path):
    target = full_disk / "keep.h5"
    with h5py.File(target, "w") as f:
        f["small"] = np.arange(10)
    before = snapshot(full_disk)
    used = _used(full_disk)
    outs = _api(tmp_path, "write-append", target)
    assert all(not o["ok"] for o in outs), f"a write into a full disk succeeded: {outs}"
    assert len({o["type"] for o in outs}) == 1, outs
    assert not changed_files(before, snapshot(full_disk)), "the existing file was changed"
    assert not leftovers(full_disk)
    assert _used(full_disk) <= used + (16 << 10), "the failed write left the disk full"


@pytest.mark.timeout(120)
def test_full_disk_checkpoint_save_keeps_the_previous_step(full_disk, tmp_path):
    outs = _api(tmp_path, "checkpoint", full_disk / "ck")
    for o in outs:
        assert o["ok"], outs
        assert o.get("save2") in ("CheckpointError",), f"save into a full disk: {outs}"
        assert o["restored"] == [1, list(np.arange(10.0))]
    assert not leftovers(full_disk), leftovers(full_disk)
