"""What test modules share: paths, the serial-only mark, and helpers that run commands
(always with a timeout) or set up files on rank 0. Fixtures live in conftest.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MPIEXEC = os.environ.get("HPCPROC_MPIEXEC", str(BIN / "mpiexec"))
#: ``pytestmark = SERIAL_ONLY`` for modules whose tests launch their own MPI jobs (or
#: Slurm jobs): they run in the serial session, never inside an ``mpiexec`` launch.
SERIAL_ONLY = pytest.mark.skipif(
    int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))) > 1,
    reason="launches its own processes: runs in the serial session only")


def on_root(comm, fn, *args, **kwargs):
    """Run ``fn`` on rank 0 (e.g. write a test file with plain h5py); all ranks wait.

    An error on rank 0 is re-raised on every rank so a failing setup cannot hang the job.
    """
    err = None
    if comm.rank == 0:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            err = repr(exc)
    err = comm.bcast(err, root=0)
    if err:
        raise RuntimeError(f"setup on rank 0 failed: {err}")


def run(cmd, *, ranks=None, timeout=120, env=None, check=False, **kwargs):
    """Run a command (under ``mpiexec -n ranks`` when given) with a hard timeout."""
    full = [MPIEXEC, "-n", str(ranks)] + list(cmd) if ranks else list(cmd)
    # A child of an MPI rank must not inherit the launcher's PMI connection.
    merged = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI_LOCAL"))}
    merged.update(env or {})
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=merged,
                          **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{full} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def hpcproc_cmd(*args):
    return [str(BIN / "hpcproc"), *map(str, args)]
