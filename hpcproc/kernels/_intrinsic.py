"""LLVM-level operations for compiled kernels, made only when a kernel that uses one is
compiled: importing a kernel module stays free of Numba.

An :class:`Intrinsic` is an ordinary Python callable (what a kernel does when run as
Python) that Numba types, as a global in a kernel, through ``_numba_type_`` (as
:class:`._kernel.Kernel` does) as the intrinsic ``make()`` returns, made once. The kernels
built ahead of time inline it: the modules defining intrinsics are in their source
digest (:data:`._aot.INLINED`), so editing one marks the build out of date until it is
rebuilt (``make venv``).

:data:`store_at` writes a value at a raw address: the exchange's scatter
(:func:`hpcproc.shuffles._kernels.scatter_to`) writes each row straight into whichever
array it goes to (this rank's result, or the send buffer of the rows for other ranks)
with no branch per row; a position in one array and an address table per destination
replace one index space over one target.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

__all__ = ["Intrinsic", "store_at"]


class Intrinsic:
    """A global for compiled kernels: ``python`` when called from Python, the Numba
    intrinsic ``make()`` returns (made on first use; imports Numba) in a kernel."""

    def __init__(self, name: str, make, python) -> None:
        self._name, self._make, self._python = name, make, python
        self._lock = threading.Lock()
        self._fn = None

    def __call__(self, *args):
        return self._python(*args)

    def intrinsic(self):
        """The Numba intrinsic (made once; imports Numba)."""
        with self._lock:
            if self._fn is None:
                self._fn = self._make()
            return self._fn

    @property
    def _numba_type_(self):  # how Numba types this object as a global in a kernel
        from numba.core.registry import cpu_target
        fn = self.intrinsic()
        ctx = cpu_target.typing_context
        ctx.refresh()  # the intrinsic was registered after the context was made
        return ctx.resolve_value_type(fn)

    def __repr__(self) -> str:
        return f"<hpcproc kernel intrinsic {self._name}>"


def _make_store_at():
    from numba import types
    from numba.extending import intrinsic

    def codegen(context, builder, signature, args):
        addr, value = args
        ptr = builder.inttoptr(addr, context.get_value_type(signature.args[1]).as_pointer())
        builder.store(value, ptr)
        return context.get_dummy_value()

    @intrinsic
    def store_at(typingctx, addr, value):
        if isinstance(addr, types.Integer) and isinstance(value, (types.Integer, types.Float)):
            return types.void(addr, value), codegen
        return None

    return store_at


def _store_at_python(addr, value) -> None:
    raw = np.asarray(value)
    ctypes.memmove(int(addr), raw.tobytes(), raw.itemsize)


#: ``store_at(addr, value)``: write ``value`` (its own type and width) at byte address
#: ``addr``. Nothing is checked: the caller computes addresses inside arrays it holds.
store_at = Intrinsic("store_at", _make_store_at, _store_at_python)
