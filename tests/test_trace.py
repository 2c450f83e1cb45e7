"""Phase timers, the end-of-run report and the Chrome trace (serial and under mpiexec)."""

import json
import os
import time

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.observe import phases as trace
from support import on_root

pytestmark = pytest.mark.mpi


def test_off_is_a_shared_noop():
    hp.stop_tracing()
    assert hp.phase("read") is hp.phase("anything")  # one flag check, no allocation
    with hp.phase("read"):
        pass
    assert not trace._totals and not trace._spans


def test_report_matches_known_sleeps_and_wall(comm, tracing):
    rank, size = comm.rank, comm.size
    t0 = time.perf_counter()
    with hp.phase("compute", read=1000 * (rank + 1)):
        time.sleep(0.03 * (rank + 1))
    with hp.phase("outer"):
        time.sleep(0.02)
        for _ in range(3):
            with hp.phase("inner", sent=10):
                time.sleep(0.01)
    comm.Barrier()
    elapsed = time.perf_counter() - t0
    walls = comm.gather(elapsed, root=0)
    s = hp.report(comm, file=None)
    if rank != 0:
        assert s is None
        return
    c = s["phases"]["compute"]
    expect = [0.03 * (r + 1) for r in range(size)]
    assert s["ranks"] == size
    for got, want in zip(c["seconds"], expect):
        assert want <= got < want + 0.05
    assert c["slowest_rank"] == size - 1
    assert c["max"] == max(c["seconds"]) and c["min"] == min(c["seconds"])
    assert c["mean"] == pytest.approx(sum(c["seconds"]) / size)
    assert c["imbalance"] == pytest.approx(c["max"] / c["mean"])
    assert c["imbalance"] == pytest.approx(max(expect) / np.mean(expect), rel=0.3)
    assert c["bytes_read"] == 1000 * size * (size + 1) // 2
    assert c["gb_per_s"] == pytest.approx(c["bytes_read"] / c["max"] / 1e9)
    # nesting: exclusive times (outer excludes its three inner phases)
    assert all(0.02 <= v < 0.045 for v in s["phases"]["outer"]["seconds"])
    assert all(0.03 <= v < 0.06 for v in s["phases"]["inner"]["seconds"])
    assert s["phases"]["inner"]["calls"] == 3 * size
    assert s["phases"]["inner"]["bytes_sent"] == 30 * size
    # phases + other add up to each rank's wall time, which covers the measured time
    for r in range(size):
        total = sum(p["seconds"][r] for p in s["phases"].values())
        assert total == pytest.approx(s["wall"]["per_rank"][r], rel=1e-9)
        assert walls[r] <= s["wall"]["per_rank"][r] < walls[r] + 0.5


def _make_file(path):
    rng = np.random.default_rng(7)
    with h5py.File(path, "w") as f:
        f["x"] = rng.standard_normal(30_011)
        f["k"] = rng.integers(-50, 50, (4_003, 3))


def _results(path, out):
    st = hp.stats(f"{path}:/x", block_bytes=16 << 10)
    st2 = hp.stats(f"{path}:/k", axis=0, block_bytes=4 << 10)
    counts, edges = hp.histogram(f"{path}:/x", bins=17, block_bytes=16 << 10)
    q = hp.quantile(f"{path}:/x", [0.1, 0.5, 0.93], block_bytes=16 << 10)
    x = hp.read(str(path), "/x")
    hp.write(str(out), "/y", x.with_local(x.local * 2), compression="gzip", chunks=(1000,))
    y = hp.read(str(out), "/y").allgather()
    return st, st2, counts, edges, q, y


def test_tracing_does_not_change_results(comm, shared_tmp):
    path = shared_tmp / "d.h5"
    on_root(comm, _make_file, path)
    hp.stop_tracing()
    off = _results(path, shared_tmp / "off.h5")
    comm.Barrier()
    hp.start_tracing()
    try:
        on = _results(path, shared_tmp / "on.h5")
        s = hp.report(comm, file=None)
    finally:
        hp.stop_tracing()
        trace.reset_tracing()
    assert off[0] == on[0]
    for a, b in zip(off[1:], on[1:]):
        if isinstance(a, dict):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])
        else:
            np.testing.assert_array_equal(a, b)
    with h5py.File(path) as f:
        ref = f["x"][...]
        np.testing.assert_array_equal(on[5], ref * 2)
        if comm.rank == 0:
            nbytes_x, nbytes_k = f["x"].nbytes, f["k"].nbytes
    if comm.rank == 0:
        ph = s["phases"]
        assert {"read", "compute", "wait", "write"} <= set(ph)
        # bytes read: stats x, stats k, histogram x twice (range pass), quantile x once
        # (a small dataset: gathered, one pass), read x, read y back
        assert ph["read"]["bytes_read"] == 6 * nbytes_x + nbytes_k
        assert ph["write"]["bytes_written"] == nbytes_x
        if comm.size > 1:
            assert ph["exchange"]["calls"] == comm.size  # re-blocking to whole chunks


def test_checkpoint_phase_counts_file_bytes(comm, shared_tmp, tracing):
    x = hp.DistArray.from_global(np.arange(5000, dtype=np.float64), comm=comm)
    with hp.Checkpointer(shared_tmp / "ck", comm=comm) as ck:
        ck.save(1, {"x": x, "t": 0.5})
    s = hp.report(comm, file=None)
    if comm.rank == 0:
        step = shared_tmp / "ck" / "step-1"
        if not step.exists():
            step = next(p for p in (shared_tmp / "ck").iterdir() if p.name.startswith("step"))
        files = sorted(step.glob("rank-*.h5"))
        assert len(files) == comm.size
        assert s["phases"]["checkpoint"]["bytes_written"] == sum(os.path.getsize(f)
                                                                for f in files)
        assert s["phases"]["checkpoint"]["calls"] >= comm.size  # save (+ its wait, close)


def test_chrome_trace_has_every_rank_and_phase(comm, shared_tmp, tracing):
    path = shared_tmp / "d.h5"
    on_root(comm, _make_file, path)
    hp.stats(f"{path}:/x", block_bytes=8 << 10)
    with hp.phase("mine"):
        with hp.phase("write", written=5):
            pass
    out = shared_tmp / "trace.json"
    s = hp.report(comm, file=None, trace=str(out))
    if comm.rank != 0:
        assert s is None and not out.exists()
        return
    doc = json.loads(out.read_text())
    events = doc["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    meta = [e for e in events if e["ph"] == "M"]
    assert {e["pid"] for e in spans} == set(range(comm.size))
    assert all(e["pid"] == e["tid"] for e in events)
    names = {(e["pid"], e["args"]["name"]) for e in meta if e["name"] == "process_name"}
    assert names == {(r, f"rank {r}") for r in range(comm.size)}
    for r in range(comm.size):
        assert {"read", "compute", "wait", "mine", "write"} <= {e["name"] for e in spans
                                                               if e["pid"] == r}
    for e in spans:
        assert set(e) >= {"name", "ph", "ts", "dur", "pid", "tid", "cat"}
        assert e["dur"] >= 0 and e["ts"] >= 0
    # spans of a track nest properly (Chrome's rule for complete events)
    for r in range(comm.size):
        stack = []
        for e in sorted((e for e in spans if e["pid"] == r), key=lambda e: (e["ts"], -e["dur"])):
            while stack and stack[-1] <= e["ts"]:
                stack.pop()
            end = e["ts"] + e["dur"]
            assert not stack or end <= stack[-1] + 1e-3
            stack.append(end)
    # the trace's totals are the report's (read bytes of rank 0, span count per phase)
    r0 = [e for e in spans if e["pid"] == 0 and e["name"] == "read"]
    assert sum(e["args"].get("bytes_read", 0) for e in r0) > 0
    assert len([e for e in spans if e["name"] == "read"]) == s["phases"]["read"]["calls"]


def test_plot_png(comm, shared_tmp, tracing):
    pytest.importorskip("matplotlib")
    with hp.phase("compute"):
        time.sleep(0.01 * (comm.rank + 1))
    out = shared_tmp / "phases.png"
    hp.report(comm, file=None, plot=str(out))
    if comm.rank == 0:
        import matplotlib.image
        img = matplotlib.image.imread(out)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300


def test_log_records_carry_the_rank_and_warn_once(comm, caplog):
    import logging

    from hpcproc.observe.log import get_logger, warn_once
    log = get_logger("hpcproc.test")
    with caplog.at_level(logging.INFO, logger="hpcproc"):
        log.info("hello")
        for _ in range(3):
            warn_once(log, "same on every rank (%d)", 7, comm=comm)
    mine = [r for r in caplog.records if r.name == "hpcproc.test"]
    assert all(r.rank == comm.rank for r in mine)
    warned = [r.getMessage() for r in mine if r.levelno == logging.WARNING]
    assert warned == (["same on every rank (7)"] if comm.rank == 0 else [])
