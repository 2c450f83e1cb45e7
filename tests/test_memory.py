"""Freed memory kept for reuse (hpcproc.memory): on by default from the first collective
call, page faults gone for a freed array's successor, the free heap given back above the
cap, ``HPCPROC_RETAIN_MEMORY`` off / a size / invalid. Each case runs in its own process
(malloc's settings are the process's), under a real ``mpiexec``."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

from support import SERIAL_ONLY, balloon_reports_free_pages, hpcproc_cmd, run

pytestmark = SERIAL_ONLY

MB = 1 << 20

PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    from hpcproc import memory

    comm = MPI.COMM_WORLD
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def tiny_call():  # any collective: the first one applies the default
        hp.stats(hp.DistArray.from_local(np.arange(3.0), comm))

    tiny_call()
    a = np.ones(256 << 17)  # 256 MiB
    s = float(a[::4096].sum())
    del a
    free_before = memory.free_heap()
    f0 = faults()
    b = np.ones(256 << 17)  # the same size again: faulted in anew, or the freed one
    f1 = faults()
    s += float(b[::4096].sum())
    del b
    free_after_free = memory.free_heap()
    tiny_call()  # its end gives the free heap back when above the cap
    out = {"on": memory.retaining(), "faults": f1 - f0, "free_before": free_before,
           "free_kept": free_after_free, "free_after_call": memory.free_heap(), "s": s}
    everyone = comm.gather(out)
    print(json.dumps(everyone) if comm.rank == 0 else "", flush=True)
""")


def probe(tmp_path, ranks, env=None):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    proc = run([sys.executable, str(script)], ranks=ranks, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("ranks", [1, 3])
def test_default_keeps_freed_memory(tmp_path, ranks):
    for r in probe(tmp_path, ranks):
        assert r["on"]
        assert r["s"] == 2 * (256 << 17) // 4096
        # the second 256 MiB array is the freed first one: no page faulted in again
        # (fresh memory takes 128 faults with 2 MiB pages, 65,536 with 4 KiB ones)
        assert r["faults"] < 32, r
        assert r["free_before"] >= 256 * MB and r["free_kept"] >= 256 * MB, r
        # 256 MiB is far below the default cap (half the node's available memory / CPUs)
        # on any machine that runs this suite: kept after the call (less what the call
        # itself still holds)
        assert r["free_after_call"] >= 200 * MB, r


def test_off_gives_memory_back(tmp_path):
    for r in probe(tmp_path, 2, env={"HPCPROC_RETAIN_MEMORY": "0"}):
        assert not r["on"]
        assert r["faults"] >= 128, r  # a new mapping: every page faulted in again
        assert r["free_before"] < 64 * MB and r["free_after_call"] < 64 * MB, r


def test_cap_gives_the_free_heap_back_after_a_call(tmp_path):
    for r in probe(tmp_path, 2, env={"HPCPROC_RETAIN_MEMORY": "64M"}):
        assert r["on"] and r["faults"] < 32, r
        assert r["free_kept"] >= 256 * MB, r  # kept between calls ...
        assert r["free_after_call"] < 64 * MB, r  # ... and trimmed at the next call's end


def test_invalid_value_is_one_warning_and_no_hang(tmp_path):
    # raised on the ranks that have it, it left the others waiting in the collective:
    # now glibc's default there and one warning (rank 0 of the call), the job goes on
    import h5py
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = np.arange(10.0)
    proc = run(hpcproc_cmd("stats", f"{tmp_path / 'd.h5'}:/x", "--json"), ranks=2,
               timeout=120, env={"HPCPROC_RETAIN_MEMORY": "lots"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sum"] == 45.0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["hpcproc[rank 0] WARNING: HPCPROC_RETAIN_MEMORY must be a size of at "
                     "least 0 byte(s) (examples: 4096, 64M, 1.5G), got 'lots': ignored, "
                     "freed memory is given back"], proc.stderr
    script = tmp_path / "some.py"  # a bad value on one rank only: no hang, same results
    script.write_text(textwrap.dedent("""
        import numpy as np
        from mpi4py import MPI
        import hpcproc as hp
        from hpcproc import memory
        comm = MPI.COMM_WORLD
        res, _ = hp.exchange({"x": np.arange(10.0)}, np.arange(10) % comm.size, comm)
        everyone = comm.gather((memory.retaining(), res["x"].tolist()))
        print(everyone if comm.rank == 0 else "", flush=True)
    """))
    ranks = [sys.executable, str(script)]
    proc = run(["env", "HPCPROC_RETAIN_MEMORY=-1", *ranks, ":", "-n", "2", *ranks],
               ranks=1, timeout=60)
    assert proc.returncode == 0, proc.stderr
    want = [(r != 0, [float(x) for x in range(10) if x % 3 == r] * 3) for r in range(3)]
    assert proc.stdout.strip() == str(want), proc.stdout


def test_max_free_is_checked():
    from hpcproc import memory
    assert memory.retain_memory(memory.retaining(), max_free=np.int64(1 << 30)) in (True, False)
    memory.retain_memory(True)  # back to the default (this process's other tests)
    for bad in (-1, 1.5, "2G", True):
        with pytest.raises(ValueError, match="max_free must be a number of bytes"):
            memory.retain_memory(True, max_free=bad)


def _limited_cgroup(limit: int):
    """A new memory cgroup (v2, else v1) limited to ``limit`` bytes: (directory, procs
    file), or None where this process cannot make one (not root, no memory controller)."""
    import os
    import pathlib
    name = f"hpcproc-test-{os.getpid()}"
    for root, limit_file in (("/sys/fs/cgroup", "memory.max"),
                             ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")):
        d = pathlib.Path(root) / name
        if not (pathlib.Path(root) / "cgroup.procs").exists():
            continue  # not a cgroup hierarchy (a v1 machine's /sys/fs/cgroup is a tmpfs)
        try:
            d.mkdir()
        except OSError:
            continue
        try:
            (d / limit_file).write_text(str(limit))
            return d
        except OSError:
            d.rmdir()
    return None


def test_available_memory_sees_the_cgroup_limit(tmp_path):
    # a Slurm job with --mem: the node has GBs free, the job 256 MiB
    d = _limited_cgroup(256 * MB)
    if d is None:
        pytest.skip("cannot make a memory cgroup here")
    try:
        script = tmp_path / "avail.py"
        script.write_text(textwrap.dedent(f"""
            import os
            open({str(d / 'cgroup.procs')!r}, "w").write(str(os.getpid()))
            from hpcproc import memory
            print(memory.available(), memory._meminfo_available(0))
        """))
        proc = run([sys.executable, str(script)], timeout=60)
        assert proc.returncode == 0, proc.stderr
        in_job, node = map(int, proc.stdout.split())
        assert 0 < in_job <= 256 * MB < node, proc.stdout
    finally:
        d.rmdir()


def test_invalid_budget_on_one_rank_is_one_error_on_every_rank(tmp_path):
    # HPCPROC_MEMORY_BUDGET is read inside the exchange: raised on the rank that had a
    # bad value only, it left the other ranks waiting in the Alltoall (a script that
    # catches the error hung). Now every rank raises the same error and can go on.
    script = tmp_path / "budget.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from mpi4py import MPI
        import hpcproc as hp
        comm = MPI.COMM_WORLD
        try:
            hp.exchange({"x": np.arange(10.0)}, np.arange(10) % comm.size, comm)
            caught = "none"
        except ValueError as err:
            caught = str(err)
        # the job goes on: the next call, with the budget given, works on every rank
        res, _ = hp.exchange({"x": np.arange(10.0)}, np.arange(10) % comm.size, comm,
                             memory_budget=64 << 20)
        everyone = comm.gather((caught, res["x"].tolist()))
        print(everyone if comm.rank == 0 else "", flush=True)
    """))
    ranks = [sys.executable, str(script)]
    proc = run([*ranks, ":", "-n", "1", "env", "HPCPROC_MEMORY_BUDGET=lots", *ranks, ":",
                "-n", "1", *ranks], ranks=1, timeout=60)
    assert proc.returncode == 0, proc.stderr
    msg = ("HPCPROC_MEMORY_BUDGET must be a size of at least 1 byte(s) (examples: 4096, "
           "64M, 1.5G), got 'lots'")
    want = [(msg, [float(x) for x in range(10) if x % 3 == r] * 3) for r in range(3)]
    assert proc.stdout.strip() == str(want), proc.stdout



@pytest.mark.parametrize("env", [{}, {"NUMPY_MADVISE_HUGEPAGE": "1"},
                                 {"NUMPY_MADVISE_HUGEPAGE": "0"}])
def test_numpy_huge_pages_off_only_where_the_host_takes_free_pages(tmp_path, env):
    # numpy's huge-page advice is on by default; the first collective call turns it off
    # on a guest whose balloon reports free pages, unless numpy's own variable is set
    script = tmp_path / "huge.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from mpi4py import MPI
        import hpcproc as hp
        from hpcproc import memory
        comm = MPI.COMM_WORLD
        before = memory.numpy_huge_pages(True)
        memory.numpy_huge_pages(before)
        hp.stats(hp.DistArray.from_local(np.arange(3.0), comm))
        after = memory.numpy_huge_pages(True)
        everyone = comm.gather((before, after))
        print(everyone if comm.rank == 0 else "", flush=True)
    """))
    proc = run([sys.executable, str(script)], ranks=2, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    numpy_default = env.get("NUMPY_MADVISE_HUGEPAGE", "1") != "0"
    want = numpy_default and ("NUMPY_MADVISE_HUGEPAGE" in env or
                              not balloon_reports_free_pages())
    assert proc.stdout.strip() == str([(numpy_default, want)] * 2), proc.stdout
