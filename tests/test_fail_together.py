"""A rank that really runs out of memory inside the exchange, the join's skew plan or the
hash group-by: every rank raises the same MemoryError naming that rank, nobody hangs.

Each case runs ``_fail_together_driver.py`` under ``mpiexec`` at 2 and 3 ranks; the last
rank caps its address space (``RLIMIT_AS``) so that a real allocation fails there between
two collectives. Before the fix the other ranks waited in the next collective forever
(these tests then time out). After the error, a small join on the same ranks is checked
against a dict join: the library communicator is still usable and in step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _adversarial import launch, mpiexec

from support import SERIAL_ONLY

pytestmark = SERIAL_ONLY
DRIVER = Path(__file__).with_name("_fail_together_driver.py")
#: The exception each case raises on every rank: where it happened, then the failing rank
WHAT = {"exchange": "exchange", "rounds": "exchange", "skew": "join", "replicate": "join",
        "groupby": "group-by"}


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("case", sorted(WHAT))
def test_one_rank_out_of_memory_fails_every_rank(case, ranks):
    job = launch(mpiexec([sys.executable, DRIVER, case], ranks), timeout=90)
    assert not job.timed_out, f"hung ({job.seconds:.0f} s)\n{job.stdout}\n{job.stderr}"
    assert job.returncode == 0, job.stderr
    victim = ranks - 1
    every = json.loads(job.stdout.strip().splitlines()[-1])
    assert len(every) == ranks, job.stdout
    errors = {text for text, _ in every}
    # one error, the same on every rank: the victim's MemoryError, naming it
    assert len(errors) == 1, every
    text = errors.pop()
    assert text.startswith(f"MemoryError: {WHAT[case]}: rank {victim} failed: "), text
    assert "Unable to allocate" in text, text  # the original error's own message
    assert all(ok for _, ok in every), every  # then a join on the same ranks: right


def test_the_error_every_rank_raises_keeps_the_type_and_names_the_rank():
    """``failed_on``: the failing rank's type where a message makes one (numpy's
    _ArrayMemoryError: its base MemoryError), else RemoteError; the message names the
    rank and the original error, the operation once."""
    import numpy as np

    from hpcproc.comm import failed_on
    from hpcproc.errors import RemoteError

    try:
        np.empty(1 << 62, np.uint8)
    except MemoryError as err:
        numpy_error = err
    got = failed_on(numpy_error, 3, "exchange")
    assert type(got) is MemoryError
    assert str(got) == f"exchange: rank 3 failed: MemoryError: {numpy_error}"
    got = failed_on(ValueError("exchange: out['x'] has room for 1 rows"), 0, "exchange")
    assert type(got) is ValueError
    assert str(got) == "exchange: rank 0 failed: out['x'] has room for 1 rows"

    class Picky(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}/{b}")

    got = failed_on(Picky(1, 2), 1, "join")
    assert type(got) is RemoteError and str(got) == "join: rank 1 failed: Picky: 1/2"
