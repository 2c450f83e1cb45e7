"""MPI side of the batched adversarial API cases (launched by ``_adversarial.run_batch``).

``python _adversarial_driver.py MODULE BASE ID...`` runs, on every rank, the cases
``ID...`` of the case table ``MODULE.CASES`` in order. Per case: rank 0 creates
``BASE/<id>/`` and runs ``case.setup(dir)`` (plain h5py/numpy, no hpcproc), fingerprints
the directory, then every rank calls ``case.call(dir, comm)`` inside try/except and the
outcomes of all ranks are gathered on rank 0, which prints one line
``ADV {"id", "ranks": [outcome per rank], "seconds", "changed", "leftovers"}``. The
expectations are judged by pytest (``case.expect``), not here. A case that hangs or
aborts the job is detected by the launcher, which relaunches from the next case.
"""

import importlib
import json
import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from _adversarial import changed_files, leftovers, snapshot  # noqa: E402
from mpi4py import MPI  # noqa: E402


def jsonable(v):
    """Results as JSON: arrays to lists, numpy scalars to Python, NaN kept as NaN."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, np.generic):
        return v.item() if not isinstance(v, np.floating) else float(v)
    if isinstance(v, float) and math.isnan(v):
        return float("nan")
    return v


def outcome(case, d, comm) -> dict:
    t0 = time.monotonic()
    try:
        value = case.call(d, comm)
        out = {"ok": True, "value": jsonable(value)}
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: recorded, not fatal
        out = {"ok": False, "type": type(exc).__name__,
               "mro": [c.__name__ for c in type(exc).__mro__],
               "message": str(exc)[:500],
               "where": traceback.format_exc(limit=-3)[-800:]}
    out["seconds"] = time.monotonic() - t0
    return out


def main() -> None:
    module, base, ids = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    table = {c.id: c for c in importlib.import_module(module).CASES}
    comm = MPI.COMM_WORLD
    prepare = getattr(importlib.import_module(module), "prepare", None)
    if prepare is not None:
        prepare(base, comm)
    for cid in ids:
        case = table[cid]
        d = base / cid
        setup_error = None
        if comm.rank == 0:
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            try:
                case.setup(d)
            except Exception:  # noqa: BLE001
                setup_error = traceback.format_exc()[-1500:]
        setup_error = comm.bcast(setup_error, root=0)
        before = snapshot(d) if comm.rank == 0 and not setup_error else None
        comm.Barrier()
        res = {"ok": False, "type": "SetupError", "mro": [], "message": setup_error,
               "seconds": 0.0} if setup_error else outcome(case, d, comm)
        results = comm.gather(res, root=0)
        if comm.rank == 0:
            after = snapshot(d)
            line = {"id": cid, "ranks": results, "seconds": max(r["seconds"] for r in results),
                    "changed": changed_files(before or {}, after),
                    "leftovers": leftovers(d)}
            sys.stdout.write("ADV " + json.dumps(line) + "\n")
            sys.stdout.flush()
        comm.Barrier()
    os.environ.pop("HPCPROC_TRACEBACK", None)


if __name__ == "__main__":
    main()
