"""Argument agreement of the collectives.

Every public collective starts with :func:`agree` (usually through the :func:`collective`
decorator): one hash of its canonicalised arguments and ONE small ``MPI_Allreduce``
(MAX of ``[h, -h, stale]``: min == max of the hash tells whether all ranks passed the same
arguments; ``stale`` whether a distributed argument's tiling still has to be verified).
Only on the error path, or the first time a DistArray/DistTable enters a collective, is
anything gathered. Distributed objects take part through two attributes:
``_layout() -> (key, comm, (offset, local_rows, global_rows))`` and ``_tiled`` (the last
verified ``(offset, local_rows, global_rows)``, None before).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import threading
from collections.abc import Iterator, Mapping

import numpy as np
from mpi4py import MPI

from . import memory as _memory
from .comm import agreed, get_comm, lib_comm
from .errors import ArgumentMismatchError, ShapeMismatchError
from .observe import phases as _phases
from .observe.phases import phase
from .partition import tiling_problem

__all__ = ["agree", "collective", "same_comm", "disagreements"]


_NESTED = threading.local()
_MASK = (1 << 63) - 1


def _digest(obj) -> int:
    return int.from_bytes(hashlib.blake2b(repr(obj).encode(), digest_size=8).digest(),
                          "little") & _MASK


def _func_key(f):
    f = getattr(f, "py_func", f)  # a Numba dispatcher: its Python function
    code = getattr(f, "__code__", None)
    name = (getattr(f, "__module__", None), getattr(f, "__qualname__", type(f).__qualname__))
    if code is None:
        return ("callable", *name)
    return ("function", *name) + _code_key(code)


def _code_key(code) -> tuple:
    consts = tuple(_code_key(c) if inspect.iscode(c) else repr(c) for c in code.co_consts)
    return (code.co_firstlineno, code.co_code.hex(), code.co_names, consts)


_EXACT = {int: int, str: str, bytes: bytes, type(None): lambda v: v,
          bool: lambda v: ("bool", v), float: lambda v: ("float", v.hex())}


def dtype_key(dtype) -> str:
    """A dtype as ranks compare it: ``dtype.str``, or for a structured dtype (whose
    ``str`` is only ``|V<itemsize>``) its fields with their types and offsets: two
    layouts of the same size must not pass for one (the rows move as raw bytes)."""
    dtype = np.dtype(dtype)
    if dtype.subdtype is not None:  # a field's sub-array: its str is |V<size> too
        base, shape = dtype.subdtype
        return f"{shape}{dtype_key(base)}"
    if dtype.names is None:
        return dtype.str
    fields = ", ".join(f"{n!r}: {dtype_key(dtype.fields[n][0])} at {dtype.fields[n][1]}"
                       for n in dtype.names)
    return f"{{{fields}}} of {dtype.itemsize}"


def _canon(v, path: str, found: list, local: bool):
    """A rank-independent description of ``v`` (nested tuples of plain values).

    Distributed objects (and iterators carrying a ``comm``) are appended to ``found`` as
    ``(path, obj)``. ``local``: ``v`` is per-rank data; only its structure counts (mapping
    keys, container lengths, distributed objects), never its values.
    """
    t = type(v)
    exact = _EXACT.get(t)
    if exact is not None:  # the common case, first
        return None if local else exact(v)
    if t is tuple or t is list:
        return (t.__name__,) + tuple(_canon(x, f"{path}[{i}]", found, local)
                                     for i, x in enumerate(v))
    if hasattr(t, "_layout"):
        found.append((path, v))
        return ("dist", v._layout()[0])
    if isinstance(v, Mapping):
        return ("map",) + tuple((str(k), _canon(x, f"{path}[{k!r}]", found, local))
                                for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return (type(v).__name__,) + tuple(_canon(x, f"{path}[{i}]", found, local)
                                           for i, x in enumerate(v))
    if isinstance(v, Iterator):
        if isinstance(getattr(v, "comm", None), MPI.Comm):
            found.append((path, v))
        return ("iterator",)
    if local or isinstance(v, MPI.Comm):
        return None
    if isinstance(v, (bool, np.bool_)):
        return ("bool", bool(v))
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return ("float", float(v).hex())
    if isinstance(v, (complex, np.complexfloating)):
        return ("complex", repr(complex(v)))
    if isinstance(v, os.PathLike):
        return ("path", os.fspath(v))
    if isinstance(v, slice):
        return ("slice",) + tuple(_canon(x, path, found, local) for x in (v.start, v.stop, v.step))
    if isinstance(v, np.ndarray):
        if v.dtype.hasobject:
            return ("ndarray", v.shape, repr(v.tolist()))
        data = np.ascontiguousarray(v).reshape(-1).view(np.uint8)
        return ("ndarray", dtype_key(v.dtype), v.shape,
                hashlib.blake2b(data, digest_size=8).hexdigest())
    if isinstance(v, np.dtype):  # a structured layout by its fields, not |V<size>
        return ("dtype", dtype_key(v))
    if isinstance(v, type):
        return ("type", v.__module__, v.__qualname__)
    if callable(v):
        return _func_key(v)
    return ("object", type(v).__module__, type(v).__qualname__)  # never an address


def _short(v) -> str:
    """A short description of an argument's value for an error message."""
    if hasattr(v, "_layout"):
        text = repr(v)
    elif isinstance(v, np.ndarray) and v.size > 8:
        text = f"array(shape={v.shape}, dtype={v.dtype}, ...)"
    elif callable(v) and not isinstance(v, type):
        f = getattr(v, "py_func", v)
        code = getattr(f, "__code__", None)
        text = getattr(f, "__qualname__", type(f).__name__)
        if code is not None:  # the code's digest tells apart functions of the same name
            text += f" (line {code.co_firstlineno}, code #{_digest(_code_key(code)) % 65536:04x})"
    else:
        text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def same_comm(a: MPI.Comm, b: MPI.Comm) -> bool:
    """True when ``a`` and ``b`` are the same communicator or a congruent one (same group,
    same rank order). Not collective (``MPI_Comm_compare`` is local)."""
    return a == b or MPI.Comm.Compare(a, b) in (MPI.IDENT, MPI.CONGRUENT)


def _resolve(comm, found, fn: str):
    """The communicator of a call: ``comm`` if given, else the distributed arguments' own.

    Raises ``ValueError`` (locally, before any communication) when a distributed argument
    lives on another communicator than ``comm`` or than another distributed argument.
    """
    carriers = [(p, o.comm) for p, o in found]
    if comm is None and carriers:
        where, comm = carriers[0][0], carriers[0][1]
        what = f"the communicator of `{where}`"
    else:
        comm, what = get_comm(comm), "comm="
    for path, c in carriers:
        if not same_comm(comm, c):
            raise ValueError(
                f"{fn}: `{path}` is distributed over another communicator than {what} "
                "(other ranks, or another order); pass comm=None or the array's own "
                "communicator")
    return comm


def _mismatch(lc, fn, digests, values) -> ArgumentMismatchError:
    """Second round, on the error path only: which arguments differ, and how."""
    calls = lc.allgather((fn, dict(digests)))
    if len({name for name, _ in calls}) > 1:
        groups: dict = {}
        for r, (name, _) in enumerate(calls):
            groups.setdefault(name, []).append(r)
        return ArgumentMismatchError(
            "ranks called different collectives at the same time: "
            + "; ".join(f"{_ranks(rs)}: {name}" for name, rs in groups.items())
            + "; every rank must make the same collective calls in the same order")
    seen = [d for _, d in calls]
    names = [k for k in digests if len({s.get(k) for s in seen}) > 1]
    names += [k for k in {k for s in seen for k in s} if k not in digests]
    shorts = lc.allgather({k: _short(values[k]) for k in names if k in values})
    parts = []
    for name in names:
        groups: dict = {}
        for r, s in enumerate(shorts):
            groups.setdefault(s.get(name, "<not passed>"), []).append(r)
        desc = "; ".join(f"{_ranks(rs)}: {text}" for text, rs in list(groups.items())[:4])
        parts.append(f"`{name}` ({desc})")
    if not parts:  # the same values but a different set of arguments (can not happen)
        parts = ["their arguments"]
    return ArgumentMismatchError(f"{fn}: ranks passed different " + ", ".join(parts)
                                 + "; every rank must pass the same arguments to a collective")


def _ranks(rs) -> str:
    if len(rs) == 1:
        return f"rank {rs[0]}"
    if rs == list(range(rs[0], rs[-1] + 1)):
        return f"ranks {rs[0]}-{rs[-1]}"
    return "ranks " + ",".join(map(str, rs))


def disagreements(values: Mapping[str, str], comm: MPI.Comm | None = None) -> dict:
    """Which of ``values`` differ between the ranks of ``comm``, and how.

    Collective: every rank passes the same names, each with a short text (compared as
    text, shown as given). One ``MPI_Allreduce`` of two int64 (a hash of ``values``) in
    the common case; only when the ranks differ are the values gathered on rank 0 and
    the description broadcast. Returns ``{name: "ranks 0-1: '/a'; rank 2: '/b'"}`` for
    every name whose value differs (at most four values listed; a value longer than
    :data:`_LONG` characters shown by its two ends and a digest of the whole), the same
    on every rank, or ``{}`` when all ranks agree.
    """
    lc = lib_comm(comm)
    if lc.Get_size() == 1:
        return {}
    h = _digest(tuple(values.items()))
    buf = np.array([h, -h], dtype=np.int64)
    with phase("wait"):
        lc.Allreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
        if buf[0] == -buf[1]:
            return {}
        every = lc.gather(dict(values), root=0)
        out = None
        if lc.Get_rank() == 0:
            out = {}
            for name in dict.fromkeys(k for v in every for k in v):
                groups: dict = {}
                for r, v in enumerate(every):
                    groups.setdefault(v.get(name, "<not given>"), []).append(r)
                if len(groups) > 1:
                    shown = list(groups.items())
                    out[name] = "; ".join(f"{_few_ranks(rs)}: {_ends(text)}"
                                          for text, rs in shown[:4])
                    out[name] += f"; {len(shown) - 4} more values" if len(shown) > 4 else ""
        return lc.bcast(out, root=0)


#: Longest value shown whole by :func:`disagreements` (a PATH-like variable can be
#: kilobytes long: several of them would bury the message)
_LONG = 80


def _ends(text: str) -> str:
    """``text``, or when longer than :data:`_LONG` its two ends and a digest of the
    whole (two long values that differ only in their middle still look different)."""
    if len(text) <= _LONG:
        return text
    return f"{text[:48]}...{text[-24:]} (#{_digest(text) & 0xffffffff:08x})"


def _few_ranks(rs) -> str:
    text = _ranks(rs)
    if len(text) <= 40:
        return text
    head = text[6:30]  # whole rank numbers only: cut at the last comma
    return f"{len(rs)} ranks ({head[:head.rfind(',')] if ',' in head else rs[0]},...)"


def _verify_tiling(lc, fn, dists) -> None:
    """Check (one allgather) that every distributed argument's blocks tile its rows."""
    layouts = [d._layout()[2] for _, d in dists]
    every = lc.allgather(layouts) if lc.Get_size() > 1 else [layouts]
    for i, (path, _) in enumerate(dists):
        bounds = [(rank_layouts[i][0], rank_layouts[i][1]) for rank_layouts in every]
        problem = tiling_problem(bounds, layouts[i][2])
        if problem:
            raise agreed(ShapeMismatchError(f"{fn}: the blocks of `{path}` do not tile its "
                                             f"{layouts[i][2]} rows: {problem}"))
    for (_, d), lay in zip(dists, layouts):
        d._tiled = lay


def agree(comm: MPI.Comm | None, fn: str, args: Mapping, local=(), found=None) -> MPI.Comm:
    """Check that every rank passed the same ``args`` to collective ``fn``; return the comm.

    Collective; the first thing a public collective does. One hash per argument (``local``
    names per-rank data: only its structure is compared) and one ``MPI_Allreduce`` of three
    int64 in the common case. Raises on every rank together (agreed errors):
    :class:`~hpcproc.errors.ArgumentMismatchError` naming the arguments that differ and
    their values per rank; ``ShapeMismatchError`` when a DistArray/DistTable argument's
    blocks do not tile its rows (verified once per object, then cached on it); and,
    locally, before any communication, ``ValueError`` when ``comm`` is not the
    communicator (or a congruent one) of a distributed argument.

    Returns the communicator of the call (``comm``, else the distributed arguments').
    Called inside another collective that already agreed (see :func:`collective`), it
    does not communicate.
    """
    found = [] if found is None else found
    if getattr(_NESTED, "depth", 0):  # inside a collective that already agreed
        return _resolve(comm, found, fn)
    canon = [(k, _canon(v, k, found, k in local)) for k, v in args.items()]
    comm = _resolve(comm, found, fn)
    dists = [(p, d) for p, d in found if hasattr(d, "_layout")]
    stale = any(d._tiled != d._layout()[2] for _, d in dists)
    lc = lib_comm(comm)
    if lc.Get_size() > 1:
        h = _digest((fn, canon))
        buf = np.array([h, -h, int(stale)], dtype=np.int64)
        with phase("wait"):
            lc.Allreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
        if buf[0] != -buf[1]:  # the error path: which arguments differ?
            digests = {k: _digest(c) for k, c in canon}
            raise agreed(_mismatch(lc, fn, digests, args))
        stale = bool(buf[2])
    for path, d in dists:  # the same on every rank now: the keys (local shapes) agreed
        problem = d._local_problem() if hasattr(d, "_local_problem") else None
        if problem:
            raise agreed(ShapeMismatchError(f"{fn}: `{path}`: {problem}"))
    if stale:
        _verify_tiling(lc, fn, dists)
    return comm


class _NestedIterator(Iterator):
    """A collective generator whose steps run as nested calls (no second agreement)."""

    __slots__ = ("_gen", "comm", "_name", "_spent")

    def __init__(self, gen, comm, name=None):
        self._gen, self.comm, self._name, self._spent = gen, comm, name, 0.0

    def __next__(self):
        # a step of an outermost call
        if _phases.tracing_enabled() and not getattr(_NESTED, "depth", 0):
            timer = _phases.call(self._name, count=False, prior=self._spent)
            try:
                with timer:
                    return self._step()
            finally:
                self._spent += timer.elapsed
        return self._step()

    def _step(self):
        _NESTED.depth = getattr(_NESTED, "depth", 0) + 1
        try:
            return next(self._gen)
        finally:
            _NESTED.depth -= 1

    def close(self) -> None:
        self._gen.close()


_MISSING = object()


def _binder(fn):
    """A fast ``inspect.Signature.bind`` + ``apply_defaults`` for ``fn``: a function
    ``(args, kwargs) -> {parameter: value}`` (None when the call does not fit: Python's
    own call of ``fn`` then raises the usual ``TypeError``)."""
    P = inspect.Parameter
    params = list(inspect.signature(fn).parameters.values())
    positional = [p.name for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    keywords = {p.name for p in params if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)}
    defaults = {p.name: (_MISSING if p.default is P.empty else p.default) for p in params
                if p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)}
    var_pos = next((p.name for p in params if p.kind is P.VAR_POSITIONAL), None)
    var_kw = next((p.name for p in params if p.kind is P.VAR_KEYWORD), None)

    def bind(args, kwargs):
        if len(args) > len(positional) and var_pos is None:
            return None
        values = dict(defaults)
        values.update(zip(positional, args))
        if var_pos is not None:
            values[var_pos] = args[len(positional):]
        extra = {}
        for k, v in kwargs.items():
            if k in keywords:
                values[k] = v
            elif var_kw is not None:
                extra[k] = v
            else:
                return None
        if var_kw is not None:
            values[var_kw] = extra
        return None if any(v is _MISSING for v in values.values()) else values
    return bind


def collective(name: str, local=(), paths=()):
    """Decorate a public collective function: :func:`agree` on its arguments first.

    ``local``: parameters that hold per-rank data (compared by structure only). ``paths``:
    parameters that are file names, compared as absolute paths. ``comm`` and ``self``/
    ``cls`` are never compared. Calls made from inside another decorated collective (the
    outer one already agreed) skip the check. A generator function's iterator carries the
    call's ``comm``, so a reduction over it knows its communicator. A method without a
    ``comm`` parameter agrees over its object's ``comm``. While tracing is on, an
    outermost call (and each step of its iterator) adds its inclusive time to ``name``
    in the trace's library-call totals (:func:`hpcproc.observe.phases.call`).
    """
    def decorate(fn):
        params = list(inspect.signature(fn).parameters)
        skip = {"comm"} | {p for p in params[:1] if p in ("self", "cls")}
        gen = inspect.isgeneratorfunction(fn)
        method = "self" in skip
        bind = _binder(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if getattr(_NESTED, "depth", 0):
                return fn(*args, **kwargs)
            if _phases.tracing_enabled():  # the outermost call's inclusive time, by name
                with _phases.call(name) as timer:
                    result = outermost(args, kwargs)
                if gen and isinstance(result, _NestedIterator):
                    result._spent = timer.elapsed  # its steps add to the same call
                return result
            return outermost(args, kwargs)

        def outermost(args, kwargs):
            bound = bind(args, kwargs)
            if bound is None:
                return fn(*args, **kwargs)  # Python's own message for a bad call
            values = {}
            for k, v in bound.items():
                if k in skip:
                    continue
                if k in paths and isinstance(v, (str, os.PathLike)):
                    v = os.path.abspath(os.fspath(v))
                values[k] = v
            comm = bound.get("comm")
            if comm is None and method and "comm" not in bound:
                comm = getattr(args[0], "comm", None)  # a method: its object's communicator
                comm = comm if isinstance(comm, MPI.Comm) else None
            comm = agree(comm, name, values, local)
            _memory.on_call(warn=comm.Get_rank() == 0)
            _NESTED.depth = getattr(_NESTED, "depth", 0) + 1
            try:
                result = fn(*args, **kwargs)
            finally:
                _NESTED.depth -= 1
            _memory.after_call()
            return _NestedIterator(result, comm, name) if gen else result
        return wrapper
    return decorate
