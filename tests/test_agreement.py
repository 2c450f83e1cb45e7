"""Ranks that disagree never get a silent wrong answer (issue 13, items 3-6).

* every public collective checks that all ranks passed the same arguments
  (``ArgumentMismatchError`` naming the argument, raised on every rank together);
* ``comm=`` must be the communicator of a DistArray/DistTable argument (or a congruent
  one): anything else is a local ``ValueError`` before any communication, never a hang;
* a DistArray/DistTable whose blocks do not tile its rows is refused on every rank
  (verified once per object, then cached);
* ``local_rows=`` / ``layout="balanced"``: a caller's own decomposition, checked to tile.

The ``mpi`` tests run serially and under 2 and 3 ranks; the others launch
``tests/agreement_cases.py`` under ``mpiexec -n 3`` (one launch, every case in turn).
"""

import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.comm import raised_on_all_ranks
from support import SERIAL_ONLY, on_root, run

HERE = Path(__file__).resolve().parent
mpi = pytest.mark.mpi


def _needs_ranks(comm, n=2):
    if comm.size < n:
        pytest.skip(f"ranks can only disagree with {n} or more ranks")


def _raises_agreed(exc_type, match, call):
    with pytest.raises(exc_type, match=match) as info:
        call()
    assert raised_on_all_ranks(info.value)
    return info.value


# --- argument agreement --------------------------------------------------------------
@mpi
def test_same_arguments_pass_everywhere(comm, shared_tmp):
    x = hp.DistArray.from_global(np.arange(40.0), comm)
    path = str(shared_tmp / "a.h5")
    # the same file named differently on different ranks is the same argument
    name = path if comm.rank % 2 == 0 else os.path.join(str(shared_tmp), ".", "a.h5")
    hp.write(name, "x", x, comm=comm)
    got = hp.read(name, "/x", comm=comm)
    assert np.array_equal(got.allgather(), np.arange(40.0))
    counts, edges = hp.histogram(x, np.linspace(0, 40, 5), range=None)
    assert counts.tolist() == np.histogram(np.arange(40.0), np.linspace(0, 40, 5))[0].tolist()
    # np.int64 and int, np.float64 and float are the same value
    assert hp.stats(x, ddof=np.int64(1) if comm.rank else 1)["count"] == 40
    assert hp.quantile(x, np.float64(0.5) if comm.rank else 0.5) == np.quantile(
        np.arange(40.0), 0.5)


@mpi
@pytest.mark.parametrize("case", ["range", "bins", "edges", "q", "sort", "join", "rows",
                                  "dataset", "path"])
def test_disagreeing_argument_is_named_on_every_rank(comm, shared_tmp, case):
    _needs_ranks(comm)
    r = comm.rank
    x = hp.DistArray.from_global(np.arange(30.0), comm)
    t = hp.DistTable.from_local({"k": np.arange(5) + r, "v": np.arange(5.0)}, comm)
    path = str(shared_tmp / "d.h5")
    if case in ("rows", "dataset", "path"):
        hp.write(path, "x", x, comm=comm)
        hp.write(path, "y", x, comm=comm, mode="a")
    calls = {
        "range": ("range", lambda: hp.histogram(x, 4, range=(0, 10 + r))),
        "bins": ("bins", lambda: hp.histogram(x, 4 + r, range=(0, 30))),
        "edges": ("bins", lambda: hp.histogram(x, np.linspace(0, 30, 3 + r))),
        "q": ("q", lambda: hp.quantile(x, [0.25, 0.5 + 0.1 * r])),
        "sort": ("ascending", lambda: hp.sort(t, "k", ascending=r == 0)),
        "join": ("how", lambda: hp.join(t, t, "k", how="left" if r else "inner")),
        "rows": ("rows", lambda: hp.read(path, "/x", comm=comm, rows=(0, 10 + r))),
        "dataset": ("dataset", lambda: hp.read(path, "/y" if r else "/x", comm=comm)),
        "path": ("path", lambda: hp.write(str(shared_tmp / f"o{r}.h5"), "x", x)),
    }
    arg, call = calls[case]
    err = _raises_agreed(hp.ArgumentMismatchError, f"different `{arg}`", call)
    assert "rank 0" in str(err)
    assert isinstance(err, ValueError)
    # nothing was written, and the ranks are still in step
    assert not any(p.name.startswith("o") for p in shared_tmp.iterdir())
    assert hp.stats(x)["count"] == 30


@mpi
def test_functions_are_compared_by_their_code(comm):
    _needs_ranks(comm)
    x = hp.DistArray.from_global(np.arange(12.0), comm)
    funcs = [lambda v: v + 1, lambda v: v + 2]
    _raises_agreed(hp.ArgumentMismatchError, "different `func`",
                   lambda: hp.map(funcs[comm.rank % 2], x))
    same = hp.map(funcs[0], x)  # the same function everywhere
    assert np.array_equal(same.allgather(), np.arange(12.0) + 1)


@mpi
def test_checkpointer_directory_must_agree(comm, shared_tmp):
    _needs_ranks(comm)
    _raises_agreed(hp.ArgumentMismatchError, "different `directory`",
                   lambda: hp.Checkpointer(shared_tmp / f"ck{comm.rank}", comm))
    comm.Barrier()
    assert not any(p.name.startswith("ck") for p in shared_tmp.iterdir())


# --- comm= against the arrays' own communicator ------------------------------------
@mpi
def test_comm_of_another_group_is_refused_without_communication(comm):
    x = hp.DistArray.from_global(np.arange(9.0), comm)
    if comm.size == 1:  # COMM_SELF has the same group as a 1-rank world: congruent
        dup = comm.Dup()
        assert hp.stats(x, comm=dup)["count"] == 9
        dup.Free()
        return
    sub = comm.Split(0 if comm.rank < comm.size - 1 else 1, comm.rank)
    if comm.rank < comm.size - 1:  # the last rank never calls: a hang if anything waited
        for call in (lambda: hp.stats(x, comm=sub),
                     lambda: hp.histogram(x, 3, range=(0, 9), comm=sub),
                     lambda: hp.quantile(x, 0.5, comm=sub),
                     lambda: hp.sort(x, comm=sub)):
            with pytest.raises(ValueError, match="another communicator than comm="):
                call()
    sub.Free()
    comm.Barrier()


@mpi
def test_congruent_comm_is_accepted(comm):
    x = hp.DistArray.from_global(np.arange(9.0), comm)
    dup = comm.Dup()
    try:
        assert hp.stats(x, comm=dup)["sum"] == 36.0
        counts, _ = hp.histogram(x, 3, range=(0, 9), comm=dup)
        assert counts.tolist() == [3, 3, 3]
    finally:
        dup.Free()


# --- blocks that do not tile --------------------------------------------------------
@mpi
def test_blocks_that_overlap_are_refused(comm, shared_tmp):
    x = hp.DistArray(np.arange(5.0), (5 * comm.size + 1,), 0, comm)  # all at 0, a row short
    _raises_agreed(hp.ShapeMismatchError, "do not tile", lambda: hp.stats(x))
    out = shared_tmp / "bad.h5"
    _raises_agreed(hp.ShapeMismatchError, "do not tile", lambda: hp.write(str(out), "x", x))
    comm.Barrier()
    assert not out.exists()


@mpi
def test_local_rows_beyond_the_global_shape_are_refused(comm):
    x = hp.DistArray(np.arange(10.0), (10,), 10 * comm.rank, comm)
    if comm.size == 1:
        assert hp.stats(x)["count"] == 10  # one rank holding everything tiles
        x = hp.DistArray(np.arange(10.0), (8,), 0, comm)
    _raises_agreed(hp.ShapeMismatchError, "do not tile",
                   lambda: hp.histogram(x, 4, range=(0, 10)))


@mpi
def test_table_blocks_must_tile(comm):
    t = hp.DistTable({"a": np.arange(3), "b": np.arange(3.0)}, 3 * comm.size, 0, comm)
    if comm.size == 1:
        t = hp.DistTable({"a": np.arange(3), "b": np.arange(3.0)}, 4, 0, comm)
    _raises_agreed(hp.ShapeMismatchError, "do not tile", lambda: hp.sort(t, "a"))
    with pytest.raises(hp.ShapeMismatchError):  # unequal columns: refused at construction
        hp.DistTable({"a": np.arange(3), "b": np.arange(2.0)}, 3, 0, comm)


@mpi
def test_tiling_is_verified_once_and_again_after_a_change(comm):
    n = comm.size
    x = hp.DistArray(np.arange(4.0), (4 * n,), 4 * comm.rank, comm)
    assert x._tiled is None
    assert hp.stats(x)["count"] == 4 * n
    assert x._tiled == (4 * comm.rank, 4, 4 * n)  # remembered: later calls only agree
    x.local = np.arange(5.0)  # now the blocks overlap (or exceed the rows)
    _raises_agreed(hp.ShapeMismatchError, "do not tile", lambda: hp.stats(x))
    x.local = np.arange(4.0, 8.0)  # the same rows, new values: still tiles
    assert hp.stats(x)["count"] == 4 * n
    # results built by hpcproc collectives come verified (no extra allgather on first use)
    for made in (hp.sort(x), hp.map(lambda v: v * 2, x), hp.DistArray.from_local(x.local),
                 x.with_local(x.local + 1)):
        assert made._tiled == made._layout()[2]


# --- local_rows= and layout= --------------------------------------------------------
def _make(path, chunks):
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(256 * 3, dtype="<i4").reshape(256, 3),
                         chunks=chunks, compression="gzip" if chunks else None)


@mpi
@pytest.mark.parametrize("chunks", [None, (16, 3)])
def test_read_and_write_with_the_callers_decomposition(comm, shared_tmp, chunks):
    path = str(shared_tmp / "in.h5")
    on_root(comm, _make, path, chunks)
    with h5py.File(path, "r") as f:
        ref = f["x"][...]
    # an uneven decomposition of the rows 10..250: rank r gets a block growing with r
    sizes = np.arange(1, comm.size + 1) * 7
    sizes[-1] = 240 - sizes[:-1].sum()
    lo = 10 + int(sizes[:comm.rank].sum())
    hi = lo + int(sizes[comm.rank])
    x = hp.read(path, "/x", comm=comm, rows=(10, 250), local_rows=(lo - 10, hi - 10))
    assert x.rows == (lo - 10, hi - 10) and x.origin == lo
    assert np.array_equal(x.local, ref[lo:hi])
    out = np.empty((hi - lo, 3), dtype="i4")
    y = hp.read(path, "/x", comm=comm, rows=(10, 250), local_rows=(lo - 10, hi - 10), out=out)
    assert np.shares_memory(y.local, out) and np.array_equal(out, ref[lo:hi])
    got = np.concatenate([b.local for b in hp.blocks(
        path, "/x", block_bytes=12 * 5, comm=comm, rows=(10, 250),
        local_rows=(lo - 10, hi - 10))])
    assert np.array_equal(got, ref[lo:hi])
    # write the block back by its own rows: the file equals the selection
    target = str(shared_tmp / "out.h5")
    hp.write(target, "y", np.ascontiguousarray(ref[lo:hi]), comm=comm,
             local_rows=(lo - 10, hi - 10))
    with h5py.File(target, "r") as f:
        assert np.array_equal(f["y"][...], ref[10:250])


@mpi
def test_balanced_layout_of_a_chunked_dataset(comm, shared_tmp):
    path = str(shared_tmp / "c.h5")
    on_root(comm, _make, path, (16, 3))
    start, stop = hp.block_range(256, comm.size, comm.rank)
    x = hp.read(path, "/x", comm=comm, layout="balanced")
    assert x.rows == (start, stop)
    with h5py.File(path, "r") as f:
        assert np.array_equal(x.local, f["x"][start:stop])
    # the default stays chunk-aligned; a block-shaped out= then says what to do
    out = np.empty((stop - start, 3), dtype="i4")
    if hp.read(path, "/x", comm=comm).rows != (start, stop):
        with pytest.raises(ValueError, match="layout='balanced' or local_rows="):
            hp.read(path, "/x", comm=comm, out=out)
    assert hp.read(path, "/x", comm=comm, out=out, layout="balanced").local is out


@mpi
def test_local_rows_that_do_not_tile_are_one_error_everywhere(comm, shared_tmp):
    path = str(shared_tmp / "d.h5")
    on_root(comm, _make, path, None)
    lo, hi = hp.block_range(256, comm.size, comm.rank)
    cases = [(lo, hi - 1 if comm.rank == comm.size - 1 else hi),  # the last row missing
             (0, hi)]  # overlapping (at 1 rank: the whole dataset, valid)
    _raises_agreed(hp.ShapeMismatchError, "local_rows must tile",
                   lambda: hp.read(path, "/x", comm=comm, local_rows=cases[0]))
    if comm.size > 1:
        _raises_agreed(hp.ShapeMismatchError, "rank 1 holds rows",
                       lambda: hp.read(path, "/x", comm=comm, local_rows=cases[1]))
    with pytest.raises(ValueError, match="out of range"):
        hp.read(path, "/x", comm=comm, local_rows=(0, 257))
    with pytest.raises(TypeError, match="pair of ints"):
        hp.read(path, "/x", comm=comm, local_rows=(0.5, 3))
    with pytest.raises(ValueError, match="not both"):
        hp.read(path, "/x", comm=comm, local_rows=(lo, hi), layout="balanced")


# --- the same, at 3 ranks in one job: every case ends, on every rank -----------------
@SERIAL_ONLY
def test_three_ranks_disagreeing_in_every_collective(tmp_path):
    proc = run([sys.executable, str(HERE / "agreement_cases.py"), str(tmp_path)], ranks=3,
               timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for banner in ("Fatal error", "MPI_Abort", "Traceback", "application called"):
        assert banner not in proc.stderr, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    cases = {c["case"]: c["ranks"] for c in lines if "case" in c}
    named = {  # case -> the argument the error must name
        "read.dataset": "dataset", "read.path": "path", "read.rows": "rows",
        "read.method": "method", "read.layout": "layout", "write.path": "path",
        "write.dataset": "dataset", "write.compression": "compression",
        "write_table.group": "group",
        "checkpoint.directory": "directory", "checkpoint.keep": "keep",
        "histogram.range": "range", "histogram.bins": "bins", "histogram.edges": "bins",
        "histogram2d.bins": "bins", "quantile.q": "q", "quantile.qlen": "q",
        "quantile.method": "method", "stats.x": "x", "stats.ddof": "ddof",
        "stats_file.dataset": "dataset", "dataset_info.name": "name",
        "blocks.block_bytes": "block_bytes", "sort.by": "by", "sort.ascending": "ascending",
        "join.how": "how", "join.on": "on", "groupby.spec": "spec",
        "value_counts.options": "options", "shuffle.partitioner": "partitioner",
        "map.func": "func", "reduce.block_fn": "block_fn", "generate.path": "path",
        "diff.rtol": "rtol", "validate_dataset.rules": "rules", "sketch.rel_err": "rel_err",
        "exchange.memory_budget": "memory_budget", "scan.exclusive": "exclusive",
    }
    for case, arg in named.items():
        ranks = cases[case]
        assert len(ranks) == 3, case
        for r in ranks:
            assert r["error"] == "ArgumentMismatchError" and r["agreed"], (case, r)
            assert f"different `{arg}`" in r["msg"], (case, r["msg"])
    tiling = ["tiling.stats", "tiling.write", "tiling.too_many_rows", "local_rows.overlap",
              "local_rows.gap", "local_rows.write"]
    for case in tiling:
        for r in cases[case]:
            assert r["error"] == "ShapeMismatchError" and r["agreed"], (case, r)
            assert "tile" in r["msg"], (case, r["msg"])
    assert {r["error"] for r in cases["from_local.dtype"]} == {"TypeError"}
    for r in cases["different.functions"]:  # ranks calling different collectives
        assert r["error"] == "ArgumentMismatchError" and r["agreed"], r
        assert "ranks 0,2: hp.histogram; rank 1: hp.stats" in r["msg"], r["msg"]
    for case in ("comm.stats", "comm.histogram", "comm.write"):
        assert [r["rank"] for r in cases[case]] == [0, 1]
        assert all(r["error"] == "ValueError" and "another communicator" in r["msg"]
                   for r in cases[case]), cases[case]
    assert all(r["error"] is None for r in cases["after"])
    done = next(c["done"] for c in lines if "done" in c)
    assert done == ["f.h5", "g.h5"]  # no output, checkpoint or temporary file was left


@SERIAL_ONLY
def test_disagreement_under_abort_on_error_is_one_line_no_abort(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import numpy as np, hpcproc as hp\n"
        "from mpi4py import MPI\n"
        "r = MPI.COMM_WORLD.rank\n"
        "with hp.abort_on_error():\n"
        "    x = hp.DistArray.from_global(np.arange(10.0))\n"
        "    hp.histogram(x, 4, range=(0, 1 + r))\n")
    proc = run([sys.executable, str(script)], ranks=3, timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    want = "hpcproc: error: hp.histogram: ranks passed different"
    assert len(lines) == 1 and lines[0].startswith(want), \
        proc.stderr
    assert "different `range`" in lines[0] and "MPI_Abort" not in proc.stderr


@mpi
def test_checkpointer_on_a_sub_communicator_agrees_there(comm, shared_tmp):
    """A method without comm= (Checkpointer.save) agrees over its object's communicator:
    ranks outside it are not waited for."""
    sub = comm.Split(0 if comm.rank < max(1, comm.size - 1) else 1, comm.rank)
    if comm.rank < max(1, comm.size - 1):
        with hp.Checkpointer(shared_tmp / "ck", sub) as ck:
            ck.save(1, {"a": np.ones(3)})
            step, state = ck.restore()
            assert step == 1 and np.array_equal(state["a"], np.ones(3))
    sub.Free()
    comm.Barrier()


@mpi
def test_blocks_iterator_carries_its_communicator(comm, shared_tmp):
    """hp.stats(hp.blocks(..., comm=sub)) agrees over ``sub``: ranks outside it never
    call, and nothing waits for them."""
    path = str(shared_tmp / "b.h5")
    on_root(comm, _make, path, (16, 3))
    inside = comm.rank < max(1, comm.size - 1)
    sub = comm.Split(0 if inside else 1, comm.rank)
    if inside:
        s = hp.stats(hp.blocks(path, "/x", block_bytes=12 * 20, comm=sub))
        assert s["count"] == 256 * 3 and s["sum"] == float(np.arange(256 * 3).sum())
    sub.Free()
    comm.Barrier()


def test_structured_layouts_of_one_size_are_different_arguments():
    """A structured dtype's ``str`` is only ``|V<itemsize>``: two field layouts of one
    size (and an array of the same bytes in each) must not hash as one argument."""
    from hpcproc.agreement import _canon

    a = np.dtype({"names": ["x", "y"], "formats": ["<i4", "<f4"], "offsets": [0, 4]})
    b = np.dtype({"names": ["x", "y"], "formats": ["<i4", "<f4"], "offsets": [4, 0]})
    assert a.str == b.str  # all that the comparison saw before
    assert _canon(a, "dtype", [], False) != _canon(b, "dtype", [], False)
    raw = np.zeros(3, a)
    assert _canon(raw, "x", [], False) != _canon(raw.view(b), "x", [], False)
    assert _canon(raw, "x", [], False) == _canon(raw.copy(), "x", [], False)
