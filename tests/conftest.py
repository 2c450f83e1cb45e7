"""Shared fixtures and session hooks (helpers that tests import are in support.py).

Tests marked ``mpi`` run serially and under ``mpiexec -n 2`` / ``-n 3``
(see the Makefile); unmarked tests run once, serially (they may launch mpiexec)."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest


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


@pytest.fixture
def tracing(comm):
    """Tracing on for the test (all ranks start together), off and reset after it."""
    import hpcproc as hp
    from hpcproc.observe import phases

    comm.Barrier()
    hp.start_tracing()
    yield
    hp.stop_tracing()
    phases.reset_tracing()


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MiB tmpfs (mounting needs root); skipped with the reason where it cannot be
    mounted."""
    import subprocess

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
