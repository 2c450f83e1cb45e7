"""The batch scripts in slurm/ on a real single-node Slurm cluster (tests/slurm/cluster.sh).

Run in the serial session only (not marked mpi). The session fixture starts the cluster
(installing Debian's Slurm packages when missing) and always stops it; the tests skip
with the reason when Slurm cannot be installed or started, unless HPCPROC_REQUIRE_SLURM=1
(CI), where that is an error. HPCPROC_SLURM=0 skips them on purpose.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from support import MPIEXEC, REPO, SERIAL_ONLY

pytestmark = SERIAL_ONLY  # launches its own processes

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
RUN = REPO / "slurm" / "run.sbatch"
RESTARTABLE = REPO / "slurm" / "restartable.sbatch"
SIM = REPO / "examples" / "insitu_simulation.py"
# The script's own time-limit signal (B:USR1@300) must not fire during a test.
RESTART_OPTS = ["--ntasks-per-node=2", "--time=15", "--signal=B:USR1@30"]
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
        "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI_LOCAL", "SLURM_"))}
    env.update(extra)
    return env


class Cluster:
    """A running test cluster: submit jobs, query them, wait for them (all with timeouts)."""

    def __init__(self, conf: str, start_seconds: float):
        self.conf, self.start_seconds = conf, start_seconds
        self.env = _clean_env(SLURM_CONF=conf, HPCPROC_VENV=sys.prefix)

    def cmd(self, *args, timeout=30, check=True):
        proc = subprocess.run(list(map(str, args)), capture_output=True, text=True,
                              timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def sbatch(self, script, *args, opts=(), env=None, cwd) -> int:
        extra = dict(self.env, **(env or {}))
        proc = subprocess.run(["sbatch", "--parsable", *opts, str(script), *map(str, args)],
                              capture_output=True, text=True, timeout=30, env=extra, cwd=cwd)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.strip().split(";")[0])

    def job(self, jobid: int) -> dict:
        out = self.cmd("scontrol", "show", "job", "-o", jobid)
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait(self, jobid: int, timeout: float, output: Path | None = None) -> dict:
        """Poll until the job has ended; on timeout cancel it and fail with its output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(jobid)
            if info["JobState"] in DONE:
                return info
            time.sleep(0.5)
        self.cmd("scancel", jobid, check=False)
        text = output.read_text() if output and output.exists() else ""
        raise AssertionError(f"job {jobid} not done after {timeout} s: {info}\n{text}")


@pytest.fixture(scope="session")
def slurm():
    if os.environ.get("HPCPROC_SLURM") == "0":
        pytest.skip("HPCPROC_SLURM=0")
    required = os.environ.get("HPCPROC_REQUIRE_SLURM") == "1"
    state = tempfile.mkdtemp(prefix="hpcproc-slurm-")
    env = _clean_env(HPCPROC_SLURM_DIR=state)

    def down():
        subprocess.run(["bash", str(CLUSTER), "down"], env=env, timeout=120,
                       capture_output=True)

    t0 = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(CLUSTER), "up"], env=env, timeout=900,
                              capture_output=True, text=True)
        ok, why = proc.returncode == 0, proc.stderr.strip()[-2000:]
    except subprocess.TimeoutExpired:
        ok, why = False, "tests/slurm/cluster.sh up timed out"
    if not ok:
        down()
        (pytest.fail if required else pytest.skip)(f"no Slurm cluster (cluster.sh up): {why}")
    # A SIGTERM (e.g. the Makefile's `timeout`) unwinds like Ctrl-C, so the cluster stops.
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield Cluster(os.path.join(state, "slurm.conf"), time.monotonic() - t0)
    finally:
        signal.signal(signal.SIGTERM, previous)
        down()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def wait_for(path: Path, predicate, timeout: float, what: str) -> str:
    """Poll a job's output file until ``predicate(text)``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if predicate(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{text}")


def stats_lines(text: str) -> dict:
    return {m[0]: float(m[1]) for m in re.findall(r"^  (\w+)\s+(\S+)$", text, re.M)}


@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_run_sbatch_stats_two_ranks(slurm, tmp_path, launcher):
    rng = np.random.default_rng(11)
    data = rng.standard_normal(200_003) * 3.0 + 1.5
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = data
    out = tmp_path / "job.out"
    job = slurm.sbatch(RUN, "stats", f"{tmp_path / 'd.h5'}:/x", "--timings", cwd=tmp_path,
                       opts=["--ntasks-per-node=2", "--time=5", f"--output={out}"],
                       env={"HPCPROC_LAUNCHER": launcher})
    info = slurm.wait(job, 120, out)
    text = out.read_text()
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), text
    assert text.count("/d.h5:/x") == 1, text  # printed once: one job of 2 ranks
    assert re.search(r" on 2 ranks$", text, re.M), text
    got = stats_lines(text)
    want = {"count": data.size, "sum": data.sum(), "mean": data.mean(), "std": data.std(),
            "min": data.min(), "max": data.max()}
    assert set(want) <= set(got), text
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=2e-9), key  # printed with 10 digits


def _sim_args(run_dir, **opts):
    from test_insitu import NX, NY  # noqa: PLC0415  (the serial reference's grid)
    args = [SIM, run_dir, "--ny", NY, "--nx", NX, "--alpha", 0.2]
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}", v]
    return list(map(str, args))


def _results(run_dir):
    from test_insitu import results  # noqa: PLC0415
    return results(run_dir)


def test_restartable_requeues_until_done(slurm, tmp_path):
    """Signalled three times, the job checkpoints, exits 85, is requeued and resumes;
    the final field, snapshots and in-situ history equal an uninterrupted run's."""
    from test_insitu import reference  # noqa: PLC0415

    steps = 300
    opts = dict(steps=steps, analyse_every=10, snapshot_every=100, checkpoint_every=1000)
    out, run_dir = tmp_path / "job.out", tmp_path / "run"
    job = slurm.sbatch(RESTARTABLE, "python", *_sim_args(run_dir, sleep=0.03, **opts),
                       cwd=tmp_path, opts=RESTART_OPTS + [f"--output={out}"])
    latencies = []
    try:
        for k in range(3):
            marker = f"job {job} start {k} "

            def running(text, marker=marker):  # the Checkpointer is active: it is stepping
                tail = text.partition(marker)[2]
                return re.search(r"^(fresh start|resumed at step \d+)$", tail, re.M) and \
                    re.search(r"^step ", tail, re.M)

            wait_for(out, running, 90, f"start {k} of job {job} to run")
            t0 = time.monotonic()
            slurm.cmd("scancel", "--signal=USR1", "--batch", job)
            wait_for(out, lambda text: text.count("requeueing job") == k + 1, 60,
                     f"job {job} to checkpoint and exit 85")
            t1 = time.monotonic()
            wait_for(out, lambda text: f"job {job} start {k + 1} " in text, 90,
                     f"job {job} to be requeued and started again")
            latencies.append((t1 - t0, time.monotonic() - t1))
        info = slurm.wait(job, 120, out)
    finally:
        slurm.cmd("scancel", job, check=False)
    text = out.read_text()
    print("signal -> exit 85, requeue -> next start (s): "
          + ", ".join(f"{a:.1f} + {b:.1f}" for a, b in latencies))
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "3"), text
    starts = re.findall(rf"^hpcproc-restartable: job {job} start (\d+) ", text, re.M)
    assert starts == ["0", "1", "2", "3"], text  # SLURM_RESTART_COUNT unset, 1, 2, 3
    assert text.count("checkpointed (status 85), requeueing") == 3, text
    resumed = [int(s) for s in re.findall(r"^resumed at step (\d+)$", text, re.M)]
    assert len(resumed) == 3 and 0 < resumed[0] < resumed[1] < resumed[2] < steps, text
    assert text.rstrip().endswith("hpcproc-restartable: finished"), text

    whole = tmp_path / "whole"
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, *_sim_args(whole, **opts)],
                          capture_output=True, text=True, timeout=120, env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    final, history, snaps = _results(run_dir)
    final_w, history_w, snaps_w = _results(whole)
    np.testing.assert_array_equal(final, final_w)
    assert history == history_w  # same rank count: every in-situ record bit for bit
    assert sorted(snaps) == sorted(snaps_w) == [100, 200, 300]
    for n in snaps:
        np.testing.assert_array_equal(snaps[n], snaps_w[n])
    np.testing.assert_array_equal(final, reference(steps, 10, 100)[0])


def test_restartable_with_mpiexec_inside_the_allocation(slurm, tmp_path):
    """HPCPROC_LAUNCHER=mpiexec: the script's signal reaches the ranks through mpiexec,
    the job is requeued once and ends with the state an uninterrupted run reaches."""
    loop = REPO / "examples" / "checkpointed_loop.py"
    args = ["--steps", "40", "--every", "1000", "--rows", "3000"]
    out = tmp_path / "job.out"
    job = slurm.sbatch(RESTARTABLE, "python", loop, tmp_path / "ck", *args, "--sleep", "0.1",
                       cwd=tmp_path, opts=RESTART_OPTS + [f"--output={out}"],
                       env={"HPCPROC_LAUNCHER": "mpiexec"})
    try:
        wait_for(out, lambda text: "fresh" in text and "step 3" in text, 90, "the loop to run")
        slurm.cmd("scancel", "--signal=USR1", "--batch", job)
        info = slurm.wait(job, 120, out)
    finally:
        slurm.cmd("scancel", job, check=False)
    text = out.read_text()
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), text
    restored = re.findall(r"^restored (\d+) ", text, re.M)
    assert len(restored) == 1 and 0 < int(restored[0]) < 40, text
    whole = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(loop), str(tmp_path / "w"),
                            *args], capture_output=True, text=True, timeout=120, env=_clean_env())
    assert whole.returncode == 0, whole.stderr
    final = re.findall(r"^final (\w+)$", text, re.M)
    assert final == re.findall(r"^final (\w+)$", whole.stdout, re.M) and len(final) == 1, text


def _run_restartable(slurm, tmp_path, prog, timeout, **env):
    """Submit ``python prog`` through slurm/restartable.sbatch and wait for it to end:
    ``(job id, final job record, seconds from submission, output file)``."""
    out = tmp_path / "job.out"
    t0 = time.monotonic()
    job = slurm.sbatch(RESTARTABLE, "python", prog, cwd=tmp_path,
                       opts=RESTART_OPTS + [f"--output={out}"], env=env)
    info = slurm.wait(job, timeout, out)
    return job, info, time.monotonic() - t0, out


@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_failing_rank_fails_the_job_promptly(slurm, tmp_path, launcher):
    """One rank raises while the other waits in a collective: the job fails at once with
    a non-zero status and is not requeued."""
    prog = tmp_path / "fail.py"
    prog.write_text(
        "from mpi4py import MPI\n"
        "import hpcproc as hp\n"
        "comm = MPI.COMM_WORLD\n"
        "with hp.abort_on_error(comm):\n"
        "    if comm.rank == 1:\n"
        "        raise RuntimeError('rank 1 failed on purpose')\n"
        "    comm.Barrier()  # rank 0 would wait here forever without the abort\n")
    job, info, elapsed, out = _run_restartable(slurm, tmp_path, prog, 60,
                                               HPCPROC_LAUNCHER=launcher)
    time.sleep(3)  # longer than the scheduler interval: a requeue would show by now
    info2 = slurm.job(job)
    text = out.read_text()
    print(f"{launcher}: failing job ended {elapsed:.1f} s after submission")
    assert info["JobState"] == "FAILED" and info["ExitCode"] != "0:0", text
    assert (info2["JobState"], info2["Restarts"]) == ("FAILED", "0"), text
    assert "rank 1 failed on purpose" in text
    assert "requeueing" not in text and "finished" not in text
    assert elapsed < 30, f"the failing job took {elapsed:.1f} s"


def test_cluster_started(slurm):
    """The fixture's cluster has the machine's CPUs in one idle-or-busy partition node."""
    out = slurm.cmd("sinfo", "-h", "-N", "-o", "%c %T")
    cpus, state = out.split()
    assert int(cpus) == os.cpu_count()
    assert state in ("idle", "mixed", "allocated")
    print(f"cluster start: {slurm.start_seconds:.1f} s")


@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_dead_rank_does_not_hang_the_job(slurm, tmp_path, launcher):
    """A rank killed outright (no MPI_Abort) while the other waits in a collective: the
    job still ends, FAILED, within HPCPROC_SRUN_WAIT (srun) or at once (mpiexec)."""
    prog = tmp_path / "die.py"
    prog.write_text(
        "import os, signal\n"
        "from mpi4py import MPI\n"
        "comm = MPI.COMM_WORLD\n"
        "comm.Barrier()\n"
        "if comm.rank == 1:\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "comm.Barrier()  # rank 0 waits here for a rank that is gone\n")
    _, info, elapsed, out = _run_restartable(slurm, tmp_path, prog, 90,
                                             HPCPROC_LAUNCHER=launcher, HPCPROC_SRUN_WAIT="5")
    text = out.read_text()
    print(f"{launcher}: job with a killed rank ended {elapsed:.1f} s after submission")
    assert (info["JobState"], info["Restarts"]) == ("FAILED", "0"), text
    assert info["ExitCode"] != "0:0" and "requeueing" not in text, text
    assert elapsed < 45, f"took {elapsed:.1f} s"
