"""Adversarial checkpoint cases: a pristine checkpoint (steps 1 and 2, saved once per
batch by :func:`prepare`) is copied and tampered in one field of the manifest, one data
file or the ``latest`` pointer; ``restore()`` must return a step that was really saved
with exactly its state (the older step 1 whenever step 2's data can no longer be trusted),
never another step's data, never a raw numpy/KeyError. Manifests are re-checksummed
after tampering (anyone can), unless the case is about the checksum itself.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from _adversarial_api_cases import Case, Raises, Value

ROWS = 12
PRISTINE = "_pristine"
STEP = "step-{:012d}"


def state_of(step: int) -> dict:
    """What step ``step`` holds, gathered whole (the reference)."""
    return {"a": (np.arange(ROWS * 2.0).reshape(ROWS, 2) * step).tolist(),
            "k": (np.arange(ROWS) + 100 * step).tolist(),
            "v": (np.arange(ROWS) * 0.5 * step).tolist(), "n": step}


def _dist_state(step, comm):
    import hpcproc as hp
    from hpcproc.partition import block_range
    lo, hi = block_range(ROWS, comm.size, comm.rank)
    s = state_of(step)
    return {"a": hp.DistArray.from_global(np.array(s["a"]), comm=comm),
            "t": hp.DistTable.from_local({"k": np.array(s["k"][lo:hi], dtype=np.int64),
                                          "v": np.array(s["v"][lo:hi])}, comm=comm),
            "n": step}


def prepare(base, comm) -> None:
    """Save the pristine checkpoint (steps 1, 2) once per batch. Collective."""
    import hpcproc as hp
    d = Path(base) / PRISTINE
    if comm.rank == 0:
        shutil.rmtree(d, ignore_errors=True)
    comm.Barrier()
    with hp.Checkpointer(str(d), comm=comm, keep=5) as ck:
        for step in (1, 2):
            ck.save(step, _dist_state(step, comm))
    comm.Barrier()


def restored(got) -> dict | None:
    if got is None:
        return None
    step, st = got
    t = st["t"].allgather()
    return {"step": step, "a": st["a"].allgather().tolist(), "k": t["k"].tolist(),
            "v": t["v"].tolist(), "n": st["n"]}


def restore_call(keep=5, then_save=None):
    def call(d, comm):
        import hpcproc as hp
        with hp.Checkpointer(str(Path(d) / "ck"), comm=comm, keep=keep) as ck:
            got = restored(ck.restore())
            if then_save is None:
                return got
            ck.save(then_save, _dist_state(then_save, comm))
        with hp.Checkpointer(str(Path(d) / "ck"), comm=comm, keep=keep) as ck:
            return restored(ck.restore())
    return call


def expect_step(step):
    return Value(lambda d: None if step is None else {"step": step, **state_of(step)})


# --- tampering ------------------------------------------------------------------------------
def _checksum(doc: dict) -> str:
    import xxhash
    body = {k: v for k, v in doc.items() if k != "manifest_checksum"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return xxhash.xxh3_128(canon).hexdigest()


def _copy(d) -> Path:
    base = Path(d).parent
    shutil.copytree(base / PRISTINE, Path(d) / "ck", symlinks=True)
    return Path(d) / "ck"


def manifest(edit, step=2, rehash=True):
    """Setup: copy the pristine checkpoint, ``edit(doc, stepdir)`` step's manifest."""
    def setup(d):
        sd = _copy(d) / STEP.format(step)
        doc = json.loads((sd / "manifest.json").read_text())
        edit(doc, sd)
        if rehash:
            doc["manifest_checksum"] = _checksum(doc)
        (sd / "manifest.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
    return setup


def raw(edit, step=2):
    """Setup: copy the pristine checkpoint, ``edit(stepdir)`` on the files themselves."""
    def setup(d):
        edit(_copy(d) / STEP.format(step))
    return setup


def _set(path, value):
    def edit(doc, sd):
        *head, last = path
        node = doc
        for k in head:
            node = node[k]
        node[last] = value(node[last]) if callable(value) else value
    return edit


def _flip(name, at=-1):
    def edit(sd):
        p = sd / name
        blob = bytearray(p.read_bytes())
        blob[at] ^= 0xFF
        p.write_bytes(bytes(blob))
    return edit


def _secret_entry(absolute):
    """Replace rank 1's file entry with a path outside the step that checksums right."""
    def edit(doc, sd):
        import xxhash
        secret = sd.parent.parent / "secret.txt"
        secret.write_bytes(b"not yours\n" * 1000)
        name = str(secret) if absolute else "../../secret.txt"
        entry = {"size": secret.stat().st_size,
                 "checksum": xxhash.xxh3_128(secret.read_bytes()).hexdigest()}
        files = doc["files"]
        victim = sorted(files)[-1]
        del files[victim]
        files[name] = entry
    return edit


def _symlink_same_content(sd):
    p = sd / "rank-00000.h5"
    elsewhere = sd.parent.parent / "elsewhere.h5"
    shutil.copy(p, elsewhere)
    p.unlink()
    p.symlink_to(elsewhere)


def _symlink_other_step(sd):
    p = sd / "rank-00000.h5"
    p.unlink()
    p.symlink_to(sd.parent / STEP.format(1) / "rank-00000.h5")


def _write_latest(text):
    def setup(d):
        ck = _copy(d)
        if text is None:
            (ck / "latest").unlink()
        else:
            (ck / "latest").write_text(text)
    return setup


FALLBACK = {  # tampered step 2 whose data cannot be trusted: restore must give step 1
    "manifest-flip-no-rehash": raw(_flip("manifest.json", 40)),
    "manifest-truncated": raw(lambda sd: (sd / "manifest.json").write_bytes(
        (sd / "manifest.json").read_bytes()[:100])),
    "manifest-deleted": raw(lambda sd: (sd / "manifest.json").unlink()),
    "manifest-not-json": raw(lambda sd: (sd / "manifest.json").write_text("{nope")),
    "manifest-is-list": raw(lambda sd: (sd / "manifest.json").write_text("[1, 2]")),
    "format": manifest(_set(["format"], "something-else")),
    "version": manifest(_set(["version"], 99)),
    "checksum-algorithm": manifest(_set(["checksum"], "md5")),
    "ranks-plus-1": manifest(_set(["ranks"], lambda v: v + 1)),
    "ranks-1": manifest(_set(["ranks"], 1)),
    "ranks-string": manifest(_set(["ranks"], "2")),
    "files-drop-entry": manifest(lambda doc, sd: doc["files"].pop(sorted(doc["files"])[-1])),
    "files-empty": manifest(_set(["files"], {})),
    "files-size": manifest(lambda doc, sd: _set(["files", sorted(doc["files"])[0], "size"],
                                                lambda v: v + 1)(doc, sd)),
    "files-checksum": manifest(lambda doc, sd: _set(["files", sorted(doc["files"])[0],
                                                     "checksum"], "0" * 32)(doc, sd)),
    "files-dotdot-path": manifest(_secret_entry(False)),
    "files-absolute-path": manifest(_secret_entry(True)),
    "entries-shape-grown": manifest(_set(["entries", "a", "shape"], [ROWS + 1, 2])),
    "entries-shape-shrunk": manifest(_set(["entries", "a", "shape"], [ROWS // 2, 2])),
    "entries-shape-2d-to-1d": manifest(_set(["entries", "a", "shape"], [ROWS * 2])),
    "entries-counts": manifest(_set(["entries", "a", "counts"],
                                    lambda v: [v[0] + 1] + v[1:])),
    "entries-counts-negative": manifest(_set(["entries", "a", "counts"],
                                             lambda v: [-1] + v[1:])),
    "entries-offset-shifted": manifest(_set(["entries", "a", "offsets"],
                                            lambda v: [v[0] + 8] + v[1:])),
    "entries-offset-huge": manifest(_set(["entries", "a", "offsets"],
                                         lambda v: [10**12] + v[1:])),
    "entries-offset-negative": manifest(_set(["entries", "a", "offsets"],
                                             lambda v: [-8] + v[1:])),
    "entries-dtype-f4": manifest(_set(["entries", "a", "dtype"], "<f4")),
    "entries-dtype-big-endian": manifest(_set(["entries", "a", "dtype"], ">f8")),
    "entries-dtype-garbage": manifest(_set(["entries", "a", "dtype"], "not-a-dtype")),
    "entries-dataset-name": manifest(_set(["entries", "a", "dataset"], "/e1/c0")),
    "entries-kind": manifest(_set(["entries", "a", "kind"], "table")),
    "entries-table-num-rows": manifest(_set(["entries", "t", "num_rows"], ROWS + 1)),
    "entries-table-column-dtype": manifest(_set(["entries", "t", "columns", 0, "dtype"],
                                                "<f8")),
    "entries-table-column-offset": manifest(_set(["entries", "t", "columns", 0, "offsets"],
                                                 lambda v: [v[0] + 8] + v[1:])),
    "entries-table-column-name-dup": manifest(_set(["entries", "t", "columns", 0, "name"],
                                                   "v")),
    "data-byte-flip-rank0": raw(_flip("rank-00000.h5", -1)),
    "data-byte-flip-rank1-middle": raw(_flip("rank-00001.h5", 2100)),
    "data-truncated": raw(lambda sd: os.truncate(sd / "rank-00001.h5", 1000)),
    "data-deleted": raw(lambda sd: (sd / "rank-00001.h5").unlink()),
    "data-symlink-same-content": raw(_symlink_same_content),
    "data-symlink-other-step": raw(_symlink_other_step),
    "data-replaced-by-directory": raw(lambda sd: ((sd / "rank-00000.h5").unlink(),
                                                  (sd / "rank-00000.h5").mkdir())),
}

HARMLESS = {  # metadata that does not locate data: step 2 stays valid (or falls back)
    "lineage": manifest(_set(["lineage", "host"], "elsewhere")),
    "created": manifest(_set(["created"], "1999-01-01T00:00:00Z")),
    "unknown-extra-key": manifest(lambda doc, sd: doc.update(extra={"a": 1})),
}

LATEST = {  # the 'latest' pointer is only a hint: the newest valid step is restored
    "latest-missing-step": _write_latest(STEP.format(9) + "\n"),
    "latest-garbage": _write_latest("../../etc\x00\n"),
    "latest-deleted": _write_latest(None),
    "latest-points-to-older": _write_latest(STEP.format(1) + "\n"),
}


def _both_corrupt(d):
    ck = _copy(d)
    for s in (1, 2):
        _flip("rank-00000.h5")(ck / STEP.format(s))


def _older_corrupt(d):
    _flip("rank-00001.h5")(_copy(d) / STEP.format(1))


def _cases():
    out = [Case(f"ckpt-{k}", s, restore_call(), expect_step(1)) for k, s in FALLBACK.items()]
    out += [Case(f"ckpt-{k}", s, restore_call(),
                 Value(lambda d: {"step": 2, **state_of(2)})) for k, s in LATEST.items()]
    # harmless edits: a correct step either way (judged by a custom expectation)
    out += [Case(f"ckpt-harmless-{k}", s, restore_call(), StepIn((1, 2)))
            for k, s in HARMLESS.items()]
    out += [
        Case("ckpt-older-step-corrupt", _older_corrupt, restore_call(), expect_step(2)),
        # every step corrupt: an error naming the directory, not None (a silent fresh start
        # would lose everything, issue 13 #10)
        Case("ckpt-every-step-corrupt", _both_corrupt, restore_call(),
             Raises(types=("CheckpointError",), words=("ck",))),
        # retention (issue 10): keep=1 with a corrupt newest step keeps the fallback
        Case("ckpt-keep1-corrupt-newest", raw(_flip("rank-00000.h5")), restore_call(keep=1),
             expect_step(1), may_change=("ck/" + STEP.format(2),)),
        Case("ckpt-keep1-corrupt-newest-then-save", raw(_flip("rank-00000.h5")),
             restore_call(keep=1, then_save=3), expect_step(3), may_change=("ck/",)),
        Case("ckpt-directory-is-a-file", lambda d: (Path(d) / "ck").write_text("x"),
             restore_call(), Raises(words=("ck",))),
    ]
    return out


class StepIn(Value):
    """Restore gives one of ``steps``, with exactly that step's saved state."""

    def __init__(self, steps):
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "ref", self._ref)
        object.__setattr__(self, "rtol", 0.0)

    def _ref(self, d):  # compared against the step the case returned (see test module)
        return {s: {"step": s, **state_of(s)} for s in self.steps}


CASES = _cases()
