"""Checkpoint format pieces (serial): checksums, manifest tamper detection, durations,
walltime sources, random generator states."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from hpcproc.checkpoint import _format, _schema, _triggers
from hpcproc.checkpoint._rng import rng_from_bytes, rng_from_state, rng_state, rng_to_bytes


def test_file_checksum_is_xxh128_of_the_bytes(tmp_path):
    xxhash = pytest.importorskip("xxhash")
    data = np.random.default_rng(1).integers(0, 256, 3 << 20, dtype=np.uint8)
    p = tmp_path / "f.bin"
    p.write_bytes(data.tobytes())
    want = xxhash.xxh3_128(data.tobytes()).hexdigest()
    assert _format.hash_file(str(p)) == (data.size, want)
    # hashing known regions from memory and the gaps from the file gives the same
    regions = [(100, data[100:5000]), (70000, data[70000:2 << 20])]
    fd = os.open(p, os.O_RDONLY)
    try:
        assert _format.hash_regions(fd, data.size, regions) == want
    finally:
        os.close(fd)


def test_manifest_round_trip_and_tampering(tmp_path):
    body = {"format": _format.FORMAT, "version": _format.VERSION, "checksum": "xxh3_128",
            "step": 4, "ranks": 1, "files": {"rank-00000.h5": {"size": 0, "checksum": "0" * 32}},
            "entries": {"a": {"kind": "json", "value": 1}}}
    p = tmp_path / "manifest.json"
    p.write_bytes(_format.dump_manifest(body))
    assert _schema.load_manifest(str(p)) == body
    text = p.read_text()
    p.write_text(text.replace('"value": 1', '"value": 2'))
    with pytest.raises(_format.ManifestError, match="checksum"):
        _schema.load_manifest(str(p))
    p.write_text(text[: len(text) // 2])
    with pytest.raises(_format.ManifestError, match="unreadable"):
        _schema.load_manifest(str(p))
    p.write_bytes(_format.dump_manifest(dict(body, version=99)))
    with pytest.raises(_format.ManifestError, match="version"):
        _schema.load_manifest(str(p))
    with pytest.raises(_format.ManifestError, match="missing"):
        _schema.load_manifest(str(tmp_path / "none.json"))


@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), ("90", 90.0), ("1:30", 90.0), ("01:00:00", 3600.0), ("2-00:00:00", 172800.0),
    ("1-02:03", 93780.0), ("1-02", 93600.0), ("UNLIMITED", None), ("INVALID", None),
    ("", None),
])
def test_parse_duration(text, seconds):
    assert _triggers.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1:2:3:4", "-5", -1])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        _triggers.parse_duration(text)


def test_job_end_time_sources(tmp_path, monkeypatch):
    assert _triggers.job_end_time(walltime="0:10", env={}, now=1000.0) == 1010.0
    assert _triggers.job_end_time(env={"SLURM_JOB_END_TIME": "5000"}, now=0.0) == 5000.0
    assert _triggers.job_end_time(env={}, now=0.0) is None
    squeue = tmp_path / "squeue"  # a stand-in for Slurm's squeue: prints time left
    squeue.write_text("#!/bin/sh\n[ \"$3\" = 42 ] && echo '1:00:05'\n")
    squeue.chmod(squeue.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert _triggers.job_end_time(env={"SLURM_JOB_ID": "42"}, now=100.0) == 3705.0
    assert _triggers.job_end_time(env={"SLURM_JOB_ID": "7"}, now=100.0) is None


@pytest.mark.parametrize("bitgen", ["PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"])
def test_rng_state_continues_bit_for_bit(bitgen):
    g = np.random.Generator(getattr(np.random, bitgen)(1234))
    g.standard_normal(7)
    g.integers(0, 10, 3)  # leaves a buffered 32-bit half on some generators
    state = json.loads(json.dumps(rng_state(g)))  # survives JSON
    h = rng_from_state(state)
    k = rng_from_bytes(rng_to_bytes(g))
    want = g.random(100)
    np.testing.assert_array_equal(h.random(100), want)
    np.testing.assert_array_equal(k.random(100), want)


def test_rng_state_rejects_foreign_input():
    with pytest.raises(TypeError):
        rng_state(np.random.RandomState(1))
    with pytest.raises(ValueError):
        rng_from_state({"bit_generator": "os.system", "state": {}})


def test_import_stays_cheap():
    code = ("import sys, hpcproc as hp; assert 'Checkpointer' in hp.__all__; "
            "bad = [m for m in ('mpi4py', 'xxhash', 'h5py', 'numba') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_read_and_hash_matches_one_shot(tmp_path, monkeypatch):
    monkeypatch.setattr(_format, "_PIECE", 1000)  # many pieces, a short last one
    data = np.random.default_rng(2).integers(0, 256, 12345, dtype=np.uint8)
    p = tmp_path / "f.bin"
    p.write_bytes(data.tobytes())
    buf = np.empty(data.size, dtype=np.uint8)
    fd = os.open(p, os.O_RDONLY)
    try:
        digest = _format.read_and_hash(fd, buf)
    finally:
        os.close(fd)
    np.testing.assert_array_equal(buf, data)
    assert digest == _format.hash_bytes(data.tobytes())
