"""``hpcproc hist`` / ``hpcproc quantile`` under mpiexec (serial session; timeouts)."""

import json

import h5py
import numpy as np
import pytest

from support import SERIAL_ONLY, hpcproc_cmd, run

pytestmark = SERIAL_ONLY  # launches its own processes


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clik") / "d.h5"
    rng = np.random.default_rng(14)
    with h5py.File(path, "w") as f:
        f["x"] = rng.standard_normal(20001)
        f["g/k"] = rng.integers(0, 1000, (5000, 2))
    return path


def test_hist_text_of_many_bins_lists_the_non_empty_ones(data_file):
    """Ten million bins over 20,001 values: the text view lists the first and last 100
    non-empty bins (not 10**7 lines), and says how many it left out."""
    bins = 10**7
    out = run(hpcproc_cmd("hist", f"{data_file}:/x", "--bins", str(bins)), ranks=2,
              check=True)
    with h5py.File(data_file) as f:
        counts = np.histogram(f["x"][...], bins)[0]
    nonempty = counts[counts > 0]
    lines = out.stdout.splitlines()
    bars = [ln for ln in lines if ln.startswith("  [")]
    assert len(bars) == 200
    assert [int(b.split()[-2] if b.endswith("#") else b.split()[-1]) for b in bars] == \
        nonempty[:100].tolist() + nonempty[-100:].tolist()
    assert f"... {nonempty.size - 200} more non-empty bins" in out.stdout
    assert f"({bins} bins; {bins - nonempty.size} empty ones not listed" in out.stdout
    assert len(out.stdout) < 40_000


@pytest.mark.parametrize("ranks", [1, 3])
def test_hist_json_equals_numpy(data_file, ranks):
    out = run(hpcproc_cmd("hist", f"{data_file}:/x", f"{data_file}:/g/k", "--bins", "64",
                          "--json", "--block-bytes", "8k"), ranks=ranks, check=True)
    got = json.loads(out.stdout)
    with h5py.File(data_file) as f:
        refs = [np.histogram(f["x"][...], 64), np.histogram(f["g/k"][...], 64)]
    for g, (counts, edges) in zip(got, refs):
        assert g["counts"] == counts.tolist()
        np.testing.assert_array_equal(g["edges"], edges)
    out = run(hpcproc_cmd("hist", f"{data_file}:/x", "--bins", "4", "--range", "-1", "1"),
              ranks=2, check=True)
    ref = np.histogram(h5py.File(data_file)["x"][...], 4, range=(-1, 1))[0]
    assert f"{ref.sum()} values in range" in out.stdout
    assert all(str(c) in out.stdout for c in ref)


def test_quantile_json_exact(data_file):
    out = run(hpcproc_cmd("quantile", f"{data_file}:/x", "-q", "0.5", "0.99", "0",
                          "--json"), ranks=2, check=True)
    got = json.loads(out.stdout)
    x = h5py.File(data_file)["x"][...]
    assert got["values"] == np.quantile(x, [0.5, 0.99, 0]).tolist()
    out = run(hpcproc_cmd("quantile", f"{data_file}:/x", "-q", "0.9", "--sketch", "--json"),
              ranks=3, check=True)
    est, exact = json.loads(out.stdout)["values"][0], np.quantile(x, 0.9)
    assert abs(est - exact) <= 0.01 * abs(exact) * 1.0001


def test_bad_usage_exits_2_once(data_file):
    out = run(hpcproc_cmd("quantile", f"{data_file}:/x", "-q", "1.5"), ranks=2)
    want = "argument -q/--q: must be a number in [0, 1]"
    assert out.returncode == 2 and out.stderr.count(want) == 1
    out = run(hpcproc_cmd("hist", f"{data_file}:/nope"), ranks=2)
    assert out.returncode == 1 and out.stderr.count("error") == 1
