"""``hpcproc lineage``, ``validate`` and ``diff`` as a user runs them (under mpiexec,
with timeouts, exit codes checked). Not marked mpi: each test launches its own jobs."""

import json
import zlib

import h5py
import numpy as np
import pytest

from support import BIN, hpcproc_cmd, run


@pytest.fixture
def data(tmp_path):
    x = np.arange(30_000, dtype=np.float64)
    k = np.arange(30_000, dtype=np.int64)
    k[20_001] = 7
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = x
        f["k"] = k
    y = x.copy()
    y[12_345] = -1.0
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset("x", data=y, chunks=(1000,))
    return tmp_path, x


def test_validate_exit_codes_table_and_json(data):
    d, x = data
    (d / "ok.toml").write_text('max_nan = 0\nmin = 0\nmonotonic = "increasing"\n')
    (d / "bad.toml").write_text('same_rows = true\n[datasets."/k"]\nunique = true\n'
                                '[datasets."/x"]\nmax = 29000\n')
    ok = run(hpcproc_cmd("validate", f"{d}/a.h5:/x", "--rules", d / "ok.toml"), ranks=2,
             timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "PASSED" in ok.stdout and f"crc32:{zlib.crc32(x.tobytes()):08x}" in ok.stdout
    bad = run(hpcproc_cmd("validate", f"{d}/a.h5:/x", f"{d}/a.h5:/k", "--rules",
                          d / "bad.toml", "--json"), ranks=3, timeout=120)
    assert bad.returncode == 1, bad.stderr
    out = json.loads(bad.stdout)
    assert not out["ok"]
    by = {r["target"]: {c["rule"]: c for c in r["checks"]} for r in out["reports"]}
    assert by[f"{d}/a.h5:/x"]["max"]["violations"] == 999
    assert by[f"{d}/a.h5:/x"]["max"]["first"][:2] == [29001, 29002]
    assert by[f"{d}/a.h5:/k"]["unique"]["first"] == [20001]
    assert by["same_rows"]["same_rows"]["ok"]
    text = run(hpcproc_cmd("validate", f"{d}/a.h5:/k", "--rules", d / "bad.toml"),
               ranks=2, timeout=120)
    assert text.returncode == 1 and "FAIL 20001" in text.stdout


def test_validate_usage_errors(data):
    d, _ = data
    (d / "typo.toml").write_text("max_nans = 0\n")
    r = run(hpcproc_cmd("validate", f"{d}/a.h5:/x", "--rules", d / "typo.toml"), ranks=2,
            timeout=120)
    assert r.returncode == 2 and "unknown" in r.stderr and r.stderr.count("error:") == 1
    r = run(hpcproc_cmd("validate", f"{d}/a.h5:/x", "--rules", d / "missing.toml"),
            timeout=120)
    assert r.returncode == 1 and "no such rules file" in r.stderr


def test_diff_exit_codes(data):
    d, x = data
    r = run(hpcproc_cmd("diff", f"{d}/a.h5:/x", f"{d}/b.h5:/x", "--json",
                        "--block-bytes", "8K"), ranks=3, timeout=120)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["differing"] == 1 and out["first"] == [[12345]]
    assert out["max_abs_diff"] == 12346.0
    r = run(hpcproc_cmd("diff", f"{d}/a.h5:/x", f"{d}/a.h5:/x"), ranks=2, timeout=120)
    assert r.returncode == 0 and "EQUAL" in r.stdout
    r = run(hpcproc_cmd("diff", f"{d}/a.h5:/x", f"{d}/b.h5:/x", "--atol", "-1"), timeout=120)
    assert r.returncode == 2


def test_lineage_command(data):
    d, x = data
    script = (f"import hpcproc as hp\nx = hp.read('{d}/a.h5', '/x')\n"
              f"hp.write('{d}/out.h5', '/y', x)\n")
    run([str(BIN / "python"), "-c", script], ranks=2, timeout=120, check=True)
    r = run(hpcproc_cmd("lineage", f"{d}/out.h5:/y", "--json"), ranks=2, timeout=120)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    crc = f"crc32:{zlib.crc32(x.tobytes()):08x}"
    assert rec["ranks"] == 2 and rec["inputs"][0]["checksum"] == crc
    r = run(hpcproc_cmd("lineage", f"{d}/out.h5:/y"), timeout=120)
    assert r.returncode == 0 and f"{d}/a.h5:/x rows 0:30000" in r.stdout
    r = run(hpcproc_cmd("lineage", f"{d}/a.h5:/x"), ranks=2, timeout=120)
    assert r.returncode == 1 and "no hpcproc_lineage" in r.stderr
