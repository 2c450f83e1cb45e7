"""Checkpoint/restart with real processes and real files: kill -9 at random points of
saves, restarts on other rank counts, signals. Not collective tests: each launches
``mpiexec`` itself (every launch has a timeout), so they run once, from the serial session.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ckpt_harness import committed, example_cmd, kill_trials, parse, reference, run_example

TRIALS = int(os.environ.get("HPCPROC_CKPT_TRIALS", "50"))  # soak: tests/soak_checkpoint.py


def _launched_by_mpiexec() -> bool:
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_size() > 1


pytestmark = pytest.mark.skipif(_launched_by_mpiexec(), reason="launches mpiexec itself: "
                                "runs from the serial session only")


def test_kill_nine_during_saves_always_restarts_from_last_commit(tmp_path):
    stats = kill_trials(tmp_path, TRIALS, seed=20261121, ranks=2)
    assert stats["kills"] == TRIALS and stats["hooked"] > 0 and stats["external"] > 0


def test_restart_on_changing_rank_counts_is_bit_identical(tmp_path):
    base = ["--rows", 5001, "--every", 2, "--keep", 2]
    states, final = reference(tmp_path / "ref", 2, base + ["--steps", 12])
    _, final3 = reference(tmp_path / "ref3", 3, base + ["--steps", 12])
    assert final3 == final  # the example itself does not depend on the rank count
    d = tmp_path / "ck"
    restored = []
    for ranks, stop in [(1, 3), (2, 6), (3, 9), (2, 12)]:
        proc, out = run_example(d, ranks, base + ["--steps", stop])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        restored.append(out["restored"])
        assert committed(d)[-1] == stop
    # every restart continued from the state the previous rank count committed
    assert restored == [None, (3, states[3]), (6, states[6]), (9, states[9])]
    assert out["final"] == final


def _start_until_steps(log, steps, *args, timeout=60):
    """Start the example (own process group, output to ``log``) in the background and
    return once it has logged ``steps`` steps (or after ``timeout`` seconds)."""
    with open(log, "w") as f:
        proc = subprocess.Popen(example_cmd(*args), stdout=f, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while len(parse(log.read_text())["steps"]) < steps and time.monotonic() < deadline:
            time.sleep(0.05)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc


def test_signal_during_compute_commits_and_exits_85_within_one_step(tmp_path):
    d = tmp_path / "ck"
    base = ["--rows", 3000, "--every", 1000]
    _, final = reference(tmp_path / "ref", 2, base + ["--steps", 40])
    log = tmp_path / "out.log"
    proc = _start_until_steps(log, 4, d, 2, *base, "--steps", 40, "--sleep", 0.25)
    try:
        seen = parse(log.read_text())
        assert len(seen["steps"]) >= 4, log.read_text()
        os.kill(seen["pids"][-1], signal.SIGUSR1)  # one rank only: the ranks must agree
        sent_during = seen["steps"][-1]
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert code == 85, text
    steps = committed(d)
    assert len(steps) == 1 and steps[0] in (sent_during + 1, sent_during + 2), (steps, text)
    assert parse(text)["steps"][-1] <= sent_during + 1, text
    proc, out = run_example(d, 2, base + ["--steps", 40])
    assert proc.returncode == 0 and out["restored"][0] == steps[0]
    assert out["final"] == final


def test_sigterm_to_mpiexec_is_forwarded(tmp_path):
    d = tmp_path / "ck"
    log = tmp_path / "out.log"
    proc = _start_until_steps(log, 2, d, 2, "--steps", 200, "--sleep", 0.2,
                              "--every", 1000, "--rows", 2000)
    try:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 85, log.read_text()
    assert len(committed(d)) == 1


def test_walltime_triggers_save_and_exit(tmp_path):
    d = tmp_path / "ck"
    # 2 s of walltime with the default 60 s margin: due at the first boundary
    proc, out = run_example(d, 2, ["--steps", 50, "--every", 1000, "--walltime", 2,
                                   "--rows", 2000])
    assert proc.returncode == 85, proc.stdout + proc.stderr
    assert committed(d) == [1] and out["steps"] == [0]


def test_cli_ls_and_verify(tmp_path):
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from support import hpcproc_cmd, run

    d = tmp_path / "ck"
    proc, _ = run_example(d, 2, ["--steps", 4, "--keep", 2, "--rows", 1000])
    assert proc.returncode == 0, proc.stderr
    ls = run(hpcproc_cmd("ckpt", "ls", d), check=True)
    assert "step-000000000003" in ls.stdout and "* step-000000000004" in ls.stdout
    ok = run(hpcproc_cmd("ckpt", "verify", d), ranks=2, timeout=60)
    assert ok.returncode == 0 and ok.stdout.count("checksums verified") == 2, ok.stdout
    victim = d / "step-000000000003" / "rank-00000.h5"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = run(hpcproc_cmd("ckpt", "verify", d, "--json"), timeout=60)
    assert bad.returncode == 1
    import json
    report = json.loads(bad.stdout)
    assert [s["valid"] for s in report["steps"]] == [False, True]
    assert "checksum mismatch" in report["steps"][0]["problem"]


def test_stats_checkpoint_resumes_after_kill(tmp_path):
    import json

    import h5py
    import numpy as np

    from support import hpcproc_cmd, run

    data = tmp_path / "n.h5"
    run(hpcproc_cmd("generate", data, "--rows", "120k", "--seed", 9), ranks=2, check=True)
    with h5py.File(data) as f:
        x = f["x"][...]
    opts = ["--json", "--block-bytes", "40k", "--checkpoint-every", 0]

    def stats(ckdir, ranks, env=None):
        return run(hpcproc_cmd("stats", f"{data}:/x", *opts, "--checkpoint", ckdir),
                   ranks=ranks, env=env, timeout=120)

    ref = json.loads(stats(tmp_path / "ref", 2, ).stdout)
    assert ref["resumed_from"] == 0 and ref["rounds"] == 12
    killed = stats(tmp_path / "ck", 2, env={"HPCPROC_CKPT_CRASH": "write-done:1:4"})
    assert killed.returncode != 0
    again = json.loads(stats(tmp_path / "ck", 2).stdout)
    rr = 2 * (40 * 1024 // 8)  # rows per round: 40 KiB of float64 per rank, 2 ranks
    assert again["resumed_from"] == 3 * rr  # 3 blocks per rank committed before the kill
    for key in ("count", "sum", "mean", "std", "min", "max"):
        assert again[key] == ref[key], key  # bit for bit on the same rank count
    np.testing.assert_allclose(again["mean"], x.mean(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(again["std"], x.std(), rtol=1e-12)
    assert again["min"] == x.min() and again["max"] == x.max() and again["count"] == x.size
    killed = stats(tmp_path / "ck3", 2, env={"HPCPROC_CKPT_CRASH": "renamed:0:5"})
    assert killed.returncode != 0
    on3 = stats(tmp_path / "ck3", 3)  # the scan's blocks depend on the rank count
    assert on3.returncode == 1 and "number of ranks: 2 in the checkpoint, 3 now" in on3.stderr
    other = tmp_path / "other.h5"
    run(hpcproc_cmd("generate", other, "--rows", "1000", "--seed", 1), check=True)
    wrong = run(hpcproc_cmd("stats", f"{other}:/x", *opts, "--checkpoint", tmp_path / "ck"),
                timeout=60)
    assert wrong.returncode != 0 and "another run" in wrong.stderr
