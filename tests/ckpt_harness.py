"""Drive ``examples/checkpointed_loop.py`` under real ``mpiexec`` launches and kill it.

Shared by ``test_checkpoint_faults.py`` (a modest CI loop) and ``soak_checkpoint.py``
(hundreds of trials). Independent of hpcproc's reader: "committed" is checked here from
the directory itself (a ``step-N`` directory whose ``manifest.json`` parses as JSON).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "checkpointed_loop.py"
BIN = Path(sys.executable).parent
MPIEXEC = os.environ.get("HPCPROC_MPIEXEC", str(BIN / "mpiexec"))

# crash points of a save (hpcproc/checkpoint/_crash.py) and the ranks that reach them
POINTS = {"write-mid": "any", "write-done": "any", "manifest": "root", "renamed": "root",
          "latest": "root", "retention": "root"}


def example_cmd(directory, ranks, *args):
    return [MPIEXEC, "-n", str(ranks), sys.executable, str(EXAMPLE), str(directory),
            *map(str, args)]


def parse(stdout: str) -> dict:
    """The example's report: pids, restored step/digest, per-step digests, final."""
    out = {"pids": [], "restored": None, "fresh": False, "states": {}, "final": None,
           "steps": []}
    for line in stdout.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "pids":
            out["pids"] = [int(p) for p in parts[1:]]
        elif parts[0] == "fresh":
            out["fresh"] = True
        elif parts[0] == "restored":
            out["restored"] = (int(parts[1]), parts[2])
        elif parts[0] == "state":
            out["states"][int(parts[1])] = parts[2]
        elif parts[0] == "step":
            out["steps"].append(int(parts[1]))
        elif parts[0] == "final":
            out["final"] = parts[1]
    return out


def run_example(directory, ranks, args=(), env=None, timeout=120):
    proc = subprocess.run(example_cmd(directory, ranks, *args), capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))
    return proc, parse(proc.stdout)


def reference(directory, ranks, args=()):
    """Digests of an uninterrupted run: {step: digest} and the final digest."""
    proc, out = run_example(directory, ranks, [*args, "--digests"])
    if proc.returncode != 0:
        raise AssertionError(f"reference run failed:\n{proc.stdout}\n{proc.stderr}")
    return out["states"], out["final"]


def committed(directory) -> list[int]:
    """Committed steps, judged from the directory alone."""
    steps = []
    if not os.path.isdir(directory):
        return steps
    for name in os.listdir(directory):
        if name.startswith("step-") and name[5:].isdigit():
            try:
                with open(os.path.join(directory, name, "manifest.json")) as f:
                    json.load(f)
            except (OSError, ValueError):
                continue
            steps.append(int(name[5:]))
    return sorted(steps)


def run_killed_externally(directory, ranks, args, delay, whole_job, logfile, timeout=120):
    """Start the example, SIGKILL one rank (or the whole job) after ``delay`` seconds."""
    with open(logfile, "w") as log:
        proc = subprocess.Popen(example_cmd(directory, ranks, *args), stdout=log,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            time.sleep(delay)
            pids = parse(Path(logfile).read_text())["pids"]
            if proc.poll() is None:
                if whole_job or not pids:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    try:
                        os.kill(pids[-1], signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = Path(logfile).read_text()
    return proc.returncode, parse(text), text


def kill_trials(workdir, trials, seed, ranks=2, steps=8, keep=2, log=None):
    """Kill the example ``trials`` times at random points of its saves; after every
    kill, restart it and check that it restores the newest committed step with exactly
    the reference state, and that every completed run ends with the reference result.

    Returns counters. Raises AssertionError with the evidence on the first violation.
    """
    import random

    rnd = random.Random(seed)
    workdir = Path(workdir)
    base = ["--steps", steps, "--every", 1, "--keep", keep, "--rng", "--rows", 3000,
            "--watchdog", 60]
    states, final = reference(workdir / "reference", ranks, base)
    stats = {"kills": 0, "hooked": 0, "external": 0, "completed": 0, "runs": 0}
    seq = 0
    directory = workdir / f"run{seq}"
    while stats["kills"] < trials:
        expected = committed(directory)
        args = base + (["--async"] if rnd.random() < 0.3 else [])
        if rnd.random() < 0.75:
            point = rnd.choice(sorted(POINTS))
            who = rnd.choice(["0", "*"] if POINTS[point] == "root" else
                             [str(r) for r in range(ranks)] + ["*"])
            spec = f"{point}:{who}:{rnd.randint(1, 3)}"
            proc, out = run_example(directory, ranks, args, env={"HPCPROC_CKPT_CRASH": spec})
            code, text, how = proc.returncode, proc.stdout + proc.stderr, f"crash {spec}"
        else:
            delay = rnd.uniform(0.3, 0.9)  # the example starts in ~0.4 s, then saves often
            whole = rnd.random() < 0.5
            code, out, text = run_killed_externally(
                directory, ranks, args + ["--sleep", 0.03], delay, whole,
                workdir / "external.log")
            how = f"external kill after {delay:.2f}s ({'all ranks' if whole else 'one rank'})"
        stats["runs"] += 1
        context = f"run {stats['runs']} ({how}), committed before: {expected}\n{text}"
        if code == 0 or out["restored"] is not None or out["fresh"]:  # got past restore
            if expected:
                assert out["restored"] == (expected[-1], states[expected[-1]]), context
            else:
                assert out["fresh"], context
        after = committed(directory)
        assert len(after) <= keep + 1, f"retention: {after}\n{context}"
        if log:
            log(f"{how}: exit {code}, restored {out['restored'] and out['restored'][0]}, "
                f"committed now {after}")
        if code == 0:
            assert out["final"] == final, context
            assert after[-keep:] == list(range(steps - keep + 1, steps + 1)), context
            stats["completed"] += 1
            seq += 1
            directory = workdir / f"run{seq}"
        else:
            stats["kills"] += 1
            stats["hooked" if how.startswith("crash") else "external"] += 1
    proc, out = run_example(directory, ranks, base)
    expected_final = committed(directory)
    assert proc.returncode == 0 and out["final"] == final, proc.stdout + proc.stderr
    assert len(expected_final) == keep, expected_final
    leftovers = [n for n in os.listdir(directory) if n.startswith(".")]
    assert leftovers == [], leftovers
    stats["completed"] += 1
    return stats
