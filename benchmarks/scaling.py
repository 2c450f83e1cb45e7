"""Scaling report: W1 (stats + histogram), W2 (sort), W3 (hash group-by) on 1, 2, 4 ranks of
one host and on 2 hosts x 1 and 2 hosts x 2 ranks over shaped links, plus the network
microbenchmark (ping-pong, Alltoallv) that the cost model in docs/scaling.md is fitted to.

    python benchmarks/scaling.py [--rows 2^24] [--repeat 3]   # the driver (serial)
    make bench-scaling        # brings the namespace hosts up, runs this, brings them down

The driver launches every measurement as its own MPI job: one-host configurations with
the venv's ``mpiexec``, multi-host ones with the wrapper that ``tests/multihost/cluster.sh
up`` writes into ``$HPCPROC_MH_DIR`` (skipped, and said so, when that is absent). Every
(configuration, workload) pair runs once per repeat, the configurations in a new random
order each repeat, so slow drift of the machine's load hits them alike; every job
records the load average before it starts.

Workloads (strong scaling: the same ``--rows`` N for every configuration):

* W1: ``hp.read`` of an N-row float64 dataset, ``hp.stats`` and a 64-bin ``hp.histogram``.
* W2: ``hp.read_table`` of int64 key (uniform over [0, 2**62)) + int64 value,
  ``hp.sort`` by key, ``hp.write_table`` of the result.
* W3: ``hp.read_table`` of int64 key (uniform over [0, 2**20)) + float64 value,
  ``hp.groupby(..., strategy="hash").agg(value=["sum", "count"])`` (the hash path, so
  partial aggregates really move), ``hp.write_table`` of the result.

Inside a job: kernels are compiled (or loaded) on tiny data first, then tracing
(``hp.start_tracing``) times one run between two barriers; the operation itself runs
inside ``hp.phase("compute")``, so its exchange and wait phases (nested) are counted
separately and ``compute`` is the rest of it; reads and writes run inside ``hp.phase("read")``
and ``hp.phase("write")``, so metadata, file creation, ``fsync`` and rename count there. Per phase the slowest rank's time is kept.
Bytes sent per rank come from the trace (``exchange``: every Alltoallv send buffer,
including the part a rank sends to itself). The benchmark also records, per exchange,
the bytes every rank sent to each destination (from the exchange's own counts), so the
bytes that must cross between hosts are known exactly; the driver compares them with the
veth byte counters of each host's link, read before and after the job.

Efficiency: speed-up ``S = T1 / TP`` (wall time of the run, slowest rank, median of the
repeats; T1: one rank on one host, same run of the driver). ``E = S / P`` is the
classic strong-scaling efficiency; ``E_hw = S / min(P, cores)`` compares with what the
hardware can give: all "hosts" share this machine's cores, so 4 ranks on 2 cores can at
best run twice as fast as 1 rank.

Results: ``benchmarks/results/scaling.md`` (table), ``scaling.png`` (plot, needs
matplotlib: ``pip install -r benchmarks/requirements-scaling.txt``) and ``scaling.json``
(every sample; docs/scaling.md is fitted to it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLUSTER = ROOT / "tests" / "multihost" / "cluster.sh"
CONFIGS = {  # label: (ranks, hosts, ranks per host)
    "1": (1, 1, 1), "2": (2, 1, 2), "4": (4, 1, 4), "2x1": (2, 2, 1), "2x2": (4, 2, 2)}
WORKLOADS = ("w1", "w2", "w3")
PHASE_COLS = ("read", "compute", "exchange", "write")
BINS = 64
W3_KEYS = 1 << 20


def parse_count(text: str) -> int:
    text = str(text).replace("_", "")
    if "^" in text:
        a, b = text.split("^")
        return int(a) ** int(b)
    return int(float(text))


# --- worker side: runs inside an MPI job ---------------------------------------------
class _Recorder:
    """Wraps the exchange used by sort and group-by to keep every call's send counts."""

    def __init__(self):
        self.calls = []  # (bytes to each destination rank) per exchange call

    def install(self):
        import importlib

        # import_module: ``hp.shuffle`` (the function) shadows the subpackage attribute
        for name in ("hpcproc.shuffles.samplesort", "hpcproc.shuffles.grouping"):
            mod = importlib.import_module(name)
            inner = getattr(mod, "exchange", None)
            if inner is None or getattr(inner, "_scaling_wrapped", False):
                continue

            def wrapper(columns, dest, comm=None, _inner=inner, **kw):
                from hpcproc import phase
                from hpcproc.comm import lib_comm

                with phase("skew"):  # ranks arriving at different times: not transfer time
                    lib_comm(comm).Barrier()
                out, info = _inner(columns, dest, comm, **kw)
                rb = sum(np.dtype(v.dtype).itemsize * int(np.prod(v.shape[1:], dtype=np.int64))
                         for v in columns.values())
                self.calls.append(np.asarray(info["sent"], dtype=np.int64) * rb)
                return out, info

            wrapper._scaling_wrapped = True
            mod.exchange = wrapper

    def per_destination(self, size: int) -> np.ndarray:
        total = np.zeros(size, dtype=np.int64)
        for c in self.calls:
            total += c
        return total


def _gen(args):
    """Write the three input files (collective, run once by the driver)."""
    from mpi4py import MPI

    import hpcproc as hp

    comm = MPI.COMM_WORLD
    n, data = args.rows, Path(args.data)
    hp.generate(str(data / f"w1-{n}.h5"), "normal", n, seed=1, comm=comm)
    hp.generate(str(data / f"w3-{n}.h5"), "uniform", n, keys=W3_KEYS, seed=3, comm=comm)
    lo, hi = hp.block_range(n, comm.size, comm.rank)
    rng = np.random.default_rng(np.random.SeedSequence(2, spawn_key=(comm.rank,)))
    key = rng.integers(0, 1 << 62, size=hi - lo, dtype=np.int64)
    value = np.arange(lo, hi, dtype=np.int64)  # the global row: the sort must permute it
    t = hp.DistTable.from_local({"key": key, "value": value}, comm)
    hp.write_table(str(data / f"w2-{n}.h5"), t)


def _warm(work, comm):
    import hpcproc as hp

    r = np.arange(4096, dtype=np.int64)
    small = hp.DistTable.from_local({"key": (r * 7919) % 1000, "value": r.astype(
        np.float64 if work == "w3" else np.int64)}, comm)
    if work == "w1":
        x = hp.DistArray.from_local(r.astype(np.float64), comm)
        hp.stats(x)
        hp.histogram(x, bins=BINS, range=(0.0, 4096.0))
    elif work == "w2":
        hp.sort(small, "key")
    else:
        hp.groupby(small, "key", strategy="hash").agg(value=["sum", "count"])


def _run_workload(work, args, comm, out_path):
    import hpcproc as hp

    n, data = args.rows, Path(args.data)
    if work == "w1":
        with hp.phase("read"):
            x = hp.read(str(data / f"w1-{n}.h5"), "/x", comm=comm)
        with hp.phase("compute"):
            s = hp.stats(x)
            counts, _ = hp.histogram(x, bins=BINS, range=(s["min"], s["max"]))
        return {"count": s["count"], "hist_total": int(counts.sum())}
    cols = {"key": "/key", "value": "/value"}
    with hp.phase("read"):
        t = hp.read_table(str(data / f"{work}-{n}.h5"), cols, comm=comm)
    with hp.phase("compute"):
        if work == "w2":
            res = hp.sort(t, "key")
        else:
            res = hp.groupby(t, "key", strategy="hash").agg(value=["sum", "count"])
    with hp.phase("write"):
        hp.write_table(str(out_path), res)
    return res


def _check(work, res, args, comm):
    """Cheap correctness checks of the result (outside the timed region)."""
    from mpi4py import MPI

    n = args.rows
    if work == "w1":
        return bool(res["count"] == n and res["hist_total"] == n)
    if work == "w2":
        key, value = res.local("key"), res.local("value")
        ok = bool(np.all(key[1:] >= key[:-1]))
        ends = comm.allgather((int(key[0]), int(key[-1])) if key.size else None)
        ends = [e for e in ends if e is not None]
        ok = ok and all(a[1] <= b[0] for a, b in zip(ends, ends[1:]))
        total = comm.allreduce(int(key.size))
        vsum = comm.allreduce(int(value.sum()))  # a permutation of 0..n-1
        return bool(comm.allreduce(int(ok), op=MPI.MIN)) and total == n \
            and vsum == n * (n - 1) // 2
    count = comm.allreduce(int(res.local("value_count").sum()))
    groups = comm.allreduce(int(res.local("key").size))
    return count == n and groups <= W3_KEYS


def worker(args):
    from mpi4py import MPI

    import hpcproc as hp

    comm = MPI.COMM_WORLD
    with hp.abort_on_error(comm):
        if args.worker == "gen":
            _gen(args)
            return 0
        if args.worker == "net":
            result = _net(comm)
        else:
            result = _measure(args.worker, args, comm)
        if comm.rank == 0:
            Path(args.out).write_text(json.dumps(result))
    return 0


def _measure(work, args, comm):
    from mpi4py import MPI

    import hpcproc as hp

    rec = _Recorder()
    rec.install()
    hosts = comm.allgather(MPI.Get_processor_name())
    out_path = Path(args.data) / f"out-{work}-{comm.size}-{os.getpid()}.h5"
    out_path = Path(comm.bcast(str(out_path)))
    _warm(work, comm)
    rec.calls.clear()
    comm.Barrier()
    hp.start_tracing()
    t0 = time.perf_counter()
    res = _run_workload(work, args, comm, out_path)
    comm.Barrier()
    wall = time.perf_counter() - t0
    hp.stop_tracing()
    summary = hp.report(comm, file=None)
    ok = _check(work, res, args, comm)
    mine = rec.per_destination(comm.size)
    sent = comm.gather(mine.tolist())
    walls = comm.gather(wall)
    rss = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    del res
    touch = comm.gather(_touch(int(comm.allreduce(mine)[comm.rank]), comm))
    if comm.rank == 0 and out_path.exists():
        out_path.unlink()
    if comm.rank != 0:
        return None
    phases = {k: {"max": v["max"], "seconds": v["seconds"], "bytes_sent": v["bytes_sent"],
                  "bytes_read": v["bytes_read"], "bytes_written": v["bytes_written"]}
              for k, v in summary["phases"].items()}
    return {"workload": work, "ranks": comm.size, "hosts": hosts, "wall": max(walls),
            "phases": phases, "sent_to": sent, "ok": bool(ok), "maxrss": rss, "touch": touch}


def _touch(nbytes, comm):
    """(bytes, seconds) to fault in ``nbytes`` of new memory on every rank at once (what
    an exchange's receive buffer costs on this machine before any byte arrives)."""
    nbytes = max(nbytes, 1 << 20)
    comm.Barrier()
    t0 = time.perf_counter()
    a = np.empty(nbytes, np.uint8)
    a[::4096] = 1
    dt = time.perf_counter() - t0
    del a
    return nbytes, dt


def _net(comm):
    """Ping-pong between rank 0 and a rank on another host (rank 1 on one host) and an
    Alltoallv of every rank, over message sizes."""
    from mpi4py import MPI

    rank, size = comm.rank, comm.size
    hosts = comm.allgather(MPI.Get_processor_name())
    # partner of rank 0: the first rank on another host (the link), else rank 1
    peer = next((r for r in range(size) if hosts[r] != hosts[0]), 1)
    pingpong = []
    for nbytes in (8, 1 << 10, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26):
        buf = np.zeros(max(nbytes, 1), np.uint8)
        reps = 200 if nbytes <= 1 << 16 else 20 if nbytes <= 1 << 22 else 5
        times = []
        for _ in range(reps + 1):
            comm.Barrier()
            t0 = MPI.Wtime()
            if rank == 0:
                comm.Send([buf, MPI.BYTE], dest=peer, tag=7)
                comm.Recv([buf, MPI.BYTE], source=peer, tag=7)
            elif rank == peer:
                comm.Recv([buf, MPI.BYTE], source=0, tag=7)
                comm.Send([buf, MPI.BYTE], dest=0, tag=7)
            times.append((MPI.Wtime() - t0) / 2)
        pingpong.append({"bytes": nbytes, "seconds": float(np.median(times[1:])),
                         "min": float(np.min(times[1:]))})
    alltoall = []
    for per_pair in (8, 1 << 12, 1 << 16, 1 << 20, 1 << 22, 1 << 24):
        send = np.zeros(per_pair * size, np.uint8)
        recv = np.empty_like(send)
        counts = np.full(size, per_pair, np.int64)
        displ = np.arange(size, dtype=np.int64) * per_pair
        reps = 50 if per_pair <= 1 << 16 else 5
        times = []
        for _ in range(reps + 1):
            comm.Barrier()
            t0 = MPI.Wtime()
            comm.Alltoallv([send, (counts, displ), MPI.BYTE], [recv, (counts, displ), MPI.BYTE])
            times.append(comm.allreduce(MPI.Wtime() - t0, op=MPI.MAX))
        alltoall.append({"bytes_per_pair": per_pair, "seconds": float(np.median(times[1:]))})
    return {"ranks": size, "hosts": hosts, "peer": peer, "pingpong": pingpong,
            "alltoallv": alltoall}


# --- driver side ---------------------------------------------------------------------
def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


_SPIN = ("import time\nt=time.perf_counter()\ns=0\nfor i in range(10_000_000): s+=i\n"
         "print(time.perf_counter()-t)")


def cpu_probe(cores: int) -> float:
    """How many cores this job can get now: ``cores`` CPU-bound processes at once against
    one alone (other users' processes take the rest)."""
    def spin(k):
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE,
                                  text=True) for _ in range(k)]
        return [float(p.communicate()[0]) for p in procs]
    alone = spin(1)[0]
    together = statistics.mean(spin(cores))
    return min(float(cores), cores * alone / together)


def _counters(env) -> dict:
    out = subprocess.run(["bash", str(CLUSTER), "counters"], env=env, capture_output=True,
                         text=True, check=True).stdout
    got = {}
    for line in out.splitlines():
        h, tx, rx = line.split()
        got[h] = (int(tx), int(rx))
    return got


def _launch(config, argv, mh_dir, timeout, env):
    ranks, hosts, ppn = CONFIGS[config]
    if hosts == 1:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks)]
    else:
        cmd = [str(Path(mh_dir) / "mpiexec"), "-n", str(ranks), "-ppn", str(ppn)]
    cmd += [sys.executable, str(Path(__file__).resolve())] + argv
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{config} {' '.join(argv[:2])} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def _job(config, argv, args, env, out):
    multi = CONFIGS[config][1] > 1
    before = _counters(env) if multi else None
    load = _load()
    t0 = time.time()
    _launch(config, argv + ["--out", str(out)], args.mh_dir, args.timeout, env)
    after = _counters(env) if multi else None
    rec = json.loads(out.read_text())
    out.unlink()
    rec.update(config=config, load=load, job_seconds=time.time() - t0)
    if multi:
        rec["veth"] = {h: [after[h][0] - before[h][0], after[h][1] - before[h][1]]
                       for h in after}
    return rec


def driver(args):
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HPCPROC_PROGRESS="0")
    env.pop("HPCPROC_TRACE", None)
    have_mh = bool(args.mh_dir) and (Path(args.mh_dir) / "mpiexec").exists()
    configs = [c for c in args.configs.split(",") if have_mh or CONFIGS[c][1] == 1]
    skipped = [c for c in args.configs.split(",") if c not in configs]
    if skipped:
        print(f"multi-host wrapper not found (HPCPROC_MH_DIR): skipping {skipped}",
              file=sys.stderr)
    workloads = args.workloads.split(",")
    n = args.rows
    if not all((data / f"{w}-{n}.h5").exists() for w in WORKLOADS):
        print(f"generating {n} rows per workload", file=sys.stderr)
        _launch("2", ["--worker", "gen", "--rows", str(n), "--data", str(data)], None,
                args.timeout, env)
    uptime_start = _load()
    cpu_start = cpu_probe(os.cpu_count() or 1)
    t_start = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    net = []
    if not args.no_net:
        for config in [c for c in ("2", "2x1", "2x2") if c in configs]:
            net.append(_job(config, ["--worker", "net"], args, env, data / "net.json"))
            print(f"net {config}: done (load {net[-1]['load']})", file=sys.stderr)
    runs = []
    rng = random.Random(args.seed)
    for rep in range(args.repeat):
        order = configs[:]
        rng.shuffle(order)
        for config in order:
            for work in workloads:
                argv = ["--worker", work, "--rows", str(n), "--data", str(data)]
                rec = _job(config, argv, args, env, data / "run.json")
                rec["repeat"] = rep
                runs.append(rec)
                print(f"rep {rep} {config:>3s} {work}: {rec['wall']:.3f} s ok={rec['ok']} "
                      f"(load {rec['load']})", file=sys.stderr)
    result = {"rows": n, "repeat": args.repeat, "cores": os.cpu_count(),
              "started": t_start, "load_start": uptime_start, "load_end": _load(),
              "cores_available": [cpu_start, cpu_probe(os.cpu_count() or 1)],
              "link_rate": _rate(args.mh_dir) if have_mh else None,
              "skipped": skipped, "net": net, "runs": runs}
    res_dir = Path(args.results)
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "scaling.json").write_text(json.dumps(result, indent=1) + "\n")
    table = summarize(result)
    (res_dir / "scaling.md").write_text(render(result, table))
    plot(table, result, res_dir / "scaling.png")
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)
    print((res_dir / "scaling.md").read_text())
    return 0


def _rate(mh_dir) -> str | None:
    p = Path(mh_dir) / "rate"
    return p.read_text().strip() if p.exists() else None


# --- summary, table, plot --------------------------------------------------------------
def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fit_net(net_rec):
    """alpha (s): fastest half round trip of an 8-byte ping-pong (the latency without
    CPU contention; the median is reported as ``alpha_median``); beta (bytes/s): least
    squares slope of the median ping-pong time over messages of 1 MiB and more."""
    pp = net_rec["pingpong"]
    alpha = next(p["min"] for p in pp if p["bytes"] == 8)
    alpha_median = next(p["seconds"] for p in pp if p["bytes"] == 8)
    big = [(p["bytes"], p["seconds"]) for p in pp if p["bytes"] >= 1 << 20]
    x = np.array([b for b, _ in big], float)
    y = np.array([s for _, s in big], float)
    slope, icpt = np.polyfit(x, y, 1)
    return {"alpha": alpha, "alpha_median": alpha_median, "beta": 1.0 / slope,
            "intercept": icpt}


def _host_bytes(run):
    """Bytes the exchanges of one run sent from each host to other hosts."""
    hosts = run["hosts"]
    out = {h: 0 for h in hosts}
    for src, row in enumerate(run["sent_to"]):
        out[hosts[src]] += sum(b for dst, b in enumerate(row) if hosts[dst] != hosts[src])
    return out


def summarize(result):
    table = {}
    for config in CONFIGS:
        for work in WORKLOADS:
            rs = [r for r in result["runs"] if r["config"] == config and r["workload"] == work]
            if not rs:
                continue
            p = rs[0]["ranks"]
            row = {"config": config, "workload": work, "ranks": p, "n": len(rs),
                   "ok": all(r["ok"] for r in rs), "wall": _med([r["wall"] for r in rs]),
                   "loads": [r["load"] for r in rs]}
            for ph in PHASE_COLS:
                row[ph] = _med([r["phases"].get(ph, {}).get("max", 0.0) for r in rs])
            row["rest"] = _med([sum(v["max"] for k, v in r["phases"].items()
                                    if k not in PHASE_COLS + ("skew",)) for r in rs])
            row["skew"] = _med([r["phases"].get("skew", {}).get("max", 0.0) for r in rs])
            row["maxrss"] = _med([max(r.get("maxrss") or [0]) for r in rs])
            rates = [b / t for r in rs for b, t in (r.get("touch") or []) if t > 0]
            row["touch_rate"] = _med(rates)
            row["sent_exchange"] = _med([r["phases"].get("exchange", {}).get("bytes_sent", 0) / p
                                         for r in rs])
            row["sent_wait"] = _med([r["phases"].get("wait", {}).get("bytes_sent", 0) / p
                                     for r in rs])
            offrank = [sum(b for d, b in enumerate(row_) if d != s)
                       for s, row_ in enumerate(rs[0]["sent_to"])]
            row["sent_off_rank"] = statistics.mean(offrank)
            if "veth" in rs[0]:
                expect = [sum(_host_bytes(r).values()) for r in rs]
                veth = [sum(v[0] for v in r["veth"].values()) for r in rs]
                row["cross_expect"] = _med(expect)
                row["cross_veth"] = _med(veth)
                row["veth_ratio"] = _med([v / e for v, e in zip(veth, expect) if e > 0])
            table[(config, work)] = row
    for (config, work), row in table.items():
        base = table.get(("1", work))
        if base and row["wall"]:
            s = base["wall"] / row["wall"]
            # the same ratio per repeat (T1 and TP of one repeat are minutes apart at most)
            pairs = [(b["wall"], r["wall"]) for r in result["runs"] for b in result["runs"]
                     if r["config"] == config and r["workload"] == work and b["config"] == "1"
                     and b["workload"] == work and b.get("repeat") == r.get("repeat")]
            row["speedup_paired"] = _med([b / t for b, t in pairs])
            row["speedup"] = s
            row["eff"] = s / row["ranks"]
            row["eff_hw"] = s / min(row["ranks"], result["cores"] or 1)
            if result.get("cores_available"):
                avail = statistics.mean(result["cores_available"])
                row["eff_avail"] = s / min(row["ranks"], avail)
    return table


def _mib(b):
    return "-" if b is None else f"{b / 2**20:.1f}"


def render(result, table):
    n = result["rows"]
    lines = [
        "# Scaling report (benchmarks/scaling.py)", "",
        f"Run {result['started']} UTC; N = {n:,} rows (2^{int(np.log2(n))}) for every "
        f"configuration (strong scaling); median of {result['repeat']} runs, each its own "
        f"MPI job; {result['cores']} cores shared by all ranks and all \"hosts\"; links "
        f"between hosts: {result['link_rate'] or 'not measured'} (tc tbf), MPI over TCP. "
        f"Load average (1, 5, 15 min) at the start {result['load_start']}, at the end "
        f"{result['load_end']} (the load average counts this benchmark's own busy ranks "
        "too); the load before every job is in scaling.json. Other engineers' jobs ran on "
        "the machine at the same time: read the ratios, not the absolute seconds. Cores "
        "available to this run (CPU-bound processes on every core at once against one "
        f"alone), at the start and at the end: "
        + (", ".join(f"{c:.2f}" for c in result["cores_available"])
           if result.get("cores_available") else "not measured (older run)") + ".", "",
        "Configurations: `1`, `2`, `4` = ranks on one host (shared memory); `2x1`, `2x2` = "
        "2 namespace hosts x 1 or 2 ranks, MPI between hosts over the shaped veth links.", "",
        "**Time.** Phases: slowest rank's seconds (exclusive). `skew`: a barrier the "
        "benchmark adds right before every exchange, so that ranks arriving late (load "
        "imbalance, CPU contention) do not count as transfer time; `rest` = wait + compile "
        "+ untraced. `wall`: slowest rank, barrier to barrier, median. `S` = T(1 rank) / T "
        "of the medians; `S pair` = median over repeats of T(1 rank) / T within one repeat "
        "(steadier when the load drifts); `E` = S / P; `E_hw` = S / min(P, cores): on this "
        "machine P ranks can at best run min(P, cores) times faster than one; `E_avail` = "
        "S / min(P, cores available), the same against the cores other jobs left free.", "",
        "| workload | config | P | read s | compute s | skew s | exchange s | write s | "
        "rest s | wall s | S | S pair | E | E_hw | E_avail | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    names = {"w1": "W1 stats+hist", "w2": "W2 sort", "w3": "W3 group-by (hash)"}
    rows = [(w, c, table[(c, w)]) for w in WORKLOADS for c in CONFIGS if (c, w) in table]
    for work, config, r in rows:
        lines.append(
            f"| {names[work]} | {config} | {r['ranks']} | {r['read']:.3f} | "
            f"{r['compute']:.3f} | {r['skew']:.3f} | {r['exchange']:.3f} | {r['write']:.3f} | "
            f"{r['rest']:.3f} | {r['wall']:.3f} | {r.get('speedup', 0):.2f} | "
            f"{r.get('speedup_paired') or 0:.2f} | {r.get('eff', 0):.2f} | "
            f"{r.get('eff_hw', 0):.2f} | "
            f"{'-' if r.get('eff_avail') is None else format(r['eff_avail'], '.2f')} | "
            f"{'yes' if r['ok'] else 'NO'} |")
    lines += [
        "", "**Bytes and memory.** `exch MiB/rank`: mean Alltoallv send buffer per rank "
        "(from the trace; includes the rows a rank keeps); `wait B/rank`: bytes the trace "
        "counts in the `wait` phase (the histogram's Allreduce); `off-rank`: what it sent to other "
        "ranks; `cross MiB`: bytes the exchange had to send between hosts (sum over hosts, "
        "from the exchange's counts); `veth MiB`: what the hosts' links counted during the "
        "job (all traffic, with Ethernet/IP/TCP headers); `veth/cross`: their ratio. "
        "`RSS MiB`: peak resident memory of the largest rank. `touch MB/s`: rate at which "
        "every rank faulted in fresh memory of its receive size right after the run "
        "(page faults are expensive on this VM).", "",
        "| workload | config | exch MiB/rank | wait B/rank | off-rank MiB/rank | cross MiB | "
        "veth MiB | veth/cross | RSS MiB | touch MB/s |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for work, config, r in rows:
        ratio = f"{r['veth_ratio']:.3f}" if r.get("veth_ratio") else "-"
        touch = f"{r['touch_rate'] / 1e6:.0f}" if r.get("touch_rate") else "-"
        lines.append(
            f"| {names[work]} | {config} | {_mib(r['sent_exchange'])} | "
            f"{r['sent_wait']:.0f} | {_mib(r['sent_off_rank'])} | {_mib(r.get('cross_expect'))} | "
            f"{_mib(r.get('cross_veth'))} | {ratio} | {_mib(r.get('maxrss'))} | {touch} |")
    if result["net"]:
        lines += ["", "## Network microbenchmark (fit for docs/scaling.md)", "",
                  "Ping-pong between rank 0 and the first rank on the other host (one host: rank 1), "
                  "half round trip; alpha = fastest 8-byte half round trip (median in "
                  "brackets: CPU contention), beta = least-squares slope of the median "
                  "times over messages >= 1 MiB.", "",
                  "| config | alpha us | beta MB/s | 64 MiB ping-pong s | Alltoallv 16 MiB/pair s |",
                  "|---|---|---|---|---|"]
        for rec in result["net"]:
            f = fit_net(rec)
            big = next(p["seconds"] for p in rec["pingpong"] if p["bytes"] == 1 << 26)
            a2a = next(a["seconds"] for a in rec["alltoallv"] if a["bytes_per_pair"] == 1 << 24)
            lines.append(f"| {rec['config']} (load {rec['load']}) | {f['alpha'] * 1e6:.1f} "
                         f"({f['alpha_median'] * 1e6:.0f}) | "
                         f"{f['beta'] / 1e6:.0f} | {big:.3f} | {a2a:.3f} |")
    if result["skipped"]:
        lines += ["", f"Not run (no multi-host wrapper): {', '.join(result['skipped'])}."]
    lines += ["", "![scaling](scaling.png)", "",
              "The cost model fitted to these runs, its errors and predictions to 10,000 "
              "ranks: docs/scaling.md.", ""]
    return "\n".join(lines)


def plot(table, result, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot (pip install -r "
              "benchmarks/requirements-scaling.txt)", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6))
    colors = {"read": "#4c72b0", "compute": "#55a868", "skew": "#dd8452",
              "exchange": "#c44e52", "write": "#8172b2", "rest": "#bbbbbb"}
    names = {"w1": "W1 stats + histogram", "w2": "W2 sort", "w3": "W3 group-by (hash)"}
    for ax, work in zip(axes, WORKLOADS):
        cfgs = [c for c in CONFIGS if (c, work) in table]
        bottom = np.zeros(len(cfgs))
        for ph in ("read", "compute", "skew", "exchange", "write", "rest"):
            vals = np.array([table[(c, work)][ph] for c in cfgs])
            ax.bar(cfgs, vals, bottom=bottom, color=colors[ph], label=ph)
            bottom += vals
        walls = [table[(c, work)]["wall"] for c in cfgs]
        ax.plot(cfgs, walls, "k_", markersize=22, label="wall")
        ax.set_title(names[work])
        ax.set_xlabel("ranks (AxB = A hosts x B ranks)")
        ax.set_ylabel("seconds (slowest rank per phase)")
    axes[0].legend(fontsize=8)
    ax = axes[3]
    for i, work in enumerate(WORKLOADS):
        cfgs = [c for c in CONFIGS if (c, work) in table]
        ax.plot(cfgs, [table[(c, work)].get("eff_hw", np.nan) for c in cfgs], "o-",
                color=f"C{i}", label=f"{names[work]}: E_hw")
        if any(table[(c, work)].get("eff_avail") is not None for c in cfgs):
            ax.plot(cfgs, [table[(c, work)].get("eff_avail", np.nan) for c in cfgs], "s--",
                    color=f"C{i}", alpha=0.6, label="E_avail")
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_ylim(0, max([1.3] + [r["eff_avail"] + 0.1 for r in table.values()
                                  if r.get("eff_avail") is not None]))
    ax.set_title("E_hw = S / min(P, cores)" + (
        "; dashed: E_avail" if result.get("cores_available") else ""), fontsize=9)
    ax.set_xlabel("configuration")
    ax.legend(fontsize=8)
    fig.suptitle(f"hpcproc strong scaling, N = 2^{int(np.log2(result['rows']))} rows, "
                 f"median of {result['repeat']}, {result['cores']} cores, inter-host links "
                 f"{result['link_rate']} (load {result['load_start']} -> {result['load_end']})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=parse_count, default=1 << 24)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--data", default=str(HERE / "data" / "scaling"))
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--mh-dir", default=os.environ.get("HPCPROC_MH_DIR"))
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-net", action="store_true", help="skip the network microbenchmark")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite scaling.md and scaling.png from scaling.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.render:
        res_dir = Path(args.results)
        result = json.loads((res_dir / "scaling.json").read_text())
        table = summarize(result)
        (res_dir / "scaling.md").write_text(render(result, table))
        plot(table, result, res_dir / "scaling.png")
        return 0
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
