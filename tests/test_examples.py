"""The examples run, under mpiexec, and print/write what an independent computation says."""

import re
import sys

import h5py
import numpy as np
import pytest

from support import BIN, REPO, run


@pytest.mark.parametrize("ranks", [2, 3])
def test_quickstart(tmp_path, ranks):
    proc = run([sys.executable, REPO / "examples" / "quickstart.py", tmp_path], ranks=ranks,
               timeout=120, check=True)
    with h5py.File(tmp_path / "particles.h5") as f:
        vx, ids = f["particles/vx"][...], f["particles/id"][...]
    mean = float(re.search(r"mean \|vx\| = ([0-9.]+)", proc.stdout).group(1))
    assert abs(mean - np.abs(vx).mean()) < 1e-6
    with h5py.File(tmp_path / "fast.h5") as f:
        np.testing.assert_array_equal(f["fast/id"][...], ids[np.abs(vx) > 2.0])
        assert f["fast/id"].attrs["cut"] == 2.0


@pytest.mark.parametrize("ranks", [2, 3])
def test_sort_records(tmp_path, ranks):
    src, dst = tmp_path / "in.h5", tmp_path / "out.h5"
    run([BIN / "hpcproc", "generate", src, "--kind", "zipf", "--rows", "200k", "--keys",
         "5000", "--seed", "3"], ranks=2, check=True)
    proc = run([sys.executable, REPO / "examples" / "sort_records.py", src, dst],
               ranks=ranks, timeout=180, check=True)
    with h5py.File(src) as f:
        key, value = f["key"][...], f["value"][...]
    order = np.argsort(key, kind="stable")
    with h5py.File(dst) as f:
        np.testing.assert_array_equal(f["key"][...], key[order])
        np.testing.assert_array_equal(f["value"][...], value[order])
    rows = [int(r) for r in re.search(r"rows per rank \[([^\]]*)\]", proc.stdout).group(1)
            .split(",")]
    assert sum(rows) == len(key) and max(rows) <= 1.1 * len(key) / ranks


@pytest.mark.parametrize("ranks", [2, 3])
def test_particles_redistribute(tmp_path, ranks):
    out = tmp_path / "p.h5"
    steps, n, dt = 7, 20000, 0.5
    run([sys.executable, REPO / "examples" / "particles_redistribute.py", out, "--steps",
         str(steps), "--particles", str(n), "--dt", str(dt)], ranks=ranks, timeout=180,
        check=True)
    rng = np.random.default_rng(1234)  # the same particles, moved serially
    x, v = rng.random(n), rng.standard_normal(n) * 0.05
    for _ in range(steps):
        x = (x + dt * v) % 1.0
    with h5py.File(out) as f:
        ids, xs = f["particles/id"][...], f["particles/x"][...]
    assert sorted(ids) == list(range(n))  # nothing lost or duplicated
    np.testing.assert_array_equal(xs, x[ids])
    owner = np.minimum((xs * ranks).astype(int), ranks - 1)
    assert np.all(np.diff(owner) >= 0)  # written in rank order: slab 0, then slab 1, ...
