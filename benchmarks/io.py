"""IO benchmark: hpcproc's read and write paths against the raw limit, in the same run.

Run serially (it launches every measurement itself with ``mpiexec``)::

    .venv/bin/python benchmarks/io.py [--size 1G] [--repeats 5] [--ranks 2] [--keep]

It generates (once) a contiguous float64 dataset ``/x`` of ``--size`` bytes in
``benchmarks/data/``, warms the page cache, then runs every case below once per repeat,
each in a fresh ``mpiexec -n RANKS`` job bounded by a timeout, in an order that changes
from repeat to repeat (see :func:`schedule`). Every case times only the transfer, with ``MPI_Wtime`` between
barriers; a sample is the slowest rank's time (max over ranks).

===================  =====================================================================
raw_read             ``native/bin/rawio read``: ``pread`` of each rank's block of the
                     dataset's exact byte range into a buffer allocated before the clock
hp_read              ``hp.read(path, "/x")`` (method auto = direct)
raw_write            ``native/bin/rawio write --create``: ``pwrite`` + ``fsync`` of the
                     same number of bytes into a new file
hp_write             ``hp.write(out, "/x", x, fsync=True)`` of the same data (contiguous)
hp_read_h5py         ``hp.read(..., method="h5py")``
handwritten_read     what users write by hand: each rank opens the file with h5py and
                     reads ``f["x"][lo:hi]``
raw_read_fresh       rawio with ``--alloc-in-timing``: the buffer is new memory, so the
                     page faults on it are timed too (as for any reader returning a new
                     array)
raw_read_dd          rawio with ``--bs 1M``: a 1 MiB buffer reused, like ``dd bs=1M``
hp_read_steady       ``hp.read`` called 4 times in one job (each result dropped before the
                     next call): the median of calls 2-4, i.e. hpcproc's read path in a
                     running program, without the first call's one-off costs
*_memwarm            raw_read, hp_read, raw_write and hp_write again, each job first
                     touching and freeing as much anonymous memory as its block
                     (``--warm-mem``), untimed, just before the clock starts
===================  =====================================================================

Why the ``_memwarm`` rows: on a VM whose host reclaims free guest memory (virtio-balloon
free page reporting), the first touch of memory that has been free for a few seconds
costs a host page fault per page, often 10x the normal cost or more, and a fresh
process's new arrays and a new file's page cache are exactly such memory. The driver
measures that effect (``memory_probe`` in the results); the ``_memwarm`` rows try to
remove it, for raw and hpcproc alike (``hp_read_steady`` is the other view of the read
path without it).

Results (medians, every sample, ratios hp/raw, machine facts, load) go to
``benchmarks/results/io.md`` and ``io.json``. Internally the same file is the MPI worker:
``io.py --worker read|write|handwritten|generate ...`` (rank 0 prints one JSON line).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RAWIO = os.path.join(ROOT, "native", "bin", "rawio")
MARK = "IOBENCH-RESULT "
TARGETS = {"read": 0.8, "write": 0.7}

# case -> (kind, description); "ratio" cases are compared with their raw baseline
CASES = {
    "raw_read": ("read", "rawio pread, buffer allocated before timing (baseline)"),
    "hp_read": ("read", 'hp.read (method="auto" -> direct)'),
    "raw_write": ("write", "rawio pwrite + fsync, new file (baseline)"),
    "hp_write": ("write", "hp.write, contiguous, fsync=True"),
    "hp_read_h5py": ("read", 'hp.read(method="h5py")'),
    "handwritten_read": ("read", 'hand-written mpi4py + h5py: f["x"][lo:hi] per rank'),
    "raw_read_fresh": ("read", "rawio pread into fresh memory (page faults timed)"),
    "raw_read_dd": ("read", "rawio pread, 1 MiB buffer reused (dd bs=1M)"),
    "hp_read_steady": ("read", "hp.read, calls 2-4 in one job (median)"),
    "raw_read_memwarm": ("read", "raw_read, memory warmed (baseline)"),
    "hp_read_memwarm": ("read", "hp_read, memory warmed"),
    "raw_write_memwarm": ("write", "raw_write, memory warmed (baseline)"),
    "hp_write_memwarm": ("write", "hp_write, memory warmed"),
}


# --------------------------------------------------------------------------- worker
def _warm_memory(nbytes: int) -> None:
    """Touch and free ``nbytes`` of anonymous memory (see ``_memwarm`` above)."""
    if nbytes > 0:
        import numpy as np

        block = np.empty(nbytes, dtype=np.uint8)
        block[::4096] = 1
        del block  # large blocks are unmapped at once: the pages return to the kernel


def _timed(comm, fn, warm_mem=0):
    """Run ``fn`` between barriers on every rank; rank 0 gets the per-rank times."""
    from mpi4py import MPI

    _warm_memory(warm_mem)
    comm.Barrier()
    t0 = MPI.Wtime()
    out = fn()
    t1 = MPI.Wtime()
    comm.Barrier()
    t2 = MPI.Wtime()
    times = comm.gather((t1 - t0, t2 - t0), root=0)
    return out, times


def _report(comm, times, nbytes, **extra):
    from mpi4py import MPI

    if comm.Get_rank() != 0:
        return
    mine = [t for t, _ in times]
    result = {"elapsed_max_s": max(mine), "elapsed_min_s": min(mine),
              "job_s": max(j for _, j in times), "gbps": nbytes / max(mine) / 1e9,
              "ranks": comm.Get_size(), "nbytes": nbytes,
              "mpi_library": " ".join(MPI.Get_library_version().split()[:3]), **extra}
    print(MARK + json.dumps(result), flush=True)


def _checksum(comm, local) -> float:
    """Sum of every 4096th element of the global array: compares the read paths."""
    import numpy as np
    from mpi4py import MPI

    flat = local.reshape(-1)
    return comm.allreduce(float(np.sum(flat[::4096], dtype=np.float64)), op=MPI.SUM)


def worker(argv) -> None:
    p = argparse.ArgumentParser(prog="io.py --worker")
    p.add_argument("mode", choices=["read", "write", "handwritten", "generate"])
    p.add_argument("--path", required=True)
    p.add_argument("--dataset", default="/x")
    p.add_argument("--method", default="auto")
    p.add_argument("--out")
    p.add_argument("--rows", type=int)
    p.add_argument("--calls", type=int, default=1,
                   help="read: call hp.read this many times; the sample is the median of "
                        "calls 2.. (steady state)")
    p.add_argument("--warm-mem", type=int, default=0,
                   help="touch and free this many bytes right before the clock starts")
    a = p.parse_args(argv)

    import h5py
    from mpi4py import MPI

    import hpcproc as hp
    import hpcproc.io  # noqa: F401 - hp.* names load lazily; load them before the clock

    comm = MPI.COMM_WORLD
    with hp.abort_on_error():
        if a.mode == "generate":
            from hpcproc.synthetic import generate

            _, times = _timed(comm, lambda: generate(a.path, kind="normal", rows=a.rows,
                                                     seed=1, comm=comm))
            _report(comm, times, a.rows * 8)
        elif a.mode == "read":
            calls = []
            for _ in range(max(1, a.calls)):
                x = None  # drop the previous result first, as a loop over files would
                x, times = _timed(comm, lambda: hp.read(a.path, a.dataset, comm=comm,
                                                        method=a.method), a.warm_mem)
                calls.append(times)
            if len(calls) > 1 and comm.Get_rank() == 0:  # median call of 2.. by slowest rank
                steady = sorted(calls[1:], key=lambda t: max(m for m, _ in t))
                times = steady[len(steady) // 2]
                first = max(m for m, _ in calls[0])
            else:
                first = None
            nbytes = comm.allreduce(x.local.nbytes)
            _report(comm, times, nbytes, checksum=_checksum(comm, x.local), first_call_s=first,
                    calls_s=[max(m for m, _ in t) for t in calls] if calls[0] else None)
        elif a.mode == "handwritten":
            def read_by_hand():  # the usual mpi4py + h5py script
                with h5py.File(a.path, "r") as f:
                    dset = f[a.dataset]
                    n, size, rank = dset.shape[0], comm.Get_size(), comm.Get_rank()
                    base, rem = divmod(n, size)
                    lo = rank * base + min(rank, rem)
                    hi = lo + base + (rank < rem)
                    return dset[lo:hi]

            local, times = _timed(comm, read_by_hand, a.warm_mem)
            _report(comm, times, comm.allreduce(local.nbytes),
                    checksum=_checksum(comm, local))
        else:  # write: the data is read (untimed), then written
            x = hp.read(a.path, a.dataset, comm=comm)
            _, times = _timed(comm, lambda: hp.write(a.out, a.dataset, x, comm=comm,
                                                     mode="w", fsync=True), a.warm_mem)
            _report(comm, times, comm.allreduce(x.local.nbytes))


# --------------------------------------------------------------------------- driver
# hpcproc case -> its raw baseline: the two run back to back, in alternating order
PAIRS = {"hp_read": "raw_read", "hp_write": "raw_write",
         "hp_read_memwarm": "raw_read_memwarm", "hp_write_memwarm": "raw_write_memwarm"}


def schedule(cases, rep: int) -> list:
    """Order of the cases in repeat ``rep``.

    Each hpcproc case runs right next to its raw baseline (same conditions, for the
    paired ratios), the baseline first in even repeats and second in odd ones; the
    pairs and the other cases are shuffled (seeded by ``rep``), so no case always
    follows the same predecessor (a job that has just freed a lot of memory changes the
    cost of the next job's first touches).
    """
    import random

    raws = {raw: hp for hp, raw in PAIRS.items() if hp in cases and raw in cases}
    units = []
    for case in cases:
        if case in raws:
            continue
        if case in PAIRS and PAIRS[case] in cases:
            units.append([PAIRS[case], case] if rep % 2 == 0 else [case, PAIRS[case]])
        else:
            units.append([case])
    random.Random(rep).shuffle(units)
    return [case for unit in units for case in unit]


def parse_size(text: str) -> int:
    """``"1G"`` -> 2**30 (K, M, G, T are powers of 1024)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 512M, 1G)") from None
    if value < 8:
        raise argparse.ArgumentTypeError(f"size {text!r} is below one float64")
    return int(value)


def run_job(cmd, timeout):
    """Run one MPI job in its own process group; kill the whole group on timeout."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(2)
        proc.communicate()
        raise RuntimeError(f"timed out after {timeout} s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{err[-3000:]}")
    for line in reversed(out.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no result from {' '.join(cmd)}\n{out[-2000:]}\n{err[-2000:]}")


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


def sh(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_facts(data_dir: str, mpiexec: str) -> dict:
    import h5py
    import numpy

    mem = next((ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), 0)
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                  if ln.startswith("model name")), platform.processor())
    thp = sh(["cat", "/sys/kernel/mm/transparent_hugepage/enabled"])
    return {
        "cores": os.cpu_count(), "cpu": model, "memory_gib": round(int(mem) / 2**20, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "numpy": numpy.__version__, "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version, "mpiexec": mpiexec,
        "filesystem": sh(["df", "-T", data_dir]).splitlines()[-1:],
        "transparent_hugepages": thp,
        "git": sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "hpcproc_io_modified": bool(sh(["git", "-C", ROOT, "status", "--porcelain",
                                        "hpcproc/io"])),
    }


def ensure_data(args, path: str, mpiexec: str) -> dict:
    """Generate the dataset unless a matching one exists; return its layout facts."""
    import h5py

    rows = args.size // 8

    def layout():
        with h5py.File(path, "r") as f:
            d = f["x"]
            return {"rows": d.shape[0], "dtype": d.dtype.str, "offset": d.id.get_offset(),
                    "chunks": d.chunks, "nbytes": d.id.get_storage_size()}

    if os.path.exists(path):
        try:
            info = layout()
            if info["rows"] == rows and info["chunks"] is None and info["offset"] is not None:
                return {**info, "generated": False}
        except (OSError, KeyError):
            pass
        os.unlink(path)
    print(f"generating {path}: {rows} float64 rows ({args.size / 2**30:.2f} GiB)", flush=True)
    gen = run_job([mpiexec, "-n", str(args.ranks), sys.executable, __file__, "--worker",
                   "generate", "--path", path, "--rows", str(rows)], args.timeout * 2)
    info = layout()
    if info["chunks"] is not None or info["offset"] is None:
        raise RuntimeError(f"{path}:/x is not contiguous: {info}")
    return {**info, "generated": True, "generate_s": gen["elapsed_max_s"]}


def warm_cache(path: str) -> float:
    """Read the whole file once so that every read case starts from the page cache."""
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(64 << 20)
        while f.readinto(buf):
            pass
    return time.perf_counter() - t0


def memory_probe(nbytes: int = 256 << 20, pause: float = 5.0) -> dict:
    """Seconds to first-touch ``nbytes`` of new memory: right after the same amount was
    freed, and after ``pause`` seconds (a host that reclaims free guest memory makes the
    second much slower)."""
    import numpy as np

    def touch():
        t0 = time.perf_counter()
        block = np.empty(nbytes, dtype=np.uint8)
        block[::4096] = 1
        del block
        return time.perf_counter() - t0

    touch()
    hot = [touch() for _ in range(2)]
    cold = []
    for _ in range(2):
        time.sleep(pause)
        cold.append(touch())
    return {"bytes": nbytes, "just_freed_s": hot, f"after_{pause:g}s_idle_s": cold,
            "page_reporting": os.path.isdir("/sys/module/page_reporting")}


def cached_fraction(path: str) -> float | None:
    """Fraction of ``path`` in the page cache (util-linux ``fincore``), None if unknown."""
    out = sh(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", path]).split()
    if len(out) == 2 and int(out[1]) > 0:
        return int(out[0]) / int(out[1])
    return None


def commands(case, args, src, info, data_dir, mpiexec):
    base = [mpiexec, "-n", str(args.ranks)]
    py = base + [sys.executable, __file__, "--worker"]
    raw = base + [RAWIO]
    off, nbytes = str(info["offset"]), str(info["rows"] * 8)
    out_raw = os.path.join(data_dir, "out_raw.bin")
    out_hp = os.path.join(data_dir, "out_hp.h5")
    warm = str(-(-info["rows"] * 8 // args.ranks))  # one rank's block, rounded up
    return {
        "raw_read": (raw + ["read", src, off, nbytes], None),
        "raw_read_fresh": (raw + ["read", src, off, nbytes, "--alloc-in-timing"], None),
        "raw_read_dd": (raw + ["read", src, off, nbytes, "--bs", "1M"], None),
        "hp_read": (py + ["read", "--path", src], None),
        "hp_read_steady": (py + ["read", "--path", src, "--calls", "4"], None),
        "hp_read_h5py": (py + ["read", "--path", src, "--method", "h5py"], None),
        "handwritten_read": (py + ["handwritten", "--path", src], None),
        "raw_write": (raw + ["write", out_raw, off, nbytes, "--create"], out_raw),
        "hp_write": (py + ["write", "--path", src, "--out", out_hp], out_hp),
        "raw_read_memwarm": (raw + ["read", src, off, nbytes, "--warm-mem", warm], None),
        "hp_read_memwarm": (py + ["read", "--path", src, "--warm-mem", warm], None),
        "raw_write_memwarm": (raw + ["write", out_raw, off, nbytes, "--create",
                                     "--warm-mem", warm], out_raw),
        "hp_write_memwarm": (py + ["write", "--path", src, "--out", out_hp, "--warm-mem",
                                   warm], out_hp),
    }[case]


def check_output(src: str, out: str) -> None:
    """The hp.write output is contiguous and holds the input (strided comparison)."""
    import h5py
    import numpy as np

    with h5py.File(src, "r") as a, h5py.File(out, "r") as b:
        if b["x"].chunks is not None or b["x"].shape != a["x"].shape:
            raise RuntimeError(f"hp.write output has layout {b['x'].chunks} {b['x'].shape}")
        step = max(1, a["x"].shape[0] // 4096)
        if not np.array_equal(a["x"][::step], b["x"][::step]):
            raise RuntimeError("hp.write output differs from its input")


def median(values):
    return statistics.median(values) if values else float("nan")


def summarise(samples: dict) -> dict:
    out = {}
    for case, rows in samples.items():
        t = [r["elapsed_max_s"] for r in rows]
        out[case] = {"median_s": median(t), "min_s": min(t), "max_s": max(t),
                     "median_gbps": median([r["gbps"] for r in rows]),
                     "median_job_s": median([r["job_s"] for r in rows]),
                     "samples_s": t}
    ratios = {}
    for name, hp_case, raw_case in [("read", "hp_read", "raw_read"),
                                    ("write", "hp_write", "raw_write"),
                                    ("read_h5py", "hp_read_h5py", "raw_read"),
                                    ("read_handwritten", "handwritten_read", "raw_read"),
                                    ("read_vs_fresh", "hp_read", "raw_read_fresh"),
                                    ("read_steady", "hp_read_steady", "raw_read"),
                                    ("read_memwarm", "hp_read_memwarm", "raw_read_memwarm"),
                                    ("write_memwarm", "hp_write_memwarm",
                                     "raw_write_memwarm")]:
        if hp_case in out and raw_case in out:
            paired = [r["elapsed_max_s"] / h["elapsed_max_s"]
                      for r, h in zip(samples[raw_case], samples[hp_case])]
            ratios[name] = {"hpcproc": hp_case, "baseline": raw_case,
                            "ratio": out[raw_case]["median_s"] / out[hp_case]["median_s"],
                            "paired_median": median(paired),
                            "target": TARGETS.get(name.removesuffix("_memwarm"))}
    return {"cases": out, "ratios": ratios}


def _pct(fraction) -> str:
    return "unknown" if fraction is None else f"{min(fraction, 1.0):.0%}"


def write_markdown(path: str, res: dict) -> None:
    s, m, d = res["summary"], res["machine"], res["dataset"]
    mp = m["memory_probe"]
    cold_key = next(k for k in mp if k.startswith("after_"))
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    lines = [
        "# IO benchmark: hpcproc vs the raw limit", "",
        f"Written by `benchmarks/io.py` on {res['finished']} (`{' '.join(res['argv'])}`).",
        f"Dataset: `/x`, {d['rows']:,} float64 rows = {d['rows'] * 8 / 2**30:.2f} GiB, "
        f"contiguous, raw data at byte {d['offset']}; {res['ranks']} ranks, "
        f"{res['repeats']} repeats per case (order shuffled each repeat, every hpcproc case "
        "next to its raw baseline, alternately before and after it); page cache warm "
        f"(fraction of the file in the page cache before/after: "
        f"{_pct(res['cached_before'])} / {_pct(res['cached_after'])}).",
        "A sample is the slowest rank's transfer time (`MPI_Wtime` from leaving a barrier "
        "to the end of its IO); GB/s = 10^9 bytes / s; ratio = raw median time / hpcproc "
        "median time (1.0 = as fast as raw).", "",
        "## Ratios", "",
        "| comparison | ratio (of medians) | ratio (median of paired repeats) | target | |",
        "|---|---|---|---|---|",
    ]
    for _name, r in s["ratios"].items():
        tgt = r["target"]
        verdict = "" if tgt is None else ("met" if r["ratio"] >= tgt else "**missed**")
        lines.append(f"| {r['hpcproc']} / {r['baseline']} | {r['ratio']:.2f} | "
                     f"{r['paired_median']:.2f} | {'' if tgt is None else f'>= {tgt}'} | "
                     f"{verdict} |")
    lines += ["", "## Cases (seconds; every sample in run order)", "",
              "| case | what | median s | GB/s (median) | min s | max s | samples s |",
              "|---|---|---|---|---|---|---|"]
    for case, c in s["cases"].items():
        lines.append(f"| {case} | {CASES[case][1]} | {fmt(c['median_s'])} | "
                     f"{c['median_gbps']:.2f} | {fmt(c['min_s'])} | {fmt(c['max_s'])} | "
                     f"{', '.join(fmt(t) for t in c['samples_s'])} |")
    la_b, la_a = res["loadavg_before"], res["loadavg_after"]
    lines += ["", "## Machine and load", "",
              f"- CPU: {m['cores']} cores ({m['cpu']}); memory {m['memory_gib']} GiB; "
              f"kernel {m['kernel']}; transparent huge pages: `{m['transparent_hugepages']}`",
              f"- MPI: {res['mpi_library']} (`{m['mpiexec']}`)",
              f"- Python {m['python']}, numpy {m['numpy']}, h5py {m['h5py']} "
              f"(HDF5 {m['hdf5']}); hpcproc at git `{m['git']}`"
              f"{' (hpcproc/io modified in the work tree)' if m['hpcproc_io_modified'] else ''}",
              f"- File system (`df -T`): `{' '.join(m['filesystem'])}`",
              f"- First touch of {mp['bytes'] >> 20} MiB of new memory (one process): "
              f"{', '.join(fmt(t) for t in mp['just_freed_s'])} s right after freeing as "
              f"much, {', '.join(fmt(t) for t in mp[cold_key])} s after "
              f"{cold_key[6:-7]} idle (free page reporting to the host: "
              f"{'on' if mp['page_reporting'] else 'off'}). Memory that has been free for "
              "a while is slow to touch on this VM: see the `_memwarm` rows.",
              f"- Load average (1, 5, 15 min) before: {la_b}, after: {la_a}; 1-min load at "
              f"the start of each sample: min {min(res['sample_load'])}, median "
              f"{median(res['sample_load'])}, max {max(res['sample_load'])}. Other jobs "
              "shared the machine; with 2 cores a load above 2 means the benchmark's ranks "
              "competed for CPU, which inflates and scatters every case (raw and hpcproc "
              "alike).",
              f"- Wall time of the whole run: {res['wall_s']:.0f} s", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def repo_relative(obj):
    """``obj`` with every string path under the repository made relative to it."""
    if isinstance(obj, str):
        return obj.replace(ROOT + os.sep, "")
    if isinstance(obj, dict):
        return {k: repo_relative(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(repo_relative(v) for v in obj)
    return obj


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=parse_size("1G"),
                   help="dataset size (default 1G = 1 GiB)")
    p.add_argument("--repeats", type=int, default=5, help="samples per case (>= 3)")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    p.add_argument("--data-dir", default=os.path.join(HERE, "data"))
    p.add_argument("--results", default=os.path.join(HERE, "results"))
    p.add_argument("--timeout", type=float, default=300, help="seconds per MPI job")
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if args.repeats < 3:
        p.error("--repeats must be >= 3 (medians of fewer samples are noise)")
    if unknown := set(cases) - set(CASES):
        p.error(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = shutil.which("mpiexec") or p.error("no mpiexec next to python or on PATH")
    if any(c.startswith("raw") for c in cases) and not os.access(RAWIO, os.X_OK):
        p.error(f"{RAWIO} is missing: run `make native` first")

    t_start = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_before = loadavg()
    os.makedirs(args.data_dir, exist_ok=True)
    src = os.path.join(args.data_dir, "io_src.h5")
    try:
        info = ensure_data(args, src, mpiexec)
        warm_s = warm_cache(src)
        cached_before = cached_fraction(src)
        print(f"data: {info}; page cache warmed in {warm_s:.2f} s "
              f"(cached fraction {cached_before})", flush=True)
        for case in ("hp_read", "raw_read"):  # untimed warm-up: imports, .pyc, binaries
            if case in cases:
                run_job(commands(case, args, src, info, args.data_dir, mpiexec)[0],
                        args.timeout)
        samples = {c: [] for c in cases}
        sample_load = []
        for rep in range(args.repeats):
            order = schedule(cases, rep)
            for case in order:
                cmd, out = commands(case, args, src, info, args.data_dir, mpiexec)
                if out and os.path.exists(out):
                    os.unlink(out)  # every write starts from no file, for raw and hpcproc
                sample_load.append(loadavg()[0])
                r = run_job(cmd, args.timeout)
                r["repeat"], r["load1"] = rep, sample_load[-1]
                samples[case].append(r)
                print(f"repeat {rep} {case:18s} {r['elapsed_max_s']:.3f} s "
                      f"{r['gbps']:.2f} GB/s (load {sample_load[-1]})", flush=True)
                if case == "hp_write" and rep == 0:
                    check_output(src, out)
        sums = {c: {r.get("checksum") for r in samples[c]} for c in
                ("hp_read", "hp_read_h5py", "handwritten_read") if c in samples}
        if len({v for s in sums.values() for v in s}) > 1:
            raise RuntimeError(f"read paths disagree on the data: {sums}")
        cached_after = cached_fraction(src)
        machine = machine_facts(args.data_dir, mpiexec)
        machine["memory_probe"] = memory_probe()
    finally:
        if not args.keep:
            shutil.rmtree(args.data_dir, ignore_errors=True)

    mpi_library = next((r["mpi_library"] for rows in samples.values() for r in rows
                        if "mpi_library" in r), sh([os.path.join(
                            os.path.dirname(mpiexec), "mpichversion")]))
    res = {
        "benchmark": "io", "argv": ["benchmarks/io.py", *(argv or sys.argv[1:])],
        "started": started,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ranks": args.ranks, "repeats": args.repeats, "dataset": info,
        "warm_cache_s": warm_s, "cached_before": cached_before, "cached_after": cached_after,
        "machine": machine,
        "mpi_library": mpi_library, "loadavg_before": load_before,
        "loadavg_after": loadavg(), "sample_load": sample_load,
        "wall_s": time.perf_counter() - t_start,
        "summary": summarise(samples), "samples": samples,
    }
    res = repo_relative(res)  # results name files by their path in the repository
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "io.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    write_markdown(os.path.join(args.results, "io.md"), res)
    for name, r in res["summary"]["ratios"].items():
        print(f"{name:18s} ratio {r['ratio']:.2f} (target {r['target']})")
    print(f"wrote {os.path.join(args.results, 'io.md')} and io.json")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        sys.exit(main())
