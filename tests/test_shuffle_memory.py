"""The exchange's memory budget, measured: peak resident memory under ``mpiexec -n 2``
(run once, from the serial session; needs Linux /proc)."""

import json
import sys
from pathlib import Path

import pytest

from support import run

SCRIPT = Path(__file__).with_name("_shuffle_memory.py")
#: What an operation needs, not what the allocator keeps: freed memory kept for reuse
#: (hpcproc.memory, on by default) would be counted in the base and reused in the peak.
GIVE_BACK = {"HPCPROC_RETAIN_MEMORY": "0"}


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_shuffle_peak_memory_stays_under_budget():
    rows, budget, unbounded = 4_000_000, 16 << 20, 1 << 30   # 64 MB per rank moved
    args = [sys.executable, str(SCRIPT), str(rows), str(budget), str(unbounded)]
    proc = run(args, ranks=2, timeout=180, env=GIVE_BACK)
    assert proc.returncode == 0, proc.stderr
    per_rank = json.loads(proc.stdout.strip().splitlines()[-1])
    for bounded, free in per_rank:
        assert bounded["moved"] > 3 * budget          # several times the budget moved
        assert bounded["rounds"] > 1
        assert 0 < bounded["extra"] <= budget, bounded  # peak RSS above input + output
        # without a budget, one round: the rows sent to the other rank go out from a
        # send buffer of one column's rows for other ranks (reused column after column;
        # the own rows are scattered straight into the result) beside the destination
        # array: about 0.3 of the data moved at 2 ranks (a send buffer with the rank's
        # own rows took over 0.4)
        assert free["rounds"] == 1 and 0 < free["extra"] < 0.4 * free["moved"], free


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_sort_groupby_join_peak_memory():
    """Peak memory above the input, per rank (README, "Memory"): the sort holds its
    output, 12 bytes per row (sorted keys, row numbers) and the exchange's budget; the
    group-by 12 bytes per row plus its per-group states (65536 groups), with every key
    distinct its output and under 48 bytes per row; the join its output
    plus both sides received and under 48 bytes per row of each side (all keys distinct)."""
    rows, budget = 2_000_000, 16 << 20
    proc = run([sys.executable, str(SCRIPT), "ops", str(rows), str(budget)], ranks=2,
               timeout=180, env=GIVE_BACK)
    assert proc.returncode == 0, proc.stderr
    for r in json.loads(proc.stdout.strip().splitlines()[-1]):
        data = r["input"]  # 16 bytes per row
        slack = 8 << 20    # allocator and interpreter noise
        assert r["sort"] <= data + 12 * rows + budget + slack, r
        assert r["groupby"] <= 12 * rows + 64 * 2**16 + budget + slack, r
        # every key distinct: the output, the 12 bytes per row, and one copy of the
        # 32-byte partial states (key, size, count, sum) in flight, not three (was 97
        # bytes per row in all before the states were freed as they moved)
        assert r["groupby_distinct"] <= r["groupby_distinct_output"] + 48 * rows + budget \
            + slack, r
        # both sides received + per row of each side: encoded keys, sort, groups
        assert r["join"] <= r["join_output"] + 2 * data + 2 * 48 * rows + budget + slack, r
