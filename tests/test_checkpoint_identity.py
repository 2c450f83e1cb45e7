"""``--checkpoint`` commands: one implementation (bit-identical to the plain commands),
refused resumes on a changed input or other arguments, lineage across a restart.

Real files, real ``mpiexec`` launches, real SIGKILL; each launch has a timeout.
"""

import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from support import MPIEXEC, SERIAL_ONLY, hpcproc_cmd, run

pytestmark = SERIAL_ONLY

NUMERIC = ("count", "nan_count", "sum", "mean", "var", "std", "min", "max", "bytes")


def _write(path, data):
    with h5py.File(path, "w") as f:
        f["x"] = data


def _stats(target, ranks, *extra, env=None, timeout=120):
    proc = run(hpcproc_cmd("stats", target, "--json", *extra), ranks=ranks, env=env,
               timeout=timeout)
    return proc, (json.loads(proc.stdout) if proc.returncode == 0 else None)


def _one_error_line(proc, *words):
    """Exit 1, exactly one ``hpcproc: error:`` line naming ``words``, no MPI_Abort."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("hpcproc: error:"), proc.stderr
    assert "abort" not in proc.stderr.lower(), proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("ranks", [1, 2, 3])
@pytest.mark.parametrize("kind", ["float-nan", "int", "big-endian"])
def test_resumable_stats_is_bit_identical_to_plain_stats(tmp_path, ranks, kind):
    rng = np.random.default_rng(ranks)
    if kind == "int":
        data = rng.integers(-10**12, 10**12, 20_001)
    else:
        data = rng.standard_normal(20_001) * 1e3 + 7
        if kind == "float-nan":
            data[[5, 9000, 20_000]] = np.nan
        else:
            data = data.astype(">f8")
    _write(tmp_path / "d.h5", data)
    target = f"{tmp_path / 'd.h5'}:/x"
    opts = ["--block-bytes", "8k"]
    _, plain = _stats(target, ranks, *opts)
    proc, ck = _stats(target, ranks, *opts, "--checkpoint", tmp_path / "ck",
                      "--checkpoint-every", 0, "--timings")
    assert proc.returncode == 0, proc.stderr
    for key in NUMERIC:  # the same kernels and merges: the same bits (NaN == NaN here)
        assert json.dumps(ck[key]) == json.dumps(plain[key]), (key, ck[key], plain[key])
    assert set(ck["timings"]) >= {"read", "compute", "compile", "total"}
    assert ck["count"] == data.size and ck["nan_count"] == int(np.isnan(data).sum())
    if kind == "int":
        assert ck["sum"] == int(data.sum())
    # run again: everything restored from the last step, same answer
    _, again = _stats(target, ranks, *opts, "--checkpoint", tmp_path / "ck")
    assert again["resumed_from"] == data.size
    assert json.dumps([again[k] for k in NUMERIC]) == json.dumps([ck[k] for k in NUMERIC])


def _committed(directory) -> int:
    if not os.path.isdir(directory):
        return 0
    return sum(1 for n in os.listdir(directory) if n.startswith("step-")
               and os.path.exists(os.path.join(directory, n, "manifest.json")))


@pytest.mark.parametrize("ranks", [2, 3])
def test_stats_killed_by_sigkill_and_resumed_is_bit_identical(tmp_path, ranks):
    data = np.random.default_rng(5).standard_normal(300_000)
    _write(tmp_path / "d.h5", data)
    target = f"{tmp_path / 'd.h5'}:/x"
    opts = ["--block-bytes", "4k"]
    _, plain = _stats(target, ranks, *opts)
    ckdir = tmp_path / "ck"
    cmd = [MPIEXEC, "-n", str(ranks), *hpcproc_cmd("stats", target, "--json", *opts,
                                                     "--checkpoint", ckdir,
                                                     "--checkpoint-every", 0)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI_LOCAL"))}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while _committed(ckdir / "target-0") < 1 and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(0.3)  # somewhere in the middle of the scan, during a save or a block
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode != 0, "the scan ended before it could be killed"
    resumed, got = _stats(target, ranks, *opts, "--checkpoint", ckdir)
    assert resumed.returncode == 0, resumed.stderr
    assert 0 < got["resumed_from"] < data.size
    for key in NUMERIC:
        assert got[key] == plain[key], (key, got[key], plain[key])


def test_changed_input_or_arguments_are_refused(tmp_path):
    data = np.arange(50_000, dtype=np.float64)
    path = tmp_path / "d.h5"
    _write(path, data)
    target = f"{path}:/x"
    ck = tmp_path / "ck"
    opts = ["--block-bytes", "16k", "--checkpoint", ck, "--checkpoint-every", 0]
    proc, first = _stats(target, 2, *opts)
    assert proc.returncode == 0 and first["sum"] == data.sum()
    # hist pointed at the stats checkpoint: a clear error, not KeyError: bins
    hist = run(hpcproc_cmd("hist", target, "--checkpoint", ck), ranks=2, timeout=120)
    _one_error_line(hist, "another command", "hpcproc stats", str(ck / "target-0"))
    for ranks, extra, words in [(3, [], ["number of ranks: 2 in the checkpoint, 3 now"]),
                                (2, ["--method", "h5py"], ["method"]),
                                (2, ["--block-bytes", "32k"], ["block_bytes"])]:
        args = opts + extra if "--block-bytes" not in extra else opts[2:] + extra
        _one_error_line(_stats(target, ranks, *args)[0], *words)
    # rewritten with the same shape: the old statistics must not come back
    time.sleep(0.01)
    _write(path, data * 2)
    for ranks in (1, 2, 3):
        proc, _ = _stats(target, ranks, *opts)
        _one_error_line(proc, "changed since it was saved", str(path), "modification time")


def _keys(path):
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f["key"] = rng.integers(0, 300, 20_000)
        f["value"] = rng.standard_normal(20_000)


@pytest.mark.parametrize("command", ["hist", "sort", "groupby", "join"])
def test_every_checkpoint_command_refuses_a_changed_input(tmp_path, command):
    path = tmp_path / "k.h5"
    _keys(path)
    ck = tmp_path / "ck"
    out = tmp_path / "out.h5"
    argv = {"hist": ["hist", f"{path}:/value", "--bins", 7, "--checkpoint", ck,
                     "--checkpoint-every", 0],
            "sort": ["sort", f"{path}:/key", "--with", "/value", "--out", out,
                     "--checkpoint", ck],
            "groupby": ["groupby", path, "--key", "/key", "--value", "/value", "--out", out,
                        "--checkpoint", ck],
            "join": ["join", f"{path}:/key", f"{tmp_path / 'r.h5'}:/key", "--out", out,
                     "--checkpoint", ck]}[command]
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["key"] = np.arange(300)
    first = run(hpcproc_cmd(*argv), ranks=2, timeout=120)
    assert first.returncode == 0, first.stderr
    time.sleep(0.01)
    with h5py.File(path, "r+") as f:  # same shape and dtype, other values
        f["value"][:5] = -1.0
        f["key"][:5] = 299
    again = run(hpcproc_cmd(*argv), ranks=2, timeout=120)
    _one_error_line(again, "changed since it was saved", str(path))


@pytest.mark.parametrize("command", ["sort", "groupby"])
def test_swapped_key_and_value_is_another_run(tmp_path, command):
    """The same columns in other roles (key <-> value) are another computation: the saved
    result of the first must not be written for the second."""
    path = tmp_path / "kv.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.array([3, 1, 2, 0] * 50)
        f["b"] = np.arange(200)[::-1] * 10
    ck = tmp_path / "ck"

    def argv(key, value, out):
        if command == "sort":
            return ["sort", f"{path}:/{key}", "--with", f"/{value}", "--out", out,
                    "--checkpoint", ck]
        return ["groupby", path, "--key", f"/{key}", "--value", f"/{value}", "--out", out,
                "--checkpoint", ck]

    first = run(hpcproc_cmd(*argv("a", "b", tmp_path / "1.h5")), ranks=2, timeout=120)
    assert first.returncode == 0, first.stderr
    second = run(hpcproc_cmd(*argv("b", "a", tmp_path / "2.h5")), ranks=2, timeout=120)
    _one_error_line(second, "another")
    assert not (tmp_path / "2.h5").exists()


@pytest.mark.parametrize("option", ["--out", "--trace"])
def test_an_output_inside_the_checkpoint_directory_is_refused(tmp_path, option):
    """--out (or --trace) naming a file of the checkpoint a resume reads would corrupt it."""
    path = tmp_path / "k.h5"
    _keys(path)
    ck = tmp_path / "ck"
    argv = ["sort", f"{path}:/key", "--with", "/value", "--checkpoint", ck]
    first = run(hpcproc_cmd(*argv, "--out", tmp_path / "out.h5"), ranks=2, timeout=120)
    assert first.returncode == 0, first.stderr
    inside = ck / "step-000000000001" / "rank-00000.h5"
    before = inside.read_bytes()
    extra = ["--out", inside] if option == "--out" else ["--out", tmp_path / "o2.h5",
                                                         "--trace", inside]
    again = run(hpcproc_cmd(*argv, *extra), ranks=2, timeout=120)
    lines = [ln for ln in again.stderr.splitlines() if ln.strip()]
    assert again.returncode == 2 and len(lines) == 1, again.stderr
    assert f"{option} {inside} is inside the --checkpoint directory" in lines[0]
    assert inside.read_bytes() == before
    verify = run(hpcproc_cmd("ckpt", "verify", ck), timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _lineage_inputs(path):
    with h5py.File(path) as f:
        rec = json.loads(f["key"].attrs["hpcproc_lineage"])
    return sorted((i["file"], i["dataset"], tuple(i["rows"]), i["checksum"], i["file_size"])
                  for i in rec["inputs"])


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_sort_lineage_survives_a_kill_and_restart(tmp_path, ranks):
    path = tmp_path / "k.h5"
    _keys(path)

    def sort(out, ck, env=None):
        return run(hpcproc_cmd("sort", f"{path}:/key", "--with", "/value", "--out", out,
                               "--checkpoint", ck), ranks=ranks, env=env, timeout=120)

    assert sort(tmp_path / "ref.h5", tmp_path / "ckref").returncode == 0
    want = _lineage_inputs(tmp_path / "ref.h5")
    assert len(want) == 2 and all(w[3] and w[3].startswith("crc32:") for w in want)
    # SIGKILL of rank 0 right after the phase's checkpoint committed, before the write
    killed = sort(tmp_path / "s.h5", tmp_path / "ck", env={"HPCPROC_CKPT_CRASH":
                                                           "latest:0:1"})
    assert killed.returncode != 0 and not (tmp_path / "s.h5").exists()
    again = sort(tmp_path / "s.h5", tmp_path / "ck")
    assert again.returncode == 0, again.stderr
    assert _lineage_inputs(tmp_path / "s.h5") == want
    with h5py.File(tmp_path / "s.h5") as f:
        rec = json.loads(f["key"].attrs["hpcproc_lineage"])
    assert all("via_checkpoint" in i for i in rec["inputs"])  # and where it came from
