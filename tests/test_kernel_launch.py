"""Kernel engine under real mpiexec launches (serial session only; each has a timeout):
compile once per node, caching off, and bounded memory when streaming a large file."""

import json
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from support import SERIAL_ONLY, hpcproc_cmd, run

pytestmark = SERIAL_ONLY  # launches its own processes

COMPILE_SCRIPT = textwrap.dedent("""
    import json, time
    t0 = time.perf_counter()
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    from hpcproc.kernels import compile_stats
    comm = MPI.COMM_WORLD
    s = hp.stats(hp.DistArray.from_global(np.arange(1000.0), comm))
    elapsed = time.perf_counter() - t0
    rep = comm.gather({"rank": comm.rank, "how": compile_stats(), "t": elapsed,
                       "mean": s["mean"]})
    if comm.rank == 0:
        print(json.dumps(rep))
""")


def _launch(tmp_path, ranks, cache_dir, cache="1"):
    script = tmp_path / "compile_once.py"
    script.write_text(COMPILE_SCRIPT)
    out = run([sys.executable, str(script)], ranks=ranks, timeout=180, check=True,
              env={"HPCPROC_CACHE_DIR": str(cache_dir), "HPCPROC_CACHE": cache,
                   "HPCPROC_AOT": "0"})  # the Numba (JIT) path: no ahead-of-time kernels
    return json.loads(out.stdout)


def test_compile_once_per_node_then_warm_cache(tmp_path):
    cache = tmp_path / "cache"
    cold = _launch(tmp_path, 3, cache)
    assert all(r["mean"] == 499.5 for r in cold)
    hows = {r["rank"]: set(r["how"].values()) for r in cold}
    assert hows[0] == {"compiled"}  # the node's first rank compiled ...
    assert hows[1] == hows[2] == {"cache"}  # ... the others loaded its cache
    assert any(cache.rglob("*.nbi")) and any(cache.rglob("*.nbc"))
    warm = _launch(tmp_path, 3, cache)
    assert all(set(r["how"].values()) == {"cache"} for r in warm)


def test_cache_switched_off(tmp_path):
    cache = tmp_path / "nocache"
    reps = _launch(tmp_path, 2, cache, cache="0")
    assert all(set(r["how"].values()) == {"compiled"} for r in reps)
    assert not cache.exists() or not any(cache.rglob("*.nb*"))


RSS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    comm = MPI.COMM_WORLD

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024

    small = hp.DistArray.from_global(np.arange(100.0), comm)  # compile before measuring
    hp.stats(small), hp.histogram(small, 64), hp.quantile(small, 0.5, method="sketch")
    rss0 = status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark
    except OSError:
        pass
    target, bb = sys.argv[1], int(sys.argv[2])
    s = hp.stats(target, block_bytes=bb)
    counts, edges = hp.histogram(target, 64, block_bytes=bb)
    med = hp.quantile(target, 0.5, method="sketch", block_bytes=bb)
    peak = status("VmHWM") - rss0
    peaks = comm.gather(peak)
    if comm.rank == 0:
        print(json.dumps({"peaks": peaks, "count": s["count"], "min": s["min"],
                          "max": s["max"], "hist": counts.tolist(), "median": med}))
""")


@pytest.mark.timeout(300)
def test_streaming_memory_bounded(tmp_path):
    rows = 12_000_000  # 96 MB of float64: 48 MB per rank, budget 16 MB per rank
    path = tmp_path / "big.h5"
    run(hpcproc_cmd("generate", path, "--kind", "normal", "--rows", rows, "--seed", "2"),
        ranks=2, timeout=120, check=True)
    script = tmp_path / "rss.py"
    script.write_text(RSS_SCRIPT)
    out = run([sys.executable, str(script), f"{path}:/x", str(1 << 20)], ranks=2,
              timeout=240, check=True)
    rep = json.loads(out.stdout)
    budget = 16 << 20
    assert path.stat().st_size > 5 * budget
    assert max(rep["peaks"]) < budget, rep["peaks"]
    with h5py.File(path) as f:
        x = f["x"][...]
    assert rep["count"] == x.size and rep["min"] == x.min() and rep["max"] == x.max()
    np.testing.assert_array_equal(rep["hist"], np.histogram(x, 64)[0])
    exact = np.quantile(x, 0.5)
    assert abs(rep["median"] - exact) <= 0.01 * abs(exact) * 1.000001 + 1e-3


def test_example_runs_on_three_ranks():
    example = str(Path(__file__).resolve().parent.parent / "examples" / "kernels.py")
    out = run([sys.executable, example], ranks=3, timeout=180, check=True)
    assert out.stdout.count("agrees with numpy: True") == 7, out.stdout
