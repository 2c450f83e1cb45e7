"""Build the ahead-of-time kernels (install time only; imports Numba).

``setup.py`` calls :func:`build` from its ``build_ext`` step (``pip install``, also
``pip install -e .`` and the Makefile's venv step); ``python -m
hpcproc.kernels._aot_build DIR`` builds into ``DIR`` by hand. Every signature declared by
a ``@kernel(aot=...)`` function of the modules in :data:`._aot.BUILTIN` is compiled by
``numba.pycc`` from the same Python source the Numba dispatcher compiles, with the return
type Numba infers, into one extension module (:data:`._aot.MODULE`) that needs neither
Numba nor LLVM at run time. The exported functions release the GIL like ``nogil=True``
dispatchers. Code is generated for the generic CPU of the architecture (a build on a
login node runs on every compute node); ``HPCPROC_AOT_CPU`` (e.g. ``host``) overrides.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

import numpy as np

from . import _aot
from ._kernel import Kernel

__all__ = ["kernels", "build"]


def kernels(modules=None):
    """The kernels with ahead-of-time signatures (of ``modules``, default
    :data:`._aot.BUILTIN`), in a stable order."""
    out = []
    for name in _aot.BUILTIN if modules is None else modules:
        mod = importlib.import_module(name)
        for attr in sorted(vars(mod)):
            k = getattr(mod, attr)
            if isinstance(k, Kernel) and k.aot and k.__module__ == name:
                out.append(k)
    return out


def _arg_types(text: str) -> tuple:
    from numba.core import sigutils
    parsed = sigutils._parse_signature_string(f"({text},)")
    return tuple(parsed)


def _type_key(t) -> str:
    from numba import types
    from numba.np.numpy_support import as_dtype
    if isinstance(t, types.Array):
        if t.layout != "C" or not t.mutable:
            raise ValueError(f"ahead-of-time arrays must be writable C arrays, got {t}")
        return _aot.arg_key(np.empty((0,) * t.ndim, as_dtype(t.dtype)))
    if isinstance(t, (types.Boolean, types.Integer, types.Float)):
        return _aot.arg_key(as_dtype(t).type(0))
    raise ValueError(f"no ahead-of-time key for type {t}")


def _stamp():
    return 0


@contextlib.contextmanager
def _release_gil():
    """Make pycc's Python wrappers release the GIL (as ``nogil=True`` dispatchers do)."""
    from numba.pycc import compiler

    base = compiler.Flags

    class Flags(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    compiler.Flags = Flags
    try:
        yield
    finally:
        compiler.Flags = base


def build(path: str, verbose: bool = False) -> int:
    """Compile the extension module to the file ``path``; returns the number of
    exported kernel signatures.

    If the build of every module fails (say, a signature in the shuffles' table that a
    rewritten kernel no longer accepts), the error is printed and the kernels of
    ``hpcproc.kernels`` alone are built: the others then run on Numba.
    """
    os.environ["HPCPROC_CACHE"] = "0"  # kernels called by kernels: no cache writes here
    try:
        return _build(path, _aot.BUILTIN, verbose)
    except Exception as exc:  # noqa: BLE001 - any failure: retry with the core kernels
        core = tuple(m for m in _aot.BUILTIN if m.startswith("hpcproc.kernels."))
        if core == _aot.BUILTIN:
            raise
        print(f"hpcproc: building every ahead-of-time kernel failed ({type(exc).__name__}: "
              f"{exc}); building those of hpcproc.kernels only", file=sys.stderr)
        return _build(path, core, verbose)


def _build(path: str, modules, verbose: bool) -> int:
    from numba.pycc import CC

    cc = CC(_aot.MODULE.rsplit(".", 1)[1], source_module=__name__)
    cc.output_dir = os.path.dirname(os.path.abspath(path)) or "."
    cc.output_file = os.path.basename(path)
    cc.target_cpu = os.environ.get("HPCPROC_AOT_CPU", "")
    cc.verbose = verbose
    n = 0
    for k in kernels(modules):
        for text in k.aot:
            args = _arg_types(text)
            cc.export(_aot.export_name(k, tuple(_type_key(t) for t in args)), args)(k.py_func)
            n += 1
    cc.export("stamp_" + _aot.source_digest(), ())(_stamp)
    with _release_gil():
        cc.compile()
    return n


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m hpcproc.kernels._aot_build OUTPUT_DIR", file=sys.stderr)
        return 2
    import sysconfig
    name = _aot.MODULE.rsplit(".", 1)[1] + sysconfig.get_config_var("EXT_SUFFIX")
    n = build(os.path.join(argv[0], name), verbose=True)
    print(f"built {n} kernel signatures into {os.path.join(argv[0], name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
