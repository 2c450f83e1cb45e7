"""Tampered checkpoints: every manifest field and every kind of rank-file damage.

The manifest's own checksum is recomputed after each change (as anyone can), so the
tampering is caught by the structural checks, not by the checksum. Every case must make
the step invalid: restore falls back to the previous step (with a warning naming the
problem, and that step's data exactly as saved), or raises CheckpointError when no valid
step remains; ``hpcproc ckpt verify`` exits 1 and names the problem. Collective (any
rank count); the CLI test runs once, serially.
"""

import json
import os
import re
import shutil
import warnings

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.checkpoint import CheckpointError, CheckpointWarning
from hpcproc.checkpoint._format import MANIFEST, dump_manifest, hash_file, step_dirname
from support import SERIAL_ONLY, hpcproc_cmd, on_root, run

pytest.importorskip("xxhash")

N = 101


def _state(comm, step):
    """The state saved as ``step`` (every kind of entry), from global arrays."""
    field = (np.arange(N * 2, dtype="f8").reshape(N, 2) + step)
    ids = np.arange(N, dtype="i8") * step
    lo, hi = hp.block_range(N, comm.size, comm.rank)
    table = hp.DistTable({"id": ids[lo:hi], "w": (ids[lo:hi] * 0.5).astype("f4")}, N, lo,
                         comm)
    return {"x": hp.DistArray.from_global(field, comm), "t": table,
            "loc": np.full(3, comm.rank + step, dtype="i4"),
            "rng": np.random.default_rng([step, comm.rank]),
            "sc": np.float64(step + 0.25), "js": {"step": step}}


def _check_state(got, comm, step):
    want = _state(comm, step)
    np.testing.assert_array_equal(got["x"].allgather(), want["x"].allgather())
    for col in ("id", "w"):
        np.testing.assert_array_equal(got["t"][col].allgather(), want["t"][col].allgather())
    np.testing.assert_array_equal(got["loc"], want["loc"])
    assert got["rng"].random() == want["rng"].random()
    assert got["sc"] == want["sc"] and got["js"] == want["js"]


# tampering ----------------------------------------------------------------------------
def _rewrite(stepdir, change):
    """Apply ``change(doc)`` to the manifest and recompute its checksum."""
    path = os.path.join(stepdir, MANIFEST)
    with open(path) as f:
        doc = json.load(f)
    doc.pop("manifest_checksum")
    change(doc)
    data = dump_manifest(doc)
    os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)


def _entry(name, key, value):
    def change(doc):
        e = doc["entries"][name]
        e[key] = value(e[key]) if callable(value) else value
    return change


def _column(key, value):
    def change(doc):
        c = doc["entries"]["t"]["columns"][0]
        c[key] = value(c[key]) if callable(value) else value
    return change


def _first(values, fn):
    return [fn(values[0])] + values[1:]


def _outside_file(doc, stepdir, name):
    """Name a real file outside the step directory, with its true size and checksum."""
    secret = os.path.join(os.path.dirname(os.path.dirname(stepdir)), "secret")
    with open(secret, "wb") as f:
        f.write(b"top secret\n")
    size, digest = hash_file(secret)
    doc["files"].pop("rank-00000.h5")
    target = secret if name is None else name
    doc["files"][target] = {"size": size, "checksum": digest}


MANIFEST_CASES = {
    # file names: never outside the step directory
    "file-dotdot": (lambda d, s: _outside_file(d, s, "../../secret"), "rank-"),
    "file-absolute": (lambda d, s: _outside_file(d, s, None), "rank-"),
    "file-subdir": (lambda d, s: d["files"].__setitem__(
        "sub/rank-00000.h5", d["files"].pop("rank-00000.h5")), "rank-"),
    "file-extra": (lambda d, s: d["files"].__setitem__(
        "rank-99999.h5", dict(d["files"]["rank-00000.h5"])), "rank-"),
    "file-missing": (lambda d, s: d["files"].pop("rank-00000.h5"), "rank-"),
    "file-size": (lambda d, s: d["files"]["rank-00000.h5"].__setitem__("size", 12), ""),
    "file-size-negative": (lambda d, s: d["files"]["rank-00000.h5"].__setitem__(
        "size", -1), "size"),
    "file-checksum-wrong": (lambda d, s: d["files"]["rank-00000.h5"].__setitem__(
        "checksum", "0" * 32), "checksum"),
    "file-checksum-junk": (lambda d, s: d["files"]["rank-00000.h5"].__setitem__(
        "checksum", "../etc"), "checksum"),
    # header fields
    "step-other": (lambda d, s: d.__setitem__("step", 1), "step"),
    "step-string": (lambda d, s: d.__setitem__("step", "2"), "step"),
    "step-negative": (lambda d, s: d.__setitem__("step", -2), "step"),
    "ranks-more": (lambda d, s: d.__setitem__("ranks", d["ranks"] + 1), ""),
    "ranks-zero": (lambda d, s: d.__setitem__("ranks", 0), "ranks"),
    "format": (lambda d, s: d.__setitem__("format", "other"), "manifest"),
    "version": (lambda d, s: d.__setitem__("version", 99), "version"),
    "algorithm": (lambda d, s: d.__setitem__("checksum", "md5"), "checksum"),
    "entries-not-dict": (lambda d, s: d.__setitem__("entries", []), "entries"),
    # a distributed array
    "array-dtype-narrower": (lambda d, s: _entry("x", "dtype", "<f4")(d), "x"),
    "array-dtype-wider": (lambda d, s: _entry("x", "dtype", "<c16")(d), "x"),
    "array-dtype-object": (lambda d, s: _entry("x", "dtype", "|O")(d), "dtype"),
    "array-dtype-junk": (lambda d, s: _entry("x", "dtype", "zz9")(d), "dtype"),
    "array-rows": (lambda d, s: _entry("x", "shape", lambda v: [v[0] + 1, *v[1:]])(d), "x"),
    "array-trailing": (lambda d, s: _entry("x", "shape", lambda v: [v[0], v[1] + 1])(d), "x"),
    "array-shape-negative": (lambda d, s: _entry("x", "shape", lambda v: [-v[0], v[1]])(d),
                             "x"),
    "array-counts": (lambda d, s: _entry("x", "counts", lambda v: _first(
        v, lambda c: c + 1))(d), "x"),
    "array-counts-short": (lambda d, s: _entry("x", "counts", lambda v: v + [0])(d), "x"),
    "array-offset-shift": (lambda d, s: _entry("x", "offsets", lambda v: _first(
        v, lambda o: o + 8))(d), "x"),
    "array-offset-huge": (lambda d, s: _entry("x", "offsets", lambda v: _first(
        v, lambda o: 10 ** 15))(d), "x"),
    "array-offset-negative": (lambda d, s: _entry("x", "offsets", lambda v: _first(
        v, lambda o: -8))(d), "x"),
    "array-offset-null": (lambda d, s: _entry("x", "offsets", lambda v: _first(
        v, lambda o: None))(d), "x"),
    "array-dataset": (lambda d, s: _entry("x", "dataset", "/../e0")(d), "x"),
    "array-dataset-other": (lambda d, s: _entry("x", "dataset", "/e999")(d), "x"),
    # a table
    "table-num-rows": (lambda d, s: _entry("t", "num_rows", N + 1)(d), "t"),
    "table-counts": (lambda d, s: _entry("t", "counts", lambda v: _first(
        v, lambda c: c - 1))(d), "t"),
    "table-column-dtype": (lambda d, s: _column("dtype", "<i2")(d), "t"),
    "table-column-shape": (lambda d, s: _column("shape", [2])(d), "t"),
    "table-column-offset": (lambda d, s: _column("offsets", lambda v: _first(
        v, lambda o: o + 1))(d), "t"),
    "table-column-dataset": (lambda d, s: _column("dataset", "/e0")(d), "t"),
    "table-column-repeated": (lambda d, s: d["entries"]["t"]["columns"].append(
        dict(d["entries"]["t"]["columns"][0])), "t"),
    # rank-local values
    "local-dtype": (lambda d, s: _entry("loc", "dtypes", lambda v: _first(
        v, lambda t: "<i8"))(d), "loc"),
    "local-shape": (lambda d, s: _entry("loc", "shapes", lambda v: _first(
        v, lambda t: [4]))(d), "loc"),
    "local-offset": (lambda d, s: _entry("loc", "offsets", lambda v: _first(
        v, lambda o: o + 4))(d), "loc"),
    "rng-size": (lambda d, s: _entry("rng", "sizes", lambda v: _first(
        v, lambda n: n + 1))(d), "rng"),
    "rng-offset": (lambda d, s: _entry("rng", "offsets", lambda v: _first(
        v, lambda o: o + 1))(d), "rng"),
    "scalar-dtype": (lambda d, s: _entry("sc", "dtype", "<f4")(d), "sc"),
    "scalar-hex": (lambda d, s: _entry("sc", "hex", "zz" * 8)(d), "sc"),
    "kind": (lambda d, s: _entry("x", "kind", "pickle")(d), "x"),
    "entry-not-dict": (lambda d, s: d["entries"].__setitem__("x", [1]), "x"),
}


def _swap_layout(stepdir):
    """Rewrite rank 0's file with its datasets in another order (other offsets) and
    record the new file's true size and checksum: only the layout check can tell."""
    path = os.path.join(stepdir, "rank-00000.h5")
    with h5py.File(path, "r") as f:
        items = []
        f.visititems(lambda n, o: items.append((n, o[()], dict(o.attrs)))
                     if isinstance(o, h5py.Dataset) else None)
    os.unlink(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("pad", data=np.zeros(64))  # moves every dataset's offset
        for name, data, _ in reversed(items):
            f.create_dataset(name, data=data)
    size, digest = hash_file(path)
    _rewrite(stepdir, lambda d: d["files"]["rank-00000.h5"].update(size=size,
                                                                   checksum=digest))


def _retype(stepdir):
    """Rank 0's /e* array stored as float32 (manifest's size/checksum recomputed)."""
    path = os.path.join(stepdir, "rank-00000.h5")
    with h5py.File(path, "r+") as f:
        name = next(n for n in f if isinstance(f[n], h5py.Dataset) and f[n].dtype == "f8"
                    and f[n].ndim == 2)
        data = f[name][()]
        del f[name]
        f.create_dataset(name, data=data.astype("f4"))
    size, digest = hash_file(path)
    _rewrite(stepdir, lambda d: d["files"]["rank-00000.h5"].update(size=size,
                                                                   checksum=digest))


def _garble_rng(stepdir):
    """Rank 0's random generator state replaced by bytes of the same length that are
    not a state (file checksum and manifest recomputed: only decoding can tell)."""
    path = os.path.join(stepdir, "rank-00000.h5")
    with open(os.path.join(stepdir, MANIFEST)) as f:
        e = json.load(f)["entries"]["rng"]
    with open(path, "r+b") as f:
        f.seek(e["offsets"][0])
        f.write(b"{" * e["sizes"][0])
    size, digest = hash_file(path)
    _rewrite(stepdir, lambda d: d["files"]["rank-00000.h5"].update(size=size,
                                                                   checksum=digest))


def _replace(stepdir, what):
    path = os.path.join(stepdir, "rank-00000.h5")
    if what == "symlink":  # to an identical copy outside the step: still refused
        copy = os.path.join(os.path.dirname(stepdir), "copy.h5")
        shutil.copyfile(path, copy)
        os.unlink(path)
        os.symlink(copy, path)
    elif what == "fifo":
        os.unlink(path)
        os.mkfifo(path)
    elif what == "directory":
        os.unlink(path)
        os.mkdir(path)
    elif what == "missing":
        os.unlink(path)
    elif what == "truncate":
        os.truncate(path, os.path.getsize(path) - 1)
    elif what == "flip":
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) - 3)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0xFF]))


def _manifest_symlink(stepdir):
    path = os.path.join(stepdir, MANIFEST)
    copy = os.path.join(os.path.dirname(stepdir), "manifest-copy.json")
    shutil.copyfile(path, copy)
    os.unlink(path)
    os.symlink(copy, path)


def _step_symlink(stepdir):
    os.rename(stepdir, os.path.join(os.path.dirname(stepdir), ".elsewhere"))
    os.symlink(".elsewhere", stepdir)


FILE_CASES = {
    "rank-symlink": (lambda s: _replace(s, "symlink"), "rank-00000.h5"),
    "rank-fifo": (lambda s: _replace(s, "fifo"), "rank-00000.h5"),
    "rank-directory": (lambda s: _replace(s, "directory"), "rank-00000.h5"),
    "rank-missing": (lambda s: _replace(s, "missing"), "rank-00000.h5"),
    "rank-truncated": (lambda s: _replace(s, "truncate"), "rank-00000.h5"),
    "rank-byte-flipped": (lambda s: _replace(s, "flip"), "rank-00000.h5"),
    "rank-layout": (_swap_layout, "rank-00000.h5"),
    "rank-dtype": (_retype, "rank-00000.h5"),
    "rank-rng-content": (_garble_rng, "unreadable content"),
    "manifest-symlink": (_manifest_symlink, "manifest"),
    "manifest-missing": (lambda s: os.unlink(os.path.join(s, MANIFEST)), "manifest"),
    "manifest-truncated": (lambda s: os.truncate(os.path.join(s, MANIFEST), 40), "manifest"),
    "step-symlink": (_step_symlink, ""),
}

ALL_CASES = {**{k: ("manifest", v) for k, v in MANIFEST_CASES.items()},
             **{k: ("file", v) for k, v in FILE_CASES.items()}}


def _tamper(stepdir, case):
    kind, (fn, _) = ALL_CASES[case]
    if kind == "manifest":
        _rewrite(stepdir, lambda doc: fn(doc, stepdir))
    else:
        fn(stepdir)


def _save_steps(comm, directory, steps):
    with hp.Checkpointer(directory, comm, keep=1000) as ck:
        for step in steps:
            ck.save(step, _state(comm, step))


@pytest.mark.mpi
@pytest.mark.parametrize("case", list(ALL_CASES))
def test_tampered_step_falls_back(comm, shared_tmp, case):
    ckdir = shared_tmp / "ck"
    _save_steps(comm, ckdir, [1, 2])
    on_root(comm, _tamper, str(ckdir / step_dirname(2)), case)
    with hp.Checkpointer(ckdir, comm) as ck, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        step, got = ck.restore()
    assert step == 1
    _check_state(got, comm, 1)
    if comm.rank == 0:
        msgs = [str(w.message) for w in seen if issubclass(w.category, CheckpointWarning)]
        if case != "step-symlink":  # a symbolic link is not a step at all: nothing to say
            assert any(step_dirname(2) in m for m in msgs), msgs
            hint = ALL_CASES[case][1][1]
            assert any(hint in m for m in msgs), (hint, msgs)


@pytest.mark.mpi
@pytest.mark.parametrize("case", ["file-dotdot", "array-offset-shift", "rank-layout",
                                  "rank-fifo", "table-counts"])
def test_no_valid_step_left_is_an_error(comm, shared_tmp, case):
    ckdir = shared_tmp / "ck"
    _save_steps(comm, ckdir, [2])
    on_root(comm, _tamper, str(ckdir / step_dirname(2)), case)
    with hp.Checkpointer(ckdir, comm, keep=1) as ck, warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="no valid checkpoint step"):
            ck.restore()
    if comm.rank == 0:  # nothing was deleted: the evidence is still there
        assert (ckdir / step_dirname(2)).exists()
    comm.Barrier()


@pytest.mark.mpi
def test_keep_1_never_deletes_the_step_restore_falls_back_to(comm, shared_tmp):
    ckdir = shared_tmp / "ck"
    with hp.Checkpointer(ckdir, comm, keep=2) as ck:
        for step in (1, 2):
            ck.save(step, _state(comm, step))
    on_root(comm, _tamper, str(ckdir / step_dirname(2)), "rank-byte-flipped")
    for _ in range(2):  # starting (twice) with keep=1 deletes nothing
        with hp.Checkpointer(ckdir, comm, keep=1) as ck, \
                warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            step, got = ck.restore()
        assert step == 1
        _check_state(got, comm, 1)
    with hp.Checkpointer(ckdir, comm, keep=1) as ck, warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ck.restore()
        ck.save(2, _state(comm, 2))  # a new step committed: now the old ones may go
        step, got = ck.restore()
    assert step == 2
    _check_state(got, comm, 2)
    if comm.rank == 0:
        assert sorted(p.name for p in ckdir.iterdir()) == ["latest", step_dirname(2)]
    comm.Barrier()


@SERIAL_ONLY
def test_ckpt_verify_names_every_tampering(tmp_path):
    """One directory, one tampered step per case; ``hpcproc ckpt verify`` exits 1 and
    marks every tampered step INVALID with its problem (1 and 2 saving ranks)."""
    for ranks in (1, 2):
        ckdir = tmp_path / f"ck{ranks}"
        # not here: a link is not a step at all; undecodable content under matching
        # checksums is found by restore (which decodes), not by verify
        cases = [c for c in ALL_CASES if c not in ("step-symlink", "rank-rng-content")]
        steps = list(range(10, 10 + len(cases)))
        script = ("import sys; sys.path.insert(0, sys.argv[2]); from mpi4py import MPI; "
                  "import test_checkpoint_tamper as t; "
                  "t._save_steps(MPI.COMM_WORLD, sys.argv[1], [1] + list(range(10, "
                  f"{10 + len(cases)})))")
        run([os.environ.get("PYTHON", __import__("sys").executable), "-c", script, ckdir,
             os.path.dirname(__file__)], ranks=ranks, timeout=300, check=True)
        for step, case in zip(steps, cases):
            if case == "step-other":  # would name a step that exists: use a free one
                _rewrite(str(ckdir / step_dirname(step)), lambda d: d.__setitem__("step", 5))
                continue
            _tamper(str(ckdir / step_dirname(step)), case)
        proc = run(hpcproc_cmd("ckpt", "verify", ckdir), timeout=300)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = {}
        for line in proc.stdout.splitlines()[1:]:
            m = re.search(r"step-\d{12}", line)
            if m:
                lines[m.group(0)] = line
        assert lines[step_dirname(1)].rstrip().endswith("ok (checksums verified)")
        for step, case in zip(steps, cases):
            line = lines.get(step_dirname(step), "")
            assert "INVALID" in line, (case, line)
            hint = ALL_CASES[case][1][1]
            assert hint in line.split("INVALID", 1)[1], (case, hint, line)


@pytest.mark.mpi
def test_interrupted_replacement_of_a_step_is_put_back(comm, shared_tmp):
    """A save of an existing step number moves the old step aside first; if the run dies
    before the new one is renamed in, the next start puts the old step back."""
    ckdir = shared_tmp / "ck"
    _save_steps(comm, ckdir, [1, 2])

    def interrupted():  # the state between the two renames of commit_step
        os.rename(ckdir / step_dirname(2), ckdir / f".old-{step_dirname(2)}-0badc0de")
        os.mkdir(ckdir / f".tmp-{step_dirname(2)}-feedbeef")

    on_root(comm, interrupted)
    with hp.Checkpointer(ckdir, comm, keep=1) as ck:
        step, got = ck.restore()
    assert step == 2
    _check_state(got, comm, 2)
    if comm.rank == 0:
        assert sorted(p.name for p in ckdir.iterdir()) == ["latest", step_dirname(2)]
    comm.Barrier()
