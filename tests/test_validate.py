"""Validation rules at ingestion: each rule catches a planted violation and passes clean
data, at 1, 2 and 3 ranks. Expected counts and indices come from plain numpy."""

import json

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.quality.rules import check_rules, load_rules
from support import on_root

pytestmark = pytest.mark.mpi

N = 999  # 3 ranks: seams at rows 333 and 666
SEAMS = (333, 666)


def _file(comm, shared_tmp, **arrays):
    path = str(shared_tmp / "v.h5")

    def make():
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f[k] = v
    on_root(comm, make)
    return path


def _check(report, rule):
    [c] = [c for c in report["checks"] if c["rule"] == rule]
    return c


def _validate(path, name, rules, comm):
    """In-memory and streamed (tiny blocks: many seams per rank) reports must agree."""
    whole = hp.validate_dataset(path, name, rules, comm=comm)
    for block_bytes in (1, 800):
        streamed = hp.validate_dataset(path, name, rules, comm=comm, block_bytes=block_bytes)
        assert streamed == whole
    return whole


def _ref_first(mask, limit=10):
    return [int(i) for i in np.flatnonzero(mask)[:limit]]


def _clean():
    return np.linspace(0.0, 1.0, N)


PLANTS = {  # rule set, how to break clean data (in place), reference offending-row mask
    "max_nan": ({"max_nan": 0}, lambda a: a.__setitem__([5, 333, 700], np.nan),
                lambda a: np.isnan(a)),
    "max_inf": ({"max_inf": 0}, lambda a: a.__setitem__([666], -np.inf),
                lambda a: np.isinf(a)),
    "min": ({"min": 0.0}, lambda a: a.__setitem__([332, 998], -1.0), lambda a: a < 0.0),
    "max": ({"max": 1.0}, lambda a: a.__setitem__([0], 2.0), lambda a: a > 1.0),
    "increasing": ({"monotonic": "increasing"},
                   lambda a: a.__setitem__([333, 500], [a[332], 0.0]),
                   lambda a: np.r_[False, ~(a[1:] > a[:-1])]),
    "non_decreasing": ({"monotonic": "non_decreasing"}, lambda a: a.__setitem__(666, 0.1),
                       lambda a: np.r_[False, a[1:] < a[:-1]]),
}


@pytest.mark.parametrize("name", sorted(PLANTS))
def test_rule_catches_planted_violation(comm, shared_tmp, name):
    rules, plant, ref = PLANTS[name]
    bad = _clean()
    plant(bad)
    path = _file(comm, shared_tmp, good=_clean(), bad=bad)
    good = _validate(path, "/good", rules, comm)
    assert good["ok"] and _check(good, list(rules)[0])["violations"] == 0
    report = _validate(path, "/bad", rules, comm)
    c = _check(report, list(rules)[0])
    mask = ref(bad)
    assert not report["ok"] and not c["ok"]
    assert c["first"] == _ref_first(mask)
    assert c["violations"] == int(mask.sum())


def test_decreasing_rules(comm, shared_tmp):
    a = _clean()[::-1].copy()
    b = a.copy()
    b[SEAMS[0]] = b[SEAMS[0] - 1]  # equal neighbours across a seam
    path = _file(comm, shared_tmp, a=a, b=b)
    for how, ok_b in (("decreasing", False), ("non_increasing", True)):
        assert _validate(path, "/a", {"monotonic": how}, comm)["ok"]
        r = _validate(path, "/b", {"monotonic": how}, comm)
        assert r["ok"] == ok_b
        if not ok_b:
            assert _check(r, "monotonic")["first"] == [SEAMS[0]]


@pytest.mark.parametrize("sorted_keys", [True, False])
def test_unique(comm, shared_tmp, sorted_keys):
    keys = np.arange(N, dtype=np.int64) * 3
    if not sorted_keys:
        keys = np.random.default_rng(3).permutation(keys)
    bad = keys.copy()
    if sorted_keys:
        bad[SEAMS[0]] = bad[SEAMS[0] - 1]  # duplicate across the rank seam
        bad[800] = bad[799]
    else:
        bad[[10, 400, 990]] = bad[[900, 5, 400]]  # later copies of earlier keys
    path = _file(comm, shared_tmp, good=keys, bad=bad)
    assert _validate(path, "/good", {"unique": True}, comm)["ok"]
    c = _check(_validate(path, "/bad", {"unique": True}, comm), "unique")
    _, first_seen = np.unique(bad, return_index=True)
    dup = np.ones(N, bool)
    dup[first_seen] = False  # rows whose key appeared at a lower index
    assert c["violations"] == int(dup.sum()) and c["first"] == _ref_first(dup)


def test_key_column_of_2d_and_metadata_rules(comm, shared_tmp):
    t = np.arange(N, dtype=np.float64)
    m = np.c_[np.random.default_rng(4).normal(size=N), t]
    path = _file(comm, shared_tmp, m=m.astype(np.float32))
    rules = {"dtype": "float32", "ndim": 2, "shape": [-1, 2], "rows": N,
             "monotonic": "increasing", "unique": True, "key_column": 1}
    r = _validate(path, "/m", rules, comm)
    assert r["ok"], r
    assert r["checksum"] == "crc32:%08x" % __import__("zlib").crc32(m.astype("<f4").tobytes())
    wrong = {"dtype": ["float64", "int64"], "ndim": 1, "shape": [N, 3], "rows": N + 1}
    r = hp.validate_dataset(path, "/m", wrong, comm=comm)
    assert {c["rule"]: c["ok"] for c in r["checks"]} == dict.fromkeys(wrong, False)
    assert _check(r, "shape")["actual"] == [N, 2]


def test_read_validate_raises_everywhere(comm, shared_tmp):
    a = _clean()
    a[700] = np.nan
    path = _file(comm, shared_tmp, a=a)
    with pytest.raises(hp.ValidationError) as info:
        hp.read(path, "/a", comm=comm, validate={"max_nan": 0})
    assert _check(info.value.report, "max_nan")["first"] == [700]
    x = hp.read(path, "/a", comm=comm, validate={"max_nan": 1})  # within the allowance
    assert np.array_equal(x.local, a[x.offset:x.offset + len(x.local)], equal_nan=True)


def test_rules_files_and_bad_rules(comm, shared_tmp, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"rules{comm.rank}")
    (d / "r.toml").write_text('max_nan = 0\n[datasets."/x"]\nmin = 0\n')
    (d / "r.json").write_text(json.dumps({"max_nan": 0}))
    assert load_rules(d / "r.toml") == {"max_nan": 0, "datasets": {"/x": {"min": 0}}}
    assert load_rules(d / "r.json") == {"max_nan": 0}
    for bad, msg in (({"maxnan": 0}, "unknown"), ({"monotonic": "up"}, "monotonic"),
                     ({"max_nan": -1}, "max_nan"), ({"min": "0"}, "min"),
                     ({"unique": True}, "key_column")):
        with pytest.raises(ValueError, match=msg):
            check_rules(bad, ndim=2)
    path = _file(comm, shared_tmp, a=_clean())
    with pytest.raises(ValueError, match="unknown"):  # on every rank, before reading
        hp.read(path, "/a", comm=comm, validate={"bogus": 1})
