"""Attacks on today's other changes: the ahead-of-time kernels (a damaged extension
falls back to Numba), and shuffles given big-endian columns."""

import glob
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import hpcproc as hp
from support import REPO, SERIAL_ONLY, run

_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import hpcproc.kernels as K
    K.__path__.insert(0, sys.argv[1])  # the damaged build is found first
    import hpcproc as hp
    from hpcproc.kernels import _aot
    from mpi4py import MPI
    r = MPI.COMM_WORLD.rank
    k = np.arange(40, dtype=np.int64) + 40 * r
    j = hp.join({"k": k}, {"k": k[::-1] * 1, "v": k[::-1] * 2.0}, "k", strategy="hash")
    loc = j.local()
    assert np.array_equal(loc["v"], loc["k"] * 2.0)
    if r == 0:
        print("status:", _aot.status(), flush=True)
""")


def _built():
    found = glob.glob(str(REPO / "hpcproc" / "kernels" / "_aot_kernels*.so"))
    if not found:
        pytest.skip("no ahead-of-time build in this install")
    return found[0]


@SERIAL_ONLY
@pytest.mark.parametrize("keep", [60, 4096, 0.6])
def test_truncated_aot_build_falls_back_to_numba(tmp_path, keep):
    # a cut-short extension (full disk, interrupted copy) killed every rank with SIGBUS
    # inside dlopen instead of the documented "cannot be loaded" fallback
    so = _built()
    data = Path(so).read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    (tmp_path / os.path.basename(so)).write_bytes(data[:n])
    script = tmp_path / "s.py"
    script.write_text(_SCRIPT)
    proc = run([sys.executable, str(script), str(tmp_path)], ranks=2, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "status: cannot be loaded" in proc.stdout, proc.stdout
    assert "truncated" in proc.stdout


@pytest.mark.mpi
@pytest.mark.parametrize("kd,vd", [(">i8", "<f8"), ("<i8", ">f8"), ("<i8", ">i8")])
def test_dense_groupby_big_endian(comm, kd, vd):
    k = np.array([1, 2, 1, 3], kd)
    v = (np.arange(4.0) + comm.rank).astype(vd)
    g = hp.groupby({"k": k, "v": v}, "k", comm=comm).agg(v=["sum"])
    out = {c: np.concatenate(comm.allgather(a)) for c, a in g.local().items()}
    allv = np.concatenate(comm.allgather(v.astype(np.float64)))
    allk = np.concatenate(comm.allgather(k.astype(np.int64)))
    assert out["k"].tolist() == [1, 2, 3]
    assert out["v_sum"].tolist() == [allv[allk == x].sum() for x in (1, 2, 3)]


@pytest.mark.mpi
def test_unique_big_endian(comm):
    x = np.array([3, 1, 3, 2], ">i8")
    u = hp.unique(hp.DistArray.from_local(x, comm))
    assert np.concatenate(comm.allgather(u.local)).tolist() == [1, 2, 3]


@SERIAL_ONLY
def test_hist_text_view_tells_narrow_bins_apart(tmp_path):
    # with many bins the text view printed every edge with 6 digits: "[2, 2)", "[4, 4]"
    import h5py

    from support import hpcproc_cmd
    data = np.array([0.0, 1.0, 2.0, 3.0, 3.0, 4.0, 1.5])
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = data
    bins = 1_000_000
    proc = run(hpcproc_cmd("hist", f"{tmp_path / 'd.h5'}:/x", "--bins", bins), ranks=2,
               timeout=300)
    assert proc.returncode == 0, proc.stderr
    counts, edges = np.histogram(data, bins)
    bars = [ln for ln in proc.stdout.splitlines() if ln.lstrip().startswith("[")]
    assert len(bars) == np.count_nonzero(counts)
    width = edges[1] - edges[0]
    for line, i in zip(bars, np.flatnonzero(counts), strict=True):
        lo, rest = line.strip()[1:].split(",", 1)
        hi, n = rest.split()[:2]
        lo, hi = float(lo), float(hi.rstrip(")]"))
        assert lo < hi, line
        assert abs(lo - edges[i]) < width / 2 and abs(hi - edges[i + 1]) < width / 2, line
        assert int(n) == counts[i], line


@SERIAL_ONLY
def test_sort_2d_key_message_gives_the_row_shape(tmp_path):
    # the message gave one rank's block shape, "(1, 2)" for a (3, 2) dataset on 3 ranks
    import h5py

    from support import hpcproc_cmd
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["m"] = np.zeros((3, 2))
    proc = run(hpcproc_cmd("sort", f"{tmp_path / 'm.h5'}:/m", "--out", tmp_path / "s.h5"),
               ranks=3, timeout=120)
    assert proc.returncode == 1
    assert "hpcproc: error: key column 'm' must be one-dimensional, has rows of shape (2,)" \
        in proc.stderr, proc.stderr
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.mpi
def test_dense_groupby_float16_values(comm):
    k = np.array([1, 2, 1, 3])
    v = (np.array([0.5, 1.5, 2.0, -1.0]) + comm.rank).astype(np.float16)
    g = hp.groupby({"k": k, "v": v}, "k", comm=comm).agg(v=["sum", "min"])
    out = {c: np.concatenate(comm.allgather(a)) for c, a in g.local().items()}
    allv = np.concatenate(comm.allgather(v)).astype(np.float64)
    allk = np.concatenate(comm.allgather(k))
    assert out["v_sum"].astype(np.float64).tolist() == [allv[allk == x].sum() for x in (1, 2, 3)]
    assert out["v_min"].astype(np.float64).tolist() == [allv[allk == x].min() for x in (1, 2, 3)]


@SERIAL_ONLY
def test_cli_warning_on_an_explicit_stream_ends_its_line(tmp_path):
    # after the CLI's log setup, a warning shown on an explicit file (what libraries and
    # logging's own fallback do) lacked its newline and ran into the next line
    script = tmp_path / "w.py"
    script.write_text(textwrap.dedent("""
        import sys, warnings
        from hpcproc.observe import log
        log.configure(0)
        warnings.warn("first")
        warnings.showwarning("second", UserWarning, "x.py", 1, file=sys.stderr)
        print("next", file=sys.stderr)
    """))
    proc = run([sys.executable, str(script)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("hpcproc[rank 0] WARNING: first")
    assert lines[1:] == ["second (x.py:1)", "next"], proc.stderr


@pytest.mark.mpi
def test_cf_warning_once_per_file_not_once_per_name(comm, shared_tmp):
    # the same bad attribute on '/x' of a second file was not reported at all (warnings
    # were deduplicated by message, which named the dataset but not the file)
    import warnings

    import h5py

    from support import on_root
    paths = [shared_tmp / f"cf{i}.h5" for i in range(2)]

    def make():
        for path in paths:
            with h5py.File(path, "w") as f:
                d = f.create_dataset("x", data=np.arange(6, dtype=np.int16))
                d.attrs["scale_factor"] = np.array([0.5, 2.0])
    on_root(comm, make)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for path in paths:
            x = hp.read(str(path), "x", comm=comm)
            assert x.local.dtype == np.int16  # not unpacked
    ours = [str(w.message) for w in seen if "no unpacking done" in str(w.message)]
    if comm.rank == 0:
        assert len(ours) == 2, ours
        assert all(str(p) in m for p, m in zip(paths, ours, strict=True)), ours
    else:
        assert ours == []


@pytest.mark.mpi
@pytest.mark.parametrize("op", ["sort", "shuffle", "rebalance", "groupby"])
def test_object_columns_are_refused_by_name(comm, op):
    # sort/shuffle/rebalance failed inside the exchange with numpy's "Cannot change
    # data-type for array of references." (no column named)
    k = np.arange(4) + 4 * comm.rank
    t = {"k": k, "o": np.array([1, "x", None, 2.5], dtype=object)}
    calls = {"sort": lambda: hp.sort(t, "k", comm=comm),
             "shuffle": lambda: hp.shuffle(t, "k", comm=comm),
             "rebalance": lambda: hp.rebalance(t, comm=comm),
             "groupby": lambda: hp.groupby(t, "k", comm=comm).agg(o="count")}
    with pytest.raises(TypeError, match="column 'o' is object: object columns cannot move"):
        calls[op]()


@pytest.mark.mpi
def test_exchange_object_column_is_refused_by_name(comm):
    dest = np.array([0, comm.size - 1], np.uint8)
    with pytest.raises(TypeError, match="column 'o' is object"):
        hp.exchange({"o": np.array([1, "x"], dtype=object)}, dest, comm=comm)
