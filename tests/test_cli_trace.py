"""Command line: -v/-q/--trace/--plot/--no-progress, --json report, progress bar, logging.

Launches its own processes (mpiexec, a pseudo-terminal): serial session only.
"""

import json
import os
import pty
import select
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from support import MPIEXEC, SERIAL_ONLY, hpcproc_cmd, run

pytestmark = SERIAL_ONLY  # launches its own processes


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("clitrace") / "d.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.random.default_rng(3).standard_normal(200_003)
    return path


def test_global_options_on_every_subcommand():
    from hpcproc.cli import _with_global_options, build_parser
    p = _with_global_options(build_parser())
    a = p.parse_args(["-v", "info"])
    assert (a.verbose, a.quiet, a.trace, a.phase_plot, a.no_progress) == (1, False, None, None,
                                                                        False)
    a = p.parse_args(["stats", "f.h5:/x", "-vv", "--trace", "t.json", "--plot", "p.png",
                      "--no-progress"])
    assert (a.verbose, a.trace, a.phase_plot, a.no_progress) == (2, "t.json", "p.png", True)
    a = p.parse_args(["ckpt", "verify", "d", "--quiet", "--trace", "t.json"])
    assert a.quiet and a.trace == "t.json"
    # options a command already had keep their meaning there
    a = p.parse_args(["hist", "f.h5:/x", "--plot", "h.png", "--phase-plot", "p.png"])
    assert (a.plot, a.phase_plot) == ("h.png", "p.png")
    a = p.parse_args(["quantile", "f.h5:/x", "-q", "0.5", "0.9", "--quiet"])
    assert a.q == [0.5, 0.9] and a.quiet


def test_json_report_trace_and_plot(data, tmp_path):
    ref = h5py.File(data)["x"][...]
    plain = run(hpcproc_cmd("stats", f"{data}:/x", "--block-bytes", "64k"), ranks=3,
                check=True)
    t0 = time.perf_counter()
    out = run(hpcproc_cmd("stats", f"{data}:/x", "--json", "--block-bytes", "64k",
                          "--trace", tmp_path / "t.json", "--plot", tmp_path / "p.png"),
              ranks=3, check=True)
    elapsed = time.perf_counter() - t0
    got = json.loads(out.stdout)
    assert got["count"] == ref.size and got["min"] == ref.min() and got["max"] == ref.max()
    assert got["mean"] == pytest.approx(ref.mean(), rel=1e-12)
    rep = got["report"]
    assert rep["ranks"] == 3
    assert rep["phases"]["read"]["bytes_read"] == ref.nbytes
    assert rep["wall"]["max"] < elapsed
    for p in rep["phases"].values():
        assert len(p["seconds"]) == 3 and p["min"] <= p["mean"] <= p["max"]
        assert p["max"] == p["seconds"][p["slowest_rank"]]
    # tracing on (this run) and off (the plain run) print the same numbers
    with_trace = run(hpcproc_cmd("stats", f"{data}:/x", "--block-bytes", "64k", "--trace",
                                 tmp_path / "t2.json"), ranks=3, check=True)
    assert with_trace.stdout == plain.stdout
    doc = json.loads((tmp_path / "t.json").read_text())
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    for r in range(3):
        assert {"read", "compute", "wait"} <= {e["name"] for e in spans if e["pid"] == r}
    if _has_matplotlib():
        assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not (tmp_path / "p.png").exists()


def _has_matplotlib():
    return subprocess.run([sys.executable, "-c", "import matplotlib"]).returncode == 0


def test_verbose_report_once_and_quiet(data):
    out = run(hpcproc_cmd("hist", f"{data}:/x", "--bins", "8", "-v"), ranks=2, check=True)
    assert out.stderr.count("phase times on 2 ranks") == 1
    assert "read" in out.stderr and "compute" in out.stderr
    assert "hpcproc[rank 0] INFO: hist on 2 ranks" in out.stderr
    assert "rank 1] INFO" not in out.stderr  # -v: info of rank 0 only
    out = run(hpcproc_cmd("hist", f"{data}:/x", "--bins", "8", "-vv"), ranks=2, check=True)
    assert "hpcproc[rank 1] INFO: hist on 2 ranks" in out.stderr
    out = run(hpcproc_cmd("hist", f"{data}:/x", "--bins", "8"), ranks=2, check=True)
    assert "phase times" not in out.stderr and "INFO" not in out.stderr


def test_warning_once_per_job(data, tmp_path):
    fake = tmp_path / "nompl" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('matplotlib hidden by the test')\n")
    env = {"PYTHONPATH": str(fake.parent)}
    out = run(hpcproc_cmd("stats", f"{data}:/x", "--plot", tmp_path / "p.png"), ranks=3,
              env=env, check=True)
    assert out.stderr.count("needs matplotlib") == 1
    assert "hpcproc[rank 0] WARNING" in out.stderr
    assert not (tmp_path / "p.png").exists()
    out = run(hpcproc_cmd("stats", f"{data}:/x", "--plot", tmp_path / "p.png", "-q"), ranks=3,
              env=env, check=True)
    assert out.stderr == ""


def _in_pty(cmd, env, timeout=120):
    """Run ``cmd`` with stdout and stderr on a pseudo-terminal; return its output."""
    master, slave = pty.openpty()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI_LOCAL"))}
    full.update(env)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=full)
    os.close(slave)
    chunks, end = [], time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the terminal closed (every writer exited)
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=max(1.0, end - time.monotonic())) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return b"".join(chunks).decode(errors="replace")


FAST = {"HPCPROC_PROGRESS_INTERVAL": "0"}  # draw after every block (the test is short)


@pytest.mark.parametrize("ranks", [None, 2])
def test_progress_under_a_terminal(data, ranks):
    cmd = hpcproc_cmd("stats", f"{data}:/x", "--block-bytes", "64k")
    if ranks:
        cmd = [MPIEXEC, "-n", str(ranks)] + cmd
    text = _in_pty(cmd, FAST)
    assert "ETA" in text and "100.0%" in text
    assert text.count("100.0%") == 1  # the final line once: rank 0 only
    assert f"{data}:/x [" in text
    assert "mean" in text  # the results follow
    text = _in_pty(cmd + ["--no-progress"], FAST)
    assert "ETA" not in text and "mean" in text


def test_no_progress_when_not_a_terminal(data):
    out = run(hpcproc_cmd("stats", f"{data}:/x", "--block-bytes", "64k"), ranks=2, env=FAST,
              check=True, start_new_session=True)
    assert "ETA" not in out.stderr + out.stdout
    out = run(hpcproc_cmd("stats", f"{data}:/x", "--block-bytes", "64k"), ranks=2,
              env={**FAST, "HPCPROC_PROGRESS": "1"}, check=True)
    assert out.stderr.count("100.0%") == 1  # forced on: still rank 0 only


def test_should_enable_rules():
    from hpcproc.observe import progress

    class Tty:
        def isatty(self):
            return True

    class Pipe:
        def isatty(self):
            return False

    os.environ.pop("HPCPROC_PROGRESS", None)
    assert progress.should_enable(0, streams=(Tty(), Tty()))
    assert not progress.should_enable(1, streams=(Tty(), Tty()))  # never other ranks
    assert not progress.should_enable(0, no_progress=True, streams=(Tty(), Tty()))
    assert not progress.should_enable(0, quiet=True, streams=(Tty(), Tty()))


def test_checkpointed_stats_progress_and_report(data, tmp_path):
    cmd = hpcproc_cmd("stats", f"{data}:/x", "--block-bytes", "64k", "--checkpoint",
                      tmp_path / "ck1", "--checkpoint-every", "0")
    text = _in_pty([MPIEXEC, "-n", "2"] + cmd, FAST)
    assert text.count("100.0%") == 1 and "ETA" in text and "mean" in text
    out = run(hpcproc_cmd("stats", f"{data}:/x", "--block-bytes", "64k", "--checkpoint",
                          tmp_path / "ck2", "--checkpoint-every", "0", "--json"),
              ranks=2, check=True)
    rep = json.loads(out.stdout)["report"]
    ck = rep["phases"]["checkpoint"]
    steps = sorted((tmp_path / "ck2" / "target-0").glob("step-*"))
    assert steps and ck["bytes_written"] > 0 and min(ck["seconds"]) > 0
    assert rep["phases"]["read"]["bytes_read"] == h5py.File(data)["x"].nbytes
