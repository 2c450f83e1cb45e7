"""Adversarial matrix, command-line side: one real ``mpiexec`` launch per case, where the
command line itself is what is tested (messages, exit codes, --out safety, ranks given
different arguments, environment variables). Per case: a fresh directory with the same
small inputs, every file hashed before and after, the job timed from its launch.

Contract (issues 13 and 14): an error is exactly one ``hpcproc: error: ...`` line naming
the problem, exit 1 (2 for bad usage), no traceback, no MPI_Abort banner when every rank
detected it, the job ends within ``ERROR_DEADLINE`` seconds of its launch, every
pre-existing file is byte-identical and no temporary file is left; a success prints the
answer numpy/h5py/netCDF4-python give.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
from _adversarial import (
    ERROR_DEADLINE,
    changed_files,
    error_problems,
    first_json,
    hpcproc,
    launch,
    leftovers,
    mpiexec,
    mpmd,
    numpy_stats,
    same,
    snapshot,
)

from support import SERIAL_ONLY

pytestmark = SERIAL_ONLY

X = np.linspace(-5.0, 7.0, 1000) ** 3
KEY = (np.arange(1000) * 7919) % 37
VAL = np.arange(1000) * 0.25


def inputs(d: Path) -> None:
    """The inputs every case starts from (small, so a launch is dominated by start-up)."""
    with h5py.File(d / "in.h5", "w") as f:
        f["x"] = X
        f["key"] = KEY
        f["value"] = VAL
        f["short"] = np.arange(10)
        f["names"] = np.array([b"a", b"b"])
        f["c"] = X.astype("c16")
        f["empty"] = np.zeros(0)
        f["flags"] = X > 0
        f["half"] = X.astype("f2") / 8
        f["be"] = X.astype(">f8")
        f["bei"] = KEY.astype(">i4")
        f["m"] = X.reshape(250, 4)
        f.create_group("grp")
        f["ext"] = h5py.ExternalLink("target.h5", "/x")
        f["dangling"] = h5py.ExternalLink("nope.h5", "/x")
        f["lineage_bad"] = np.arange(3.0)
        f["lineage_bad"].attrs["hpcproc_lineage"] = "{not json"
    with h5py.File(d / "target.h5", "w") as f:
        f["pad"] = np.full(5000, 9.0)
        f["x"] = np.arange(100.0)
    with h5py.File(d / "r.h5", "w") as f:
        f["key"] = np.arange(0, 37, 2)
        f["w"] = np.arange(0, 37, 2) * 10.0
    (d / "rules.toml").write_text('[x]\nmin = -1000.0\nmax = 1000.0\n')
    (d / "bad_rules.toml").write_text("[x\nmin = = 3\n")
    (d / "text.txt").write_text("not hdf5\n" * 50)
    (d / "zero.h5").write_bytes(b"")
    (d / "sub").mkdir()


# --- expectations of a successful run ---------------------------------------------------
def read(d, name, path="in.h5"):
    with h5py.File(Path(d) / path) as f:
        return f[name][()]


def stats_of(name, path="in.h5"):
    def check(d, doc):
        return same(doc, numpy_stats(read(d, name, path)), rtol=1e-9)
    return check


def hist_of(name, bins=64):
    def check(d, doc):
        c, e = np.histogram(read(d, name), bins=bins)
        return same(doc["counts"], c) + same(doc["edges"], e, rtol=1e-12)
    return check


def quantile_of(name, q):
    def check(d, doc):
        return same(doc["values"], np.quantile(read(d, name), q), rtol=1e-12)
    return check


def strict_json_stats_of_empty(d, doc):
    return ([] if doc.get("count") == 0 else [f"count {doc.get('count')}, want 0"]) + \
        [f"{k} is {doc.get(k)!r}, want null" for k in ("mean", "std", "min", "max")
         if doc.get(k) is not None]


def sorted_output(d, doc):
    with h5py.File(Path(d) / "out.h5") as f:
        k, v = f["key"][...], f["value"][...]
    order = np.argsort(KEY, kind="stable")
    return same(k, KEY[order], rtol=0) + same(v, VAL[order], rtol=0)


def grouped_output(d, doc):
    with h5py.File(Path(d) / "out.h5") as f:
        got = {n: f[n][...] for n in f}
    keys = np.unique(KEY)
    sums = np.array([VAL[KEY == k].sum() for k in keys])
    order = np.argsort(got["key"])
    names = [n for n in got if n != "key"]
    col = next(n for n in names if "sum" in n)
    return same(got["key"][order], keys, rtol=0) + same(got[col][order], sums, rtol=1e-12)


def info_lists_datasets(d, text):
    return [f"'{n}' not listed" for n in ("x", "key", "m") if n not in text]


# --- the table ------------------------------------------------------------------------------
@dataclass
class Cli:
    id: str
    args: list  # "{d}" is replaced by the case directory
    expect: str = "error"  # "usage" (exit 2), "error" (exit 1), "fail" (1 or 2), "ok", "either"
    words: tuple = ()  # the error line must name each of these
    forbid: tuple = ()  # ... and none of these
    check: Callable | None = None  # for "ok": check(d, json or stdout) -> problems
    ranks: int = 2
    env: dict = field(default_factory=dict)
    setup: Callable | None = None  # extra setup after inputs(d)
    pre: list = field(default_factory=list)  # commands run (2 ranks) before the snapshot
    mutate: Callable | None = None  # after pre, before the snapshot
    may_change: tuple = ()
    mpmd: list | None = None  # [(ranks, args), ...]: ranks with different command lines
    json_out: bool = True
    cwd: bool = False  # run in the case directory


T = "{d}/in.h5"
CASES = [
    # bad usage: exit 2, one line, named
    Cli("no-arguments", [], "usage"),
    Cli("unknown-command", ["frobnicate"], "usage", ("frobnicate",)),
    Cli("stats-no-target", ["stats"], "usage"),
    Cli("stats-unknown-option", ["stats", f"{T}:/x", "--frobnicate"], "usage", ("--frobnicate",)),
    Cli("stats-no-dataset-part", ["stats", T], "usage", ("FILE:DATASET",)),
    Cli("stats-empty-dataset-part", ["stats", f"{T}:"], "usage"),
    Cli("stats-block-bytes-0", ["stats", f"{T}:/x", "--block-bytes", "0"], "usage",
        ("block-bytes",)),
    Cli("stats-block-bytes-garbage", ["stats", f"{T}:/x", "--block-bytes", "lots"], "usage",
        ("lots",)),
    Cli("stats-method-bogus", ["stats", f"{T}:/x", "--method", "fast"], "usage", ("method",)),
    Cli("stats-ddof-negative", ["stats", f"{T}:/x", "--ddof", "-1"], "usage", ("ddof",), ranks=1),
    Cli("stats-checkpoint-every-negative", ["stats", f"{T}:/x", "--checkpoint", "{d}/ck",
                                            "--checkpoint-every", "-1"], "usage",
        ("checkpoint-every",)),
    Cli("hist-bins-0", ["hist", f"{T}:/x", "--bins", "0"], "usage", ("bins",)),
    Cli("hist-bins-negative", ["hist", f"{T}:/x", "--bins", "-3"], "usage", ("bins",), ranks=3),
    Cli("hist-range-reversed", ["hist", f"{T}:/x", "--range", "5", "1"], "usage", ("range",)),
    Cli("hist-range-inf", ["hist", f"{T}:/x", "--range", "-10", "inf"], "usage", ("range",)),
    Cli("hist-range-nan", ["hist", f"{T}:/x", "--range", "nan", "1"], "usage", ("range",)),
    Cli("quantile-q-above-1", ["quantile", f"{T}:/x", "-q", "1.5"], "usage", ("quantile",)),
    Cli("quantile-q-nan", ["quantile", f"{T}:/x", "-q", "nan"], "usage", ("quantile",)),
    Cli("quantile-rel-err-0", ["quantile", f"{T}:/x", "--sketch", "--rel-err", "0"], "usage",
        ("rel-err",)),
    Cli("quantile-rel-err-negative", ["quantile", f"{T}:/x", "--sketch", "--rel-err", "-0.1"],
        "usage", ("rel-err",), ranks=1),
    Cli("generate-keys-0", ["generate", "{d}/g.h5", "--kind", "uniform", "--keys", "0",
                            "--rows", "100"], "usage", ("keys",)),
    Cli("generate-zipf-a-1", ["generate", "{d}/g.h5", "--kind", "zipf", "--zipf-a", "1",
                              "--rows", "100"], "usage", ("zipf",)),
    Cli("generate-seed-negative", ["generate", "{d}/g.h5", "--seed", "-1", "--rows", "100"],
        "usage", ("seed",)),
    Cli("generate-cols-0", ["generate", "{d}/g.h5", "--cols", "0", "--rows", "100"], "usage",
        ("cols",)),
    Cli("generate-rows-garbage", ["generate", "{d}/g.h5", "--rows", "lots"], "usage", ("lots",)),
    Cli("generate-dataset-in-output", ["generate", "{d}/g.h5:/x"], "usage"),
    Cli("groupby-bad-agg", ["groupby", T, "--key", "/key", "--value", "/value", "--agg",
                            "median", "--out", "{d}/out.h5"], "usage", ("median",)),
    Cli("groupby-no-value", ["groupby", T, "--key", "/key", "--agg", "sum", "--out",
                             "{d}/out.h5"], "usage", ("--value",)),
    Cli("join-no-key", ["join", T, "{d}/r.h5", "--out", "{d}/out.h5"], "usage", ("--on",)),
    Cli("sort-without-out", ["sort", f"{T}:/key"], "usage", ("--out",)),
    Cli("diff-rtol-negative", ["diff", f"{T}:/x", f"{T}:/x", "--rtol", "-1"], "usage",
        ("rtol",)),
    Cli("trace-into-missing-directory", ["stats", f"{T}:/x", "--trace", "{d}/nodir/t.json"],
        "fail", ("nodir",)),
    # bad input: exit 1, one line, named, nothing printed before it fails
    Cli("stats-missing-file", ["stats", "{d}/nope.h5:/x"], "error", ("nope.h5",)),
    Cli("stats-missing-dataset", ["stats", f"{T}:/y"], "error", ("/y",), ranks=3),
    Cli("stats-group", ["stats", f"{T}:/grp"], "error", ("/grp",)),
    Cli("stats-strings", ["stats", f"{T}:/names"], "error", ("/names",)),
    Cli("stats-complex", ["stats", f"{T}:/c"], "error", ("/c", "complex")),
    Cli("stats-not-hdf5", ["stats", "{d}/text.txt:/x"], "error", ("text.txt",)),
    Cli("stats-zero-byte-file", ["stats", "{d}/zero.h5:/x"], "error", ("zero.h5",)),
    Cli("stats-directory-as-file", ["stats", "{d}/sub:/x"], "error", ("sub",)),
    Cli("stats-dangling-external-link", ["stats", f"{T}:/dangling"], "error", ("dangling",)),
    Cli("stats-method-mpio-serial-h5py", ["stats", f"{T}:/x", "--method", "mpio"], "either",
        ("mpio",), check=stats_of("x")),
    Cli("quantile-empty", ["quantile", f"{T}:/empty"], "error", ("/empty",)),
    Cli("quantile-bool", ["quantile", f"{T}:/flags"], "either", check=quantile_of("flags", [0.5])),
    Cli("hist-checkpoint-on-stats-checkpoint", ["hist", f"{T}:/x", "--checkpoint", "{d}/ck"],
        "fail", ("ck",), forbid=("KeyError",), pre=[["stats", f"{T}:/x", "--checkpoint",
                                                     "{d}/ck"]], may_change=("ck/",)),
    Cli("lineage-malformed", ["lineage", f"{T}:/lineage_bad"], "error", ("lineage",),
        forbid=("JSONDecodeError",)),
    Cli("validate-rules-missing", ["validate", f"{T}:/x", "--rules", "{d}/nope.toml"], "fail",
        ("nope.toml",)),
    Cli("validate-rules-syntax", ["validate", f"{T}:/x", "--rules", "{d}/bad_rules.toml"], "fail",
        ("bad_rules.toml",)),
    Cli("diff-missing-dataset", ["diff", f"{T}:/x", f"{T}:/nope"], "error", ("/nope",)),
    Cli("ckpt-ls-missing-directory", ["ckpt", "ls", "{d}/nock"], "error", ("nock",)),
    Cli("ckpt-verify-a-file", ["ckpt", "verify", "{d}/text.txt"], "error", ("text.txt",)),
    Cli("info-file-lists-datasets", ["info", T], "ok", check=info_lists_datasets,
        json_out=False, ranks=1),
    # --out and the inputs: refused before anything is read, the input untouched
    Cli("sort-out-equals-input", ["sort", f"{T}:/key", "--with", "/value", "--out", T], "fail",
        ("in.h5",)),
    Cli("sort-out-dotdot-input", ["sort", f"{T}:/key", "--out", "{d}/sub/../in.h5"], "fail",
        ("in.h5",)),
    Cli("sort-out-relative-vs-absolute", ["sort", "in.h5:/key", "--out", T], "fail", ("in.h5",),
        cwd=True),
    Cli("sort-out-hardlink-to-input", ["sort", f"{T}:/key", "--out", "{d}/hard.h5"], "fail",
        setup=lambda d: os.link(d / "in.h5", d / "hard.h5")),
    Cli("sort-out-symlink-to-input", ["sort", f"{T}:/key", "--out", "{d}/link.h5"], "fail",
        setup=lambda d: (d / "link.h5").symlink_to(d / "in.h5")),
    Cli("groupby-out-equals-input", ["groupby", T, "--key", "/key", "--value", "/value",
                                     "--out", T], "fail", ("in.h5",), ranks=3),
    Cli("join-out-symlink-to-right", ["join", f"{T}:/key", "{d}/r.h5:/key", "--out",
                                      "{d}/link.h5"], "fail",
        setup=lambda d: (d / "link.h5").symlink_to(d / "r.h5")),
    Cli("join-out-equals-left", ["join", f"{T}:/key", "{d}/r.h5:/key", "--out", T], "fail",
        ("in.h5",)),
    Cli("sort-out-is-directory", ["sort", f"{T}:/key", "--out", "{d}/sub"], "fail", ("sub",)),
    Cli("sort-out-missing-directory", ["sort", f"{T}:/key", "--out", "{d}/nodir/o.h5"], "fail",
        ("nodir",)),
    Cli("generate-out-is-directory", ["generate", "{d}/sub", "--rows", "1000"], "fail", ("sub",)),
    Cli("generate-missing-directory", ["generate", "{d}/nodir/g.h5", "--rows", "10"], "fail",
        ("nodir",)),
    Cli("sort-with-different-length", ["sort", f"{T}:/key", "--with", "/short", "--out",
                                       "{d}/out.h5"], "error", ("short",)),
    # answers: numpy-equal, JSON valid (null, never NaN)
    Cli("stats-empty-json-null", ["stats", f"{T}:/empty", "--json"], "ok",
        check=strict_json_stats_of_empty),
    Cli("stats-float16", ["stats", f"{T}:/half", "--json"], "ok", check=stats_of("half")),
    Cli("stats-big-endian", ["stats", f"{T}:/be", "--json"], "ok", check=stats_of("be"), ranks=3),
    Cli("stats-big-endian-int", ["stats", f"{T}:/bei", "--json"], "ok", check=stats_of("bei")),
    Cli("hist-big-endian", ["hist", f"{T}:/be", "--json"], "ok", check=hist_of("be")),
    Cli("quantile-big-endian", ["quantile", f"{T}:/be", "-q", "0", "0.3", "1", "--json"], "ok",
        check=quantile_of("be", [0, 0.3, 1])),
    Cli("stats-external-link", ["stats", f"{T}:/ext", "--json"], "ok",
        check=stats_of("x", "target.h5")),
    Cli("stats-2d", ["stats", f"{T}:/m", "--json"], "ok", check=stats_of("m"), ranks=1),
    Cli("stats-checkpoint-timings", ["stats", f"{T}:/x", "--checkpoint", "{d}/ck", "--timings",
                                     "--json"], "ok", check=stats_of("x")),
    Cli("stats-checkpoint-changed-input", ["stats", f"{T}:/x", "--checkpoint", "{d}/ck",
                                           "--json"], "either", check=stats_of("x"),
        pre=[["stats", f"{T}:/x", "--checkpoint", "{d}/ck"]],
        mutate=lambda d: _rewrite_x(d), may_change=("ck/",)),
    Cli("sort-answer", ["sort", f"{T}:/key", "--with", "/value", "--out", "{d}/out.h5",
                        "--json"], "ok", check=sorted_output, ranks=3),
    Cli("groupby-answer", ["groupby", T, "--key", "/key", "--value", "/value", "--agg", "sum",
                           "--out", "{d}/out.h5", "--json"], "ok", check=grouped_output, ranks=1),
    # ranks launched with different command lines (MPMD): one agreed error, no hang
    Cli("mpmd-stats-file", [], "fail", mpmd=[(1, ["stats", f"{T}:/x"]),
                                             (1, ["stats", "{d}/target.h5:/x"])]),
    Cli("mpmd-stats-dataset", [], "fail", mpmd=[(1, ["stats", f"{T}:/x"]),
                                                (1, ["stats", f"{T}:/value"])]),
    Cli("mpmd-hist-bins", [], "fail", ("bins",), mpmd=[(1, ["hist", f"{T}:/x", "--bins", "10"]),
                                                       (1, ["hist", f"{T}:/x", "--bins", "11"])]),
    Cli("mpmd-quantile-q", [], "fail", mpmd=[(2, ["quantile", f"{T}:/x", "-q", "0.5"]),
                                             (1, ["quantile", f"{T}:/x", "-q", "0.5", "0.6"])]),
    Cli("mpmd-sort-out", [], "fail", ("out",), mpmd=[
        (1, ["sort", f"{T}:/key", "--out", "{d}/o1.h5"]),
        (1, ["sort", f"{T}:/key", "--out", "{d}/o2.h5"])]),
    Cli("mpmd-stats-checkpoint-dir", [], "fail", ("checkpoint",), mpmd=[
        (1, ["stats", f"{T}:/x", "--checkpoint", "{d}/ck1"]),
        (1, ["stats", f"{T}:/x", "--checkpoint", "{d}/ck2"])]),
    Cli("mpmd-different-commands", [], "fail", mpmd=[(1, ["stats", f"{T}:/x"]),
                                                     (1, ["hist", f"{T}:/x"])]),
    # environment variables: named in the message; valid spellings accepted
    Cli("env-memory-budget-garbage", ["sort", f"{T}:/key", "--out", "{d}/out.h5"], "error",
        ("HPCPROC_MEMORY_BUDGET",), env={"HPCPROC_MEMORY_BUDGET": "garbage"}),
    Cli("env-memory-budget-negative", ["sort", f"{T}:/key", "--out", "{d}/out.h5"], "error",
        ("HPCPROC_MEMORY_BUDGET",), env={"HPCPROC_MEMORY_BUDGET": "-5"}),
    Cli("env-memory-budget-64M", ["sort", f"{T}:/key", "--with", "/value", "--out",
                                  "{d}/out.h5", "--json"], "ok", check=sorted_output,
        env={"HPCPROC_MEMORY_BUDGET": "64M"}),
    Cli("env-threads-0", ["stats", f"{T}:/x"], "error", ("HPCPROC_THREADS",),
        env={"HPCPROC_THREADS": "0"}),
    Cli("env-threads-garbage", ["stats", f"{T}:/x"], "error", ("HPCPROC_THREADS",),
        env={"HPCPROC_THREADS": "many"}, ranks=1),
]


def _rewrite_x(d):
    """Same shape, other values: a resumed run must not print the old statistics."""
    with h5py.File(d / "in.h5", "r+") as f:
        f["x"][...] = f["x"][...] * 3 + 1


def _expand(args, d):
    return [str(a).replace("{d}", str(d)) for a in args]


def _command(case, d):
    if case.mpmd:
        return mpmd(*[(n, hpcproc(*_expand(a, d))) for n, a in case.mpmd])
    return mpiexec(hpcproc(*_expand(case.args, d)), case.ranks)


def _outcome_problems(case, res, d) -> list[str]:
    if case.expect in ("usage", "error", "fail"):
        codes = {"usage": (2,), "error": (1,), "fail": (1, 2)}[case.expect]
        problems = error_problems(res, codes=codes, contains=case.words)
        for word in case.forbid:
            if word in res.stderr:
                problems.append(f"stderr shows {word!r}")
        if res.stdout.strip():  # bad input is found before any work, not after printing
            problems.append(f"printed before failing: {res.stdout.strip()[:200]!r}")
        return problems
    if case.expect == "either" and res.returncode != 0:
        return error_problems(res, codes=(1, 2), contains=case.words)
    if res.timed_out or res.returncode != 0:
        return [f"expected success, got {res.describe()}"]
    try:
        doc = first_json(res.stdout) if case.json_out else res.stdout
        if case.json_out:
            json.loads(res.stdout.strip(), parse_constant=lambda c: (_ for _ in ()).throw(
                ValueError(f"invalid JSON constant {c}")))
    except ValueError as exc:
        return [f"output is not valid JSON: {exc}: {res.stdout[:300]!r}"]
    return case.check(d, doc)


def run_case(case, d) -> list[str]:
    """Launch one case in the fresh directory ``d``; every way it breaks the contract."""
    inputs(d)
    if case.setup:
        case.setup(d)
    for pre in case.pre:
        r = launch(mpiexec(hpcproc(*_expand(pre, d)), 2), timeout=60)
        if r.returncode != 0:
            return [f"setup command {pre} failed: {r.describe()}"]
    if case.mutate:
        case.mutate(d)
    before = snapshot(d)
    res = launch(_command(case, d), timeout=ERROR_DEADLINE + 5, env=case.env,
                 cwd=d if case.cwd else None)
    problems = _outcome_problems(case, res, d)
    changed = [p for p in changed_files(before, snapshot(d))
               if not p.startswith(case.may_change or ("\0",))]
    if changed:
        problems.append(f"pre-existing files changed or removed: {changed}")
    if leftovers(d):
        problems.append(f"temporary files left: {leftovers(d)}")
    return problems + [res.describe()] if problems else []


#: launches in flight at once: most of a launch is start-up latency (imports, MPI
#: wire-up), so a few at a time keep the matrix within its time budget
WORKERS = 4


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """Every selected case launched once (a few at a time): ``{id: problems}``."""
    from concurrent.futures import ThreadPoolExecutor

    chosen = [item.callspec.params["case"] for item in request.session.items
              if getattr(item, "originalname", "") == "test_cli_case"]
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {c.id: pool.submit(run_case, c, tmp_path_factory.mktemp("cli"))
                   for c in chosen}
        return {k: f.result() for k, f in futures.items()}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_case(outcomes, case):
    problems = outcomes[case.id]
    assert not problems, "\n".join(problems)


# --- the kernel cache directory (issue 13 #17, issue 14) --------------------------------------
# (HPCPROC_AOT=0: the Numba-compiled kernels, which use the cache; see tests/test_startup.py)
@pytest.mark.timeout(120)
def test_world_writable_cache_dir_is_refused_with_one_warning(tmp_path):
    inputs(tmp_path)
    cache = tmp_path / "shared-cache"
    cache.mkdir()
    cache.chmod(0o777)
    before = set(os.listdir(cache))
    res = launch(mpiexec(hpcproc("stats", f"{tmp_path}/in.h5:/x", "--json"), 2), timeout=90,
                 env={"HPCPROC_CACHE_DIR": cache, "HPCPROC_AOT": "0"})
    assert res.returncode == 0, res.describe()
    assert not same(first_json(res.stdout), numpy_stats(X))
    warned = [ln for ln in res.stderr.splitlines() if str(cache) in ln or "HPCPROC_CACHE_DIR" in ln]
    assert len(warned) == 1, f"{len(warned)} warnings naming the cache directory, want 1\n" \
        + res.describe()
    assert set(os.listdir(cache)) == before, "compiled into a directory others can write"


@pytest.mark.timeout(120)
def test_new_cache_dir_is_private(tmp_path):
    inputs(tmp_path)
    cache = tmp_path / "fresh" / "cache"
    res = launch(mpiexec(hpcproc("stats", f"{tmp_path}/in.h5:/x", "--json"), 2), timeout=90,
                 env={"HPCPROC_CACHE_DIR": cache, "HPCPROC_AOT": "0"})
    assert res.returncode == 0, res.describe()
    assert cache.is_dir(), "cache directory not created"
    mode = stat.S_IMODE(cache.stat().st_mode)
    assert not mode & 0o022, f"cache directory mode {oct(mode)} is group/world-writable"


@pytest.mark.timeout(120)
def test_cache_dir_that_is_a_file_is_named(tmp_path):
    inputs(tmp_path)
    (tmp_path / "cachefile").write_text("x")
    res = launch(mpiexec(hpcproc("stats", f"{tmp_path}/in.h5:/x", "--json"), 2), timeout=90,
                 env={"HPCPROC_CACHE_DIR": tmp_path / "cachefile",
                      "HPCPROC_AOT": "0"})
    if res.returncode == 0:  # fell back to a private directory: says so once
        assert not same(first_json(res.stdout), numpy_stats(X))
        assert sum("HPCPROC_CACHE_DIR" in ln for ln in res.stderr.splitlines()) == 1, \
            "no single warning naming HPCPROC_CACHE_DIR\n" + res.describe()
    else:
        problems = error_problems(res, contains=("HPCPROC_CACHE_DIR",))
        assert not problems, "\n".join(problems) + "\n" + res.describe()
