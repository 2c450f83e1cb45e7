"""A checkpointed step loop: kill it at any moment, start it again, get the same result.

    mpiexec -n 2 python examples/checkpointed_loop.py CKPT_DIR --steps 20 --every 2

The state is a DistArray (a field), a DistTable (particles), JSON values and a numpy
scalar (optionally a per-rank random generator, ``--rng``). Every step is a pure
function of the state and the step number, computed by global row, so the result does
not depend on the number of ranks (except with ``--rng``, whose streams are per rank).
``SIGUSR1``/``SIGTERM`` make it save at the next step boundary and exit with status 85;
run again with the same directory (on any number of ranks) and it continues.

Rank 0 prints ``fresh``, ``restored STEP DIGEST``, ``step N`` when step N begins, and
``final DIGEST`` at the end (``--digests`` adds ``state STEP DIGEST`` after each step):
DIGEST is a SHA-256 of the whole global state, the same on any rank count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
from mpi4py import MPI

import hpcproc as hp


def initial_state(args, comm) -> dict:
    rank, size = comm.Get_rank(), comm.Get_size()
    lo, hi = hp.block_range(args.rows, size, rank)
    x = hp.DistArray(np.zeros((hi - lo, 3)), (args.rows, 3), lo, comm)
    m = args.rows // 2
    plo, phi = hp.block_range(m, size, rank)
    particles = hp.DistTable({"id": np.arange(plo, phi, dtype=np.int64),
                              "w": np.zeros(phi - plo)}, m, plo, comm)
    state = {"x": x, "particles": particles, "total": 0, "history": [],
             "scale": np.float32(1.0)}
    if args.rng:
        state["rng"] = np.random.default_rng([args.seed, rank])
    return state


def advance(step: int, state: dict, args, comm) -> None:
    """One step, in place; depends only on the global state and the step number."""
    x, p = state["x"], state["particles"]
    lo, hi = x.rows
    noise = np.random.default_rng([args.seed, step]).standard_normal(x.global_shape)[lo:hi]
    local = x.local * 0.9 + noise * float(state["scale"])
    if "rng" in state:
        local += state["rng"].standard_normal(local.shape) * 1e-3
    ids = p.local("id")
    w = p.local("w") + np.cos(ids * 0.01 + step)
    part = int(((ids * (step + 1)) % 1009).sum())
    total = state["total"] + comm.allreduce(part, op=MPI.SUM)
    state["x"] = x.with_local(local)
    state["particles"] = hp.DistTable({"id": ids, "w": w}, p.num_rows, p.offset, comm)
    state["total"] = int(total)
    state["history"] = (state["history"] + [int(total)])[-4:]
    state["scale"] = np.float32(state["scale"] * np.float32(0.999))


def digest(state: dict, comm) -> str | None:
    """SHA-256 of the global state (collective; the hex digest on rank 0)."""
    x = state["x"].gather()
    cols = state["particles"].gather()
    rngs = None
    if "rng" in state:
        rngs = comm.gather(json.dumps(hp.rng_state(state["rng"]), sort_keys=True))
    if comm.Get_rank() != 0:
        return None
    h = hashlib.sha256()
    h.update(x.tobytes())
    for name in sorted(cols):
        h.update(name.encode() + cols[name].tobytes())
    h.update(json.dumps([state["total"], state["history"]]).encode())
    h.update(state["scale"].tobytes())
    if rngs is not None:
        h.update("".join(rngs).encode())
    return h.hexdigest()


def say(comm, text: str) -> None:
    if comm.Get_rank() == 0:
        print(text, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", help="checkpoint directory")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rows", type=int, default=6000)
    ap.add_argument("--every", type=int, default=1, help="save every N steps")
    ap.add_argument("--keep", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds of 'compute' per step")
    ap.add_argument("--async", dest="asynchronous", action="store_true",
                    help="asynchronous saves (background writer)")
    ap.add_argument("--rng", action="store_true", help="add a per-rank random generator")
    ap.add_argument("--digests", action="store_true", help="print the state digest per step")
    ap.add_argument("--walltime", default=None, help="job time limit (seconds or HH:MM:SS)")
    ap.add_argument("--watchdog", type=float, default=0,
                    help="print every thread's stack and exit if still running after this "
                         "many seconds (debugging hangs)")
    args = ap.parse_args(argv)
    if args.watchdog:
        import faulthandler
        faulthandler.dump_traceback_later(args.watchdog, exit=True)
    comm = MPI.COMM_WORLD
    with hp.abort_on_error(comm):
        pids = comm.gather(os.getpid())
        say(comm, f"pids {' '.join(map(str, pids or []))}")
        with hp.Checkpointer(args.directory, comm, keep=args.keep, every_steps=args.every,
                             walltime=args.walltime) as ck:
            got = ck.restore()
            if got is None:
                start, state = 0, initial_state(args, comm)
                say(comm, "fresh")
            else:
                start, state = got
                say(comm, f"restored {start} {digest(state, comm)}")
            for step in ck.steps(start, args.steps, state, blocking=not args.asynchronous):
                say(comm, f"step {step}")
                advance(step, state, args, comm)
                if args.digests:
                    say(comm, f"state {step + 1} {digest(state, comm)}")
                if args.sleep:
                    time.sleep(args.sleep)
            say(comm, f"final {digest(state, comm)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
