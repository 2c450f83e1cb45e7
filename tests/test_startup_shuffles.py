"""Start-up of the shuffles: ahead-of-time (AOT) shuffle kernels, no Numba import in the
common cases, bit-identical to the Numba kernels, and a complete signature table.

Serial session only; every test launches its own processes (with timeouts). The AOT
build is made by the install (``make venv``); tests needing it skip when it is absent.
When a kernel is rewritten or added, update ``hpcproc/shuffles/_aot_sigs.py`` (and
``make venv``): these tests fail and say which kernel calls still need Numba.
"""

import ast
import json
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from support import REPO, SERIAL_ONLY, run

pytestmark = SERIAL_ONLY  # launches its own processes

DRIVER = Path(__file__).with_name("_startup_shuffles_driver.py")


@pytest.fixture(scope="module")
def aot_built():
    out = run([sys.executable, "-c", "from hpcproc.kernels import _aot; print(_aot.status())"],
              timeout=60, check=True)
    if out.stdout.strip() != "loaded":
        pytest.skip(f"ahead-of-time kernels {out.stdout.strip()} (make venv builds them)")


def _jit_kernels(path: Path) -> list[str]:
    """Names of the functions decorated ``@jit`` in a module (parsed, not imported)."""
    tree = ast.parse(path.read_text())
    return [f.name for f in tree.body if isinstance(f, ast.FunctionDef)
            and any(isinstance(d, ast.Name) and d.id == "jit" for d in f.decorator_list)]


def _arity(sig: str) -> int:
    depth, n = 0, 1
    for ch in sig:
        depth += ch in "[(" and 1 or (ch in "])" and -1 or 0)
        n += ch == "," and depth == 0
    return n


def test_signature_table_covers_every_shuffle_kernel():
    """Every ``@jit`` kernel of the shuffles has an entry in _aot_sigs (signatures, INNER
    or the reason it stays Numba-only), every entry names a kernel, signatures have the
    kernel's arity, and every module with kernels is built (_aot.BUILTIN)."""
    import inspect

    from hpcproc.kernels import _aot
    from hpcproc.shuffles import _aot_sigs

    found = {}
    for path in sorted((REPO / "hpcproc" / "shuffles").glob("*.py")):
        for name in _jit_kernels(path):
            found[f"hpcproc.shuffles.{path.stem}.{name}"] = path.stem
    table = _aot_sigs.SIGNATURES
    assert sorted(set(found) - set(table)) == [], "kernels missing from _aot_sigs.SIGNATURES"
    assert sorted(set(table) - set(found)) == [], "_aot_sigs entries naming no @jit kernel"
    modules = {f"hpcproc.shuffles.{m}" for m in found.values()}
    assert sorted(modules - set(_aot.BUILTIN)) == [], "add these modules to _aot.BUILTIN"
    import importlib
    for qual, entry in table.items():
        if isinstance(entry, str):
            assert entry == _aot_sigs.INNER or len(entry) > 10, (qual, "say why")
            continue
        mod, _, fn = qual.rpartition(".")
        params = inspect.signature(getattr(importlib.import_module(mod), fn).py_func)
        assert entry, qual
        for sig in entry:
            assert _arity(sig) == len(params.parameters), (qual, sig)
            assert "::1]" in sig or "[" not in sig, (qual, sig)  # C arrays only


def test_every_table_signature_was_built(aot_built):
    from hpcproc.kernels import _aot, _aot_build
    mod = _aot.module()
    n = 0
    for k in _aot_build.kernels():
        if k.__module__.startswith("hpcproc.shuffles"):
            for text in k.aot:
                keys = tuple(_aot_build._type_key(t) for t in _aot_build._arg_types(text))
                assert hasattr(mod, _aot.export_name(k, keys)), (k, text)
                n += 1
    assert n >= 80


def _drive(tmp_path, ranks, env, *extra):
    out = tmp_path / f"r{ranks}-{env.get('HPCPROC_AOT', '1')}.npz"
    proc = run([sys.executable, str(DRIVER), str(out), *extra], ranks=ranks, timeout=900,
               check=True, env={"HPCPROC_CACHE_DIR": str(tmp_path / "jit"), **env})
    return dict(np.load(out)), json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("ranks", [1, 2])
def test_common_shuffles_import_no_numba(tmp_path, ranks, aot_built):
    """sort, groupby (dense and hash), join, exchange, shuffle, unique, value_counts on
    int64/float64 keys and values: no rank imports Numba."""
    _, reps = _drive(tmp_path, ranks, {}, "common")
    assert len(reps) == ranks
    for rep in reps:
        assert rep["status"] == "loaded"
        assert rep["misses"] == [], "kernel calls without an AOT build:\n" + "\n".join(
            rep["misses"])
        assert rep["numba"] is False


def test_aot_and_numba_shuffles_bit_identical(tmp_path, aot_built):
    """Every shuffle through the API on 7 key dtypes (full-range and repeated keys, NaN,
    -0.0) and 5 value dtypes, 1- to 24-byte columns: the AOT kernels give the Numba
    kernels' bytes, and serve every call of these dtypes. At 3 ranks only (every local
    kernel runs on each rank, and the exchange's remainders are exercised; the Numba side
    compiles every kernel, ~1 min)."""
    ranks = 3
    aot, rep_a = _drive(tmp_path, ranks, {})
    jit, rep_j = _drive(tmp_path, ranks, {"HPCPROC_AOT": "0"})
    assert [r["numba"] for r in rep_a] == [False] * ranks, [r["misses"] for r in rep_a]
    assert [r["numba"] for r in rep_j] == [True] * ranks
    assert all(r["misses"] for r in rep_j)  # ... the Numba run really used Numba
    assert aot.keys() == jit.keys() and len(aot) > 300
    differ = [k for k in aot if aot[k].tobytes() != jit[k].tobytes()]
    assert not differ, differ[:20]


def _tiny(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "tiny.h5"
    with h5py.File(path, "w") as f:
        f["k"] = rng.integers(-2**62, 2**62, 200)
        f["g"] = rng.integers(0, 20, 200)
        f["v"] = rng.normal(size=200)
    with h5py.File(tmp_path / "dim.h5", "w") as f:
        f["k"] = np.arange(0, 20, dtype=np.int64)
        f["w"] = np.arange(20.0)
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


@pytest.mark.parametrize("ranks", [1, 2])
def test_cli_shuffles_run_without_numba(tmp_path, ranks, aot_built):
    path = _tiny(tmp_path)
    dim = tmp_path / "dim.h5"
    commands = {
        "sort": ["sort", f"{path}:/k", "--with", "/v", "--out", tmp_path / "s.h5"],
        "groupby": ["groupby", path, "--key", "/g", "--value", "/v", "--agg",
                    "sum,count,min,max", "--out", tmp_path / "g.h5"],
        "groupby-hash": ["groupby", path, "--key", "/k", "--value", "/v", "--agg",
                         "sum,count", "--out", tmp_path / "h.h5"],
        "join": ["join", f"{path}:/g", f"{dim}:/k", "--out", tmp_path / "j.h5"],
    }
    for name, args in commands.items():
        probe = tmp_path / f"probe-{name}"
        probe.mkdir()
        run([sys.executable, "-c", CLI_PROBE, *map(str, args)], ranks=ranks, timeout=180,
            check=True, env={"HPCPROC_CACHE_DIR": str(tmp_path / "c"),
                             "PROBE_DIR": str(probe)})
        assert [p.read_text() for p in probe.iterdir()] == ["False"] * ranks, name
    with h5py.File(path) as f, h5py.File(tmp_path / "s.h5") as s:
        np.testing.assert_array_equal(s["k"][:], np.sort(f["k"][:]))
    assert not (tmp_path / "c").exists()  # no Numba cache directory made
