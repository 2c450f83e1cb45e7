"""The examples run, under mpiexec, and print/write what an independent computation says."""

import re
import sys

import h5py
import numpy as np
import pytest

from conftest import REPO, run


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
