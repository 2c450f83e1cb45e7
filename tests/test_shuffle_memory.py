"""The exchange's memory budget, measured: peak resident memory under ``mpiexec -n 2``
(run once, from the serial session; needs Linux /proc)."""

import json
import sys
from pathlib import Path

import pytest

from conftest import run

SCRIPT = Path(__file__).with_name("_shuffle_memory.py")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_shuffle_peak_memory_stays_under_budget():
    rows, budget, unbounded = 4_000_000, 16 << 20, 1 << 30   # 64 MB per rank moved
    args = [sys.executable, str(SCRIPT), str(rows), str(budget), str(unbounded)]
    proc = run(args, ranks=2, timeout=180)
    assert proc.returncode == 0, proc.stderr
    per_rank = json.loads(proc.stdout.strip().splitlines()[-1])
    for bounded, free in per_rank:
        assert bounded["moved"] > 3 * budget          # several times the budget moved
        assert bounded["rounds"] > 1
        assert 0 < bounded["extra"] <= budget, bounded  # peak RSS above input + output
        # without a budget the send/receive buffers alone take about half the data
        assert free["rounds"] == 1 and free["extra"] > 0.4 * free["moved"] > budget, free
