"""Attacks on the agreed failures of robust24 (a rank that fails alone between two
collectives raises on every rank), the plugin path compared by its effect, and
``hpcproc join --replicate-bytes``.

The MPI cases run ``_break_s25a_driver.py`` under ``mpiexec`` at 2 and 3 ranks, with a
timeout: a hang is a failure, not a stuck suite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from _adversarial import launch, mpiexec

from support import SERIAL_ONLY

pytestmark = SERIAL_ONLY
DRIVER = Path(__file__).with_name("_break_s25a_driver.py")


def _every(case, ranks):
    job = launch(mpiexec([sys.executable, DRIVER, case], ranks), timeout=90)
    assert not job.timed_out, f"hung ({job.seconds:.0f} s)\n{job.stdout}\n{job.stderr}"
    assert job.returncode == 0, job.stderr
    every = json.loads(job.stdout.strip().splitlines()[-1])
    assert len(every) == ranks, job.stdout
    assert all(ok for _, ok in every), every  # then joins on the same ranks: right
    errors = {text for text, _ in every}
    assert len(errors) == 1, every  # the same error on every rank
    return errors.pop()


@pytest.mark.parametrize("ranks", [2, 3])
def test_broadcast_join_side_that_does_not_fit_on_one_rank_fails_every_rank(ranks):
    """strategy="broadcast": the last rank cannot hold the gathered right side. Its
    allocation came between the row counts' allgather and the Allgatherv: the other
    ranks waited in the Allgatherv forever (hung). Now every rank raises its
    MemoryError, naming it, and the communicator is still in step."""
    text = _every("broadcast", ranks)
    assert text.startswith(f"MemoryError: join: rank {ranks - 1} failed: "), text
    assert "Unable to allocate" in text, text


@pytest.mark.parametrize("ranks", [2, 3])
def test_several_ranks_failing_with_different_types_raise_the_lowest_ones(ranks):
    """Rank 0 a ValueError, the last rank a MemoryError (the join's key conversion):
    every rank raises rank 0's ValueError."""
    text = _every("mixed0", ranks)
    assert text.startswith("ValueError: ") and "rank 0 failed: bad key on rank 0" in text


@pytest.mark.parametrize("ranks", [2, 3])
def test_only_the_last_rank_failing_is_raised_everywhere_with_its_type(ranks):
    text = _every("mixedlast", ranks)
    assert text.startswith("ZeroDivisionError: "), text
    assert f"rank {ranks - 1} failed: ZeroDivisionError: divided on the last rank" in text


@pytest.mark.parametrize("ranks", [2, 3])
def test_an_exception_that_does_not_pickle_is_raised_everywhere_as_remote_error(ranks):
    text = _every("unpicklable", ranks)
    assert text.startswith("RemoteError: ") and "rank 0 failed: Unpicklable: cannot travel" \
        in text, text



@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("case", ["dense", "dense_out"])
def test_dense_group_by_one_rank_out_of_memory_fails_every_rank(case, ranks):
    """strategy="dense", 8M groups: the last rank cannot hold its states (``dense``:
    before the bitmap's Allreduce) or the Reduce_scatters' outputs (``dense_out``:
    between that Allreduce and them). robust24's group-by sent such an error to the
    result's allgather while the other ranks waited in the Allreduce/Reduce_scatter
    (hung). Now every rank raises the MemoryError naming the last rank, and dense
    group-bys (unsigned max: the flipped Reduce_scatter) and joins still agree with a
    dict afterwards."""
    text = _every(case, ranks)
    assert text.startswith(f"MemoryError: group-by: rank {ranks - 1} failed: "), text
    assert "Unable to allocate" in text, text


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("case,what", [("sort", "exchange"), ("sort_local", "sort")])
def test_sort_one_rank_out_of_memory_fails_every_rank(case, what, ranks):
    """hp.sort, the last rank out of memory for its rows' destinations (between the
    splitters and the exchange) or for sorting what it received (between the exchange
    and the result's row counts): the others waited in the exchange's counts or the
    row counts' allgather (hung). Now every rank raises its MemoryError, naming it."""
    text = _every(case, ranks)
    assert text.startswith(f"MemoryError: {what}: rank {ranks - 1} failed: "), text
    assert "Unable to allocate" in text, text

PLUGINS = Path(__file__).with_name("_break_s25a_plugins.py")


@pytest.fixture(scope="module")
def plugin_dirs(tmp_path_factory):
    """A gzip dataset (a filter built in: readable whatever the plugin path) and two
    plugin directories, ``d`` (also reachable as the symlink ``link``) and ``e``."""
    import h5py
    import numpy as np

    base = tmp_path_factory.mktemp("plugin_dirs")
    with h5py.File(base / "gzip.h5", "w") as f:
        f.create_dataset("x", data=np.arange(1000) * 0.5, chunks=(100,), compression="gzip")
    (base / "d").mkdir()
    (base / "e").mkdir()
    (base / "link").symlink_to(base / "d", target_is_directory=True)
    return base


def _plugin_job(base, values, ranks):
    """Every rank reads gzip.h5 with its own HDF5_PLUGIN_PATH (``values``: per rank,
    ``{}`` formatted with the base directory; None: unset); cwd: the base directory."""
    from _adversarial import mpmd

    parts = []
    for v in (values + [values[-1]] * ranks)[:ranks]:
        env = ["env", "-u", "HDF5_PLUGIN_PATH"] if v is None else \
            ["env", "HDF5_PLUGIN_PATH=" + v.replace("{}", str(base))]
        parts.append((1, env + [sys.executable, PLUGINS, base / "gzip.h5"]))
    job = launch(mpmd(*parts), timeout=90, cwd=base)
    assert not job.timed_out, job.describe()
    assert job.returncode == 0, job.describe()
    return json.loads(job.stdout.strip().splitlines()[-1])


#: texts of HDF5_PLUGIN_PATH naming the same directories in the same order
SAME = {"trailing_slash": ["{}/d", "{}/d/"], "symlink": ["{}/d", "{}/link"],
        "dot": ["{}/d:{}/e", "{}/./d:{}/e/."], "relative": ["{}/d", "d"],
        "empty_entries": ["{}/d:{}/e", ":{}/d::{}/e:"]}
#: texts naming different directories, or the same in another order
DIFFERENT = {"order": ["{}/d:{}/e", "{}/e:{}/d"], "other_dir": ["{}/d", "{}/e"],
             "unset_on_one": ["{}/d", None], "empty_vs_unset": ["", None],
             "dotdot": ["{}/d", "{}/d/../e"]}


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("case", sorted(SAME))
def test_plugin_path_texts_with_the_same_effect_are_not_refused(plugin_dirs, case, ranks):
    """HDF5_PLUGIN_PATH is compared by its effect: a trailing slash, a symlink to the
    same directory, ``.`` components or a relative path naming the same directory
    search the same plugins. They were refused (ArgumentMismatchError on every read)."""
    every = _plugin_job(plugin_dirs, SAME[case], ranks)
    want = float((np.arange(1000) * 0.5).sum())
    assert every == [[None, want]] * ranks, every


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("case", sorted(DIFFERENT))
def test_plugin_paths_that_search_differently_are_still_refused(plugin_dirs, case, ranks):
    every = _plugin_job(plugin_dirs, DIFFERENT[case], ranks)
    errors = {e for e, _ in every}
    assert len(errors) == 1 and None not in errors, every
    text = errors.pop()
    assert text.startswith("ArgumentMismatchError: HDF5's filter plugin search path"), text


def _join_files(tmp_path):
    """Left: key 11 in half of 120000 rows (heavy); right: 3000 distinct keys and 2 more
    rows of key 11 (3 right rows of it to replicate, 18 bytes each with rid and b)."""
    import h5py

    rng = np.random.default_rng(5)
    nl, nr = 120000, 3000
    lk = np.where(rng.random(nl) < 0.5, 11, rng.integers(0, nr, nl))
    rk = np.concatenate([rng.permutation(nr), [11, 11]])
    for name, cols in (("l.h5", {"key": lk, "lid": np.arange(nl)}),
                       ("r.h5", {"key": rk, "rid": np.arange(rk.size),
                                 "b": rng.integers(-9, 9, rk.size).astype(np.int16)})):
        with h5py.File(tmp_path / name, "w") as f:
            for k, v in cols.items():
                f[k] = v
    index = {}
    for j, k in enumerate(rk.tolist()):
        index.setdefault(k, []).append(j)
    pairs = sorted((i, j) for i, k in enumerate(lk.tolist()) for j in index.get(k, []))
    return pairs


def _join_args(tmp_path, *extra):
    from _adversarial import hpcproc

    if "--broadcast-bytes" not in extra:
        extra = ("--broadcast-bytes", "0", *extra)
    return hpcproc("join", tmp_path / "l.h5", tmp_path / "r.h5", "--on", "/key",
                   "--left-with", "/lid", "--right-with", "/rid", "--right-with", "/b",
                   "--out", tmp_path / "out.h5", "--json", *extra)


def _usage_error_once(job, option):
    assert not job.timed_out, job.describe()
    assert job.returncode == 2, job.describe()
    assert job.stderr.count("hpcproc: error:") == 1, job.describe()
    assert f"argument {option}: must be a size >= 0" in job.stderr, job.describe()
    assert "Traceback" not in job.stderr, job.describe()


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("option", ["--replicate-bytes", "--broadcast-bytes"])
def test_cli_size_too_large_for_a_float_is_one_usage_error(tmp_path, option, ranks):
    """A size of 400 digits: parsed through a float it became infinity and int() raised
    OverflowError (exit 1, ``hpcproc: error: OverflowError: cannot convert float
    infinity to integer``, the option unnamed). Now one usage error naming the option,
    as for any other size that is not one; so is a size just above int64."""
    _join_files(tmp_path)
    for value in ("1" + "0" * 400, "9000000T"):
        job = launch(mpiexec(_join_args(tmp_path, option, value), ranks), timeout=90)
        _usage_error_once(job, option)
        assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("value,replicated", [("8000000T", True), ("0.05K", False),
                                              ("54", True), ("54b", True), ("53.9", False),
                                              ("0.0527343k", False), ("0.052735KiB", True)])
def test_cli_replicate_bytes_values_and_suffixes(tmp_path, value, replicated, ranks):
    """Sizes as people write them, around the 54 bytes that the heavy key's 3 right
    rows take: the same pairs as a dict join; the heavy key's left rows stay on their
    ranks exactly when the size is at least 54 (``0.052735KiB`` is 54.0006 bytes,
    ``0.0527343k`` 53.99992 and ``53.9`` are rounded down to 53); the largest size that
    fits an int64 (``8000000T``) replicates."""
    import h5py

    pairs = _join_files(tmp_path)
    job = launch(mpiexec(_join_args(tmp_path, "--replicate-bytes", value), ranks), timeout=120)
    assert not job.timed_out and job.returncode == 0, job.describe()
    summary = json.loads(job.stdout)
    with h5py.File(tmp_path / "out.h5") as f:
        got = sorted(zip(f["lid"][...].tolist(), f["rid"][...].tolist()))
    assert got == pairs
    rows = np.array(summary["rank_rows"])
    if replicated:  # the heavy key's left rows stayed on their ranks
        assert rows.max() / rows.mean() <= 1.25, rows
    else:  # hash-partitioned: one rank holds all of key 11
        assert rows.max() / rows.mean() >= 1.3, rows


@pytest.mark.parametrize("ranks", [2, 3])
def test_cli_replicate_bytes_different_on_one_rank_is_an_agreed_error(tmp_path, ranks):
    """``--replicate-bytes`` 54 on rank 0, 0 on the others (an MPMD launch): the ranks
    would plan differently. One agreed error naming the argument, no hang, no output."""
    from _adversarial import mpmd

    _join_files(tmp_path)
    job = launch(mpmd((1, _join_args(tmp_path, "--replicate-bytes", "54")),
                      (ranks - 1, _join_args(tmp_path, "--replicate-bytes", "0"))),
                 timeout=90)
    assert not job.timed_out, job.describe()
    assert job.returncode == 1, job.describe()
    assert job.stderr.count("hpcproc: error:") == 1, job.describe()
    assert "replicate_bytes" in job.stderr, job.describe()
    assert "MPI_Abort" not in job.stderr + job.stdout, job.describe()
    assert not (tmp_path / "out.h5").exists()


def test_sizes_and_counts_are_parsed_exactly():
    """Through a float, sizes above 2**53 lost their last digits (``9007199254740993``
    was 9007199254740992) and long ones became infinity (OverflowError, not the
    ValueError the callers turn into a usage error). Now exact, and anything above an
    int64 is a ValueError."""
    from fractions import Fraction

    from hpcproc._units import parse_count, parse_size

    for text, want in (("9007199254740993", 2**53 + 1), ("1.5G", 3 << 29), ("64MiB", 64 << 20),
                       ("8191.9999999999999999T", int(Fraction("8191.9999999999999999") * 2**40)),
                       (str(2**63 - 1), 2**63 - 1), ("0.5", 0), (" 2 kb ", 2048)):
        assert parse_size(text) == want, text
    for text, want in (("9007199254740993", 2**53 + 1), ("2^62", 2**62), ("1.5k", 1500),
                       ("123456789012345678", 123456789012345678)):
        assert parse_count(text) == want, text
    for text in ("1" + "0" * 400, str(2**63), "8E", "9000000T"):
        with pytest.raises(ValueError):
            parse_size(text)
    for text in ("1" + "0" * 400, "2^63", "2^99999999999", "9223372036854775808"):
        with pytest.raises(ValueError):
            parse_count(text)
