"""Signals at every moment of a checkpointed job: right after start, before the
Checkpointer exists, during saves; SIGINT to one rank; the CLI's ``--checkpoint``.

Real ``mpiexec`` launches at 1, 2 and 3 ranks and real signals (``os.kill`` of rank
processes found through /proc). Every launch has a timeout.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import MPIEXEC, SERIAL_ONLY, hpcproc_cmd, run

pytestmark = SERIAL_ONLY

LOOP = Path(__file__).parent / "_signal_loop.py"
USR1_BIT = 1 << (signal.SIGUSR1 - 1)


def _env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI_LOCAL"))}


def _start(cmd, log):
    with open(log, "w") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(),
                                start_new_session=True)


def _children(pid) -> list[int]:
    kids = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(p))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def _ranks(root, n, match, timeout=60) -> list[int]:
    """Pids of the ``n`` rank processes below ``root`` whose command line has ``match``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found, todo = [], [root]
        while todo:
            for kid in _children(todo.pop()):
                todo.append(kid)
                try:
                    cmdline = Path(f"/proc/{kid}/cmdline").read_bytes()
                except OSError:
                    continue
                if match.encode() in cmdline and b"mpiexec" not in cmdline \
                        and b"hydra" not in cmdline:
                    found.append(kid)
        if len(found) >= n:
            return sorted(found)
        time.sleep(0.01)
    raise AssertionError(f"{n} rank processes not found")


def _catches_usr1(pid) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & USR1_BIT)
    except OSError:
        pass
    return False


def _wait_caught(pids, timeout=60):
    deadline = time.monotonic() + timeout
    while not all(_catches_usr1(p) for p in pids):
        assert time.monotonic() < deadline, "the handlers were never installed"
        time.sleep(0.002)


def _finish(proc, timeout=90):
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _committed(d) -> list[int]:
    return sorted(int(n[5:]) for n in os.listdir(d) if n.startswith("step-")
                  and (Path(d) / n / "manifest.json").exists()) if os.path.isdir(d) else []


def _loop(d, ranks, *args):
    return [MPIEXEC, "-n", str(ranks), sys.executable, str(LOOP), str(d), *map(str, args)]


def _resume_and_check(d, ranks, steps):
    proc = run(_loop(d, ranks, "--early", "--steps", steps, "--sleep", 0), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"done {sum(range(steps))}" in proc.stdout


def _wait_lines(log, word, n, timeout=60):
    deadline = time.monotonic() + timeout
    while log.read_text().count(word) < n:  # the ranks' lines may interleave
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.005)


@pytest.mark.parametrize("ranks", [1, 2, 3])
@pytest.mark.parametrize("moment", ["right-after-start", "before-mpi-init",
                                    "before-checkpointer", "one-rank-before-checkpointer"])
def test_early_sigusr1_saves_at_first_boundary_and_exits_85(tmp_path, ranks, moment):
    d, log = tmp_path / "ck", tmp_path / "out.log"
    before = 1.5 if moment.endswith("before-checkpointer") else 0.0
    pause = 1.5 if moment == "before-mpi-init" else 0.0
    proc = _start(_loop(d, ranks, "--early", "--pause", pause, "--before", before,
                        "--steps", 40), log)
    try:
        pids = _ranks(proc.pid, ranks, str(LOOP))
        _wait_caught(pids)
        if moment.endswith("before-checkpointer"):
            _wait_lines(log, "mpi ", ranks)  # MPI is up, the Checkpointer not yet
        elif moment == "before-mpi-init":
            _wait_lines(log, "up ", ranks)
        for pid in pids[-1:] if moment.startswith("one-rank") else pids:
            os.kill(pid, signal.SIGUSR1)
    finally:
        code = _finish(proc)
    text = log.read_text()
    assert code == 85, text
    assert _committed(d) == [1], text  # saved at the first step boundary
    assert text.count("hpcproc: SIGUSR1: saving step 1, exiting 85") == 1, text
    _resume_and_check(d, ranks, 40)


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_sigusr1_during_saves_commits_and_resumes(tmp_path, ranks):
    d, log = tmp_path / "ck", tmp_path / "out.log"
    # a large state saved after every step: most of the time is spent inside saves
    proc = _start(_loop(d, ranks, "--early", "--steps", 400, "--sleep", 0,
                        "--rows", 2_000_000), log)
    try:
        pids = _ranks(proc.pid, ranks, str(LOOP))
        deadline = time.monotonic() + 90
        while len(_committed(d)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        os.kill(pids[0], signal.SIGUSR1)
    finally:
        code = _finish(proc)
    text = log.read_text()
    assert code == 85, text
    steps = _committed(d)
    assert steps and "hpcproc: SIGUSR1: saving step" in text, text
    proc = run(_loop(d, ranks, "--early", "--steps", steps[-1] + 3, "--sleep", 0,
                     "--rows", 2_000_000), timeout=120)
    assert proc.returncode == 0 and f"start {steps[-1]}" in proc.stdout, proc.stdout


def test_requeued_job_signalled_at_start_is_not_forgotten(tmp_path):
    d, log = tmp_path / "ck", tmp_path / "out.log"
    assert run(_loop(d, 2, "--early", "--steps", 3, "--sleep", 0),
               timeout=120).returncode == 0
    proc = _start(_loop(d, 2, "--early", "--steps", 30), log)  # the requeued start
    try:
        pids = _ranks(proc.pid, 2, str(LOOP))
        _wait_caught(pids)
        os.kill(pids[1], signal.SIGUSR1)
    finally:
        code = _finish(proc)
    text = log.read_text()
    assert code == 85 and "start 3" in text, text
    assert _committed(d)[-1] == 4, text


def test_without_install_the_default_action_is_kept(tmp_path):
    # a program that never opted in: import hpcproc changed no disposition, and SIGUSR1
    # (before MPI_Init, which installs MPICH's own handler) ends it with the default action
    log = tmp_path / "out.log"
    proc = _start(_loop(tmp_path / "ck", 1, "--pause", 5, "--steps", 5), log)
    try:
        pids = _ranks(proc.pid, 1, str(LOOP))
        _wait_lines(log, "up ", 1)
        assert not _catches_usr1(pids[0])
        os.kill(pids[0], signal.SIGUSR1)
    finally:
        code = _finish(proc)
    assert code not in (0, 85) and not _committed(tmp_path / "ck")


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_cli_checkpoint_remembers_a_signal_from_its_start(tmp_path, ranks):
    import h5py
    import numpy as np

    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = np.random.default_rng(1).standard_normal(400_000)
    target = f"{tmp_path / 'd.h5'}:/x"
    ck, log = tmp_path / "ck", tmp_path / "out.log"
    args = ["stats", target, "--json", "--block-bytes", "16k", "--checkpoint", ck,
            "--checkpoint-every", 0]
    proc = _start([MPIEXEC, "-n", str(ranks), *hpcproc_cmd(*args)], log)
    try:
        pids = _ranks(proc.pid, ranks, "hpcproc")
        _wait_caught(pids)  # as early as the command can catch it: before MPI_Init
        os.kill(pids[-1], signal.SIGUSR1)
    finally:
        code = _finish(proc)
    text = log.read_text()
    assert code == 85, text
    assert "hpcproc: SIGUSR1: saving step 1, exiting 85" in text, text
    plain = json.loads(run(hpcproc_cmd("stats", target, "--json", "--block-bytes", "16k"),
                           ranks=ranks, timeout=120).stdout)
    again = run(hpcproc_cmd(*args), ranks=ranks, timeout=120)
    assert again.returncode == 0, again.stderr
    got = json.loads(again.stdout)
    assert got["resumed_from"] > 0
    assert [got[k] for k in ("count", "sum", "mean", "std", "min", "max")] == \
        [plain[k] for k in ("count", "sum", "mean", "std", "min", "max")]


def test_cli_installs_handlers_only_with_checkpoint():
    script = ("import signal, sys; from hpcproc.cli import _early_signals; "
              "_early_signals(sys.argv[1:]); "
              "print(signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None), "
              "signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "
              "'mpi4py.MPI' in sys.modules)")
    for argv, want in [(["stats", "f.h5:/x"], "False False False"),
                       (["stats", "f.h5:/x", "--checkpoint", "ck"], "True True False"),
                       (["sort", "f.h5:/k", "--checkpoint=ck"], "True True False")]:
        out = run([sys.executable, "-c", script, *argv], timeout=60)
        assert out.stdout.split() == want.split(), (argv, out.stdout, out.stderr)


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_sigint_to_one_rank_ends_the_whole_job(tmp_path, ranks):
    import h5py
    import numpy as np

    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = np.random.default_rng(2).standard_normal(2_000_000)
    d, log = tmp_path / "ck", tmp_path / "out.log"
    proc = _start([MPIEXEC, "-n", str(ranks), *hpcproc_cmd(
        "stats", f"{tmp_path / 'd.h5'}:/x", "--block-bytes", "4k", "--checkpoint", d,
        "--checkpoint-every", 0)], log)
    try:
        pids = _ranks(proc.pid, ranks, "hpcproc")
        deadline = time.monotonic() + 90
        while not _committed(d / "target-0") and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.01)
        t0 = time.monotonic()
        os.kill(pids[-1], signal.SIGINT)
        code = proc.wait(timeout=60)
        assert time.monotonic() - t0 < 30
    finally:
        _finish(proc)
    text = log.read_text()
    assert code != 0, text
    assert "KeyboardInterrupt" in text, text


@pytest.mark.parametrize("ranks", [2, 3])
def test_a_lone_failure_inside_steps_always_prints_its_message(tmp_path, ranks):
    # once in ~14 runs the job used to end with exit 1 and no message at all
    for i, rank in enumerate([0, ranks - 1] * 4):
        d = tmp_path / f"ck{i}"
        proc = run(_loop(d, ranks, "--steps", 6, "--sleep", 0, "--fail-rank", rank),
                   timeout=120)
        assert proc.returncode != 0, proc.stdout
        where = f"rank {rank}: " if rank else ""
        assert f"hpcproc: error: {where}lone failure on rank {rank} at step 2" \
            in proc.stderr, (rank, proc.returncode, proc.stdout, proc.stderr)



@pytest.mark.parametrize("ranks", [2, 3])
def test_sigint_while_mpi_starts_ends_the_job_at_once(tmp_path, ranks):
    """SIGINT to one rank as soon as hpcproc's handlers exist (before MPI_Init and the abort
    guard): that rank ends with one line and the launcher ends the others (the job hung
    until the launcher's timeout when the KeyboardInterrupt was raised inside MPI's
    start-up). With --checkpoint, a caught SIGUSR1 shows the handlers are installed."""
    import h5py
    import numpy as np

    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = np.arange(1000.0)
    log = tmp_path / "out.log"
    proc = _start([MPIEXEC, "-n", str(ranks), *hpcproc_cmd(
        "stats", f"{tmp_path}/d.h5:/x", "--checkpoint", tmp_path / "ck")], log)
    try:
        pids = _ranks(proc.pid, ranks, "hpcproc")
        _wait_caught(pids[-1:])
        t0 = time.monotonic()
        os.kill(pids[-1], signal.SIGINT)
        code = _finish(proc, timeout=60)
        took = time.monotonic() - t0
    finally:
        _finish(proc, timeout=5)
    text = log.read_text()
    assert code != 0 and took < 30, (code, took, text)
    assert "hpcproc: error:" in text and "interrupted" in text, text
    assert "Traceback" not in text, text
