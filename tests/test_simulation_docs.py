"""docs/simulation.md's code blocks, run as printed under mpiexec (1, 2, 3 ranks, and a
2x2 grid on 4) against plain numpy: a 2-D grid's row blocks, ghost-row reads, the
adaptive time-step loop (fresh, restarted on other rank counts, stopped by SIGUSR1)."""

import json
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

from hpcproc import block_range
from support import MPIEXEC, REPO, SERIAL_ONLY, child_env, signal_after

pytestmark = SERIAL_ONLY  # launches its own processes

DOC = (REPO / "docs" / "simulation.md").read_text()
PRELUDE = "import numpy as np\nfrom mpi4py import MPI\nimport hpcproc as hp\n"
NY, NX, T_END = 50, 7, 40.0


def blocks(heading):
    """The python code blocks of the section ``## heading`` of docs/simulation.md."""
    section = DOC.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]


def launch(ranks, code, cwd, timeout=180, check=True):
    prog = cwd / f"prog-{abs(hash(code)) % 10**8}.py"
    prog.write_text(PRELUDE + code)
    proc = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, str(prog)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=child_env())
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def init_file(path):
    """A chunked field (4-row chunks: chunk-aligned blocks differ from block_range's)."""
    i = np.arange(NY)[:, None] + 0.5
    j = np.arange(NX)[None, :] + 0.5
    u = np.sin(np.pi * i / NY) * np.sin(np.pi * j / NX)
    u[NY // 4:NY // 2, 2:4] += 1.0
    with h5py.File(path, "w") as f:
        f.create_dataset("T", data=u, chunks=(4, NX), compression="gzip")
    return u


def reference(u, t_end, every=40):
    """Independent serial solver: the whole field with a zero border."""
    t, step, snaps = 0.0, 0, {}
    while t < t_end:
        dt = 0.2 / (1.0 + float(np.abs(u).max()))
        p = np.pad(u, 1)
        u = u + dt * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
                      - 4.0 * p[1:-1, 1:-1])
        t, step = t + dt, step + 1
        if step % every == 0:
            snaps[step] = u.copy()
    return u, step, snaps


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_ghost_rows_read_and_exchange(tmp_path, ranks):
    data = init_file(tmp_path / "init.h5")
    read, helpers = blocks("Your own rows, with ghost rows")
    check = (
        "exchange_ghosts(u, comm)\n"
        "np.save(f'u-{comm.rank}.npy', u)\n"
        "assert T.local.base is u or np.shares_memory(T.local, u)\n"
        "try:  # the default decomposition of a chunked dataset is not block_range's\n"
        "    hp.read('init.h5', '/T', comm=comm, out=u[1:-1])\n"
        "    print('default ok')\n"
        "except ValueError as exc:\n"
        "    print('default refused:', exc)\n")
    out = launch(ranks, read + helpers + check, tmp_path).stdout
    for r in range(ranks):
        lo, hi = block_range(NY, ranks, r)
        u = np.load(tmp_path / f"u-{r}.npy")
        np.testing.assert_array_equal(u[1:-1], data[lo:hi])
        np.testing.assert_array_equal(u[0], data[lo - 1] if lo > 0 else 0.0)
        np.testing.assert_array_equal(u[-1], data[hi] if hi < NY else 0.0)
    if ranks == 3:  # 17/17/16 balanced vs 20/16/14 chunk-aligned: a clear refusal
        assert out.count("default refused:") == 3 and "layout='balanced'" in out, out


def loop_program(t_end, slow=False):
    helpers = blocks("Your own rows, with ghost rows")[1]
    (loop,) = blocks("An adaptive time-step loop")
    if slow:  # the same loop, slowed down, telling the test it runs
        helpers += ("import time as _time\n_fast_dt = stable_dt\n"
                    "def stable_dt(u):\n    _time.sleep(0.01)\n"
                    "    print('tick', flush=True)\n    return _fast_dt(u)\n")
    return f"t_end = {t_end!r}\n" + helpers + loop


def check_outputs(run, ref, steps, snaps):
    with h5py.File(run / "final.h5") as f:
        np.testing.assert_array_equal(f["T"][...], ref)
    with h5py.File(run / "snaps.h5") as f:
        got = sorted(int(k) for k in f["T"])
        assert got == sorted(snaps) == list(range(40, steps + 1, 40))
        for n in got:
            np.testing.assert_array_equal(f[f"T/{n:07d}"][...], snaps[n])


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_adaptive_loop_matches_serial(tmp_path, ranks):
    data = init_file(tmp_path / "init.h5")
    ref, steps, snaps = reference(data, T_END)
    assert steps > 200  # the step size shrinks with the peak: more than a fixed 0.2
    launch(ranks, loop_program(T_END), tmp_path)
    check_outputs(tmp_path / "run", ref, steps, snaps)
    saved = sorted(p.name for p in (tmp_path / "run" / "ckpt").iterdir()
                   if p.name.startswith("step-"))
    assert saved == [f"step-{n:012d}" for n in range(100, steps + 1, 100)][-3:]


def test_adaptive_loop_restarted_replays_snapshots(tmp_path):
    """A run to t=25 on 2 ranks, extended to T_END on 3: the restart replays the steps
    after its last checkpoint and re-writes their snapshots (identical: skipped)."""
    data = init_file(tmp_path / "init.h5")
    _, first_steps, _ = reference(data, 25.0)
    assert first_steps % 100 >= 40  # a snapshot after the last checkpoint is replayed
    launch(2, loop_program(25.0), tmp_path)
    with h5py.File(tmp_path / "run" / "snaps.h5") as f:
        before = {k: f["T"][k][...] for k in f["T"]}
    launch(3, loop_program(T_END), tmp_path)
    ref, steps, snaps = reference(data, T_END)
    check_outputs(tmp_path / "run", ref, steps, snaps)
    with h5py.File(tmp_path / "run" / "snaps.h5") as f:
        for k, v in before.items():
            np.testing.assert_array_equal(f["T"][k][...], v)


def test_adaptive_loop_stops_on_sigusr1_and_resumes(tmp_path):
    data = init_file(tmp_path / "init.h5")
    prog = tmp_path / "slow.py"
    prog.write_text(PRELUDE + loop_program(T_END, slow=True))
    status, _, err = signal_after([sys.executable, prog], ranks=3, lines=3 * 50,
                                  prefix="tick", sig=signal.SIGUSR1, cwd=tmp_path)
    assert status == 85, err  # signalled after 50 steps on 3 ranks
    assert "SIGUSR1: saving step" in err and "Traceback" not in err, err
    assert not (tmp_path / "run" / "final.h5").exists()
    ckpts = [p.name for p in (tmp_path / "run" / "ckpt").iterdir()
             if p.name.startswith("step-")]
    assert ckpts  # saved at the step the signal was seen
    launch(1, loop_program(T_END), tmp_path)  # resumed on one rank
    ref, steps, snaps = reference(data, T_END)
    check_outputs(tmp_path / "run", ref, steps, snaps)


@pytest.mark.parametrize("ranks,grid", [(1, (1, 1)), (2, (1, 2)), (3, (3, 1)), (4, (2, 2))])
def test_2d_grid_passes_row_blocks(tmp_path, ranks, grid):
    (code,) = blocks("Only axis 0 is distributed")
    setup = (
        f"comm = MPI.COMM_WORLD\npx, py = {grid}\nny, nx = 23, 11\n"
        "prow, pcol = divmod(comm.rank, py)\n"
        "rlo, rhi = hp.block_range(ny, px, prow)\nclo, chi = hp.block_range(nx, py, pcol)\n"
        "field = np.arange(ny * nx, dtype=np.float64).reshape(ny, nx) ** 1.5\n"
        "tile = field[rlo:rhi, clo:chi].copy()\n")
    report = "if comm.rank == 0:\n    print(json.dumps({k: float(v) for k, v in s.items()}))\n"
    out = launch(ranks, "import json\n" + setup + code + report, tmp_path).stdout
    field = np.arange(23 * 11, dtype=np.float64).reshape(23, 11) ** 1.5
    with h5py.File(tmp_path / "field.h5") as f:
        np.testing.assert_array_equal(f["T"][...], field)
    s = json.loads(out.splitlines()[-1])
    assert s["count"] == field.size and s["min"] == field.min() and s["max"] == field.max()
    assert s["mean"] == pytest.approx(field.mean(), rel=1e-12)


@pytest.mark.parametrize("ranks", [1, 3])
def test_where_the_time_goes(tmp_path, ranks):
    (code,) = blocks("Where the time goes")
    setup = ("comm = MPI.COMM_WORLD\n"
             "T = hp.DistArray.from_local(np.arange(100.0 * (comm.rank + 1)), comm)\n")
    after = ("if comm.rank == 0:\n"
             "    print('RESULT', low, high, summary['calls']['hp.quantile']['calls'],\n"
             "          summary['calls']['hp.stats']['calls_per_rank'])\n")
    out = launch(ranks, setup + code + after, tmp_path).stdout
    full = np.concatenate([np.arange(100.0 * (r + 1)) for r in range(ranks)])
    low, high, nq, nstats = out.split("RESULT ", 1)[1].split(" ", 3)
    assert (float(low), float(high)) == tuple(np.quantile(full, [0.01, 0.99]))
    assert int(nq) == 1 and json.loads(nstats) == [1] * ranks
    assert "library calls" in out and "hp.quantile" in out
