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
