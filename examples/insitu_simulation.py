"""A 2-D heat-diffusion simulation with in-situ analysis, snapshots and checkpoint/restart.

    mpiexec -n 2 python examples/insitu_simulation.py RUN_DIR --steps 2000
    sbatch slurm/restartable.sbatch python examples/insitu_simulation.py RUN_DIR --steps 2000000

The temperature field T (``--ny`` x ``--nx``, float64) is split into blocks of rows, one
per rank. Each step every rank exchanges its first and last row with its neighbours
(``Sendrecv`` on the simulation's own communicator; the domain edges are held at 0) and
applies the explicit five-point stencil ``T += alpha * laplacian(T)``. hpcproc does the
rest, on the same communicator:

* every ``--analyse-every`` steps, in situ: ``hp.stats`` (heat, mean, std, min, max) and
  ``hp.histogram`` (32 bins over [0, 2]) of the field, without writing it out;
* every ``--snapshot-every`` steps: ``hp.write`` of the field to ``RUN_DIR/snap-STEP.h5``
  (dataset ``/T``; all ranks write their rows in parallel);
* ``hp.Checkpointer`` in ``RUN_DIR/ckpt`` saves the field (a DistArray), the in-situ
  history and the time every ``--checkpoint-every`` steps, and on SIGUSR1/SIGTERM saves
  at the next step and exits with status 85 (restartable.sbatch then requeues the job).
  Started again with the same RUN_DIR (on any number of ranks), it resumes.

At the end rank 0 writes the in-situ history to ``RUN_DIR/insitu.json`` and all ranks
write the final field to ``RUN_DIR/final.h5``. Rank 0 prints ``fresh start`` or
``resumed at step S``, one line per analysis, and ``done``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from mpi4py import MPI

import hpcproc as hp

HIST_BINS, HIST_RANGE = 32, (0.0, 2.0)


def initial_field(ny: int, nx: int, rows: tuple[int, int]) -> np.ndarray:
    """Rows ``rows`` of the initial temperature: a smooth bump plus a hot square."""
    i = np.arange(*rows, dtype=np.float64)[:, None]
    j = np.arange(nx, dtype=np.float64)[None, :]
    t = np.sin(np.pi * (i + 0.5) / ny) * np.sin(np.pi * (j + 0.5) / nx)
    hot = (i >= ny // 4) & (i < ny // 2) & (j >= nx // 4) & (j < nx // 2)
    return t + hot


def exchange_halos(u: np.ndarray, comm) -> tuple[np.ndarray, np.ndarray]:
    """The row above this block and the row below it (zeros at the domain edges)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    up = rank - 1 if rank > 0 else MPI.PROC_NULL
    down = rank + 1 if rank < size - 1 else MPI.PROC_NULL
    above, below = np.zeros(u.shape[1]), np.zeros(u.shape[1])
    comm.Sendrecv(u[0], dest=up, sendtag=11, recvbuf=below, source=down, recvtag=11)
    comm.Sendrecv(u[-1], dest=down, sendtag=12, recvbuf=above, source=up, recvtag=12)
    return above, below


def diffuse(u: np.ndarray, above: np.ndarray, below: np.ndarray, alpha: float) -> np.ndarray:
    """One explicit step of the five-point stencil on a block with its halo rows."""
    p = np.zeros((u.shape[0] + 2, u.shape[1] + 2))
    p[0, 1:-1], p[-1, 1:-1], p[1:-1, 1:-1] = above, below, u
    lap = (p[:-2, 1:-1] + p[2:, 1:-1]) + (p[1:-1, :-2] + p[1:-1, 2:]) - 4.0 * u
    return u + alpha * lap


def analyse(field: hp.DistArray, step: int) -> dict:
    """In-situ statistics and histogram of the field (collective)."""
    s = hp.stats(field)
    counts, _ = hp.histogram(field, bins=HIST_BINS, range=HIST_RANGE)
    return {"step": step, "heat": s["sum"], "mean": s["mean"], "std": s["std"],
            "min": s["min"], "max": s["max"], "hist": counts.tolist()}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="output directory (checkpoints, snapshots, results)")
    ap.add_argument("--nx", type=int, default=256)
    ap.add_argument("--ny", type=int, default=256)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--alpha", type=float, default=0.2, help="diffusion number (<= 0.25)")
    ap.add_argument("--analyse-every", type=int, default=50)
    ap.add_argument("--snapshot-every", type=int, default=500)
    ap.add_argument("--checkpoint-every", type=int, default=200)
    ap.add_argument("--sleep", type=float, default=0.0,
                    help="extra seconds per step (stands in for a heavier computation)")
    args = ap.parse_args(argv)
    if not 0 < args.alpha <= 0.25:
        ap.error("--alpha must be in (0, 0.25] for a stable explicit scheme")
    for name in ("nx", "ny", "steps", "analyse_every", "snapshot_every", "checkpoint_every"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv=None, comm=None) -> int:
    args = parse_args(argv)
    comm = comm if comm is not None else MPI.COMM_WORLD
    if args.ny < comm.Get_size():  # the same answer on every rank: no communication yet
        raise ValueError(f"--ny {args.ny} is smaller than the number of ranks")
    run_dir = args.run_dir
    say = print if comm.Get_rank() == 0 else (lambda *a, **k: None)

    with hp.Checkpointer(os.path.join(run_dir, "ckpt"), comm, keep=2,
                         every_steps=args.checkpoint_every) as ck:
        got = ck.restore()
        if got is None:
            lo, hi = hp.block_range(args.ny, comm.Get_size(), comm.Get_rank())
            field = hp.DistArray(initial_field(args.ny, args.nx, (lo, hi)),
                                 (args.ny, args.nx), lo, comm)
            start, state = 0, {"T": field, "time": 0.0, "history": []}
            say("fresh start", flush=True)
        else:
            start, state = got
            say(f"resumed at step {start}", flush=True)

        for step in ck.steps(start, args.steps, state):
            field = state["T"]
            above, below = exchange_halos(field.local, comm)
            state["T"] = field = field.with_local(diffuse(field.local, above, below, args.alpha))
            state["time"] += args.alpha  # in units of dx^2 / D
            done = step + 1
            if done % args.analyse_every == 0:
                rec = analyse(field, done)
                state["history"] = state["history"] + [rec]
                say(f"step {done:7d}  heat {rec['heat']:.6f}  mean {rec['mean']:.6f}  "
                    f"max {rec['max']:.6f}", flush=True)
            if done % args.snapshot_every == 0:
                hp.write(os.path.join(run_dir, f"snap-{done:07d}.h5"), "/T", field,
                         comm=comm, attrs={"step": done, "time": state["time"]})
            if args.sleep:
                time.sleep(args.sleep)

    hp.write(os.path.join(run_dir, "final.h5"), "/T", state["T"], comm=comm,
             attrs={"step": args.steps, "time": state["time"]})
    if comm.Get_rank() == 0:
        tmp = os.path.join(run_dir, "insitu.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"steps": args.steps, "history": state["history"]}, f)
        os.replace(tmp, os.path.join(run_dir, "insitu.json"))
    say("done", flush=True)
    return 0


if __name__ == "__main__":
    with hp.abort_on_error():
        sys.exit(main())
