"""Freed memory kept for reuse: glibc's malloc told not to unmap large blocks.

numpy gets every array of more than a few hundred KiB from glibc's ``malloc``, which maps
it with ``mmap`` and unmaps it when it is freed; the next array of that size faults every
page in again, zeroed by the kernel (with transparent huge pages, sometimes after a
compaction of physical memory). A shuffle allocates and frees several arrays of its
input's size, and in a loop (a simulation's time steps, a benchmark's repeats) those page
faults cost as much system time as the work itself: a join of 2**25 rows on 2 ranks spent
1.6-2.0 s of system time beside 1.9 s of user time; with retention 0.1 s.

With retention on, ``malloc`` takes large blocks from its heap (``M_MMAP_MAX`` 0) and keeps
the heap's free top (``M_TRIM_THRESHOLD`` at its maximum): freed arrays are reused by
later allocations without page faults, as jemalloc and mimalloc (the allocators of Polars
and DuckDB) do. Memory a process keeps is memory other processes cannot use, so after
every outermost collective call the free part of the heap is given back
(``malloc_trim``) when it exceeds half of the memory still available (the node's, or the
job's memory cgroup's when less) divided by the node's CPUs, the most ranks it can hold.

Huge pages on a virtual machine that gives free memory back to its host: numpy advises
the kernel to back large arrays with transparent huge pages (``madvise``). When the
machine's memory balloon reports free pages to the host (virtio's free page reporting, as
Firecracker and QEMU guests use), the host takes back free 2 MiB blocks, and the first
touch of huge pages in a new process was slow: on a 2-core guest that had sat idle,
3.4-10 s per GiB, against 0.5-1.5 s with 4 KiB pages (0.16-0.3 s for huge pages reused
within a process; after heavy use the gap shrinks: docs/benchmarks.md has both). There
the first collective call turns numpy's advice off (jemalloc, the allocator of Polars and
DuckDB, does not advise huge pages either), unless ``NUMPY_MADVISE_HUGEPAGE`` is set
(numpy's own switch: ``1`` keeps the advice). Elsewhere numpy's default stays.
Advice for the arrays ``hp.read_table`` reads into only was measured and not taken: the
dense group-by on them needed 5-9% less CPU time, their first touch 2.7 s more per GiB
(docs/shuffles.md).

On by default from the first collective call. ``HPCPROC_RETAIN_MEMORY``: ``0`` off (the
free heap is given back at once), a size (``2G``) on with at most that much free heap kept
per rank, unset or ``1`` on with the share above, anything else off with a warning.
:func:`retain_memory` decides in code.
Without glibc (musl, macOS) it is never on. Not collective.
"""

from __future__ import annotations

import ctypes
import operator
import os
import threading
import time
import warnings

from ._units import env_size

__all__ = ["retain_memory", "retaining", "on_call", "after_call", "free_heap", "available",
           "host_takes_free_pages", "numpy_huge_pages"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: glibc's defaults, restored when retention is turned off
_DEFAULT_TRIM, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
#: Free heap below this is never worth a look at the node's memory.
_SMALL = 64 << 20
#: Seconds the node's available memory is taken as known (reading it costs ~80 us).
_FRESH = 1.0

_lock = threading.Lock()
_state = {"decided": False, "on": False, "cap": None, "avail": (-_FRESH, 0),
          "huge_pages": False}


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


def _libc():
    try:
        libc = ctypes.CDLL(None)
        for fn in ("mallopt", "malloc_trim", "mallinfo2"):
            getattr(libc, fn)
    except (OSError, AttributeError):  # not glibc >= 2.33
        return None
    libc.mallinfo2.restype = _Mallinfo2
    return libc


_LIBC = _libc()
#: The node's CPUs: the most ranks it can hold (os.cpu_count reads a file every call)
_CPUS = os.cpu_count() or 1


def retain_memory(enable: bool = True, *, max_free: int | None = None) -> bool:
    """Keep freed memory in the process for reuse (``True``), or give it back to the
    system when freed, glibc's default (``False``). ``max_free``: most free bytes kept
    after a collective call (default: half of the node's available memory divided by its
    CPUs). Returns whether retention is on (never without glibc). Not collective: every
    rank decides for itself."""
    if max_free is not None:
        given = max_free
        try:
            max_free = -1 if isinstance(given, bool) else operator.index(given)  # numpy ints too
        except TypeError:
            max_free = -1
        if max_free < 0:
            raise ValueError(f"retain_memory: max_free must be a number of bytes >= 0, "
                             f"got {given!r}")
    with _lock:
        _state["decided"], _state["cap"] = True, max_free
        if _LIBC is None:
            _state["on"] = False
            return False
        if enable:
            ok = _LIBC.mallopt(_M_MMAP_MAX, 0) and \
                _LIBC.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        else:
            _LIBC.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            _LIBC.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM)
            _LIBC.malloc_trim(0)
            ok = False
        _state["on"] = bool(ok)
        return _state["on"]


def retaining() -> bool:
    """Whether freed memory is kept (after :func:`on_call` or :func:`retain_memory`)."""
    return _state["on"]


def on_call(warn: bool = True) -> None:
    """At the start of an outermost collective call: the defaults, once per process
    (``HPCPROC_RETAIN_MEMORY``: ``0`` off; unset or ``1`` on; a size: on, at most that
    much kept; anything else off, with one warning naming the variable when ``warn``:
    the caller passes it on one rank; numpy's huge-page advice off where the host takes
    free pages back, see the module documentation)."""
    if not _state["huge_pages"]:  # also after retain_memory() decided the retention
        _state["huge_pages"] = True
        if "NUMPY_MADVISE_HUGEPAGE" not in os.environ and host_takes_free_pages():
            numpy_huge_pages(False)
    if not _state["decided"]:
        value = os.environ.get("HPCPROC_RETAIN_MEMORY", "").strip()
        if value in ("", "1"):
            retain_memory(True)
        elif value == "0":
            retain_memory(False)
        else:
            try:
                cap = env_size("HPCPROC_RETAIN_MEMORY", minimum=0)
            except ValueError as exc:  # a warning, not an error: raised here on some
                retain_memory(False)  # ranks only, it would leave the others waiting
                if warn:
                    warnings.warn(f"{exc}: ignored, freed memory is given back", stacklevel=3)
                return
            retain_memory(True, max_free=cap)


def host_takes_free_pages() -> bool:
    """Whether this machine's memory balloon reports free pages to its host (a virtio
    balloon device, ``device`` 0x0005, with feature bit 5, ``VIRTIO_BALLOON_F_REPORTING``:
    the Linux driver then hands every free 2 MiB block back). Not collective."""
    try:
        devices = os.scandir("/sys/bus/virtio/devices")
    except OSError:
        return False
    with devices:
        for dev in devices:
            try:
                with open(f"{dev.path}/device") as f:
                    if f.read().strip() != "0x0005":
                        continue
                with open(f"{dev.path}/features") as f:
                    bits = f.read().strip()  # one character per feature bit, bit 0 first
            except (OSError, ValueError):  # unreadable, or not text: not a balloon we know
                continue
            if len(bits) > 5 and bits[5] == "1":
                return True
    return False


def numpy_huge_pages(enable: bool) -> bool | None:
    """Turn numpy's transparent-huge-page advice for large arrays on or off; returns the
    previous setting (None when this numpy has no such switch). Not collective."""
    import numpy as np
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    switch = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    return None if switch is None else bool(switch(bool(enable)))


def free_heap() -> int:
    """Bytes free in malloc's heap (kept by the process, not in use), 0 without glibc."""
    return int(_LIBC.mallinfo2().fordblks) if _LIBC is not None else 0


def after_call() -> None:
    """At the end of an outermost collective call: give the free heap back when it is
    more than this rank's share of half of the memory the node (or job) still has."""
    if not _state["on"]:
        return
    free, cap = free_heap(), _state["cap"]
    if cap is None:  # the default: this rank's share of the node, checked when it matters
        if free <= _SMALL:
            return
        now = time.monotonic()
        seen, avail = _state["avail"]
        if now - seen >= _FRESH:
            avail = available()
            _state["avail"] = (now, avail)
        cap = avail // 2 // _CPUS
    if free > cap:
        _LIBC.malloc_trim(0)


def available(unknown: int = 1 << 62) -> int:
    """Bytes of memory still available to this process: the node's ``MemAvailable``, or
    less when a memory cgroup above this process (v1 or v2: Slurm's ``--mem``) has a
    lower limit than its working set (usage less inactive file cache) leaves;
    ``unknown`` when ``/proc/meminfo`` cannot tell. Not collective."""
    avail = _meminfo_available(unknown)
    for base, files in _memory_cgroups():
        while True:
            room = _cgroup_room(base, *files)
            if room is not None:
                avail = min(avail, room)
            if base.count("/") <= 4:  # /sys/fs/cgroup[/memory]: the root has no limit
                break
            base = base.rpartition("/")[0]
    return avail


#: (mount point, (limit file, usage file, reclaimable file cache key in memory.stat))
_V2 = ("memory.max", "memory.current", "inactive_file")
_V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def _memory_cgroups():
    """(directory, files) of every memory cgroup this process is in (v2, v1)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        hier, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        path = path.rstrip("/")
        if hier == "0" and not ctrls:
            out += [(root + path, _V2) for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")]
        elif "memory" in ctrls.split(","):
            out.append(("/sys/fs/cgroup/memory" + path, _V1))
    return out


def _cgroup_room(base: str, limit_file: str, usage_file: str, cache_key: str) -> int | None:
    """limit - (usage - inactive file cache) of one cgroup, None without a limit."""
    try:
        with open(f"{base}/{limit_file}") as f:
            limit = f.read().strip()
        if limit == "max" or int(limit) >= 1 << 60:  # v1 writes "no limit" as ~2**63
            return None
        with open(f"{base}/{usage_file}") as f:
            usage = int(f.read())
        cache = 0
        with open(f"{base}/memory.stat") as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == cache_key:
                    cache = int(v)
                    break
        return max(0, int(limit) - max(0, usage - cache))
    except (OSError, ValueError):
        return None


def _meminfo_available(unknown: int) -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return unknown
