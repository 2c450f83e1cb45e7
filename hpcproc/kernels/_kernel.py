"""A built-in kernel: one Python function, run ahead-of-time compiled or by Numba.

``@kernel`` (:mod:`._numba`) turns a function into a :class:`Kernel`. Calling it runs
the ahead-of-time build of the function for these argument types when the install has
one (:mod:`._aot`; no Numba import), else the Numba dispatcher, created on first need.
Either way the same source runs: the build is made from this function by Numba at
install time. Kernels calling kernels work as with plain ``numba.njit`` functions: Numba
types a :class:`Kernel` global as its dispatcher (``_numba_type_``).
"""

from __future__ import annotations

import functools
import threading

from . import _aot

__all__ = ["Kernel"]

_LOCK = threading.Lock()


class Kernel:
    """A lazily compiled kernel (see the module docstring).

    Attributes: ``py_func`` (the Python function), ``options`` (extra ``numba.njit``
    options), ``aot`` (the argument signatures built ahead of time at install).
    """

    def __init__(self, fn, options: dict, aot=()):
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self.options = dict(options)
        self.aot = tuple(aot)
        self._disp = None
        self._found: dict = {}  # call key -> AOT function or None (see _aot.find)
        self._hooks: list = []  # called with the dispatcher when it is made

    def on_dispatcher(self, hook) -> None:
        """Call ``hook(dispatcher)`` once the Numba dispatcher exists (now, if it does)."""
        self._hooks.append(hook)
        if self._disp is not None:
            hook(self._disp)

    @property
    def dispatcher(self):
        """The ``numba.njit`` dispatcher of this kernel (imports Numba the first time)."""
        disp = self._disp
        if disp is None:
            from ._numba import load
            numba = load()
            from ._numba import CACHE
            with _LOCK:
                if self._disp is None:
                    opts = {"cache": CACHE, "nogil": True, **self.options}
                    made = numba.njit(**opts)(self.py_func)
                    for hook in self._hooks:
                        hook(made)
                    self._disp = made
                disp = self._disp
        return disp

    @property
    def _numba_type_(self):  # how Numba types this object as a global in other kernels
        return self.dispatcher._numba_type_

    def __call__(self, *args, **kwargs):
        if self.aot and not kwargs:
            fn = _aot.find(self, _aot.call_key(args))
            if fn is not None:
                return fn(*args)
        return self.dispatcher(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<hpcproc kernel {self.__module__}.{self.__qualname__}>"
