"""examples/climate_stats.py against the netCDF4 package's own CF decoding and numpy."""

import json
import sys

import numpy as np
import pytest

from support import REPO, SERIAL_ONLY, run

netCDF4 = pytest.importorskip("netCDF4")

pytestmark = SERIAL_ONLY  # launches its own processes


@pytest.mark.parametrize("ranks", [2, 3])
def test_climate_stats(tmp_path, ranks):
    path = tmp_path / "sample.nc"
    proc = run([sys.executable, REPO / "examples" / "climate_stats.py", path, "--generate",
                "--json", "--bins", "16"], ranks=ranks, timeout=180, check=True)
    got = {r["variable"]: r for r in json.loads(proc.stdout)}
    assert sorted(got) == ["t2m", "tp", "u10"]
    with netCDF4.Dataset(path) as nc:  # masks fill values and unpacks scale/offset itself
        for name, r in got.items():
            data = np.ma.masked_invalid(nc[name][:].astype(np.float64))
            valid = data.compressed()
            assert r["shape"] == list(data.shape)
            assert r["units"] == nc[name].units
            assert (r["count"], r["missing"]) == (valid.size, data.size - valid.size)
            assert r["min"] == valid.min() and r["max"] == valid.max()
            for key, want in (("mean", valid.mean()), ("std", valid.std())):
                assert r[key] == pytest.approx(want, rel=1e-12), (name, key)
            counts, edges = np.histogram(valid, bins=16, range=(valid.min(), valid.max()))
            assert r["hist_counts"] == counts.tolist(), name
            np.testing.assert_allclose(r["hist_edges"], edges, rtol=1e-15)
            cell = data.mean(axis=0)
            top = np.unravel_index(np.argmax(cell.filled(-np.inf)), cell.shape)
            assert r["time_mean_argmax"] == [int(i) for i in top], name
            assert r["time_mean_max"] == pytest.approx(float(cell[top]), rel=1e-12)
    assert got["u10"]["missing"] > 0 and got["tp"]["missing"] > 0  # fill values decoded
    assert got["t2m"]["missing"] == 0


def test_climate_stats_unknown_variable(tmp_path):
    path = tmp_path / "sample.nc"
    proc = run([sys.executable, REPO / "examples" / "climate_stats.py", path, "--generate",
                "--vars", "t2m", "sst"], ranks=2, timeout=120)
    assert proc.returncode != 0
    assert "no time-dependent variable sst" in proc.stderr
