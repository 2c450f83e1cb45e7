"""Public names of the kernel engine; ``import hpcproc`` stays cheap (serial only)."""

import subprocess
import sys

from support import SERIAL_ONLY

pytestmark = SERIAL_ONLY  # launches its own processes


def test_import_does_not_load_numba_and_names_resolve():
    code = ("import sys, hpcproc as hp; assert 'numba' not in sys.modules; "
            "import hpcproc.compute.histogram, hpcproc.compute.quantile, hpcproc.compute.stats; "
            "f = [hp.stats, hp.histogram, hp.histogram2d, hp.quantile, hp.map, hp.map_blocks, "
            "hp.reduce, hp.scan, hp.stats_file, hp.generate]; "
            "assert all(callable(g) and not isinstance(g, type(sys)) for g in f), f; "
            "assert 'numba' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
