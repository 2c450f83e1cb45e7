"""``prefetch(a, i)`` in compiled kernels: ask the CPU for the cache line of ``a[i]``.

A kernel that updates a large state array at random places (the dense group-by's
``sums[key[i]] += value[i]``) waits for memory on nearly every row. Asking for the line
that a row a few dozen rows ahead will update (``prefetch(sums, key[i + 32])``) overlaps
those waits: the whole dense group-by of 2^25 rows per rank into 2^20 groups took
1.11-1.21x less time with it on uniform keys and 1.08-1.27x on Zipf keys (2 ranks of a
2-core AMD EPYC guest, 4 KiB pages; docs/shuffles.md).

Compiled, ``prefetch`` is LLVM's ``llvm.prefetch`` (a write hint, kept in all cache
levels): no load, no fault, whatever the index, so an index past the array is harmless;
it does not change any result. Called from Python it does nothing. It is an
:class:`._intrinsic.Intrinsic`: made only when a kernel that uses it is compiled, and in
the ahead-of-time build's source digest.
"""

from __future__ import annotations

from ._intrinsic import Intrinsic

__all__ = ["prefetch"]


def _make_prefetch():
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                       wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, write, locality 3: keep in all levels, data cache)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    @intrinsic
    def prefetch_line(typingctx, arr, idx):
        if isinstance(arr, types.Array) and arr.ndim == 1 \
                and isinstance(idx, types.Integer):
            return types.void(arr, idx), codegen
        return None

    return prefetch_line


#: ``prefetch(a, i)``: see the module docstring.
prefetch = Intrinsic("prefetch", _make_prefetch, lambda a, i: None)
