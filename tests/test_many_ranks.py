"""Every capability at 16 and 8 ranks (oversubscribed, tiny data, ranks with no rows):
P-dependent bugs hide above 3 ranks. One ``mpiexec -n 16`` and one ``-n 8`` launch of
``_many_ranks_script.py``; the 16-rank launch saves a checkpoint that the 8-rank launch
restores (a restart on another rank count). Results are compared with numpy on rank 0
inside the job and asserted here per capability.
"""

import json
import sys
import time
from pathlib import Path

import pytest
from _adversarial import launch, mpiexec

from support import SERIAL_ONLY

pytestmark = SERIAL_ONLY

SCRIPT = Path(__file__).with_name("_many_ranks_script.py")
ORDER = [16, 8]  # 16 first: the 8-rank launch restores the 16-rank checkpoint
TIMEOUT = 240


@pytest.fixture(scope="module")
def launches(tmp_path_factory):
    """``{ranks: (results, seconds per capability, wall seconds, launch)}``."""
    shared = tmp_path_factory.mktemp("many")
    out = {}
    for ranks in ORDER:
        t0 = time.monotonic()
        res = launch(mpiexec([sys.executable, SCRIPT, shared], ranks), timeout=TIMEOUT)
        wall = time.monotonic() - t0
        line = next((ln for ln in res.stdout.splitlines() if ln.startswith("MANY ")), None)
        doc = json.loads(line[5:]) if line else {"results": {}, "seconds": {}}
        out[ranks] = (doc["results"], doc["seconds"], wall, res)
        print(f"\nmpiexec -n {ranks}: {wall:.1f} s wall", file=sys.stderr)
    return out


def _names():
    import ast
    tree = ast.parse(SCRIPT.read_text())
    return [n.name[4:] for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name.startswith("cap_")]


@pytest.mark.timeout(2 * TIMEOUT + 60)
@pytest.mark.parametrize("ranks", ORDER)
@pytest.mark.parametrize("capability", _names())
def test_capability(launches, ranks, capability):
    results, seconds, wall, res = launches[ranks]
    if capability not in results:
        started = [ln[6:] for ln in res.stderr.splitlines() if ln.startswith("START ")]
        pytest.fail(f"no result at {ranks} ranks (job {res.returncode}, timed out "
                    f"{res.timed_out}, last capability started: {started[-1:]})\n"
                    f"{res.stderr[-2500:]}")
    verdict = results[capability]
    if verdict.startswith("SKIP"):
        pytest.skip(verdict)
    assert verdict == "OK", verdict
