"""Threads making their first library call at once on one rank: the MPI keyvals and the
derived communicators that hpcproc caches on a communicator (``comm.cached_comm``,
``lib_comm``, the exchange's staging pool) are made exactly once.

A second keyval or a second ``Dup`` on one rank only would leave that rank with a
collective the others never call (a hang). Only the creation runs in threads here:
concurrent collectives from several threads are not what is tested (and have hung in
plain mpi4py on this MPICH build). ``MPI.Comm.Create_keyval`` is wrapped to count its
calls and to sleep, which holds the window between the check and the store open.
"""

import threading
import time

import pytest
from mpi4py import MPI

from hpcproc import comm as hpcomm
from hpcproc.shuffles import _exchange

pytestmark = [
    pytest.mark.mpi,
    pytest.mark.skipif(MPI.Query_thread() < MPI.THREAD_MULTIPLE,
                       reason="the MPI build does not provide MPI_THREAD_MULTIPLE"),
]

THREADS = 8


class _Proxy:
    """``mpi4py.MPI`` (or ``MPI.Comm``) with ``Create_keyval`` counted and slowed."""

    def __init__(self, real, calls=None):
        self._real = real
        self.calls = calls if calls is not None else []

    def __getattr__(self, name):
        if name == "Comm":
            return _Proxy(self._real.Comm, self.calls)
        if name == "Create_keyval":
            def create(*args, **kwargs):
                self.calls.append(1)
                time.sleep(0.02)
                return self._real.Create_keyval(*args, **kwargs)
            return create
        return getattr(self._real, name)


def _at_once(fn):
    """``fn(i)`` in ``THREADS`` threads released together; their results in order."""
    start = threading.Barrier(THREADS)
    out, errors = [None] * THREADS, []

    def body(i):
        try:
            start.wait()
            out[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    if errors:
        raise errors[0]
    return out


@pytest.fixture
def fresh(comm):
    """A communicator on which nothing is cached yet (freed at the end)."""
    c = comm.Dup()
    yield c
    c.Free()


def test_cached_comm_made_once(monkeypatch, fresh):
    proxy = _Proxy(MPI)
    monkeypatch.setattr(hpcomm, "MPI", proxy)
    made = []

    def make(c):  # local (no collective): counts and holds the window open
        made.append(1)
        time.sleep(0.02)
        return MPI.COMM_NULL

    name = f"test-first-call-{id(fresh)}"  # a name no keyval exists for yet
    got = _at_once(lambda i: hpcomm.cached_comm(fresh, name, make))
    assert len(proxy.calls) == 1, "the keyval was created more than once"
    assert len(made) == 1, "the derived object was made more than once"
    assert all(g == MPI.COMM_NULL for g in got)
    assert fresh.Get_attr(hpcomm._KEYVALS[name]) == MPI.COMM_NULL


def test_lib_comm_dup_once(fresh, comm):
    got = _at_once(lambda i: hpcomm.lib_comm(fresh))
    handles = {g.py2f() for g in got}
    assert len(handles) == 1, "threads got different library communicators"
    assert got[0] != fresh
    # one Dup on every rank: the duplicate works for a collective (a second Dup on one
    # rank only would leave the ranks' communicators unmatched)
    assert got[0].allreduce(1) == comm.size


def test_exchange_pool_made_once(monkeypatch, fresh):
    proxy = _Proxy(MPI)
    monkeypatch.setattr(_exchange, "MPI", proxy)
    monkeypatch.setattr(_exchange, "_POOL", None)  # as in a new process
    monkeypatch.setattr(_exchange, "retaining", lambda: False)  # buffers go to the pool
    got = _at_once(lambda i: _exchange._staging(fresh, f"t{i}", 64))
    assert all(g.nbytes == 64 for g in got)
    assert len(proxy.calls) == 1, "the pool's keyval was created more than once"
    pool = fresh.Get_attr(_exchange._POOL)
    assert sorted(pool) == sorted(f"t{i}" for i in range(THREADS)), \
        "a thread's buffer went to a pool that was lost"
