"""One clear message for every bad input (see docs/errors.md), under real ``mpiexec``.

Every case asserts: exactly one stderr line, ``hpcproc: error: <message>`` whose content
names the argument/file/dataset/variable (a regex), the exit status (1 error, 2 usage),
no ``MPI_Abort`` banner and no ``Traceback``, nothing on stdout (no partial result), and
that the job ended well within its timeout. Errors every rank detects are "agreed": the
ranks exit normally. A rank failing alone prints one line and aborts the job.
"""

import json
import re
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from support import SERIAL_ONLY, hpcproc_cmd, run

pytestmark = SERIAL_ONLY

ERROR = 1
USAGE = 2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("msg")
    with h5py.File(d / "d.h5", "w") as f:
        f["x"] = np.arange(100.0)
        f["c"] = np.arange(10) + 1j
        f["e"] = np.zeros(0)
        f["b"] = np.ones(10, bool)
        f["key"] = np.arange(100)
        f["v"] = np.arange(50.0)
        f["s"] = np.array([b"ab", b"cd"])
        f["scalar"] = 3.0
        f.create_group("grp")
        f.create_dataset("z", data=np.arange(1000.0), chunks=(100,))
        f["lx"] = np.arange(5.0)
        f["lx"].attrs["hpcproc_lineage"] = "{not json"
    (d / "notes.txt").write_text("not hdf5\n")
    (d / "adir").mkdir()
    return d


# (name, args, env, exit status, regex that the message after "hpcproc: error: " matches)
CASES = [
    # stats: files, datasets, dtypes, options
    ("stats missing file", ["stats", "{d}/missing.h5:/x"], {}, ERROR,
     r"no such file: .*missing\.h5"),
    ("stats missing dataset", ["stats", "{d}/d.h5:/nope"], {}, ERROR,
     r"no dataset '/nope' in .*d\.h5"),
    ("stats group", ["stats", "{d}/d.h5:/grp"], {}, ERROR, r"'/grp' in .*d\.h5 is a group"),
    ("stats complex", ["stats", "{d}/d.h5:/c"], {}, ERROR, r"'/c' is complex"),
    ("stats strings", ["stats", "{d}/d.h5:/s"], {}, ERROR, r"'/s' in .*non-numeric dtype"),
    ("stats scalar", ["stats", "{d}/d.h5:/scalar"], {}, ERROR, r"'/scalar' in .* scalar"),
    ("stats not hdf5", ["stats", "{d}/notes.txt:/x"], {}, ERROR,
     r"not an HDF5 file: .*notes\.txt"),
    ("stats directory", ["stats", "{d}/adir:/x"], {}, ERROR, r"is a directory.*adir"),
    ("stats no dataset part", ["stats", "{d}/d.h5"], {}, USAGE, r"expected FILE:DATASET"),
    ("stats block-bytes 0", ["stats", "{d}/d.h5:/x", "--block-bytes", "0"], {}, USAGE,
     r"argument --block-bytes: must be a size >= 1 .*got '0'"),
    ("stats block-bytes text", ["stats", "{d}/d.h5:/x", "--block-bytes", "lots"], {}, USAGE,
     r"argument --block-bytes: .*'lots'"),
    ("stats direct on chunked", ["stats", "{d}/d.h5:/z", "--method", "direct"], {}, ERROR,
     r"method='direct' needs a contiguous.*'/z'"),
    ("stats bad method", ["stats", "{d}/d.h5:/x", "--method", "fast"], {}, USAGE,
     r"argument --method: invalid choice: 'fast'"),
    ("stats ddof", ["stats", "{d}/d.h5:/x", "--ddof", "-1"], {}, USAGE,
     r"argument --ddof: must be an integer >= 0, got '-1'"),
    ("stats unknown option", ["stats", "{d}/d.h5:/x", "--frobnicate"], {}, USAGE,
     r"unrecognized arguments: --frobnicate"),
    ("stats trace dir", ["stats", "{d}/d.h5:/x", "--trace", "{d}/nodir/t.json"], {}, ERROR,
     r"--trace .*nodir/t\.json: cannot write there \(directory does not exist: .*nodir\)"),
    ("stats plot dir", ["stats", "{d}/d.h5:/x", "--plot", "{d}/nodir/p.png"], {}, ERROR,
     r"--plot .*nodir/p\.png: cannot write there"),
    ("stats trace is dir", ["stats", "{d}/d.h5:/x", "--trace", "{d}/adir"], {}, ERROR,
     r"--trace .*adir: cannot write there \(is a directory\)"),
    ("stats checkpoint-every", ["stats", "{d}/d.h5:/x", "--checkpoint-every", "-1"], {},
     USAGE, r"argument --checkpoint-every: must be a finite number >= 0"),
    # hist
    ("hist bins 0", ["hist", "{d}/d.h5:/x", "--bins", "0"], {}, USAGE,
     r"argument --bins: must be an integer >= 1, got '0'"),
    ("hist range inf", ["hist", "{d}/d.h5:/x", "--range", "-10", "inf"], {}, USAGE,
     r"argument --range: must be a finite number, got 'inf'"),
    ("hist range reversed", ["hist", "{d}/d.h5:/x", "--range", "5", "1"], {}, USAGE,
     r"--range MIN MAX needs MIN <= MAX"),
    ("hist plot dir", ["hist", "{d}/d.h5:/x", "--plot", "{d}/nodir/h.png"], {}, ERROR,
     r"--plot .*nodir/h\.png: cannot write there"),
    ("hist complex", ["hist", "{d}/d.h5:/c"], {}, ERROR, r"'/c' is complex"),
    # quantile
    ("quantile q", ["quantile", "{d}/d.h5:/x", "-q", "1.5"], {}, USAGE,
     r"argument -q/--q: must be a number in \[0, 1\], got '1.5'"),
    ("quantile rel-err 0", ["quantile", "{d}/d.h5:/x", "--sketch", "--rel-err", "0"], {},
     USAGE, r"argument --rel-err: must be a number in \(0, 1\), got '0'"),
    ("quantile empty", ["quantile", "{d}/d.h5:/e"], {}, ERROR, r"d\.h5:/e: .*empty"),
    ("quantile bool", ["quantile", "{d}/d.h5:/b"], {}, ERROR, r"d\.h5:/b: .*bool"),
    # generate
    ("generate seed", ["generate", "{d}/g.h5", "--seed", "-1"], {}, USAGE,
     r"argument --seed: must be an integer >= 0, got '-1'"),
    ("generate keys", ["generate", "{d}/g.h5", "--kind", "uniform", "--keys", "0"], {},
     USAGE, r"argument --keys: must be a count >= 1"),
    ("generate zipf-a", ["generate", "{d}/g.h5", "--kind", "zipf", "--zipf-a", "1"], {},
     USAGE, r"argument --zipf-a: must be a finite number > 1, got '1'"),
    ("generate cols", ["generate", "{d}/g.h5", "--cols", "0"], {}, USAGE,
     r"argument --cols: must be an integer >= 1"),
    ("generate rows", ["generate", "{d}/g.h5", "--rows", "lots"], {}, USAGE,
     r"argument --rows: must be a count >= 0 .*'lots'"),
    ("generate into a directory", ["generate", "{d}/adir"], {}, ERROR,
     r"output .*adir: cannot write there \(is a directory\)"),
    ("generate missing directory", ["generate", "{d}/nodir/g.h5"], {}, ERROR,
     r"output .*nodir/g\.h5: cannot write there \(directory does not exist: .*nodir\)"),
    ("generate chunks", ["generate", "{d}/g.h5", "--chunks", "0"], {}, USAGE,
     r"argument --chunks: must be a count >= 1"),
    ("generate kind", ["generate", "{d}/g.h5", "--kind", "poisson"], {}, USAGE,
     r"argument --kind: invalid choice: 'poisson'"),
    # sort, groupby, join
    ("sort unequal columns", ["sort", "{d}/d.h5:/key", "--with", "/v", "--out", "{d}/o.h5"],
     {}, ERROR, r"different lengths: key \(/key\): 100, v \(/v\): 50"),
    ("sort memory-budget", ["sort", "{d}/d.h5:/key", "--out", "{d}/o.h5",
                            "--memory-budget", "0"], {}, USAGE,
     r"argument --memory-budget: must be a size >= 1"),
    ("sort env budget garbage", ["sort", "{d}/d.h5:/key", "--out", "{d}/o.h5"],
     {"HPCPROC_MEMORY_BUDGET": "garbage"}, ERROR,
     r"HPCPROC_MEMORY_BUDGET must be a size .*got 'garbage'"),
    ("sort env budget negative", ["sort", "{d}/d.h5:/key", "--out", "{d}/o.h5"],
     {"HPCPROC_MEMORY_BUDGET": "-5"}, ERROR, r"HPCPROC_MEMORY_BUDGET must be a size .*'-5'"),
    ("sort missing --out", ["sort", "{d}/d.h5:/key"], {}, USAGE,
     r"the following arguments are required: --out"),
    ("groupby agg", ["groupby", "{d}/d.h5", "--key", "/key", "--value", "/x", "--agg",
                     "median", "--out", "{d}/o.h5"], {}, USAGE, r"--agg .*got 'median'"),
    ("groupby missing key", ["groupby", "{d}/d.h5", "--key", "/nope", "--agg", "size",
                             "--out", "{d}/o.h5"], {}, ERROR, r"no dataset '/nope' in"),
    ("join no key", ["join", "{d}/d.h5", "{d}/d.h5", "--out", "{d}/o.h5"], {}, USAGE,
     r"no key: give --on DSET"),
    ("join float with int key", ["join", "{d}/d.h5:/x", "{d}/d.h5:/key", "--out",
                                 "{d}/o.h5"], {}, ERROR, r"integer and float keys"),
    ("join broadcast-bytes", ["join", "{d}/d.h5", "{d}/d.h5", "--on", "/key", "--out",
                              "{d}/o.h5", "--broadcast-bytes", "-1"], {}, USAGE,
     r"argument --broadcast-bytes: must be a size >= 0"),
    # diff, validate, lineage
    ("diff rtol", ["diff", "{d}/d.h5:/x", "{d}/d.h5:/x", "--rtol", "-1"], {}, USAGE,
     r"argument --rtol: must be a finite number >= 0"),
    ("diff limit", ["diff", "{d}/d.h5:/x", "{d}/d.h5:/x", "--limit", "-1"], {}, USAGE,
     r"argument --limit: must be an integer >= 0"),
    ("diff missing file", ["diff", "{d}/d.h5:/x", "{d}/missing.h5:/x"], {}, ERROR,
     r"no such file: .*missing\.h5"),
    ("validate missing rules", ["validate", "{d}/d.h5:/x", "--rules", "{d}/r.toml"], {},
     ERROR, r"no such rules file: .*r\.toml"),
    ("lineage malformed", ["lineage", "{d}/d.h5:/lx"], {}, ERROR,
     r"d\.h5:/lx: attribute hpcproc_lineage is not valid JSON"),
    ("lineage absent", ["lineage", "{d}/d.h5:/x"], {}, ERROR,
     r"d\.h5:/x has no hpcproc_lineage attribute"),
    # ls / info FILE, ckpt, the command itself, environment
    ("ls missing file", ["ls", "{d}/missing.h5"], {}, ERROR, r"no such file: .*missing\.h5"),
    ("ls missing group", ["ls", "{d}/d.h5", "/nope"], {}, ERROR,
     r"no group or dataset '/nope' in .*d\.h5"),
    ("info too many", ["info", "{d}/d.h5", "/grp", "/x"], {}, USAGE, r"unrecognized arguments"),
    ("ckpt missing dir", ["ckpt", "ls", "{d}/nockpt"], {}, ERROR,
     r"no checkpoint directory .*nockpt"),
    ("no command", [], {}, USAGE, r"the following arguments are required: COMMAND"),
    ("unknown command", ["bogus"], {}, USAGE, r"invalid choice: 'bogus'"),
    ("env progress interval", ["stats", "{d}/d.h5:/x"], {"HPCPROC_PROGRESS_INTERVAL": "x"},
     ERROR, r"HPCPROC_PROGRESS_INTERVAL must be a number of seconds >= 0, got 'x'"),
    ("env threads", ["stats", "{d}/d.h5:/x"], {"HPCPROC_THREADS": "0"}, ERROR,
     r"HPCPROC_THREADS"),
]

#: a sample of the table also run at 1 and 3 ranks (the whole table runs at 2)
SAMPLE = ["stats missing dataset", "stats complex", "stats block-bytes 0", "hist range inf",
          "quantile bool", "generate seed", "sort unequal columns", "sort env budget garbage",
          "lineage malformed", "ls missing group"]


def check_one_message(proc, status, pattern, what=""):
    """The contract of docs/errors.md for one finished job."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == status, (what, proc.returncode, proc.stderr)
    assert len(lines) == 1, (what, proc.stderr)
    assert lines[0].startswith("hpcproc: error: "), (what, lines[0])
    assert re.search(pattern, lines[0][len("hpcproc: error: "):]), (what, lines[0], pattern)
    assert "MPI_Abort" not in proc.stderr and "Traceback" not in proc.stderr, what
    assert proc.stdout == "", (what, proc.stdout)  # no partial result


def _run_case(files, case, ranks):
    name, args, env, status, pattern = case
    args = [a.format(d=files) for a in args]
    t0 = time.monotonic()
    proc = run(hpcproc_cmd(*args), ranks=ranks, timeout=90,
               env={"HPCPROC_PROGRESS": "0", **env})
    elapsed = time.monotonic() - t0
    check_one_message(proc, status, pattern, name)
    assert elapsed < 30, (name, elapsed)


def test_table_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
    commands = {c[1][0] for c in CASES if c[1]}
    assert {"stats", "hist", "quantile", "generate", "sort", "groupby", "join", "diff",
            "validate", "lineage", "ls", "info", "ckpt"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cli_bad_input_two_ranks(files, case):
    _run_case(files, case, 2)


@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.parametrize("name", SAMPLE)
def test_cli_bad_input_one_and_three_ranks(files, name, ranks):
    _run_case(files, next(c for c in CASES if c[0] == name), ranks)


def test_no_file_written_by_failed_commands(files):
    """Everything above failed before writing: no output or temp file appeared."""
    # runs after the table (module order); only the fixture's files are there
    leftovers = sorted(p.name for p in files.iterdir())
    assert leftovers == ["adir", "d.h5", "notes.txt"], leftovers


def test_empty_dataset_json_is_standard(files):
    """NaN is not JSON: statistics of an empty dataset print null."""
    proc = run(hpcproc_cmd("stats", f"{files}/d.h5:/e", "--json"), ranks=2, timeout=90,
               check=True)
    doc = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert doc["count"] == 0 and doc["mean"] is None and doc["min"] is None


# --- `with hp.abort_on_error()` in a user's script ---------------------------------------

API_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    from hpcproc.comm import error_message

    path = sys.argv[1]
    comm = MPI.COMM_WORLD
    cases = {
        "stats of a numpy array": lambda: hp.stats(np.arange(10.0)),
        "rows reversed": lambda: hp.read(path, "/x", rows=(5, 2)),
        "rows not a range": lambda: hp.read(path, "/x", rows="abc"),
        "rows past the end": lambda: hp.read(path, "/x", rows=(0, 1000)),
        "histogram of complex": lambda: hp.histogram((path, "/c"), 10),
        "quantile of empty": lambda: hp.quantile((path, "/e"), 0.5),
        "quantile of bool": lambda: hp.quantile((path, "/b"), 0.5),
        "sketch rel_err": lambda: hp.quantile((path, "/x"), 0.5, method="sketch", rel_err=0),
        "generate seed": lambda: hp.generate(path + ".g.h5", rows=10, seed=-1),
        "generate kind": lambda: hp.generate(path + ".g.h5", kind="poisson", rows=10),
        "missing file": lambda: hp.read(path + ".missing", "/x"),
        "missing dataset": lambda: hp.read(path, "/nope"),
        "bad method": lambda: hp.read(path, "/x", method="fast"),
        "bad comm": lambda: hp.read(path, "/x", comm=3),
    }
    seen = {}
    with hp.abort_on_error():
        for name, fn in cases.items():
            try:
                fn()
                seen[name] = None
            except Exception as exc:
                seen[name] = [type(exc).__name__, error_message(exc)]
        if comm.rank == 0:
            print(json.dumps(seen), flush=True)
        hp.stats(np.arange(3.0))  # raised on every rank: agreed, no banner
""")

API_EXPECT = {
    "stats of a numpy array": r"expected a DistArray.*got ndarray",
    "rows reversed": r"rows 5:2 out of range .*'/x'",
    "rows not a range": r"rows must be",
    "rows past the end": r"rows 0:1000 out of range .*'/x' with 100 rows",
    "histogram of complex": r"'/c' is complex",
    "quantile of empty": r"empty",
    "quantile of bool": r"bool",
    "sketch rel_err": r"rel_err must be in \(0, 1\)",
    "generate seed": r"seed must be >= 0, got -1",
    "generate kind": r"kind must be one of .*'poisson'",
    "missing file": r"no such file: .*\.missing",
    "missing dataset": r"no dataset '/nope'",
    "bad method": r"method must be one of .*'fast'",
    "bad comm": r"comm must be an mpi4py Intracomm",
}


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_api_errors_and_agreed_exit(files, tmp_path, ranks):
    script = tmp_path / "api.py"
    script.write_text(API_SCRIPT)
    t0 = time.monotonic()
    proc = run([sys.executable, script, files / "d.h5"], ranks=ranks, timeout=120)
    elapsed = time.monotonic() - t0
    out, proc.stdout = proc.stdout, ""
    check_one_message(proc, ERROR, r"^expected a DistArray.*got ndarray$", "final raise")
    seen = json.loads(out)
    assert set(seen) == set(API_EXPECT)
    for name, pattern in API_EXPECT.items():
        assert seen[name] is not None, f"{name}: no error raised"
        kind, message = seen[name]
        assert kind not in ("AssertionError", "RuntimeError", "AttributeError"), (name, kind)
        assert "\n" not in message and re.search(pattern, message), (name, message)
    assert elapsed < 60


def _script(tmp_path, body):
    path = tmp_path / "job.py"
    path.write_text("import sys, time\nfrom mpi4py import MPI\nimport hpcproc as hp\n"
                    "comm = MPI.COMM_WORLD\nwith hp.abort_on_error():\n"
                    + textwrap.indent(textwrap.dedent(body), "    "))
    return path


@pytest.mark.parametrize("ranks,rank", [(2, 1), (3, 1), (3, 0)])
def test_one_rank_failing_alone(tmp_path, ranks, rank):
    """Only one rank fails while the others wait in a collective: one line (with its
    rank unless 0), a non-zero exit, and the job ends within a few seconds."""
    script = _script(tmp_path, f"""
        if comm.rank == {rank}:
            raise RuntimeError("disk on fire")
        comm.Barrier()
    """)
    t0 = time.monotonic()
    proc = run([sys.executable, script], ranks=ranks, timeout=60)
    elapsed = time.monotonic() - t0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    where = "" if rank == 0 else f"rank {rank}: "
    assert lines == [f"hpcproc: error: {where}RuntimeError: disk on fire"], proc.stderr
    assert proc.returncode != 0 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert elapsed < 15, elapsed


def test_ranks_failing_apart_agree(tmp_path):
    """Rank r fails after r * 0.5 s of work: every rank failed within the grace time, so
    they agree (one line from rank 0, exit 1, no MPI_Abort)."""
    script = _script(tmp_path, """
        time.sleep(0.5 * comm.rank)
        raise ValueError(f"bad value found after {0.5 * comm.rank:.1f} s")
    """)
    proc = run([sys.executable, script], ranks=3, timeout=60)
    check_one_message(proc, ERROR, r"^bad value found after 0\.0 s$")


def test_usage_error_everywhere_exits_2(tmp_path):
    script = _script(tmp_path, """
        from hpcproc.errors import UsageError
        raise UsageError("--frob must be positive")
    """)
    proc = run([sys.executable, script], ranks=3, timeout=60)
    check_one_message(proc, USAGE, r"^--frob must be positive$")
