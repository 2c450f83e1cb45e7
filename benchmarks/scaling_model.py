"""The alpha-beta cost model of docs/scaling.md: fit, check against the multi-host runs,
predict at 64, 1,000 and 10,000 ranks.

    python benchmarks/scaling_model.py            # reads benchmarks/results/scaling.json

Prints the tables that docs/scaling.md shows. The fitted quantities come from the
scaling run (``benchmarks/scaling.py``): alpha and beta of the shaped link (ping-pong
between the two namespace hosts), beta of shared memory (ping-pong on one host), and
per-row local costs and peak memory per row of every workload (one rank, one host).
Everything about the large cluster is an assumption, listed in ``CLUSTER``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scaling import fit_net, summarize  # noqa: E402  (benchmarks/scaling.py)

#: The machine the predictions are for: assumptions, not measurements.
CLUSTER = {
    "ranks_per_node": 32,
    "beta_node": 0.95 * 12.5e9,  # 100 Gbit/s NIC per node, TCP-like 95 % efficiency (as measured here)
    "alpha": 2e-6,               # inter-node MPI latency of an HPC fabric
    "fs_bw": 200e9,              # parallel file system, aggregate bytes/s (read and write)
    "fs_client_bw": 10e9,        # per node
    "md_ops": 50_000,            # metadata server: open/stat/create per second
    "md_latency": 1e-3,          # one metadata operation
    "fsync": 5e-3,               # one fsync
}
N_PRED = 1 << 32                 # rows of the predictions (strong scaling)
D_KEYS = 1 << 20                 # distinct keys of the group-by (W3)
SAMPLES_PER_RANK = 3600          # range.py: 36 / eps**2 with eps = 0.1
MAX_SAMPLES = 1 << 22            # range.py
STATE_BYTES = 250                # pickled stats state (measured with pickle)


def log2(p):
    return math.log2(p) if p > 1 else 0.0


# --- fit -------------------------------------------------------------------------------
def fit(result):
    net = {r["config"]: fit_net(r) for r in result["net"]}
    # on one host an Alltoallv is a memory copy: fit its rate to the largest one of the
    # microbenchmark (bytes a rank sends, its own part included, per second)
    one = next(r for r in result["net"] if r["config"] == "2")
    big = max(one["alltoallv"], key=lambda a: a["bytes_per_pair"])
    net["2"]["beta_a2a"] = big["bytes_per_pair"] * one["ranks"] / big["seconds"]
    table = summarize(result)
    n = result["rows"]
    local = {}
    # process baseline: W1 at one rank holds its 8 B/row input and nothing else big
    base = table[("1", "w1")]["maxrss"] - 8 * n
    for w in ("w1", "w2", "w3"):
        one = table[("1", w)]
        local[w] = {"read": one["read"] / n, "compute": one["compute"] / n,
                    "write": one["write"] / n, "wall": one["wall"] / n,
                    "mem": (one["maxrss"] - base) / n}
    return net, table, local


def check_net(result, net):
    """Alltoallv of the microbenchmark (buffers reused): predicted vs measured."""
    link, shm = net["2x1"], net["2"]
    rows = []
    for rec in result["net"]:
        hosts = rec["hosts"]
        p = len(hosts)
        per_host = {h: hosts.count(h) for h in hosts}
        for a in rec["alltoallv"]:
            m = a["bytes_per_pair"]
            if len(per_host) > 1:
                k = max(per_host.values())
                pred = (p - 1) * link["alpha"] + k * (p - k) * m / link["beta"] \
                    + k * m / shm["beta_a2a"]
            else:
                pred = (p - 1) * shm["alpha"] + p * m / shm["beta_a2a"]
            rows.append((rec["config"], m, pred, a["seconds"]))
    return rows


def check(result, net, table):
    """Predicted vs measured exchange phase (without the skew barrier) and wall time."""
    link, shm = net["2x1"], net["2"]
    # the cores other jobs left free (measured at the start and end of the run)
    cores = statistics.mean(result.get("cores_available") or [result["cores"]])
    calls = {"w1": 0, "w2": 2, "w3": 4}   # Alltoallv calls per run: one per column, 1 round
    rows = []
    for (config, w), r in table.items():
        if r["ranks"] == 1:
            continue
        runs = [x for x in result["runs"] if x["config"] == config and x["workload"] == w]
        preds, nets = [], []
        for run in runs:
            hosts = run["hosts"]
            p = len(hosts)
            cross = {h: 0 for h in hosts}
            local_b = []
            for s, sent in enumerate(run["sent_to"]):
                cross[hosts[s]] += sum(b for d, b in enumerate(sent) if hosts[d] != hosts[s])
                local_b.append(sum(b for d, b in enumerate(sent) if hosts[d] == hosts[s]))
            alpha = link["alpha"] if len(set(hosts)) > 1 else shm["alpha"]
            nets.append(max(cross.values()) / link["beta"])
            preds.append(calls[w] * (p - 1) * alpha + nets[-1] + max(local_b) / shm["beta_a2a"])
        x_pred = statistics.median(preds)
        t1 = table[("1", w)]["wall"]
        comm = statistics.median(nets) if w != "w1" else 8 * log2(r["ranks"]) * link["alpha"]
        wall_pred = t1 / min(r["ranks"], cores) + comm
        if w == "w1":
            x_pred = comm  # the allgather of states and the histogram Allreduce
        meas_x = r["exchange"] if w != "w1" else r["rest"]
        key = "exchange" if w != "w1" else "wait"
        best_x = min(x["phases"].get(key, {}).get("max", 0.0) for x in runs)
        best_wall = min(x["wall"] for x in runs)
        rows.append((w, config, r["ranks"], x_pred, meas_x, best_x, wall_pred, r["wall"],
                     best_wall))
    return rows


# --- predictions -------------------------------------------------------------------------
def alltoallv(p, per_rank_bytes, calls, c, part="both"):
    """Time of ``calls`` Alltoallv of ``per_rank_bytes`` per rank: (P-1) messages each
    (``part="latency"``), the node's off-node bytes through its NIC (``"bytes"``)."""
    k = min(c["ranks_per_node"], p)
    off_node = per_rank_bytes * k * max(0.0, 1 - k / p)
    lat, byt = calls * (p - 1) * c["alpha"], off_node / c["beta_node"]
    return {"latency": lat, "bytes": byt, "both": lat + byt}[part]


def allgather_small(p, item_bytes, c):
    """mpi4py's allgather of a pickled object: sizes, then Allgatherv."""
    k = min(c["ranks_per_node"], p)
    return 2 * log2(p) * c["alpha"] + k * p * item_bytes / c["beta_node"]


def allgatherv(p, total_bytes, c):
    k = min(c["ranks_per_node"], p)
    return log2(p) * c["alpha"] + k * total_bytes * (1 - 1 / p) / c["beta_node"]


def fs_time(p, nbytes, c):
    nodes = max(1, p // c["ranks_per_node"])
    return nbytes / min(c["fs_bw"], nodes * c["fs_client_bw"])


def predict(p, local, merge_s, sort_per_sample, c=CLUSTER, n=N_PRED, d=D_KEYS):
    """{operation: (seconds by term, memory bytes per rank)} at ``p`` ranks."""
    npr = n / p
    samples = min(MAX_SAMPLES, SAMPLES_PER_RANK * p)
    out = {}
    # W1: read 8 B/row, stats + 64-bin histogram
    out["read (8 B/row)"] = ({
        "bytes from the file system": fs_time(p, 8 * n, c),
        "metadata on rank 0 + bcast": c["md_latency"] + log2(p) * c["alpha"],
        "P opens of the file (metadata server)": p / c["md_ops"],
        "3 small allgathers": 3 * allgather_small(p, 64, c)}, 8 * npr)
    out["stats + histogram"] = ({
        "local kernels": local["w1"]["compute"] * npr,
        # binomial tree in rank order to rank 0 (collectives.allreduce_state), then bcast
        "tree: log2 P messages + merges": math.ceil(log2(p)) * (
            c["alpha"] + STATE_BYTES / c["beta_node"] + merge_s),
        "bcast of the result": log2(p) * (c["alpha"] + STATE_BYTES / c["beta_node"]),
        "histogram Allreduce": 2 * log2(p) * c["alpha"]},
        local["w1"]["mem"] * npr + p * (STATE_BYTES + 600))
    # W2: sample sort of 16-byte rows
    out["sort (16 B/row)"] = ({
        "local (partition + radix sort)": local["w2"]["compute"] * npr,
        "sample Allgatherv": allgatherv(p, 16 * samples, c),
        "sample sort on every rank": sort_per_sample * samples,
        "Alltoallv latency (2 (P-1) messages)": alltoallv(p, 16 * npr, 2, c, "latency"),
        "Alltoallv bytes (node NIC)": alltoallv(p, 16 * npr, 2, c, "bytes"),
        "small collectives (~7)": 7 * allgather_small(p, 32, c)},
        local["w2"]["mem"] * npr + 40 * samples + 15 * 8 * p)
    # W3: hash group-by, D keys, 32 B partial state per (rank, key)
    dr = d * (1 - math.exp(-npr / d))
    out["group-by hash (D = 2^20)"] = ({
        "local pre-aggregation + merge": local["w3"]["compute"] * (npr + dr) * n / (n + d),
        "sample Allgatherv (8 B keys)": allgatherv(p, 8 * min(MAX_SAMPLES,
                                                             SAMPLES_PER_RANK * p), c),
        "sample sort on every rank": sort_per_sample * samples,
        "Alltoallv latency (4 (P-1) messages)": alltoallv(p, 32 * dr, 4, c, "latency"),
        "Alltoallv bytes of D_r partial states": alltoallv(p, 32 * dr, 4, c, "bytes")},
        local["w3"]["mem"] * npr + 100 * dr + 24 * samples)
    k = min(c["ranks_per_node"], p)
    out["group-by dense (D = 2^20)"] = ({
        "local": local["w3"]["compute"] * npr * 0.3,
        "Allreduce 24 B x D (Rabenseifner)": 2 * log2(p) * c["alpha"]
        + 2 * k * 24 * d / c["beta_node"]},
        16 * npr + 2 * 24 * d)
    # join: hash join of two 16-byte-row tables of N/2 rows each
    out["join hash (2 x N/2 rows)"] = ({
        "local hash join": local["w3"]["compute"] * npr,
        "2 Alltoallv latency": 2 * alltoallv(p, 16 * npr / 2, 2, c, "latency"),
        "2 Alltoallv bytes": 2 * alltoallv(p, 16 * npr / 2, 2, c, "bytes")},
        local["w2"]["mem"] * npr)
    out["join broadcast (64 MiB side)"] = ({
        "Allgatherv of the small side": allgatherv(p, 64 << 20, c),
        "local probe": local["w3"]["compute"] * npr},
        16 * npr + (64 << 20) * 1.5)
    # checkpoint of 16 B/row, one file per rank
    manifest = 120 * p
    out["checkpoint save"] = ({
        "create P files (metadata server)": c["md_latency"] + p / c["md_ops"],
        "write + fsync": fs_time(p, 16 * n, c) + c["fsync"],
        "gather layouts, agree, manifest": 3 * allgather_small(p, 200, c)
        + manifest / 1e9 + 3 * c["md_latency"]},
        16 * npr)
    out["checkpoint restore"] = ({
        # each rank checks only the file it reads (checkpoint/_reader.assigned_files)
        "P stats in all (own file each)": p / c["md_ops"],
        # rank 0 reads the manifest and broadcasts it (checkpoint/_core.restore)
        "rank 0 reads the manifest; bcast": c["md_latency"] + manifest / 1e9 + p * 1e-7
        + log2(p) * (c["alpha"] + manifest / c["beta_node"]),
        "read own file": fs_time(p, 16 * n, c),
        "agreement (Allreduce of a flag)": 2 * log2(p) * c["alpha"]},
        16 * npr + manifest)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=str(HERE / "results" / "scaling.json"))
    ap.add_argument("--merge-us", type=float, default=None,
                    help="seconds per state merge of hp.stats (default: measured here)")
    args = ap.parse_args(argv)
    result = json.loads(Path(args.results).read_text())
    net, table, local = fit(result)
    print("## fit\n")
    for k, f in net.items():
        print(f"- {k}: alpha {f['alpha'] * 1e6:.1f} us, beta {f['beta'] / 1e6:.0f} MB/s")
    print(f"- one host, Alltoallv copy rate: {net['2']['beta_a2a'] / 1e6:.0f} MB/s per rank")
    for w, v in local.items():
        print(f"- {w} per row at 1 rank: " + ", ".join(
            f"{k} {s * 1e9:.1f} ns" for k, s in v.items() if k != "mem")
            + f"; peak memory {v['mem']:.1f} B/row")
    print("\n## check: Alltoallv microbenchmark (buffers reused)\n")
    print("| config | bytes per pair | predicted s | measured s | error |")
    print("|---|---|---|---|---|")
    for config, m, pred, meas in check_net(result, net):
        print(f"| {config} | {m:,} | {pred:.4f} | {meas:.4f} | {100 * (pred - meas) / meas:+.0f} % |")
    print("\n## check: workloads (median of the runs; cores available "
          f"{statistics.mean(result.get('cores_available') or [result['cores']]):.2f})\n")
    print("| workload | config | P | exchange predicted s | median s | error | best s | "
          "error | wall predicted s | median s | error | best s | error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def err(a, b):
        return f"{100 * (a - b) / b:+.0f} %" if b > 0 else "-"
    for w, config, p, xp, xm, xb, wp, wm, wb in sorted(check(result, net, table)):
        print(f"| {w} | {config} | {p} | {xp:.3f} | {xm:.3f} | {err(xp, xm)} | {xb:.3f} | "
              f"{err(xp, xb)} | {wp:.3f} | {wm:.3f} | {err(wp, wm)} | {wb:.3f} | "
              f"{err(wp, wb)} |")
    print("\n(doc form)\n")
    names = {"w1": "stats + histogram", "w2": "sort", "w3": "group-by (hash)"}
    cfg = {"2": "one host, 2", "4": "one host, 4", "2x1": "2 hosts x 1", "2x2": "2 hosts x 2"}
    order = {"2x1": 0, "2x2": 1, "2": 2, "4": 3}
    for w, config, _, xp, xm, xb, wp, wm, wb in sorted(
            check(result, net, table), key=lambda r: (order[r[1]], r[0])):
        if w == "w1":  # communication of a few hundred bytes: below the noise
            x = f"{xp * 1e3:.2f} ms | {xm * 1e3:.0f} ms (wait + rest) | {xb * 1e3:.0f} ms (wait)"
        else:
            x = f"{xp:.3f} s | {xm:.3f} s ({err(xp, xm)}) | {xb:.3f} s ({err(xp, xb)})"
        print(f"| {names[w]} | {cfg[config]} | {x} | {wp:.2f} s | {wm:.2f} s ({err(wp, wm)}) | "
              f"{wb:.2f} s ({err(wp, wb)}) |")
    merge_s = (args.merge_us or _merge_cost()) * 1e-6
    sort_per_sample = local["w2"]["compute"]  # the same radix sort per row
    print(f"\n## predictions: N = 2^{int(math.log2(N_PRED))} rows, merge {merge_s * 1e6:.0f} us/state\n")
    ps = (64, 1000, 10000)
    preds = {p: predict(p, local, merge_s, sort_per_sample) for p in ps}
    print("| operation | term | " + " | ".join(f"P = {p:,}" for p in ps) + " |")
    print("|---|---|" + "---|" * len(ps))
    for op in preds[ps[0]]:
        terms = list(preds[ps[0]][op][0])
        for i, term in enumerate(terms):
            vals = []
            for p in ps:
                t = preds[p][op][0]
                v = _num(t[term])
                vals.append(f"**{v}**" if term == max(t, key=t.get) else v)
            print(f"| {op if i == 0 else ''} | {term} | " + " | ".join(vals) + " |")
        tot = " | ".join(f"{_num(sum(preds[p][op][0].values()))} s; {_mem(preds[p][op][1])}"
                         for p in ps)
        print(f"| | **total; memory per rank** | {tot} |")
    return 0


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}" if x >= 0.001 else f"{x:.1g}"


def _mem(b: float) -> str:
    return f"{b / 2**30:.1f} GiB" if b >= 2**30 else f"{b / 2**20:,.0f} MiB"


def _merge_cost():
    """Microseconds to unpickle and merge one ``hp.stats`` state (rank-order merge)."""
    import pickle
    import time
    from functools import reduce

    from hpcproc.compute.stats import _merge_all
    from hpcproc.kernels.moment_state import empty_state

    s = empty_state(1)
    s[:, 0] = 10
    blob = pickle.dumps((s, None, 8 << 20, 0.1, 0.2, 0.3))
    t0 = time.perf_counter()
    reduce(_merge_all, [pickle.loads(blob) for _ in range(2000)])
    return (time.perf_counter() - t0) / 2000 * 1e6


if __name__ == "__main__":
    sys.exit(main())
