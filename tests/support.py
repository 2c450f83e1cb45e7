"""What test modules share: paths, the serial-only mark, and helpers that run commands
(always with a timeout) or set up files on rank 0. Fixtures live in conftest.py."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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


def child_env() -> dict:
    """This process's environment without the launcher's PMI connection (a job started
    from inside an MPI rank must not inherit it)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI_LOCAL"))}


def run(cmd, *, ranks=None, timeout=120, env=None, check=False, **kwargs):
    """Run a command (under ``mpiexec -n ranks`` when given) with a hard timeout."""
    full = [MPIEXEC, "-n", str(ranks)] + list(cmd) if ranks else list(cmd)
    merged = child_env()
    merged.update(env or {})
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=merged,
                          **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{full} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def hpcproc_cmd(*args):
    return [str(BIN / "hpcproc"), *map(str, args)]


def signal_after(cmd, *, ranks, lines: int, prefix: str, sig, timeout=120, env=None,
                 cwd=None):
    """Launch ``cmd`` under ``mpiexec -n ranks``; once ``lines`` lines of its standard
    output start with ``prefix``, send ``sig`` to mpiexec (which forwards it to the ranks).
    Returns ``(exit status, stdout, stderr)``; the job is killed at ``timeout``."""
    proc = subprocess.Popen([MPIEXEC, "-n", str(ranks), *map(str, cmd)], cwd=cwd,
                            env=child_env() if env is None else env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen, count, deadline = [], 0, time.monotonic() + timeout
    try:
        for line in proc.stdout:
            seen.append(line)
            count += line.startswith(prefix)
            if count >= lines:
                proc.send_signal(sig)
                break
            assert time.monotonic() < deadline, "no progress before the timeout"
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(seen) + out, err


def uneven(data, comm, empty_rank=None):
    """``data`` as a DistArray in uneven blocks (rank r holds a share growing with r);
    rank ``empty_rank`` (modulo the size, when there are several ranks) holds none."""
    import hpcproc as hp

    n, size = len(data), comm.size
    weights = np.arange(1, size + 1, dtype=float)
    if empty_rank is not None and size > 1:
        weights[empty_rank % size] = 0
    cuts = np.concatenate(([0], np.round(np.cumsum(weights) / weights.sum() * n))).astype(int)
    return hp.DistArray.from_local(data[cuts[comm.rank]:cuts[comm.rank + 1]], comm)


def bits(value):
    """A value's dtype and bytes: equal only when bit-identical (NaN payloads, -0.0)."""
    a = np.asarray(value)
    return a.dtype.str, a.tobytes()


def same_bits(keys, got, ref, what=""):
    """Assert that ``got[k]`` and ``ref[k]`` are bit-identical for every key."""
    for k in keys:
        assert bits(got[k]) == bits(ref[k]), (what, k, got[k], ref[k])


def first_empty(data, comm):
    """:func:`uneven` blocks with rank 0 holding none (when there are several ranks)."""
    return uneven(data, comm, empty_rank=0)


def one_block(data, comm, axis=None, ddof=0, skipna=False, exact=False):
    """``hp.stats``' algorithm (``exact``: the correctly rounded one) on the whole data as
    one block, one thread: the reference that every layout must reproduce bit for bit."""
    import hpcproc as hp
    from hpcproc.kernels import moment_state as ms

    old = hp.set_threads(1)
    try:
        kd = np.float32 if data.dtype == np.float16 else data.dtype
        flat = np.ascontiguousarray(data.astype(kd))
        block = flat.reshape(len(data), -1) if axis == 0 else flat.reshape(-1, 1)
        state, ints = ms.block_state(block, comm, with_ints=data.dtype.kind in "iub",
                                     exact=exact)
        out = ms.finalize(state, ints, ddof, skipna)
    finally:
        hp.set_threads(old)
    return {k: v[0] for k, v in out.items()} if axis is None else out


def dict_join_pairs(lkeys, rkeys, how):
    """The reference equi-join: sorted (left row, right row, or -1 for an unmatched left
    row of a left join) pairs, by a dict of right rows per key. Keys are hashable values
    already normalised by the caller (NaN as one token, -0.0 as 0.0, ...)."""
    index = {}
    for j, key in enumerate(rkeys):
        index.setdefault(key, []).append(j)
    pairs = []
    for i, key in enumerate(lkeys):
        hits = index.get(key, [])
        pairs += [(i, j) for j in hits]
        if how == "left" and not hits:
            pairs.append((i, -1))
    return sorted(pairs)


def balloon_reports_free_pages() -> bool:
    """Read by the tests, independently of hpcproc: a virtio balloon (device 0x0005)
    offering free page reporting (feature bit 5)."""
    for dev in Path("/sys/bus/virtio/devices").glob("*"):
        try:
            if (dev / "device").read_text().strip() == "0x0005" and \
                    (dev / "features").read_text().strip()[5:6] == "1":
                return True
        except OSError:
            continue
    return False
