"""The kernel cache is used only when nobody else could have written it (like ssh keys).

Numba's cache index files are pickles. A pickle planted in the cache directory must not
run: each test populates a real cache with ``hpcproc stats``, replaces every index file
with a pickle whose loading creates a marker file, makes the directory untrustworthy in
one way, runs ``hpcproc stats`` again under mpiexec and asserts: one warning naming the
problem, no marker, and numpy's answer. A control run (trusted directory) shows that the
planted pickle does run when the directory is trusted, so the test can fail.
"""

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys

import h5py
import numpy as np
import pytest

from support import SERIAL_ONLY, hpcproc_cmd, run

pytestmark = SERIAL_ONLY  # launches its own processes

NOBODY = 65534
ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="chown to another uid needs root")


class _Plant:
    """Unpickling this creates ``path`` (stands for any code an attacker could run)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "d.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.random.default_rng(2).standard_normal(1000)
    return path


def _stats(data_file, cache, ranks=2, **env):
    out = run(hpcproc_cmd("stats", f"{data_file}:/x", "--json", "--no-progress"),
              ranks=ranks, timeout=180,
              env={"HPCPROC_CACHE_DIR": str(cache), "HPCPROC_AOT": "0", **env})  # Numba's cache
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    ref = h5py.File(data_file)["x"][...]
    assert got["count"] == ref.size and got["min"] == ref.min() and got["max"] == ref.max()
    assert abs(got["mean"] - ref.mean()) <= 1e-12 * abs(ref).max()
    return out.stderr


@pytest.fixture(scope="module")
def populated(tmp_path_factory, data_file):
    """A cache written by a real ``hpcproc stats`` run (once per module)."""
    cache = tmp_path_factory.mktemp("populated") / "cache"
    assert "WARNING" not in _stats(data_file, cache)
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700  # created private
    return cache


@pytest.fixture
def planted(tmp_path, populated):
    """A copy of the populated cache, every index file replaced by a planted pickle."""
    base = tmp_path / "base"
    base.mkdir(mode=0o755)
    cache = base / "cache"
    shutil.copytree(populated, cache)  # keeps the modes (0700)
    marker = tmp_path / "pwned"
    index = [os.path.join(r, f) for r, _, fs in os.walk(cache) for f in fs
             if f.endswith(".nbi")]
    assert index, "the first run wrote no cache index"
    for p in index:
        with open(p, "wb") as f:
            pickle.dump(_Plant(str(marker)), f)
    return cache, marker, index


def _refused(stderr, marker, *needles):
    warnings = [ln for ln in stderr.splitlines() if "kernel cache" in ln]
    assert len(warnings) == 1, stderr  # once, on one rank
    assert "HPCPROC_CACHE_DIR=" in warnings[0] and "not used" in warnings[0]
    for needle in needles:
        assert needle in warnings[0], warnings[0]
    assert not marker.exists(), "a pickle from the refused cache was loaded"


def test_trusted_cache_is_used_control(planted, data_file):
    cache, marker, _ = planted
    _stats(data_file, cache, ranks=1)
    assert marker.exists()  # the plant works: only the checks below keep it from running


def test_world_writable_cache_dir_refused(planted, data_file):
    cache, marker, _ = planted
    os.chmod(cache, 0o777)
    _refused(_stats(data_file, cache), marker, "writable by its group or others")


@ROOT_ONLY
def test_group_writable_cache_dir_refused(planted, data_file):
    cache, marker, _ = planted
    os.chown(cache, -1, NOBODY)  # a shared group (the user's private group would be fine)
    os.chmod(cache, 0o770)
    _refused(_stats(data_file, cache, ranks=3), marker, "writable by its group or others")


@ROOT_ONLY
def test_index_owned_by_another_user_refused(planted, data_file):
    cache, marker, index = planted
    os.chown(index[0], NOBODY, NOBODY)
    _refused(_stats(data_file, cache), marker, f"owned by uid {NOBODY}")


@ROOT_ONLY
def test_cache_dir_owned_by_another_user_refused(planted, data_file):
    cache, marker, _ = planted
    for root, dirs, files in os.walk(cache):
        for name in dirs + files:
            os.chown(os.path.join(root, name), NOBODY, NOBODY)
    os.chown(cache, NOBODY, NOBODY)
    _refused(_stats(data_file, cache), marker, f"owned by uid {NOBODY}")


def test_writable_parent_refused_sticky_parent_allowed(planted, data_file):
    cache, marker, _ = planted
    os.chmod(cache.parent, 0o777)  # anyone could rename the cache away and plant another
    _refused(_stats(data_file, cache), marker, f"{cache.parent} is writable")
    os.chmod(cache.parent, 0o1777)  # sticky, like /tmp: only the owner may rename
    _stats(data_file, cache, ranks=1)
    assert marker.exists()


def test_symlink_to_untrusted_dir_refused(planted, data_file, tmp_path):
    cache, marker, _ = planted
    link = tmp_path / "link"
    os.symlink(cache, link)
    os.chmod(cache, 0o757)
    _refused(_stats(data_file, link), marker, "writable by its group or others")


def test_symlink_inside_cache_refused(planted, data_file, tmp_path):
    cache, marker, index = planted
    elsewhere = tmp_path / "elsewhere.nbi"
    shutil.move(index[0], elsewhere)
    os.symlink(elsewhere, index[0])
    _refused(_stats(data_file, cache), marker, "symbolic link")


def test_group_writable_files_in_private_dir_allowed(planted, data_file):
    """Numba creates files with the user's umask (002 on many systems): inside a 0700
    directory nobody else can reach them, so they are no reason to refuse."""
    cache, marker, index = planted
    for p in index:
        os.chmod(p, 0o666)
    assert "kernel cache" not in _stats(data_file, cache, ranks=1)
    assert marker.exists()


@pytest.mark.parametrize("bad", ["file", "below_file"])
def test_bad_cache_dir_named_in_one_warning(data_file, tmp_path, bad):
    target = tmp_path / "afile"
    target.write_text("not a directory")
    cache = target if bad == "file" else target / "sub"
    err = _stats(data_file, cache)
    lines = [ln for ln in err.splitlines() if "kernel cache" in ln]
    assert len(lines) == 1 and f"HPCPROC_CACHE_DIR={cache}" in lines[0], err
    assert "not a directory" in lines[0] or "cannot be created" in lines[0]
    assert target.read_text() == "not a directory"


def test_default_dir_created_private(data_file, tmp_path):
    """Without HPCPROC_CACHE_DIR the default ($XDG_CACHE_HOME/hpcproc/numba) and the
    directories made for it are 0700 even with a permissive umask."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HPCPROC_CACHE"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    env["HPCPROC_AOT"] = "0"  # Numba-compiled kernels, which use the cache
    code = ("import os, numpy as np, hpcproc as hp; os.umask(0o002); "
            "print(hp.stats(hp.DistArray.from_global(np.arange(5.0)))['sum'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0 and out.stdout.strip() == "10.0", out.stderr
    for p in (tmp_path / "xdg", tmp_path / "xdg" / "hpcproc", tmp_path / "xdg/hpcproc/numba"):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o700, p
    assert "kernel cache" not in out.stderr


@pytest.mark.parametrize("value", ["0", "garbage", "-2"])
def test_bad_threads_variable_one_agreed_error(data_file, value):
    out = run(hpcproc_cmd("stats", f"{data_file}:/x"), ranks=2, timeout=60,
              env={"HPCPROC_THREADS": value})
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert lines == [f"hpcproc: error: HPCPROC_THREADS must be a positive "
                     f"integer, got '{value}'"], out.stderr
