"""Multi-host runs over a real (virtual) network: 2 hosts x 2 ranks vs 4 ranks on one host.

The hosts are network namespaces made by tests/multihost/cluster.sh (links shaped to
1 Gbit, MPI forced over TCP). tests/multihost/capabilities.py runs every capability on
both layouts; the outputs must be identical to each other and equal to numpy references,
the node-aware parts must see two nodes, the bytes must have crossed the links, and a
failure on the second host must end the whole job. Serial session only (the tests launch
their own ranks). They skip, with the reason, only where network namespaces cannot be
made or given their own host name (not root, no iproute2, no CAP_NET_ADMIN or
CAP_SYS_ADMIN); HPCPROC_MULTIHOST=0 skips them on purpose.
"""

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest

from support import MPIEXEC, SERIAL_ONLY, run

pytestmark = SERIAL_ONLY  # launches its own processes

HERE = Path(__file__).resolve().parent
CLUSTER = HERE / "cluster.sh"
PROG = HERE / "capabilities.py"
PY = str(Path(MPIEXEC).parent / "python")
N_X, N_KEYS, N_LEFT, N_RIGHT = 600_001, 400_003, 200_003, 100_001
JOB_TIMEOUT = 300
# Names of our own, so that concurrent runs (and a cluster brought up by hand) never clash.
_ID = uuid.uuid4().hex[:4]
MH_DIR, PREFIX = f"/tmp/hpcproc-multihost-{_ID}", f"hpt{_ID}"
SUBNET = f"10.214.{int(_ID, 16) % 250 + 1}"


def _namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if os.environ.get("HPCPROC_MULTIHOST") == "0":
        return "HPCPROC_MULTIHOST=0"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2 / util-linux)"
    probe = f"hpcmhprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          timeout=30)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        uts = subprocess.run(["ip", "netns", "exec", probe, "unshare", "--uts", "hostname",
                              probe], capture_output=True, text=True, timeout=30)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    if uts.returncode != 0:
        return f"cannot give a namespace host its own host name: {uts.stderr.strip()}"
    return None


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI_LOCAL", "HPCPROC_MH_", "HPCPROC_MEMORY"))}
    env.update(HPCPROC_MPIEXEC=MPIEXEC, HPCPROC_MH_DIR=MH_DIR, HPCPROC_MH_PREFIX=PREFIX,
               HPCPROC_MH_SUBNET=SUBNET, **extra)
    return env


class Hosts:
    """The namespace hosts: run jobs across them, read the link byte counters."""

    def __init__(self):
        self.mpiexec = f"{MH_DIR}/mpiexec"

    def run(self, args, ranks=4, per_host=2, env=None, timeout=JOB_TIMEOUT):
        cmd = [self.mpiexec, "-n", str(ranks), "-ppn", str(per_host), PY, str(PROG), *args]
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=_env(**(env or {})))
        proc.seconds = time.monotonic() - start
        return proc

    def counters(self) -> dict:
        out = subprocess.run([str(CLUSTER), "counters"], capture_output=True, text=True,
                             timeout=30, env=_env(), check=True).stdout
        return {h: (int(tx), int(rx)) for h, tx, rx in (line.split() for line in
                                                         out.splitlines())}


@pytest.fixture(scope="module")
def hosts():
    why = _namespaces_unavailable()
    if why:
        pytest.skip(f"multi-host tests: {why}")
    up = subprocess.run([str(CLUSTER), "up", "2", "--rate", "1gbit"], capture_output=True,
                        text=True, timeout=120, env=_env())
    try:
        assert up.returncode == 0, f"cluster.sh up failed:\n{up.stderr}"
        yield Hosts()
    finally:
        subprocess.run([str(CLUSTER), "down"], capture_output=True, timeout=120, env=_env())


def _write_inputs(d: Path) -> dict:
    rng = np.random.default_rng(8)
    x = rng.normal(3.0, 2.0, N_X)
    x[rng.integers(0, N_X, 50)] = rng.normal(0, 1e6, 50)  # outliers widen the histogram
    xc = rng.random(N_X)
    ref = {"x": x, "xc": xc,
           "key": rng.integers(-2**40, 2**40, N_KEYS) // 2**20,  # many duplicate keys
           "val": rng.random(N_KEYS),
           "lkey": rng.integers(0, 50_000, N_LEFT), "a": rng.integers(0, 1 << 30, N_LEFT),
           "rkey": rng.integers(0, 60_000, N_RIGHT), "b": rng.random(N_RIGHT)}
    with h5py.File(d / "data.h5", "w") as f:
        f["x"] = x
        f.create_dataset("xc", data=xc, chunks=(10_000,), compression="gzip", shuffle=True)
    with h5py.File(d / "keys.h5", "w") as f:
        for name in ("key", "val", "lkey", "a", "rkey", "b"):
            f[name] = ref[name]
    return ref


def _read(path, names):
    with h5py.File(path, "r") as f:
        return {n: f[n][...] for n in names}


@pytest.fixture(scope="module")
def runs(hosts, tmp_path_factory):
    """The capability program on one host (4 ranks) and on 2 hosts x 2 ranks."""
    base = tmp_path_factory.mktemp("multihost")
    ind = base / "in"
    ind.mkdir()
    ref = _write_inputs(ind)
    out = {}
    for layout in ("one", "two"):
        d = base / layout
        d.mkdir()
        # A fresh kernel cache per layout, so compile-once-per-node is observable.
        env = {"HPCPROC_CACHE_DIR": str(base / f"cache-{layout}"), "HPCPROC_AOT": "0"}
        before = hosts.counters()
        if layout == "one":
            proc = run([PY, str(PROG), "run", str(ind), str(d)], ranks=4,
                       timeout=JOB_TIMEOUT, env=env)
        else:
            proc = hosts.run(["run", str(ind), str(d)], env=env)
        after = hosts.counters()
        assert proc.returncode == 0, f"{layout}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
        crossed = sum(after[h][0] - before[h][0] for h in after)
        out[layout] = {"dir": d, "crossed": crossed,
                       "json": json.loads((d / "results.json").read_text())}
    return ref, out, base


DATASETS = {"x.h5": ["x"], "y.h5": ["y"], "sorted.h5": ["key", "val"],
            "grouped.h5": ["key", "val_sum", "val_count"], "joined.h5": ["key", "a", "b"]}


def test_same_answers_on_one_host_and_across_hosts(runs):
    _, out, _ = runs
    one, two = out["one"], out["two"]
    assert one["json"]["stats"] == two["json"]["stats"]
    assert one["json"]["hist"] == two["json"]["hist"]
    for fname, names in DATASETS.items():
        a, b = _read(one["dir"] / fname, names), _read(two["dir"] / fname, names)
        for n in names:
            assert a[n].dtype == b[n].dtype and np.array_equal(a[n], b[n]), (fname, n)


def test_answers_match_numpy(runs):
    ref, out, _ = runs
    for layout in ("one", "two"):
        d, res = out[layout]["dir"], out[layout]["json"]
        x = ref["x"]
        np.testing.assert_array_equal(_read(d / "x.h5", ["x"])["x"], x)
        np.testing.assert_array_equal(_read(d / "y.h5", ["y"])["y"], 2.0 * ref["xc"] + 1.0)
        st = res["stats"]
        assert st["count"] == x.size and st["min"] == x.min() and st["max"] == x.max()
        np.testing.assert_allclose([st["mean"], st["std"]], [x.mean(), x.std()], rtol=1e-12)
        counts, edges = np.histogram(x, bins=64)
        np.testing.assert_array_equal(res["hist"][0], counts)
        np.testing.assert_allclose(res["hist"][1], edges, rtol=1e-15)

        order = np.argsort(ref["key"], kind="stable")
        s = _read(d / "sorted.h5", ["key", "val"])
        np.testing.assert_array_equal(s["key"], ref["key"][order])
        np.testing.assert_array_equal(s["val"], ref["val"][order])

        keys, inv = np.unique(ref["key"], return_inverse=True)
        g = _read(d / "grouped.h5", ["key", "val_sum", "val_count"])
        np.testing.assert_array_equal(g["key"], keys)
        np.testing.assert_array_equal(g["val_count"], np.bincount(inv))
        np.testing.assert_allclose(g["val_sum"], np.bincount(inv, weights=ref["val"]),
                                   rtol=1e-12)

        j = _read(d / "joined.h5", ["key", "a", "b"])
        got = np.lexsort((j["b"], j["a"], j["key"]))
        want = _merge(ref["lkey"], ref["a"], ref["rkey"], ref["b"])
        for n, w in zip(("key", "a", "b"), want):
            np.testing.assert_array_equal(j[n][got], w, err_msg=n)


def _merge(lkey, a, rkey, b):
    """Inner join reference (sorted by key, a, b) without pandas."""
    ro = np.argsort(rkey, kind="stable")
    rk, rb = rkey[ro], b[ro]
    lo, hi = np.searchsorted(rk, lkey, "left"), np.searchsorted(rk, lkey, "right")
    reps = hi - lo
    li = np.repeat(np.arange(lkey.size), reps)
    ri = np.concatenate([np.arange(s, e) for s, e in zip(lo, hi) if e > s])
    key, av, bv = lkey[li], a[li], rb[ri]
    o = np.lexsort((bv, av, key))
    return key[o], av[o], bv[o]


def test_bytes_crossed_the_links(runs):
    _, out, _ = runs
    # The sort alone sends about half of its 16 B rows to the other host.
    assert out["two"]["crossed"] > N_KEYS * 16 // 4, out["two"]["crossed"]


def test_node_aware_parts_see_two_nodes(runs):
    _, out, _ = runs
    for layout, n_nodes in (("one", 1), ("two", 2)):
        nodes = out[layout]["json"]["nodes"]
        hosts = {}
        for r, nd in enumerate(nodes):
            hosts.setdefault(nd["host"], []).append(r)
            assert nd["processor"] == nd["host"]
            assert nd["restored_same"]
        assert len(hosts) == n_nodes, hosts
        assert all(nd["node_size"] == 4 // n_nodes for nd in nodes)
        # compile once per node: every kernel compiled by exactly one rank of each node
        kernels = set().union(*(nd["kernels"] for nd in nodes))
        assert kernels
        for k in kernels:
            for ranks in hosts.values():
                how = [nodes[r]["kernels"].get(k) for r in ranks]
                assert how.count("compiled") == 1, (layout, k, how)
        # the per-rank exchange budget divides the node's memory by the ranks on the node
        # (a quarter of it; the two readings of /proc/meminfo are moments apart)
        for nd in nodes:
            expect = nd["available_memory"] // (4 // n_nodes) // 4
            assert abs(nd["memory_budget"] - expect) < 0.05 * expect, (layout, nd)


def test_checkpoint_restores_across_layouts(runs, hosts):
    """A checkpoint written across hosts restores on one host (3 ranks) and vice versa."""
    ref, out, base = runs
    jobs = [("two", lambda args: run([PY, str(PROG), *args], ranks=3, timeout=JOB_TIMEOUT)),
            ("one", lambda args: hosts.run(args, ranks=4, per_host=2))]
    for layout, launch in jobs:
        target = base / f"restored-from-{layout}.h5"
        proc = launch(["restore", str(out[layout]["dir"] / "ckpt"), str(target)])
        assert proc.returncode == 0, proc.stderr[-3000:]
        np.testing.assert_array_equal(_read(target, ["x"])["x"], ref["x"])
        t = _read(f"{target}.table.h5", ["key", "val"])
        np.testing.assert_array_equal(t["key"], ref["key"])
        np.testing.assert_array_equal(t["val"], ref["val"])
        meta = json.loads(Path(f"{target}.json").read_text())
        assert meta["step"] == 7 and meta["time"] == out[layout]["json"]["stats"]["mean"]


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_failure_on_second_host_ends_the_job(runs, hosts, how):
    _, _, base = runs
    d = base / f"fail-{how}"
    d.mkdir()
    var = "HPCPROC_MH_RAISE_RANK" if how == "raise" else "HPCPROC_MH_KILL_RANK"
    proc = hosts.run(["run", str(base / "in"), str(d)], env={var: "3"}, timeout=120)
    assert proc.returncode != 0
    assert proc.seconds < 60, proc.seconds
    if how == "raise":
        assert proc.stderr.count(f"injected failure on rank 3 ({PREFIX}2)") == 1, proc.stderr
    assert not (d / "sorted.h5").exists()
