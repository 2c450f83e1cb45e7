"""``hpcproc sort`` and ``hpcproc groupby`` under real mpiexec launches."""

import json

import h5py
import numpy as np
import pytest

from support import hpcproc_cmd, run


@pytest.fixture
def keyfile(tmp_path):
    rng = np.random.default_rng(7)
    n = 5000
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as f:
        f["key"] = rng.integers(-50, 50, n)
        f["value"] = rng.normal(size=n)
        f["id"] = np.arange(n)
        f["short"] = np.arange(n - 1)
    return path


def test_cli_sort(keyfile, tmp_path):
    out = tmp_path / "sorted.h5"
    proc = run(hpcproc_cmd("sort", f"{keyfile}:/key", "--with", "/value", "--with", "/id",
                           "--out", out, "--json"), ranks=3, timeout=90)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["rows"] == summary["result_rows"] == 5000
    assert sum(summary["rank_rows"]) == 5000 and summary["ranks"] == 3
    with h5py.File(keyfile) as f, h5py.File(out) as g:
        k, v = f["key"][:], f["value"][:]
        o = np.argsort(k, kind="stable")
        np.testing.assert_array_equal(g["key"][:], k[o])
        np.testing.assert_array_equal(g["value"][:], v[o])
        np.testing.assert_array_equal(g["id"][:], o)


def test_cli_groupby(keyfile, tmp_path):
    out = tmp_path / "groups.h5"
    proc = run(hpcproc_cmd("groupby", keyfile, "--key", "/key", "--value", "/value",
                           "--agg", "sum,count,max", "--out", out), ranks=2, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert "groupby 5000 rows" in proc.stdout
    with h5py.File(keyfile) as f, h5py.File(out) as g:
        k, v = f["key"][:], f["value"][:]
        u, inv, c = np.unique(k, return_inverse=True, return_counts=True)
        np.testing.assert_array_equal(g["key"][:], u)
        np.testing.assert_array_equal(g["value_count"][:], c)
        np.testing.assert_allclose(g["value_sum"][:], np.bincount(inv, weights=v))
        assert set(g) == {"key", "value_sum", "value_count", "value_max"}


def test_cli_errors(keyfile, tmp_path):
    proc = run(hpcproc_cmd("groupby", keyfile, "--key", "/key", "--value", "/value",
                           "--agg", "median", "--out", tmp_path / "x.h5"), ranks=2, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("--agg takes") == 1
    proc = run(hpcproc_cmd("sort", f"{keyfile}:/key", "--with", "/short", "--out",
                           tmp_path / "y.h5"), ranks=2, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("different lengths") == 1, proc.stderr
    assert not (tmp_path / "y.h5").exists()
