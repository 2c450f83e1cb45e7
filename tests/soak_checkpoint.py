"""Long kill -9 soak of checkpoint/restart (the CI test runs a short version).

    .venv/bin/python tests/soak_checkpoint.py --trials 200 [--ranks 3] [--seed 1]

Each trial kills ``examples/checkpointed_loop.py`` at a random point of a save (crash
hooks in every window of the commit protocol, or SIGKILL from outside at a random time,
one rank or the whole job), restarts it, and checks that it restored the newest
committed step with exactly the reference state; completed runs must end with the
reference result. Exits non-zero with the evidence on the first violation.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ckpt_harness import kill_trials  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="hpcproc-soak-") as tmp:
        stats = kill_trials(tmp, args.trials, args.seed, ranks=args.ranks,
                            log=None if args.quiet else print)
    print(f"soak passed: {stats} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
