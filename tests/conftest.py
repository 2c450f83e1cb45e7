"""Shared fixtures. Tests marked ``mpi`` run serially and under ``mpiexec -n 2`` / ``-n 3``
(see the Makefile); unmarked tests run once, serially (they may launch mpiexec)."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
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


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Under mpiexec every rank gets its own pytest base temp dir: ranks sharing pytest's
    default one race in its clean-up of old numbered dirs."""
    rank = os.environ.get("PMI_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK")
    if rank is not None and not config.option.basetemp:
        config.option.basetemp = os.path.join(
            tempfile.gettempdir(), f"hpcproc-pytest-{os.getppid()}-rank{rank}")


def _mpich_segments() -> set:
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("mpich_shm_")}
    except OSError:
        return set()


def _mapped_segments() -> set:
    names = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/maps") as f:
                names.update(line.rsplit("/", 1)[-1].split()[0] for line in f
                             if "/dev/shm/mpich_shm_" in line)
        except OSError:
            continue
    return names


def pytest_sessionstart(session):
    session.config._mpich_segments = _mpich_segments()


def pytest_sessionfinish(session):
    """Remove the shared-memory segments that MPICH leaves in /dev/shm when a job of
    this session was killed or aborted (the fault tests do that on purpose): only
    segments created during the session and mapped by no process."""
    if os.environ.get("PMI_RANK", "0") != "0":
        return
    new = _mpich_segments() - getattr(session.config, "_mpich_segments", set())
    if not new:
        return
    for name in new - _mapped_segments():
        with contextlib.suppress(OSError):
            os.unlink(os.path.join("/dev/shm", name))


def pytest_unconfigure(config):
    base = config.option.basetemp
    if base and os.path.basename(str(base)).startswith("hpcproc-pytest-"):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def comm():
    from mpi4py import MPI
    return MPI.COMM_WORLD


@pytest.fixture
def shared_tmp(comm):
    """A temporary directory made on rank 0, its path broadcast, removed at the end."""
    path = tempfile.mkdtemp(prefix="hpcproc-test-") if comm.rank == 0 else None
    path = Path(comm.bcast(path, root=0))
    yield path
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


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
