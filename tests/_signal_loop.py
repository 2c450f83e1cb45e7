"""A checkpointed loop for tests/test_signals_early.py (run under mpiexec).

    python tests/_signal_loop.py CKPT_DIR [--early] [--pause S] [--before S] [--steps N]

With ``--early`` it calls ``hp.install_signal_handlers()`` before anything else (before
MPI is initialised). Every rank prints ``up RANK PID`` once that is done, waits
``--pause`` seconds, initialises MPI and prints ``mpi RANK``; ``--before`` seconds pass
before the Checkpointer is created (a signal then arrives "before the Checkpointer
exists"). Rank 0 prints ``start STEP`` (the restored or first step) and
``done TOTAL`` at the end; TOTAL is a pure function of the number of steps.
``--fail-rank R`` raises a ValueError on rank R alone inside ``Checkpointer.steps()``.
"""

import os
import sys

import hpcproc as hp

if "--early" in sys.argv:
    hp.install_signal_handlers()
print(f"up {os.environ.get('PMI_RANK', '0')} {os.getpid()}", flush=True)

import argparse  # noqa: E402 - after the handlers, on purpose
import time  # noqa: E402

import numpy as np  # noqa: E402

if "--pause" in sys.argv:
    time.sleep(float(sys.argv[sys.argv.index("--pause") + 1]))

from mpi4py import MPI  # noqa: E402

print(f"mpi {MPI.COMM_WORLD.rank}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("directory")
    ap.add_argument("--early", action="store_true")
    ap.add_argument("--pause", type=float, default=0.0)
    ap.add_argument("--before", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sleep", type=float, default=0.05)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--fail-rank", type=int, default=-1, help="raise on this rank only")
    ap.add_argument("--fail-step", type=int, default=2)
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    with hp.abort_on_error(comm):
        time.sleep(args.before)
        lo, hi = hp.block_range(args.rows, comm.size, comm.rank)
        with hp.Checkpointer(args.directory, comm, every_steps=1, keep=2) as ck:
            got = ck.restore()
            start, state = got if got else (0, {"x": hp.DistArray(
                np.zeros(hi - lo), (args.rows,), lo, comm), "total": 0})
            if comm.rank == 0:
                print(f"start {start}", flush=True)
            for step in ck.steps(start, args.steps, lambda: state):
                if step == args.fail_step and comm.rank == args.fail_rank:
                    raise ValueError(f"lone failure on rank {comm.rank} at step {step}")
                state["total"] += step
                state["x"] = state["x"].with_local(state["x"].local + step)
                time.sleep(args.sleep)
        x = state["x"].gather()
        if comm.rank == 0:
            assert np.all(x == sum(range(args.steps))), "wrong state"
            print(f"done {state['total']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
