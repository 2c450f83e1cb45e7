"""``hpcproc join`` under real mpiexec launches (1, 2, 3 ranks), checked against a merge
written here in plain Python (a dict from right keys to right rows)."""

import json

import h5py
import numpy as np
import pytest

from support import dict_join_pairs, hpcproc_cmd, run


def _write(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f[name] = data


def _reference(lkeys, rkeys, how):
    """Sorted (left row, right row or -1) pairs of an equi-join of key tuples; keys
    compare by value as Python numbers (exact for any integer), NaN matches NaN."""
    def norm(cols):
        return [tuple("nan" if x != x else x for x in row)
                for row in zip(*[c.tolist() for c in cols])]

    return dict_join_pairs(norm(lkeys), norm(rkeys), how)


def _read(path):
    with h5py.File(path) as f:
        return {k: f[k][...] for k in f}


def _pairs(out):
    rid = out["rid"]
    rid = np.where(np.isnan(rid), -1, rid) if rid.dtype.kind == "f" else rid
    return sorted(zip(out["lid"].tolist(), rid.astype(np.int64).tolist()))


def _join(tmp_path, ranks, *args):
    out = tmp_path / "joined.h5"
    proc = run(hpcproc_cmd("join", *args, "--out", out, "--json"), ranks=ranks, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), _read(out)


@pytest.mark.parametrize("ranks,strategy", [(1, "auto"), (2, "hash"), (3, "hash"),
                                            (3, "broadcast")])
def test_cli_join_many_to_many(tmp_path, ranks, strategy):
    rng = np.random.default_rng(ranks)
    nl, nr = 3000, 2000
    lk, rk = rng.integers(0, 400, nl), rng.integers(200, 600, nr).astype(np.int32)
    la, ra, rb = rng.normal(size=nl), rng.normal(size=nr), rng.integers(-9, 9, nr)
    _write(tmp_path / "l.h5", key=lk, a=la, lid=np.arange(nl))
    _write(tmp_path / "r.h5", key=rk, a=ra, b=rb, rid=np.arange(nr))
    summary, out = _join(tmp_path, ranks, tmp_path / "l.h5", tmp_path / "r.h5", "--on", "/key",
                         "--left-with", "/a", "--left-with", "/lid", "--right-with", "/b",
                         "--right-with", "/rid", "--right-with", "/a", "--strategy", strategy)
    pairs = _reference([lk], [rk], "inner")
    assert len(pairs) > nl  # many-to-many: more pairs than left rows
    assert _pairs(out) == pairs
    assert set(out) == {"key", "a", "lid", "b", "rid", "a_right"}
    li, ri = out["lid"], out["rid"]
    np.testing.assert_array_equal(out["key"], lk[li])
    np.testing.assert_array_equal(out["a"], la[li])
    np.testing.assert_array_equal(out["a_right"], ra[ri])
    np.testing.assert_array_equal(out["b"], rb[ri])
    assert out["key"].dtype == np.int64 and out["b"].dtype == np.int64
    assert summary["rows"] == [nl, nr] and summary["result_rows"] == len(pairs)
    assert summary["ranks"] == ranks and sum(summary["rank_rows"]) == len(pairs)
    assert summary["strategy"] == {"auto": "broadcast-right", "hash": "hash",
                                   "broadcast": "broadcast-right"}[strategy]
    with h5py.File(tmp_path / "joined.h5") as f:  # lineage, as every hpcproc output
        assert "hpcproc_lineage" in f["key"].attrs


@pytest.mark.parametrize("how", ["inner", "left"])
def test_cli_join_no_match(tmp_path, how):
    rng = np.random.default_rng(5)
    lk, rk = rng.integers(0, 100, 500), rng.integers(1000, 1100, 300)
    _write(tmp_path / "l.h5", key=lk, lid=np.arange(500))
    _write(tmp_path / "r.h5", key=rk, rid=np.arange(300))
    summary, out = _join(tmp_path, 2, f"{tmp_path / 'l.h5'}:/key", f"{tmp_path / 'r.h5'}:/key",
                         "--left-with", "/lid", "--right-with", "/rid", "--how", how,
                         "--strategy", "hash")
    assert _pairs(out) == _reference([lk], [rk], how)
    assert summary["result_rows"] == (0 if how == "inner" else 500)
    if how == "left":  # unmatched: NaN in the (integer) right column, now float64
        assert out["rid"].dtype == np.float64 and np.isnan(out["rid"]).all()


def test_cli_join_empty_ranks(tmp_path):
    """3 ranks, 2 left rows and 1 right row (a rank reads nothing), then an empty right."""
    _write(tmp_path / "l.h5", key=np.array([7, 3]), lid=np.arange(2))
    _write(tmp_path / "r.h5", key=np.array([7]), rid=np.arange(1))
    _write(tmp_path / "e.h5", key=np.zeros(0, np.int64), rid=np.zeros(0, np.int64))
    for right, how in (("r.h5", "inner"), ("r.h5", "left"), ("e.h5", "left"), ("e.h5", "inner")):
        summary, out = _join(tmp_path, 3, tmp_path / "l.h5", tmp_path / right, "--on", "/key",
                             "--left-with", "/lid", "--right-with", "/rid", "--how", how,
                             "--strategy", "hash")
        rk = np.array([7]) if right == "r.h5" else np.zeros(0, np.int64)
        assert _pairs(out) == _reference([np.array([7, 3])], [rk], how), (right, how)
        assert sum(summary["rank_rows"]) == summary["result_rows"]


def test_cli_join_two_keys_named_apart(tmp_path):
    """Two keys, named differently in the two files (--left-on/--right-on), one of them
    uint64 against int64 with values beyond 2**53 (float64 would merge neighbours)."""
    rng = np.random.default_rng(9)
    nl, nr = 2000, 1500
    big = np.int64(1) << 60
    lu = (big + rng.integers(0, 50, nl)).astype(np.uint64)
    ru = big + rng.integers(0, 50, nr)
    ls, rs = rng.integers(0, 3, nl).astype(np.int16), rng.integers(0, 3, nr)
    _write(tmp_path / "l.h5", id=lu, site=ls, lid=np.arange(nl))
    _write(tmp_path / "r.h5", uid=ru, station=rs, rid=np.arange(nr))
    summary, out = _join(tmp_path, 3, tmp_path / "l.h5", tmp_path / "r.h5",
                         "--left-on", "/id", "--right-on", "/uid", "--left-on", "/site",
                         "--right-on", "/station", "--left-with", "/lid",
                         "--right-with", "/rid", "--strategy", "hash")
    assert _pairs(out) == _reference([lu, ls], [ru, rs], "inner")
    assert list(out) == sorted(["id", "site", "lid", "rid"])
    np.testing.assert_array_equal(out["id"], lu[out["lid"]])
    assert out["id"].dtype == np.uint64


def test_cli_join_errors(tmp_path):
    """Bad input: one message, exit 1 (2 for usage), no hang, no output, on 3 ranks."""
    n = 100
    _write(tmp_path / "l.h5", key=np.arange(n), f=np.arange(n) * 0.5, short=np.arange(n - 1),
           s=np.array([b"x"] * n), m=np.zeros((n, 2)))
    _write(tmp_path / "r.h5", key=np.arange(n))
    out = tmp_path / "never.h5"
    cases = [
        (["--on", "/missing"], 1, "no dataset '/missing'"),
        ([f"{tmp_path / 'l.h5'}:/f", f"{tmp_path / 'r.h5'}:/key"], 1,
         "integer and float keys do not compare exactly"),
        (["--on", "/key", "--left-with", "/short"], 1, "must have equal lengths"),
        ([f"{tmp_path / 'l.h5'}:/s", f"{tmp_path / 'r.h5'}:/key"], 1, "non-numeric dtype"),
        ([f"{tmp_path / 'l.h5'}:/m", f"{tmp_path / 'r.h5'}:/key"], 1, "must be a 1-D"),
        (["--left-on", "/key"], 2, "--left-on and --right-on"),
        ([], 2, "no key"),
    ]
    for extra, status, message in cases:
        files = [] if extra and ":" in str(extra[0]) else [tmp_path / "l.h5", tmp_path / "r.h5"]
        proc = run(hpcproc_cmd("join", *files, *extra, "--out", out), ranks=3, timeout=60)
        assert proc.returncode == status, (extra, proc.stderr)
        assert proc.stderr.count(message) == 1, (extra, proc.stderr)
        assert proc.stderr.count("hpcproc: error:") == 1, (extra, proc.stderr)
        assert "MPI_Abort" not in proc.stderr, (extra, proc.stderr)
        assert not out.exists()


def test_cli_join_progress_on_rank_0(tmp_path):
    """Forced on (as on a terminal), the bar covers read, join and write: rank 0 only."""
    _write(tmp_path / "l.h5", key=np.arange(1000) % 7, lid=np.arange(1000))
    _write(tmp_path / "r.h5", key=np.arange(7), rid=np.arange(7))
    proc = run(hpcproc_cmd("join", tmp_path / "l.h5", tmp_path / "r.h5", "--on", "/key",
                           "--out", tmp_path / "j.h5"), ranks=2, timeout=120,
               env={"HPCPROC_PROGRESS": "1", "HPCPROC_PROGRESS_INTERVAL": "0"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("100.0%") == 1 and "join " in proc.stderr, proc.stderr
    assert "join 1000 + 7 rows" in proc.stdout


def test_cli_join_checkpoint_resumes(tmp_path):
    """--checkpoint DIR: the second run writes the saved joined table (same output)."""
    lk, rk = np.arange(300) % 17, np.arange(40) % 20
    _write(tmp_path / "l.h5", key=lk, lid=np.arange(300))
    _write(tmp_path / "r.h5", key=rk, rid=np.arange(40))
    args = [tmp_path / "l.h5", tmp_path / "r.h5", "--on", "/key", "--left-with", "/lid",
            "--right-with", "/rid", "--checkpoint", tmp_path / "ck"]
    first, out1 = _join(tmp_path, 2, *args)
    second, out2 = _join(tmp_path, 3, *args)  # resumed on another rank count
    assert (first["resumed"], second["resumed"]) == (False, True)
    assert _pairs(out1) == _pairs(out2) == _reference([lk], [rk], "inner")


@pytest.mark.parametrize("ranks", [2, 3])
def test_cli_join_no_skew(tmp_path, ranks):
    """A key in half of the left rows: by default (even with ``--broadcast-bytes 0``,
    which only stops broadcasting) its rows stay on their ranks and the output is
    balanced; ``--no-skew`` puts the whole key on one rank. The same rows either way."""
    rng = np.random.default_rng(ranks)
    nl, nr = 120000, 3000  # enough rows that the key passes the 4096-row floor
    lk = np.where(rng.random(nl) < 0.5, 11, rng.integers(0, nr, nl))
    rk, rb = rng.permutation(nr), rng.integers(-9, 9, nr).astype(np.int16)
    _write(tmp_path / "l.h5", key=lk, lid=np.arange(nl))
    _write(tmp_path / "r.h5", key=rk, b=rb, rid=np.arange(nr))
    pairs = _reference([lk], [rk], "inner")
    loads = {}
    for extra in ([], ["--no-skew"]):
        summary, out = _join(tmp_path, ranks, tmp_path / "l.h5", tmp_path / "r.h5", "--on",
                             "/key", "--left-with", "/lid", "--right-with", "/rid",
                             "--right-with", "/b", "--broadcast-bytes", "0", *extra)
        assert summary["strategy"] == "hash"
        assert _pairs(out) == pairs
        np.testing.assert_array_equal(out["key"], lk[out["lid"]])
        np.testing.assert_array_equal(out["b"], rb[out["rid"]])
        rows = np.array(summary["rank_rows"])
        loads[bool(extra)] = rows.max() / rows.mean()
    assert loads[False] <= 1.25, loads  # balanced: the heavy key's rows stayed put
    assert loads[True] >= 1.3, loads  # hash-partitioned: one rank has all of key 11


@pytest.mark.parametrize("ranks", [2, 3])
def test_cli_join_replicate_bytes(tmp_path, ranks):
    """``--replicate-bytes``: a key in half of the left rows, with 3 right rows to
    replicate (key, rid and b: 18 bytes a row, 54 in all). Below 54 bytes (0, 53) there
    is no room for them: the key is hash-partitioned (one rank holds it all); at 54, or
    ``1K`` (a size with a suffix, as the other size options take), its left rows stay on
    their ranks. The same pairs as a dict join either way; a negative size is one usage
    error."""
    rng = np.random.default_rng(10 + ranks)
    nl, nr = 120000, 3000
    lk = np.where(rng.random(nl) < 0.5, 11, rng.integers(0, nr, nl))
    rk = np.concatenate([rng.permutation(nr), [11, 11]])  # key 11: 3 right rows
    rb = rng.integers(-9, 9, rk.size).astype(np.int16)
    _write(tmp_path / "l.h5", key=lk, lid=np.arange(nl))
    _write(tmp_path / "r.h5", key=rk, b=rb, rid=np.arange(rk.size))
    pairs = _reference([lk], [rk], "inner")
    loads = {}
    for limit in ("0", "53", "54", "1K"):
        summary, out = _join(tmp_path, ranks, tmp_path / "l.h5", tmp_path / "r.h5", "--on",
                             "/key", "--left-with", "/lid", "--right-with", "/rid",
                             "--right-with", "/b", "--broadcast-bytes", "0",
                             "--replicate-bytes", limit)
        assert summary["strategy"] == "hash"
        assert _pairs(out) == pairs
        np.testing.assert_array_equal(out["b"], rb[out["rid"]])
        rows = np.array(summary["rank_rows"])
        loads[limit] = rows.max() / rows.mean()
    for limit in ("54", "1K"):
        assert loads[limit] <= 1.25, loads  # replicated: the heavy key's left rows stayed
    for limit in ("0", "53"):
        assert loads[limit] >= 1.3, loads  # no room: one rank has all of key 11
    proc = run(hpcproc_cmd("join", tmp_path / "l.h5", tmp_path / "r.h5", "--on", "/key",
                           "--replicate-bytes", "-1", "--out", tmp_path / "never.h5"),
               ranks=ranks, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("hpcproc: error:") == 1, proc.stderr
    assert proc.stderr.count("argument --replicate-bytes: must be a size >= 0") == 1, \
        proc.stderr
    assert not (tmp_path / "never.h5").exists()


def test_cli_join_help_names_no_skew():
    proc = run(hpcproc_cmd("join", "--help"), ranks=1, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--no-skew" in proc.stdout and "hash-partition every key" in proc.stdout
