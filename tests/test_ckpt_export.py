"""Checkpoint format 2 (entries under their own names) and ``hpcproc ckpt export``.

Saves run under ``mpiexec -n 2``; exports at 1, 2 and 3 ranks are compared with h5py
against the global arrays computed here with numpy. A step written in the previous
format (version 1, ``/e<i>`` datasets) by a small generator below must still restore
and export.
"""

import json
import os
import sys
import textwrap

import h5py
import numpy as np
import pytest

from hpcproc.checkpoint import _format
from support import SERIAL_ONLY, hpcproc_cmd, run

pytestmark = SERIAL_ONLY
pytest.importorskip("xxhash")

NAMES = ["T", "a/b.c", "", "..", "é", "%41", "A"]  # "%41" must not collide with "A"


def _globals():
    field = np.arange(11 * 3, dtype="f8").reshape(11, 3) / 7
    ids = np.arange(9, dtype="i8") * 3
    weights = (np.arange(9, dtype="f4") - 4) / 3
    return field, ids, weights


SAVE = textwrap.dedent("""
    import sys, numpy as np, hpcproc as hp
    from mpi4py import MPI
    sys.path.insert(0, {tests!r})
    from test_ckpt_export import NAMES, _globals
    comm = MPI.COMM_WORLD
    field, ids, weights = _globals()
    lo, hi = hp.block_range(9, comm.size, comm.rank)
    state = {{name: hp.DistArray.from_global(field + i, comm) for i, name in enumerate(NAMES)}}
    state["tab"] = hp.DistTable({{"id": ids[lo:hi], "w/x": weights[lo:hi]}}, 9, lo, comm)
    state.update(loc=np.full(2, comm.rank), sc=np.float32(2.5), js={{"k": [1, None]}})
    with hp.Checkpointer({directory!r}, comm) as ck:
        for step in {steps!r}:
            ck.save(step, state)
""")


def _save(tmp_path, steps=(4,), ranks=2):
    directory = str(tmp_path / "ck")
    script = tmp_path / "save.py"
    script.write_text(SAVE.format(tests=os.path.dirname(__file__), directory=directory,
                                  steps=list(steps)))
    run([sys.executable, str(script)], ranks=ranks, timeout=180, check=True)
    return directory


def _check_export(out, step=4):
    field, ids, weights = _globals()
    with h5py.File(out, "r") as f:
        assert f.attrs["hpcproc_checkpoint_step"] == step
        assert json.loads(f.attrs["js"]) == {"k": [1, None]}
        assert f.attrs["sc"] == np.float32(2.5) and f.attrs["sc"].dtype == np.float32
        for i, name in enumerate(NAMES):
            d = f[_format.dataset_name(name)]
            np.testing.assert_array_equal(d[...], field + i)
            assert d.attrs["hpcproc_entry"] == name and d.chunks is None
        np.testing.assert_array_equal(f["tab/id"][...], ids)
        np.testing.assert_array_equal(f["tab/w%2Fx"][...], weights)
        assert f["tab/w%2Fx"].dtype == np.float32
        assert "loc" not in f
        lineage = json.loads(f["T"].attrs["hpcproc_lineage"])
        src = [i for i in lineage["inputs"] if i["dataset"] == "T"]
        assert src and src[0]["file"].endswith(os.path.join(_format.step_dirname(step),
                                                            "manifest.json"))
        assert src[0]["parent"]["kind"] == "checkpoint"


def test_rank_files_hold_entries_under_their_names(tmp_path):
    directory = _save(tmp_path)
    field, ids, weights = _globals()
    stepdir = os.path.join(directory, _format.step_dirname(4))
    rows = []
    for r in range(2):
        with h5py.File(os.path.join(stepdir, _format.rank_filename(r)), "r") as f:
            assert sorted(f) == sorted([_format.escape_name(n) for n in NAMES] + ["tab", "loc"])
            d = f["T"]
            lo = int(d.attrs["hpcproc_offset"])
            assert list(d.attrs["hpcproc_global_shape"]) == [11, 3]
            np.testing.assert_array_equal(d[...], field[lo:lo + d.shape[0]])
            np.testing.assert_array_equal(f["a%2Fb%2Ec"][...], field[lo:lo + d.shape[0]] + 1)
            assert f["a%2Fb%2Ec"].attrs["hpcproc_entry"] == "a/b.c"
            rows.append(d.shape[0])
    assert sum(rows) == 11
    # the CLI reads a rank file as data
    proc = run(hpcproc_cmd("stats", os.path.join(stepdir, "rank-00000.h5") + ":/T", "--json"),
               timeout=120, check=True)
    got = json.loads(proc.stdout)
    got = got[0] if isinstance(got, list) else got
    assert got["count"] == rows[0] * 3
    # names map one to one and the manifest records them (exports restore them)
    assert len({_format.escape_name(n) for n in NAMES}) == len(NAMES)
    with open(os.path.join(stepdir, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["version"] == 2
    assert manifest["entries"]["a/b.c"]["dataset"] == "/a%2Fb%2Ec"
    assert manifest["entries"][""]["dataset"] == "/%"


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_export_at_any_rank_count(tmp_path, ranks):
    directory = _save(tmp_path, steps=(2, 4))
    out = str(tmp_path / "out.h5")
    cmd = hpcproc_cmd("ckpt", "export", directory, out)
    proc = run(cmd, ranks=ranks if ranks > 1 else None, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "step 4 ->" in proc.stdout and "not exported: loc" in proc.stdout
    _check_export(out)
    # an explicit step, as a number or a directory name
    proc = run(hpcproc_cmd("ckpt", "export", directory, "step-000000000002", out),
               ranks=ranks if ranks > 1 else None, timeout=180)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["hpcproc_checkpoint_step"] == 2
    assert sorted(os.listdir(tmp_path)) == ["ck", "out.h5", "save.py"]


def _snapshot(directory):
    snap = {}
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                snap[os.path.join(root, name)] = f.read()
    return snap


@pytest.mark.parametrize("target", ["rank-00000.h5", "manifest.json", "latest", "link"])
def test_export_refuses_a_checkpoint_file(tmp_path, target):
    directory = _save(tmp_path)
    stepdir = os.path.join(directory, _format.step_dirname(4))
    out = os.path.join(directory, "latest") if target == "latest" else \
        os.path.join(stepdir, target)
    if target == "link":
        out = str(tmp_path / "link.h5")
        os.symlink(os.path.join(stepdir, "rank-00001.h5"), out)
    before = _snapshot(directory)
    proc = run(hpcproc_cmd("ckpt", "export", directory, out), ranks=2, timeout=120)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("hpcproc: error:")]
    assert len(lines) == 1 and "is an input of this job" in lines[0], proc.stderr
    assert "MPI_Abort" not in proc.stderr
    assert _snapshot(directory) == before


def test_export_skips_a_corrupt_newest_step(tmp_path):
    directory = _save(tmp_path, steps=(2, 4))
    path = os.path.join(directory, _format.step_dirname(4), "rank-00001.h5")
    with open(path, "r+b") as f:  # flip a byte of the data: only the checksum tells
        f.seek(os.path.getsize(path) - 5)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x55]))
    out = str(tmp_path / "o.h5")
    proc = run(hpcproc_cmd("ckpt", "export", directory, out), ranks=3, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _check_export(out, step=2)
    proc = run(hpcproc_cmd("ckpt", "export", directory, "4", out), ranks=2, timeout=120)
    assert proc.returncode == 1 and "checksum mismatch" in proc.stderr
    assert "MPI_Abort" not in proc.stderr
    proc = run(hpcproc_cmd("ckpt", "export", directory, "nine", out), timeout=60)
    assert proc.returncode == 2 and "not a checkpoint step" in proc.stderr


# format version 1 -------------------------------------------------------------------
def _write_v1_step(directory, step, field, ids):
    """A step exactly as hpcproc wrote it before format 2 (one rank: /e0 an array, /e1 a
    table with columns /e1/c0, /e1/c1, a JSON value)."""
    stepdir = os.path.join(directory, _format.step_dirname(step))
    os.makedirs(stepdir)
    path = os.path.join(stepdir, _format.rank_filename(0))
    with h5py.File(path, "w") as f:
        for name, data in (("e0", field), ("e1/c0", ids), ("e1/c1", ids * 0.5)):
            f.create_dataset(name, data=data)
        offsets = {n: f[n].id.get_offset() for n in ("e0", "e1/c0", "e1/c1")}
    size, digest = _format.hash_file(path)
    body = {"format": _format.FORMAT, "version": 1, "checksum": "xxh3_128", "step": step,
            "ranks": 1, "created": "2026-01-01T00:00:00Z", "hpcproc": "0.1.0",
            "files": {"rank-00000.h5": {"size": size, "checksum": digest}},
            "entries": {
                "u": {"kind": "array", "dtype": field.dtype.str, "shape": list(field.shape),
                      "dataset": "/e0", "counts": [field.shape[0]],
                      "offsets": [offsets["e0"]]},
                "t": {"kind": "table", "num_rows": len(ids), "counts": [len(ids)],
                      "columns": [{"name": "id", "dtype": ids.dtype.str, "shape": [],
                                   "dataset": "/e1/c0", "offsets": [offsets["e1/c0"]]},
                                  {"name": "w", "dtype": "<f8", "shape": [],
                                   "dataset": "/e1/c1", "offsets": [offsets["e1/c1"]]}]},
                "meta": {"kind": "json", "value": {"dt": 0.5}}}}
    with open(os.path.join(stepdir, "manifest.json"), "wb") as f:
        f.write(_format.dump_manifest(body))
    return body


def test_version_1_steps_still_restore_and_export(tmp_path):
    field, ids, _ = _globals()
    directory = str(tmp_path / "old")
    os.makedirs(directory)
    body = _write_v1_step(directory, 7, field, ids)
    script = tmp_path / "restore.py"
    script.write_text(textwrap.dedent(f"""
        import json, numpy as np, hpcproc as hp
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        with hp.Checkpointer({directory!r}, comm) as ck:
            step, state = ck.restore()
        u = state["u"].allgather()
        t = {{c: state["t"][c].allgather() for c in ("id", "w")}}
        if comm.rank == 0:
            print(json.dumps({{"step": step, "u": u.tolist(), "id": t["id"].tolist(),
                               "w": t["w"].tolist(), "meta": state["meta"]}}))
    """))
    for ranks in (1, 2, 3):
        proc = run([sys.executable, str(script)], ranks=ranks, timeout=120, check=True)
        got = json.loads(proc.stdout)
        assert got["step"] == 7 and got["meta"] == {"dt": 0.5}
        np.testing.assert_array_equal(got["u"], field)
        np.testing.assert_array_equal(got["id"], ids)
        np.testing.assert_array_equal(got["w"], ids * 0.5)
    out = str(tmp_path / "old.h5")
    run(hpcproc_cmd("ckpt", "export", directory, out), ranks=2, timeout=120, check=True)
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["u"][...], field)
        np.testing.assert_array_equal(f["t/w"][...], ids * 0.5)
    # a version-1 manifest naming a version-2 style dataset is invalid, and vice versa
    from hpcproc.checkpoint._schema import check_manifest
    bad = json.loads(json.dumps(body))
    bad["entries"]["u"]["dataset"] = "/u"
    with pytest.raises(_format.ManifestError, match="bad dataset name"):
        check_manifest(bad)
    bad = json.loads(json.dumps(body))
    bad["version"] = 2
    with pytest.raises(_format.ManifestError, match="bad dataset name"):
        check_manifest(bad)
    bad["entries"]["u"]["dataset"] = "/u"
    bad["entries"]["t"]["columns"][0]["dataset"] = "/t/id"
    bad["entries"]["t"]["columns"][1]["dataset"] = "/t/../w"
    with pytest.raises(_format.ManifestError, match="column 'w' has a bad dataset name"):
        check_manifest(bad)


def test_escape_name_is_plain_and_one_to_one():
    names = NAMES + ["a%2Fb", "a b", "x" * 300, "\u0000", "-", "_"]
    escaped = [_format.escape_name(n) for n in names]
    assert len(set(escaped)) == len(names)
    for e in escaped:
        assert e and "/" not in e and "." not in e and not e.startswith(".")
    assert _format.escape_name("temperature_2m") == "temperature_2m"
