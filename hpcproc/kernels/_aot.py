"""Ahead-of-time compiled built-in kernels: naming, lookup and staleness (no Numba here).

At install, ``setup.py`` builds the extension module ``hpcproc.kernels._aot_kernels``
from the kernels of the modules in :data:`BUILTIN` (:mod:`._aot_build`, with Numba's
``numba.pycc``): every signature a kernel declares (``@kernel(aot=...)``) becomes one
exported function named by :func:`export_name`. At run time a call whose argument types
match a built signature exactly (:func:`call_key`) runs that function; anything else,
and everything when the build is missing, broken, out of date or switched off
(``HPCPROC_AOT=0``), goes to the Numba dispatcher, with identical results.

The build records a digest of the sources of :data:`BUILTIN` and :data:`INLINED`
(:func:`source_digest`) as an exported ``stamp_<digest>``; if any of these files changed
since (an editable install whose kernels were edited), the build is not used and one
warning says so.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import itertools
import os
import struct

import numpy as np

__all__ = ["BUILTIN", "INLINED", "MODULE", "REALS", "INTS", "FLOATS", "signatures", "enabled",
           "module", "status", "find", "call_key", "arg_key", "export_name",
           "source_digest"]

#: Modules whose ``@kernel(aot=...)`` kernels are built ahead of time (a kernel module
#: opts in by being listed here and declaring signatures).
BUILTIN = (
    "hpcproc.kernels._moments_nb",
    "hpcproc.kernels._exact_nb",
    "hpcproc.kernels._hist_nb",
    "hpcproc.kernels._select_nb",
    "hpcproc.kernels._repro_nb",
    "hpcproc.kernels._describe_nb",
    # the shuffle kernels: their signatures are in hpcproc/shuffles/_aot_sigs.py
    "hpcproc.shuffles._kernels",
    "hpcproc.shuffles._localsort",
    "hpcproc.shuffles._merge",
    "hpcproc.shuffles._reduce",
    "hpcproc.shuffles._hashjoin",
    "hpcproc.shuffles._skew",
)
#: Modules without kernels of their own whose code the built kernels inline (intrinsics):
#: part of the source digest, so that editing them also marks the build out of date.
INLINED = ("hpcproc.kernels._intrinsic", "hpcproc.kernels._prefetch")
MODULE = "hpcproc.kernels._aot_kernels"

#: the element types that kernels see (:mod:`._dtypes`; bool arrives as uint8)
INTS = ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8")
FLOATS = ("f4", "f8")
REALS = INTS + FLOATS

_STATE: dict = {}


def signatures(template: str, **choices) -> list[str]:
    """Argument signatures from a template: every combination of the choices.

    ``signatures("{x}[::1], f8[:, ::1]", x=REALS)`` gives one signature per element
    type. Types are Numba's type strings; arrays must be C-contiguous (``[::1]``,
    ``[:, ::1]``), as :func:`~._engine.signature_of` types them.
    """
    names = sorted(choices)
    out = []
    for values in itertools.product(*(choices[n] for n in names)):
        out.append(template.format(**dict(zip(names, values, strict=True))))
    return out


def enabled() -> bool:
    """False when ``HPCPROC_AOT`` is ``0``/``no``/``off``/``false``."""
    return os.environ.get("HPCPROC_AOT", "1").strip().lower() not in ("0", "no", "off", "false")


def _source_path(name: str) -> str:
    here = os.path.dirname(os.path.abspath(__file__))  # .../hpcproc/kernels
    root = os.path.dirname(os.path.dirname(here))
    return os.path.join(root, *name.split(".")) + ".py"


def source_digest(modules=BUILTIN + INLINED) -> str:
    """Digest of the source files of ``modules`` (what the build was made from)."""
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode() + b"\0")
        with open(_source_path(name), "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _truncated(path: str) -> str | None:
    """Why the ELF shared object ``path`` is cut short (None: complete, or not ELF).

    Loading a truncated library is not an ImportError: the loader maps segments past the
    end of the file and the process dies of SIGBUS on first access. So the headers are
    checked against the file size first: the section header table and every segment
    must lie inside the file.
    """
    with open(path, "rb") as f:
        head = f.read(64)
        size = os.fstat(f.fileno()).st_size
        if head[:4] != b"\x7fELF":
            return None
        if len(head) < (64 if head[4] == 2 else 52):
            return f"{size} bytes: truncated"
        bo = "<" if head[5] == 1 else ">"
        if head[4] == 2:  # 64-bit
            phoff, shoff = struct.unpack_from(bo + "QQ", head, 0x20)
            phsize, phnum, shsize, shnum = struct.unpack_from(bo + "HHHH", head, 0x36)
            seg = bo + "IIQQQQ"  # type, flags, offset, vaddr, paddr, filesz
        else:
            phoff, shoff = struct.unpack_from(bo + "II", head, 0x1C)
            phsize, phnum, shsize, shnum = struct.unpack_from(bo + "HHHH", head, 0x2A)
            seg = bo + "IIIII"  # type, offset, vaddr, paddr, filesz
        ends = [shoff + shsize * shnum, phoff + phsize * phnum]
        if ends[1] <= size:
            f.seek(phoff)
            table = f.read(phsize * phnum)
            for i in range(phnum):
                fields = struct.unpack_from(seg, table, i * phsize)
                offset, filesz = (fields[2], fields[5]) if head[4] == 2 else (fields[1], fields[4])
                ends.append(offset + filesz)
    end = max(ends)
    return None if end <= size else f"{size} bytes, its headers need {end}: truncated"


def _load():
    """``(module or None, reason or None)``: the AOT build, if present and up to date."""
    if not enabled():
        return None, "switched off (HPCPROC_AOT=0)"
    try:
        spec = importlib.util.find_spec(MODULE)
        cut = None if spec is None or not spec.origin else _truncated(spec.origin)
    except (ImportError, OSError, struct.error) as exc:
        cut = f"unreadable: {exc}"
    if cut is not None:
        return None, f"cannot be loaded: {cut}"
    try:
        mod = importlib.import_module(MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == MODULE:
            return None, "not built"
        return None, f"cannot be loaded: {exc}"
    except Exception as exc:  # noqa: BLE001 - a broken shared object: any error, fall back
        return None, f"cannot be loaded: {type(exc).__name__}: {exc}"
    try:
        digest = source_digest()
    except OSError as exc:
        return None, f"cannot check the kernel sources: {exc}"
    if not hasattr(mod, "stamp_" + digest):
        return None, ("out of date: the kernel sources changed after it was built "
                      "(rebuild: pip install -e . or make venv)")
    return mod, None


def module():
    """The AOT extension module, or None (loaded and checked once per process; a
    warning, once, when it exists but cannot be used)."""
    if "module" not in _STATE:
        mod, why = _load()
        _STATE["module"], _STATE["why"] = mod, why
        if why is not None and why not in ("not built", "switched off (HPCPROC_AOT=0)"):
            from ..observe import log as _log
            _log.warn_once(_log.get_logger(__name__),
                           "ahead-of-time kernels %s; using Numba-compiled kernels", why)
    return _STATE["module"]


def status() -> str:
    """``"loaded"`` or why the ahead-of-time kernels are not used."""
    return "loaded" if module() is not None else _STATE["why"]


def export_name(kernel, keys) -> str:
    """Name of the exported function of ``kernel`` for argument keys ``keys``."""
    return f"{kernel.__module__.replace('.', '_')}__{kernel.__name__}__{'_'.join(keys)}"


def find(kernel, keys):
    """The AOT function of ``kernel`` for the argument keys ``keys``, or None."""
    if keys is None:
        return None
    found = kernel._found
    try:
        return found[keys]
    except KeyError:
        pass
    mod = module()
    fn = None if mod is None else getattr(mod, export_name(kernel, keys), None)
    found[keys] = fn
    return fn


def _scalar_key(a) -> str | None:
    if isinstance(a, bool):
        return "b1"
    if isinstance(a, int):
        return "i8" if -(1 << 63) <= a < (1 << 63) else None
    if isinstance(a, float):
        return "f8"
    if isinstance(a, np.generic):
        dt = a.dtype
        if dt.kind in "biuf" and dt.isnative and dt.itemsize <= 8:
            return f"{dt.kind}{dt.itemsize}"
    return None


def arg_key(a) -> str | None:
    """The key of one argument as :func:`~._engine.signature_of` types it (arrays as
    writable C-contiguous arrays of their dtype), or None when it has no key."""
    if isinstance(a, np.ndarray):
        dt = a.dtype
        if dt.kind in "biuf" and dt.isnative and dt.itemsize <= 8 and dt.fields is None:
            return f"{dt.kind}{dt.itemsize}a{a.ndim}"
        return None
    return _scalar_key(a)


def call_key(args) -> tuple | None:
    """Keys of actual call arguments, or None when a built function must not take them:
    arrays must be C-contiguous, aligned and writable (what a build was made for)."""
    keys = []
    for a in args:
        if isinstance(a, np.ndarray):
            f = a.flags
            if not (f.c_contiguous and f.aligned and f.writeable):
                return None
        k = arg_key(a)
        if k is None:
            return None
        keys.append(k)
    return tuple(keys)
