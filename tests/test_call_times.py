"""Inclusive times of library calls by name (serial and under mpiexec): counts, nesting,
phases inside calls, the report's "calls" section, the Chrome trace, the CLI's --json."""

import json
import time

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.agreement import collective
from hpcproc.observe import phases as trace
from hpcproc.observe.report import format_report
from support import SERIAL_ONLY, hpcproc_cmd, on_root, run

pytestmark = pytest.mark.mpi

LIBRARY_PHASES = set(trace.PHASES)


def _data(comm):
    """Unequal blocks per rank (rank r holds 500 * (r + 1) + 7 values)."""
    rng = np.random.default_rng(100 + comm.rank)
    return hp.DistArray.from_local(rng.standard_normal(500 * (comm.rank + 1) + 7), comm=comm)


def _make_file(path):
    with h5py.File(path, "w") as f:
        f["x"] = np.random.default_rng(3).standard_normal(20_011)


def _inside(inner, outer, eps=1e-9):
    return outer[0] - eps <= inner[0] and inner[1] <= outer[1] + eps


def test_user_phase_around_quantile_and_stats(comm, tracing):
    x = _data(comm)
    trace.reset_tracing()  # only what happens inside the user phase
    t0 = time.perf_counter()
    with hp.phase("analysis"):
        q = [hp.quantile(x, [0.1, 0.5]) for _ in range(2)]
        st = hp.stats(x)
    elapsed = time.perf_counter() - t0
    # the results are still right (timing must not change them)
    full = np.concatenate(comm.allgather(x.local))
    np.testing.assert_array_equal(q[1], np.quantile(full, [0.1, 0.5]))
    assert st["count"] == full.size

    calls = {k: list(v) for k, v in trace._calls.items()}
    assert set(calls) == {"hp.quantile", "hp.stats"}  # nothing nested, no from_local
    assert calls["hp.quantile"][1] == 2 and calls["hp.stats"][1] == 1
    inclusive = calls["hp.quantile"][0] + calls["hp.stats"][0]
    assert calls["hp.quantile"][2] <= calls["hp.quantile"][0]  # longest <= total
    assert inclusive <= elapsed
    # every library phase ran inside a call; the phases directly under "analysis" that
    # lie in a call add up to at most the call's inclusive time
    spans = [(s[1], s[2], s[0], s[3]) for s in trace._spans]
    cspans = [(c[1], c[2], c[0]) for c in trace._call_spans]
    assert sorted(c[2] for c in cspans) == ["hp.quantile", "hp.quantile", "hp.stats"]
    for start, stop, name, _depth in spans:
        if name != "analysis":
            assert name in LIBRARY_PHASES
            assert any(_inside((start, stop), c) for c in cspans), name
    for c in cspans:
        direct = sum(s[1] - s[0] for s in spans if s[3] == 1 and _inside(s, c))
        assert direct <= c[1] - c[0] + 1e-9
    # exclusive accounting unchanged: library phases + "analysis" = the phase's wall time
    excl = {k: v[0] for k, v in trace._totals.items()}
    lib = sum(v for k, v in excl.items() if k != "analysis")
    assert lib <= inclusive + 1e-9
    assert lib + excl["analysis"] <= elapsed
    assert lib + excl["analysis"] == pytest.approx(elapsed, abs=0.05)

    s = hp.report(comm, file=None)
    if comm.rank != 0:
        assert s is None
        return
    size = comm.size
    qc, sc = s["calls"]["hp.quantile"], s["calls"]["hp.stats"]
    assert qc["calls"] == 2 and qc["calls_per_rank"] == [2] * size
    assert sc["calls"] == 1 and sc["calls_per_rank"] == [1] * size
    for c in (qc, sc):
        assert len(c["seconds"]) == size
        assert c["min"] == min(c["seconds"]) and c["max"] == max(c["seconds"])
        assert c["mean"] == pytest.approx(sum(c["seconds"]) / size)
        assert c["seconds"][c["slowest_rank"]] == c["max"]
        assert 0 < c["longest"] <= c["max"]
    assert qc["seconds"][0] == pytest.approx(calls["hp.quantile"][0])
    for r in range(size):  # per rank: library phases <= inclusive call times
        lib_r = sum(p["seconds"][r] for k, p in s["phases"].items() if k in LIBRARY_PHASES)
        assert lib_r <= qc["seconds"][r] + sc["seconds"][r] + 1e-9
    text = format_report(s)
    assert "library calls" in text and "hp.quantile" in text and "hp.stats" in text
    assert text.index("hp.quantile") > text.index("analysis")  # its own section
    assert list(s["calls"]) == sorted(s["calls"], key=lambda k: -s["calls"][k]["max"])


@collective("test.outer")
def _outer(x, comm=None):
    hp.stats(x, comm=comm)
    return hp.quantile(x, 0.5, comm=comm)


def test_nested_calls_count_once(comm, tracing):
    x = _data(comm)
    trace.reset_tracing()
    _outer(x, comm=comm)
    _outer(x, comm=comm)
    hp.sort(x, comm=comm)  # calls hp.exchange (a collective) inside
    assert set(trace._calls) == {"test.outer", "hp.sort"}
    assert trace._calls["test.outer"][1] == 2 and trace._calls["hp.sort"][1] == 1
    assert len(trace._call_spans) == 3
    assert "exchange" in trace._totals  # hp.sort's inner work was traced as phases


def test_iterator_steps_belong_to_the_call(comm, shared_tmp, tracing):
    path = shared_tmp / "d.h5"
    on_root(comm, _make_file, path)
    trace.reset_tracing()
    n = 0
    for block in hp.blocks(str(path), "x", block_bytes=8 << 10, comm=comm):
        n += int(block.local.size)
        hp.stats(block)  # the loop body's own calls are outermost calls too
    assert comm.allreduce(n) == 20_011
    calls = trace._calls
    steps = [c for c in trace._call_spans if c[0] == "hp.blocks"]
    nstats = calls["hp.stats"][1]
    assert calls["hp.blocks"][1] == 1 and nstats >= 3
    assert len(steps) == nstats + 2  # creation + every step + the final StopIteration
    read = trace._totals["read"][0]
    assert read <= calls["hp.blocks"][0] + 1e-9  # the reads happen in the steps
    assert calls["hp.blocks"][2] == pytest.approx(calls["hp.blocks"][0])  # one call
    # an iterator consumed by another collective runs inside that call only
    trace.reset_tracing()
    st = hp.stats(hp.blocks(str(path), "x", block_bytes=8 << 10, comm=comm))
    assert st["count"] == 20_011
    assert trace._calls["hp.stats"][1] == 1
    assert trace._calls["hp.blocks"][1] == 1  # created by the user: counted, ...
    blocks_t = trace._calls["hp.blocks"][0]
    assert blocks_t < trace._calls["hp.stats"][0]
    assert len([c for c in trace._call_spans if c[0] == "hp.blocks"]) == 1  # ... no steps


def test_tracing_off_records_nothing(comm):
    hp.stop_tracing()
    trace.reset_tracing()
    x = _data(comm)
    hp.quantile(x, 0.5)
    hp.stats(x)
    _outer(x, comm=comm)
    assert not trace._calls and not trace._call_spans and not trace._totals
    s = hp.report(comm, file=None)
    if comm.rank == 0:
        assert s["calls"] == {}
        assert "library calls" not in format_report(s)


@collective("test.switch_off")
def _switch_off(comm=None):
    hp.stop_tracing()


def test_call_open_when_tracing_stops_or_resets(comm, tracing):
    _switch_off(comm=comm)
    assert not trace._calls
    hp.start_tracing()

    @collective("test.reset")
    def resets(comm=None):
        trace.reset_tracing()
    resets(comm=comm)
    assert not trace._calls and not trace._call_spans


def test_chrome_trace_calls_contain_their_phases(comm, shared_tmp, tracing):
    x = _data(comm)
    with hp.phase("analysis"):
        hp.quantile(x, [0.25, 0.75])
        hp.stats(x)
    out = shared_tmp / "trace.json"
    s = hp.report(comm, file=None, trace=str(out))
    if comm.rank != 0:
        return
    spans = [e for e in json.loads(out.read_text())["traceEvents"] if e["ph"] == "X"]
    for r in range(comm.size):
        mine = [e for e in spans if e["pid"] == r]
        calls = [e for e in mine if e["cat"] == "call"]
        assert sorted(e["name"] for e in calls) == ["DistArray.from_local", "hp.quantile",
                                                    "hp.stats"]
        assert {e["cat"] for e in mine} == {"call", "hpcproc"}
        box = lambda e: (e["ts"], e["ts"] + e["dur"])  # noqa: E731
        analysis = next(e for e in mine if e["name"] == "analysis")
        for c in calls:
            if c["name"] != "DistArray.from_local":
                assert _inside(box(c), box(analysis), eps=1e-3)
        for e in mine:  # every library phase is inside one call
            if e["cat"] == "hpcproc" and e["name"] != "analysis":
                assert sum(_inside(box(e), box(c), eps=1e-3) for c in calls) == 1, e
        q = next(c for c in calls if c["name"] == "hp.quantile")
        assert q["dur"] / 1e6 == pytest.approx(s["calls"]["hp.quantile"]["seconds"][r],
                                               abs=1e-5)


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [1, 3])
def test_cli_json_report_has_the_calls(tmp_path, ranks):
    path = tmp_path / "d.h5"
    _make_file(path)
    proc = run(hpcproc_cmd("stats", f"{path}:/x", "-v", "--json", "--no-progress"),
               ranks=ranks, timeout=180)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    calls = doc["report"]["calls"]
    assert calls, doc["report"]
    for name, c in calls.items():
        assert name.startswith(("hp.", "Dist", "Checkpointer"))
        assert c["calls_per_rank"] == [c["calls"]] * ranks and c["calls"] >= 1
        assert len(c["seconds"]) == ranks and c["max"] <= doc["report"]["wall"]["max"]
    assert "library calls" in proc.stderr  # -v prints the table on stderr
    with h5py.File(path) as f:
        assert doc["count"] == f["x"].size
