"""``hpcproc hist/sort/groupby --checkpoint DIR`` resume after a kill -9 (real mpiexec
processes, each launch with a timeout; crash points from ``HPCPROC_CKPT_CRASH``)."""

import json

import h5py
import numpy as np
import pytest

from support import hpcproc_cmd, run


def _launched_by_mpiexec() -> bool:
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_size() > 1


pytestmark = pytest.mark.skipif(_launched_by_mpiexec(), reason="launches mpiexec itself: "
                                "runs from the serial session only")


def test_hist_checkpoint_resumes_after_kill(tmp_path):
    data = tmp_path / "n.h5"
    run(hpcproc_cmd("generate", data, "--rows", "60k", "--seed", 4), ranks=2, check=True)
    with h5py.File(data) as f:
        x = f["x"][...]
    opts = ["--bins", 9, "--json", "--block-bytes", "40k", "--checkpoint-every", 0]

    def hist(ckdir, ranks, env=None, extra=()):
        return run(hpcproc_cmd("hist", f"{data}:/x", *opts, *extra, "--checkpoint", ckdir),
                   ranks=ranks, env=env, timeout=120)

    rr = 2 * (40 * 1024 // 8)  # rows per round: 40 KiB of float64 per rank, 2 ranks
    counts, edges = np.histogram(x, 9)
    killed = hist(tmp_path / "ck", 2, env={"HPCPROC_CKPT_CRASH": "write-done:1:3"})
    assert killed.returncode != 0
    ls = run(hpcproc_cmd("ckpt", "ls", tmp_path / "ck" / "target-0"), check=True)
    assert "* step-000000000002" in ls.stdout, ls.stdout  # 2 rounds committed
    again = hist(tmp_path / "ck", 3)  # resumes on another rank count
    assert again.returncode == 0, again.stderr
    got = json.loads(again.stdout)
    assert got["resumed_from"] == 2 * rr and got["rounds"] == 6
    assert got["counts"] == counts.tolist() and got["edges"] == edges.tolist()
    # explicit range; killed after a committed step (rank 0, after 'latest')
    rng = ["--range", -1, 2.5]
    killed = hist(tmp_path / "ckr", 2, env={"HPCPROC_CKPT_CRASH": "latest:0:4"}, extra=rng)
    assert killed.returncode != 0
    got = json.loads(hist(tmp_path / "ckr", 2, extra=rng).stdout)
    assert got["resumed_from"] == 4 * rr
    assert got["counts"] == np.histogram(x, 9, range=(-1, 2.5))[0].tolist()
    wrong = hist(tmp_path / "ckr", 1, extra=["--range", -1, 3])
    assert wrong.returncode != 0 and "another run" in wrong.stderr and "range" in wrong.stderr


def _keys(tmp_path):
    data = tmp_path / "k.h5"
    run(hpcproc_cmd("generate", data, "--kind", "zipf", "--rows", "20k", "--keys", 300,
                    "--seed", 5), ranks=2, check=True)
    with h5py.File(data) as f:
        return data, f["key"][...], f["value"][...]


def test_sort_and_groupby_checkpoint_resume_after_the_exchange_phase(tmp_path):
    data, key, value = _keys(tmp_path)
    crash = {"HPCPROC_CKPT_CRASH": "latest:0:1"}  # killed right after the phase commit
    sort = ["sort", f"{data}:/key", "--with", "/value", "--out", tmp_path / "s.h5",
            "--checkpoint", tmp_path / "cks", "--json"]
    killed = run(hpcproc_cmd(*sort), ranks=2, env=crash, timeout=120)
    assert killed.returncode != 0 and not (tmp_path / "s.h5").exists()
    again = run(hpcproc_cmd(*sort), ranks=3, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["resumed"] is True
    order = np.argsort(key, kind="stable")
    with h5py.File(tmp_path / "s.h5") as f:
        np.testing.assert_array_equal(f["key"][...], key[order])
        # equal keys may come in any order: compare values as a multiset per key
        got = np.lexsort((f["value"][...], f["key"][...]))
        want = np.lexsort((value, key))
        np.testing.assert_array_equal(f["value"][...][got], value[want])

    gb = ["groupby", data, "--key", "/key", "--value", "/value", "--agg", "sum,count",
          "--out", tmp_path / "g.h5", "--checkpoint", tmp_path / "ckg", "--json"]
    killed = run(hpcproc_cmd(*gb), ranks=2, env=crash, timeout=120)
    assert killed.returncode != 0 and not (tmp_path / "g.h5").exists()
    again = run(hpcproc_cmd(*gb), ranks=2, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["resumed"] is True
    uniq, inv = np.unique(key, return_inverse=True)
    with h5py.File(tmp_path / "g.h5") as f:
        o = np.argsort(f["key"][...])
        np.testing.assert_array_equal(f["key"][...][o], uniq)
        np.testing.assert_array_equal(f["value_count"][...][o], np.bincount(inv))
        np.testing.assert_allclose(f["value_sum"][...][o], np.bincount(inv, weights=value),
                                   rtol=1e-12)
    other = gb[:7] + ["sum"] + gb[8:]  # other options: refused, not silently reused
    wrong = run(hpcproc_cmd(*other), ranks=2, timeout=60)
    assert wrong.returncode == 1 and "another run" in wrong.stderr
    # raised on every rank together: one message, no MPI_Abort
    errors = [ln for ln in wrong.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and "abort" not in wrong.stderr.lower(), wrong.stderr
