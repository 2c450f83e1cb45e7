"""examples/insitu_simulation.py against a serial numpy stencil, and interrupted + resumed
(on other rank counts) against uninterrupted."""

import json
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

from support import MPIEXEC, REPO, SERIAL_ONLY, child_env, signal_after

pytestmark = SERIAL_ONLY  # launches its own processes

SIM = REPO / "examples" / "insitu_simulation.py"
NY, NX, ALPHA = 45, 38, 0.2


def reference(steps, every, snap_every):
    """Serial heat diffusion, written independently of the example: the whole grid with
    a zero border, the same five-point formula. Returns final field, analyses, snaps."""
    i = np.arange(NY)[:, None] + 0.5
    j = np.arange(NX)[None, :] + 0.5
    u = np.sin(np.pi * i / NY) * np.sin(np.pi * j / NX)
    u[NY // 4:NY // 2, NX // 4:NX // 2] += 1.0
    history, snaps = [], {}
    for n in range(1, steps + 1):
        p = np.pad(u, 1)
        u = u + ALPHA * ((p[:-2, 1:-1] + p[2:, 1:-1]) + (p[1:-1, :-2] + p[1:-1, 2:]) - 4.0 * u)
        if n % every == 0:
            history.append({"step": n, "heat": u.sum(), "mean": u.mean(), "std": u.std(),
                            "min": u.min(), "max": u.max(),
                            "hist": np.histogram(u, bins=32, range=(0.0, 2.0))[0].tolist()})
        if n % snap_every == 0:
            snaps[n] = u.copy()
    return u, history, snaps


def sim_args(run_dir, steps, **opts):
    args = [sys.executable, str(SIM), str(run_dir), "--steps", str(steps), "--ny", str(NY),
            "--nx", str(NX), "--alpha", str(ALPHA)]
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def launch(ranks, args, timeout=120, cwd=None):
    proc = subprocess.run([MPIEXEC, "-n", str(ranks), *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env(), cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def interrupt(ranks, args, after_lines, timeout=120):
    """Start the simulation, send SIGUSR1 to mpiexec (it forwards the signal to the ranks)
    once ``after_lines`` analysis lines are out; returns (exit status, stdout + stderr)."""
    status, out, err = signal_after(args, ranks=ranks, lines=after_lines, prefix="step",
                                    sig=signal.SIGUSR1, timeout=timeout)
    return status, out + err


def results(run_dir):
    with h5py.File(run_dir / "final.h5") as f:
        final = f["T"][...]
    snaps = {}
    for name in sorted(os.listdir(run_dir)):
        if name.startswith("snap-"):
            with h5py.File(run_dir / name) as f:
                snaps[int(f["T"].attrs["step"])] = f["T"][...]
    with open(run_dir / "insitu.json") as f:
        return final, json.load(f)["history"], snaps


@pytest.mark.parametrize("ranks", [2, 3])
def test_insitu_matches_serial_reference(tmp_path, ranks):
    steps, every, snap = 120, 30, 60
    proc = launch(ranks, sim_args(tmp_path, steps, analyse_every=every, snapshot_every=snap))
    assert proc.stdout.splitlines()[0] == "fresh start"
    assert proc.stdout.splitlines()[-1] == "done"
    final, history, snaps = results(tmp_path)
    ref, ref_history, ref_snaps = reference(steps, every, snap)
    np.testing.assert_array_equal(final, ref)  # the same operations in the same order
    assert sorted(snaps) == sorted(ref_snaps) == [60, 120]
    for n in ref_snaps:
        np.testing.assert_array_equal(snaps[n], ref_snaps[n])
    assert [h["step"] for h in history] == [30, 60, 90, 120]
    for got, want in zip(history, ref_history):
        assert got["hist"] == want["hist"]
        assert got["min"] == want["min"] and got["max"] == want["max"]
        for key in ("heat", "mean", "std"):
            assert got[key] == pytest.approx(want[key], rel=1e-12), key
    # physics sanity: the held-at-zero edges drain heat every interval
    heats = [h["heat"] for h in history]
    assert all(a > b for a, b in zip(heats, heats[1:]))


def test_insitu_interrupted_resumed_equals_uninterrupted(tmp_path):
    steps = 400
    opts = dict(analyse_every=10, snapshot_every=100, checkpoint_every=1000)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    launch(2, sim_args(whole, steps, **opts))
    # interrupted twice (2 ranks, then 3), finished on 2 ranks
    resumed = []
    for ranks, after in ((2, 3), (3, 3)):
        status, out = interrupt(ranks, sim_args(parts, steps, sleep=0.01, **opts), after)
        assert status == 85, out
        assert not (parts / "final.h5").exists()
        resumed += [int(ln.split()[-1]) for ln in out.splitlines() if ln.startswith("resumed")]
    out = launch(2, sim_args(parts, steps, **opts)).stdout
    resumed += [int(ln.split()[-1]) for ln in out.splitlines() if ln.startswith("resumed")]
    assert len(resumed) == 2 and 0 < resumed[0] < resumed[1] < steps, resumed
    final, history, snaps = results(parts)
    final_w, history_w, snaps_w = results(whole)
    np.testing.assert_array_equal(final, final_w)
    # Sums are merged across ranks in rank order, so the steps analysed on 3 ranks may
    # differ in the last bit; everything else is exact.
    assert [h["step"] for h in history] == [h["step"] for h in history_w]
    for got, want in zip(history, history_w):
        assert (got["hist"], got["min"], got["max"]) == (want["hist"], want["min"], want["max"])
        for key in ("heat", "mean", "std"):
            assert got[key] == pytest.approx(want[key], rel=1e-13), key
    assert sorted(snaps) == sorted(snaps_w) == [100, 200, 300, 400]
    for n in snaps:
        np.testing.assert_array_equal(snaps[n], snaps_w[n])
    ref, _, _ = reference(steps, 10, 100)
    np.testing.assert_array_equal(final, ref)


def test_readme_simulation_snippet(tmp_path):
    """docs/simulation.md's lines run as printed (with a stand-in
    stencil that multiplies by 0.999) and give what plain numpy says."""
    readme = (REPO / "docs" / "simulation.md").read_text()
    section = readme.split("# Use it from your simulation", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    prog = tmp_path / "snippet.py"
    prog.write_text(
        "import numpy as np\nfrom mpi4py import MPI\nimport hpcproc as hp\n"
        "ny, nx, n_steps = 21, 5, 1000\n"
        "first_row, stop = hp.block_range(ny, MPI.COMM_WORLD.size, MPI.COMM_WORLD.rank)\n"
        "my_rows = np.arange(first_row * nx, stop * nx, dtype=float).reshape(-1, nx) / 100\n"
        "def halo_exchange(u, comm):\n    return None\n"
        "def advance(u, halo):\n    return u * 0.999\n"
        + code +
        "if comm.rank == 0:\n    print(repr(s['mean']), counts.tolist())\n")
    proc = launch(3, [sys.executable, str(prog)], cwd=tmp_path)
    ref = np.arange(105, dtype=float).reshape(21, 5) / 100
    for _ in range(1000):
        ref = ref * 0.999
    mean, counts = proc.stdout.split(" ", 1)
    assert float(mean) == pytest.approx(ref.mean(), rel=1e-12)
    assert json.loads(counts) == np.histogram(ref, bins=32, range=(0.0, 2.0))[0].tolist()
    with h5py.File(tmp_path / "run" / "snap-0001000.h5") as f:
        np.testing.assert_array_equal(f["T"][...], ref)
