"""Start-up: ahead-of-time (AOT) built-in kernels, the Numba fallback, bit-identity.

Serial session only; every test launches its own processes (with timeouts). The AOT
build is made by the install (``make venv``); tests needing it skip when it is absent.
"""

import json
import shutil
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from support import REPO, SERIAL_ONLY, hpcproc_cmd, run

pytestmark = SERIAL_ONLY  # launches its own processes

DRIVER = Path(__file__).with_name("_startup_driver.py")


def _aot_status():
    out = run([sys.executable, "-c",
               "from hpcproc.kernels import _aot; print(_aot.status())"], timeout=60,
              check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def aot_built():
    status = _aot_status()
    if status != "loaded":
        pytest.skip(f"ahead-of-time kernels {status} (make venv builds them)")


@pytest.fixture(scope="module")
def jit_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jit-cache")


def _drive(tmp_path, ranks, env):
    out = tmp_path / f"r{ranks}-{env.get('HPCPROC_AOT', '1')}.npz"
    proc = run([sys.executable, str(DRIVER), str(out)], ranks=ranks, timeout=900,
               check=True, env={"HPCPROC_THREADS": "2", **env})
    return dict(np.load(out)), json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("ranks", [1, 3])
def test_aot_and_numba_kernels_bit_identical(tmp_path, ranks, aot_built, jit_cache):
    """Every AOT-built kernel, every dtype it serves (through stats, exact stats,
    histogram(2d) with and without weights, exact quantiles, sketches): the same bytes
    as the Numba-compiled kernels."""
    aot, rep_a = _drive(tmp_path, ranks, {"HPCPROC_CACHE_DIR": str(jit_cache)})
    jit, rep_j = _drive(tmp_path, ranks, {"HPCPROC_CACHE_DIR": str(jit_cache),
                                          "HPCPROC_AOT": "0"})
    assert rep_a["numba"] == [False] * ranks  # the AOT run never imported Numba ...
    assert all(set(h.values()) == {"aot"} for h in rep_a["how"])
    assert rep_j["numba"] == [True] * ranks  # ... and the other one used it only
    assert all("aot" not in h.values() for h in rep_j["how"])
    kernels = {k.split("(")[0] for k in rep_a["how"][0]}
    assert kernels == {"fold_1d", "fold_2d", "push_nodes", "reduce_nodes", "int_extras",
                       "exact_2d", "hist1d", "hist1d_weighted", "hist2d", "hist2d_weighted",
                       "radix_counts", "radix_collect", "sketch_add", "describe_1d",
                       "fold_hist_1d"}
    assert rep_a["how"][0].keys() == rep_j["how"][0].keys()  # same signatures on both
    assert aot.keys() == jit.keys() and len(aot) > 1000
    differ = [k for k in aot if aot[k].tobytes() != jit[k].tobytes()]
    assert not differ, differ[:20]


def test_every_declared_signature_was_built(aot_built):
    from hpcproc.kernels import _aot, _aot_build
    mod = _aot.module()
    n = 0
    for k in _aot_build.kernels():
        for text in k.aot:
            keys = tuple(_aot_build._type_key(t) for t in _aot_build._arg_types(text))
            assert hasattr(mod, _aot.export_name(k, keys)), (k, text)
            n += 1
    assert n >= 90


def _tiny(tmp_path):
    path = tmp_path / "tiny.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(100, dtype=np.float64)
        f["i"] = np.arange(-50, 50, dtype=np.int32)
    return path


CLI_PROBE = textwrap.dedent("""
    import atexit, os, sys
    def probe():  # one file per rank: whether this rank imported Numba
        with open(os.path.join(os.environ["PROBE_DIR"], str(os.getpid())), "w") as f:
            f.write(str("numba" in sys.modules))
    atexit.register(probe)
    from hpcproc.cli import run
    sys.argv = ["hpcproc"] + sys.argv[1:]
    run()
""")


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_cli_stats_runs_without_numba(tmp_path, ranks, aot_built):
    path = _tiny(tmp_path)
    for i, (target, expect) in enumerate(((f"{path}:/x", "4950"), (f"{path}:/i", "-50"))):
        probe = tmp_path / f"probe{i}"
        probe.mkdir()
        out = run([sys.executable, "-c", CLI_PROBE, "stats", target], ranks=ranks,
                  timeout=120, check=True, env={"HPCPROC_CACHE_DIR": str(tmp_path / "c"),
                                                "PROBE_DIR": str(probe)})
        assert expect in out.stdout
        assert [p.read_text() for p in probe.iterdir()] == ["False"] * ranks
    assert not (tmp_path / "c").exists()  # no cache directory made, nothing trusted


def test_cli_entry_point_unchanged(tmp_path):
    path = _tiny(tmp_path)
    a = run(hpcproc_cmd("stats", f"{path}:/x"), ranks=2, timeout=120, check=True)
    b = run([sys.executable, "-m", "hpcproc", "stats", f"{path}:/x"], ranks=2, timeout=120,
            check=True)
    c = run(hpcproc_cmd("stats", f"{path}:/x"), ranks=2, timeout=120, check=True,
            env={"HPCPROC_AOT": "0", "HPCPROC_CACHE_DIR": str(tmp_path / "c")})
    assert a.stdout == b.stdout == c.stdout and "4950" in a.stdout


def test_import_of_kernel_modules_loads_no_numba():
    code = ("import sys; import hpcproc.kernels.moment_state, hpcproc.kernels._engine, "
            "hpcproc.kernels.exact_state, hpcproc.compute.histogram, hpcproc.compute.quantile, "
            "hpcproc.compute.sketch, hpcproc.compute.stats; import hpcproc.kernels._hist_nb, "
            "hpcproc.kernels._select_nb, hpcproc.shuffles; "
            "assert 'numba' not in sys.modules and 'llvmlite' not in sys.modules; print('ok')")
    out = run([sys.executable, "-c", code], timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


FALLBACK = textwrap.dedent("""
    import json, sys
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    from hpcproc.kernels import _aot, compile_stats
    comm = MPI.COMM_WORLD
    g = np.random.default_rng(3).standard_normal(10_001)
    x = hp.DistArray.from_global(g, comm)
    s = hp.stats(x)
    c, e = hp.histogram(x, bins=13)
    rep = comm.gather({"file": hp.__file__, "status": _aot.status(),
                      "numba": "numba" in sys.modules,
                      "how": sorted(set(compile_stats().values())),
                      "min": bool(s["min"] == g.min()), "max": bool(s["max"] == g.max()),
                      "mean": bool(abs(s["mean"] - g.mean()) < 1e-12),
                      "hist": bool((c == np.histogram(g, bins=13)[0]).all())})
    if comm.rank == 0:
        print(json.dumps(rep))
""")


def _package_copy(tmp_path):
    """A copy of the hpcproc package (with its AOT build, if any) to damage."""
    dst = tmp_path / "src"
    shutil.copytree(REPO / "hpcproc", dst / "hpcproc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _so_name():
    import sysconfig
    return "_aot_kernels" + sysconfig.get_config_var("EXT_SUFFIX")


def _fallback(tmp_path, src, ranks=2):
    out = run([sys.executable, "-c", FALLBACK], ranks=ranks, timeout=600, check=True,
              cwd=tmp_path,  # not the repository: "" on sys.path would find ./hpcproc
              env={"PYTHONPATH": str(src), "HPCPROC_CACHE_DIR": str(tmp_path / "cache")})
    reps = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(reps) == ranks
    for rep in reps:
        assert rep["file"].startswith(str(src))  # the damaged copy was imported
        assert rep["numba"] and "aot" not in rep["how"]  # Numba-compiled kernels ...
        assert rep["min"] and rep["max"] and rep["mean"] and rep["hist"]  # ... correct
    return reps[0]["status"], out.stderr


def test_fallback_when_aot_build_is_absent(tmp_path):
    src = _package_copy(tmp_path)
    (src / "hpcproc" / "kernels" / _so_name()).unlink(missing_ok=True)
    status, err = _fallback(tmp_path, src, ranks=3)
    assert status == "not built" and "ahead-of-time" not in err  # silent


def test_fallback_when_aot_build_is_broken(tmp_path):
    src = _package_copy(tmp_path)
    (src / "hpcproc" / "kernels" / _so_name()).write_bytes(b"\x7fELF garbage" * 100)
    status, err = _fallback(tmp_path, src)
    assert status.startswith("cannot be loaded")
    assert err.count("ahead-of-time kernels cannot be loaded") == 1  # once, rank 0


def test_fallback_when_kernel_sources_changed(tmp_path, aot_built):
    src = _package_copy(tmp_path)
    moments = src / "hpcproc" / "kernels" / "_moments_nb.py"
    moments.write_text(moments.read_text() + "\n# edited after the build\n")
    status, err = _fallback(tmp_path, src, ranks=1)
    assert status.startswith("out of date")
    assert "ahead-of-time kernels out of date" in err


def test_aot_kernels_release_the_gil(aot_built):
    """Two threads of one rank run AOT kernels at the same time (like nogil=True)."""
    code = textwrap.dedent("""
        import threading, time, sys
        import numpy as np
        from hpcproc.kernels import _hist_nb as nb, _aot
        x = np.ones(3_000_000)
        args = (x, np.linspace(0.0, 2.0, 11), True, 5.0, np.zeros(10, np.int64))
        fn = _aot.find(nb.hist1d, _aot.call_key(args))
        assert fn is not None
        inside = [0, 0]
        def work():
            nb.hist1d(*args)
        def ticker():  # counts how often Python code runs while the kernels run
            while t.is_alive():
                inside[0] += 1
                time.sleep(0)
        t = threading.Thread(target=lambda: [work() for _ in range(20)])
        t.start()
        tick = threading.Thread(target=ticker)
        tick.start()
        t.join(); tick.join()
        print(inside[0], "numba" in sys.modules)
    """)
    out = run([sys.executable, "-c", code], timeout=300, check=True)
    ticks, numba = out.stdout.split()
    assert int(ticks) > 100 and numba == "False"
