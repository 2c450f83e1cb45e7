"""The ``hpcproc`` command under real ``mpiexec`` launches (run from the serial session)."""

import json
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from support import hpcproc_cmd, run

RANKS = [1, 2, 3]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    path = d / "n.h5"
    run(hpcproc_cmd("generate", path, "--kind", "normal", "--rows", "300k", "--cols", "2",
                    "--seed", "5"), ranks=2, check=True)
    return path


@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize("block", ["64M", "10k"])
def test_stats_matches_numpy(data_file, ranks, block):
    out = run(hpcproc_cmd("stats", f"{data_file}:/x", "--json", "--block-bytes", block),
              ranks=ranks, check=True)
    got = json.loads(out.stdout)
    with h5py.File(data_file) as f:
        ref = f["x"][...]
    assert got["count"] == ref.size
    np.testing.assert_allclose(got["sum"], ref.sum(), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got["mean"], ref.mean(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["std"], ref.std(), rtol=1e-12)
    assert got["min"] == ref.min() and got["max"] == ref.max()


@pytest.mark.parametrize("kind", ["normal", "uniform", "zipf", "particles"])
def test_generate_is_rank_count_independent(tmp_path, kind):
    files = {}
    for ranks in (1, 3):
        files[ranks] = tmp_path / f"{kind}{ranks}.h5"
        run(hpcproc_cmd("generate", files[ranks], "--kind", kind, "--rows", "2500000",
                        "--keys", "1000", "--seed", "9"), ranks=ranks, check=True)
    with h5py.File(files[1]) as a, h5py.File(files[3]) as b:
        names = []
        a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert names
        for n in names:
            np.testing.assert_array_equal(a[n][...], b[n][...])
        if kind in ("uniform", "zipf"):
            key = a["key"][...]
            assert key.min() >= 0 and key.max() < 1000
            counts = np.bincount(key, minlength=1000)
            if kind == "zipf":  # P(k) ~ (k+1)**-1.2: key 0 is 11**1.2 = 17.8x key 10
                assert 16 < counts[0] / counts[10] < 20
                assert counts[999] < counts[998] * 1.2  # truncated, not clipped
            else:
                assert counts.min() > 0.8 * counts.mean()
        if kind == "particles":
            np.testing.assert_array_equal(a["particles/id"][...], np.arange(2500000))
            assert a["particles/mass"].dtype == np.float32


def test_generate_by_bytes_and_compressed(tmp_path):
    path = tmp_path / "g.h5"
    out = run(hpcproc_cmd("generate", path, "--bytes", "8M", "--compression", "gzip",
                          "--chunks", "100k", "--json"), ranks=3, check=True)
    info = json.loads(out.stdout)
    assert info["datasets"]["/x"] == [1 << 20]
    with h5py.File(path) as f:
        assert f["x"].compression == "gzip" and f["x"].chunks == (100000,)
        ref = f["x"][...]
    st = json.loads(run(hpcproc_cmd("stats", f"{path}:/x", "--json"), ranks=2,
                        check=True).stdout)
    np.testing.assert_allclose(st["mean"], ref.mean(), rtol=1e-12, atol=1e-15)


def _bad_inputs(tmp):
    with h5py.File(tmp / "bad.h5", "w") as f:
        f.create_group("grp")
        f["names"] = np.array([b"x", b"y"])
        f["x"] = np.arange(10.0)
    ro = tmp / "ro"
    ro.mkdir()
    return {
        "missing file": (["stats", f"{tmp}/nope.h5:/x"], "no such file"),
        "missing dataset": (["stats", f"{tmp}/bad.h5:/y"], "no dataset '/y'"),
        "group": (["stats", f"{tmp}/bad.h5:/grp"], "is a group, not a dataset"),
        "non-numeric": (["stats", f"{tmp}/bad.h5:/names"], "non-numeric dtype"),
        "no dataset part": (["stats", f"{tmp}/bad.h5"], "expected FILE:DATASET"),
        "missing output dir": (["generate", f"{tmp}/no/dir/o.h5"], "directory does not exist"),
        "bad size": (["generate", f"{tmp}/o.h5", "--rows", "lots"],
                     "argument --rows: must be a count"),
        "dataset in output": (["generate", f"{tmp}/o.h5:/x"], "give a file name"),
        "unknown option": (["stats", f"{tmp}/bad.h5:/x", "--frobnicate"], "unrecognized"),
    }


@pytest.mark.parametrize("ranks", [1, 3])
def test_bad_input_one_message_nonzero_exit(tmp_path, ranks):
    for what, (args, expect) in _bad_inputs(tmp_path).items():
        t0 = time.monotonic()
        proc = run(hpcproc_cmd(*args), ranks=ranks, timeout=60)
        elapsed = time.monotonic() - t0
        assert proc.returncode != 0, what
        errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
        assert len(errors) == 1 and expect in errors[0], (what, proc.stderr)
        assert elapsed < 10, what
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5", "ro"]  # nothing written


def test_one_failing_rank_ends_the_job(tmp_path):
    """Rank 1 raises while rank 0 waits in a collective: the job ends, no hang."""
    script = tmp_path / "fail.py"
    script.write_text(textwrap.dedent("""
        from mpi4py import MPI
        from hpcproc.abort import abort_on_error
        comm = MPI.COMM_WORLD
        with abort_on_error(comm):
            if comm.rank == 1:
                raise RuntimeError("disk on fire")
            comm.Barrier()
    """))
    t0 = time.monotonic()
    proc = run([sys.executable, script], ranks=3, timeout=60)
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 10
    msgs = [ln for ln in proc.stderr.splitlines() if "disk on fire" in ln]
    assert msgs == ["hpcproc: error: rank 1: RuntimeError: disk on fire"]


def test_python_m_equals_command():
    a = run(hpcproc_cmd("info", "--json"), ranks=3, check=True)
    b = run([sys.executable, "-m", "hpcproc", "info", "--json"], ranks=3, check=True)
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja == jb and ja["ranks"] == 3 and ja["h5py_parallel"] in (True, False)
    assert a.stdout.count("{") == 1  # printed by rank 0 only


def test_import_is_cheap():
    code = ("import sys, time; t = time.perf_counter(); import hpcproc as hp; "
            "dt = time.perf_counter() - t; "
            "heavy = [m for m in ('mpi4py.MPI', 'numba', 'h5py') if m in sys.modules]; "
            "assert not heavy, heavy; assert dt < 0.5, dt; hp.DistArray; "
            "assert 'mpi4py.MPI' in sys.modules")
    run([sys.executable, "-c", code], check=True)
