"""Particles that move between the ranks' slabs, redistributed every step.

The domain [0, 1) is split along x into one slab per rank; each step every particle
moves (periodic boundaries), and ``hp.exchange`` sends every particle (all of its
columns: one row) to the rank that now owns its slab. At the end every rank checks it
holds exactly its slab's particles, and rank 0 prints a summary.

Run:  mpiexec -n 3 python examples/particles_redistribute.py [OUT.h5] [--steps N]
"""

import argparse

import numpy as np
from mpi4py import MPI

import hpcproc as hp


def owner(x: np.ndarray, size: int) -> np.ndarray:
    """Rank whose slab holds position ``x`` (slabs of equal width)."""
    return np.minimum((x * size).astype(np.int64), size - 1)


def main(out: str, steps: int, n: int, dt: float) -> dict:
    comm = MPI.COMM_WORLD
    size = comm.size
    rng = np.random.default_rng(1234)  # every rank draws the same set, keeps its share
    x0, v = rng.random(n), rng.standard_normal(n) * 0.05
    lo, hi = hp.block_range(n, size, comm.rank)
    cols = {"id": np.arange(lo, hi), "x": x0[lo:hi], "vx": v[lo:hi]}
    moved = 0
    for _ in range(steps):
        cols["x"] = (cols["x"] + dt * cols["vx"]) % 1.0            # local physics
        cols, info = hp.exchange(cols, owner(cols["x"], size), comm)  # collective
        moved += int(info["sent"].sum() - info["sent"][comm.rank])
    assert np.all(owner(cols["x"], size) == comm.rank), "a particle is on the wrong rank"
    table = hp.DistTable.from_local(cols, comm)
    hp.write_table(out, table, group="/particles", comm=comm)
    counts = comm.gather(len(cols["id"]), root=0)
    moved = comm.reduce(moved, root=0)
    if comm.rank == 0:
        print(f"{n} particles, {steps} steps on {size} ranks: {moved} rank changes; "
              f"particles per rank {counts}; wrote {out}")
    return {"counts": counts}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default="particles_out.h5")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--particles", type=int, default=100_000)
    p.add_argument("--dt", type=float, default=0.5)
    a = p.parse_args()
    with hp.abort_on_error():
        main(a.out, a.steps, a.particles, a.dt)
