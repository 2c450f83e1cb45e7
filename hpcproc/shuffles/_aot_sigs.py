"""Which shuffle kernels are compiled ahead of time, for which argument types: one table.

:func:`._jit.jit` looks every kernel up here by its qualified name
(``module.function``) and declares the signatures listed (see
:mod:`hpcproc.kernels._aot`; built at install by ``make venv`` / ``pip install``). A call
whose argument types match one exactly runs the compiled function without importing
Numba; any other call, and every call when the build is missing or out of date, is
compiled by Numba as before, with identical results.

Every ``@jit`` kernel of the shuffle modules has an entry (``tests/test_startup_shuffles.py``
fails otherwise), one of

* a list of signatures (Numba type strings, arrays C-contiguous): the types seen in real
  use (the shuffle tests and benchmarks, instrumented), generalised to the common cases;
* :data:`INNER`: only called by other kernels, so compiled into each caller's build
  (no signatures of its own needed);
* a string: why the kernel cannot be built ahead of time (``numba.pycc`` has no
  optional arguments, no generators, no first-class functions): it stays Numba-only.

Editing the table: a rewritten kernel gets the types its callers pass (keys always
arrive encoded as ``uint64`` word matrices ``u8[:, ::1]``; columns moved by the exchange
as unsigned words :data:`WORDS`; row numbers as :data:`IDX`), then ``make venv``. The
modules must also be in :data:`hpcproc.kernels._aot.BUILTIN`. The test then checks that
sort, group-by, join, exchange and distinct on int64/float64 data import no Numba, and
that every built kernel gives the Numba kernel's bytes.

Cost: 198 signatures (42 of them the dense group-by's small value dtypes, 21 its pairs of
sums and counts, for the keys wide enough to need them); at
112 they added about 0.6x the statistics kernels' build time to the install and 0.6 MB
to the extension (docs/kernels.md, *Start-up*); prefer type-generic kernels (unsigned
words, encoded key rows) to more signatures.
"""

from __future__ import annotations

from ..kernels._aot import signatures

__all__ = ["SIGNATURES", "lookup", "INNER", "WORDS", "IDX", "DEST", "DENSE_KEYS", "VALUES", "ACC"]

INNER = "inner"

#: Row numbers (permutations, orders, run starts): int32 below 2**31 rows, else int64.
IDX = ("i4", "i8")
#: Destination ranks (:func:`._exchange.dest_dtype`): uint8 up to 256 ranks, uint16 up to
#: 65536 (int32 above: Numba).
DEST = ("u1", "u2")
#: A column as the exchange and the gathers see it (:func:`._exchange.words`): one
#: unsigned word per row (1, 2, 4 or 8 bytes), or a row of words (8-byte multiples as
#: uint64, any other width as bytes). Any dtype of any width moves through these six.
WORDS = ("u1[::1]", "u2[::1]", "u4[::1]", "u8[::1]", "u8[:, ::1]", "u1[:, ::1]")
#: The integer keys of the dense group-by, as passed (uint64 as its int64 view).
DENSE_KEYS = ("i1", "i2", "i4", "i8", "u1", "u2", "u4")
#: Value columns with built group-by kernels, and their accumulator type (every numeric
#: dtype as the dense group-by passes it: float16 arrives as float32).
VALUES = {"i8": "i8", "u8": "u8", "f8": "f8", "f4": "f8", "i4": "i8", "i2": "i8", "i1": "i8",
          "u4": "u8", "u2": "u8", "u1": "u8", "b1": "i8"}
#: The accumulator types of group states (``grouping._acc_dtype``).
ACC = ("i8", "u8", "f8")

K2 = "u8[:, ::1]"  # encoded key rows


def _dense_states() -> list[str]:
    out = []
    for v, acc in VALUES.items():
        out += signatures(f"{{k}}[::1], i8, {v}[::1], i4[::1], {acc}[::1], i8[::1], "
                          f"{acc}[::1], {acc}[::1], b1, b1", k=DENSE_KEYS)
    return out


def _dense_pairs() -> list[str]:
    # only keys that span more groups than SPLIT_STATE holds, values with signed sums
    return [f"{k}[::1], i8, {v}[::1], {acc}[::1], i8[::1]" for k in ("i4", "u4", "i8")
            for v, acc in VALUES.items() if acc != "u8"]


def _msd() -> list[str]:
    # (perm, payload/vals): row numbers, or a carried group-by value column
    pairs = [("i4", "i4"), ("i8", "i8")] + [("i4", a) for a in ACC]
    return [f"u8[::1], u8, {p}[::1], {v}[::1], u8[::1], {v}[::1]" for p, v in pairs]


SIGNATURES: dict[str, list[str] | str] = {
    # _kernels: partition and exchange
    "hpcproc.shuffles._kernels.count_many": signatures("{d}[::1], i8, i8", d=DEST),
    "hpcproc.shuffles._kernels.scatter_round": signatures(
        "{d}[::1], {w}, i8[::1], i8[::1], i8[::1], {w}", d=DEST, w=WORDS),
    "hpcproc.shuffles._kernels.scatter_to": signatures(
        "{d}[::1], {w}, i8[:, ::1], i8, i8[::1], i4[::1]", d=DEST, w=WORDS[:4]),
    "hpcproc.shuffles._kernels._scatter_rest": INNER,
    "hpcproc.shuffles._kernels.scatter_wide_to": signatures(
        "{d}[::1], {w}, i8[::1], i8[::1], i4[::1]", d=DEST, w=WORDS[4:]),
    "hpcproc.shuffles._kernels.scatter_pos_to": signatures(
        "{d}[::1], i4[::1], {w}, i8[::1]", d=DEST, w=WORDS[:4]),
    "hpcproc.shuffles._kernels.hash_dest": signatures(f"{K2}, i8, {{d}}[::1]", d=DEST),
    "hpcproc.shuffles._kernels.range_dest": signatures(
        f"{K2}, {K2}, i8, b1, {{d}}[::1]", d=DEST),
    "hpcproc.shuffles._kernels.gather_rows": signatures("{w}, {i}[::1], {w}", w=WORDS,
                                                        i=IDX),
    "hpcproc.shuffles._kernels.mix": INNER,
    "hpcproc.shuffles._kernels.hash_row": INNER,
    "hpcproc.shuffles._kernels.hash_words": INNER,
    "hpcproc.shuffles._kernels.less_equal": INNER,
    # _localsort: the radix sort and its runs
    "hpcproc.shuffles._localsort._msd": _msd(),
    "hpcproc.shuffles._localsort._runs": signatures(f"{K2}, {{i}}[::1], b1, i8[::1]",
                                                    i=IDX),
    "hpcproc.shuffles._localsort._insertion": INNER,
    "hpcproc.shuffles._localsort._bit_length": INNER,
    "hpcproc.shuffles._localsort._digit_bits": INNER,
    # _merge: splitter cuts and run merging
    "hpcproc.shuffles._merge._bounds": [f"{K2}, {K2}, i8[::1]"],
    "hpcproc.shuffles._merge._merge_distinct_pass": [f"{K2}, i8[::1], i8, {K2}, i8[::1]"],
    "hpcproc.shuffles._merge._compose": ["i8[::1], i8[::1]"],
    # _reduce: group states
    "hpcproc.shuffles._reduce.key_range": signatures(
        "{k}[::1], {k}[::1]", k=("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8")),
    "hpcproc.shuffles._reduce.dense_count": signatures("{k}[::1], i8, i4[::1]",
                                                       k=DENSE_KEYS),
    "hpcproc.shuffles._reduce.dense_states": _dense_states(),
    "hpcproc.shuffles._reduce.dense_pairs": _dense_pairs(),
    "hpcproc.shuffles._reduce.prefetch_stop": INNER,
    "hpcproc.shuffles._reduce.seg_agg_states": signatures(
        "{i}[::1], i8[::1], {a}[::1], i8[::1], {a}[::1], {a}[::1], {a}[::1], b1",
        i=IDX, a=ACC),
    "hpcproc.shuffles._reduce.gid_merge_states": signatures(
        "i8[::1], i8[::1], {a}[::1], {a}[::1], {a}[::1], i8[::1], {a}[::1], {a}[::1], "
        "{a}[::1], b1", a=ACC),
    "hpcproc.shuffles._reduce.gid_sum": ["i8[::1], i8[::1], i8[::1]"],
    "hpcproc.shuffles._reduce.compare_rows": INNER,
    # _hashjoin: the local join (row numbers always int64 here)
    "hpcproc.shuffles._hashjoin._partition": [f"{K2}, i8, {K2}, i8[::1], u2[::1]"],
    "hpcproc.shuffles._hashjoin._probe_parts": [
        f"{K2}, i8[::1], {K2}, i8[::1], i8[::1], i8[::1], i8, i8"],
    "hpcproc.shuffles._hashjoin._unscatter": signatures(
        "u2[::1], i8[::1], {w}[::1], {w}[::1]", w=("i8", "u1", "u2", "u4", "u8")),
    "hpcproc.shuffles._hashjoin._pick": signatures("{w}[::1], i8[::1], {w}[::1]",
                                                   w=("u1", "u2", "u4", "u8")),
    "hpcproc.shuffles._hashjoin._expand": ["i8[::1], i8[::1], i8, b1"],
    "hpcproc.shuffles._hashjoin._probe_one": INNER,
    "hpcproc.shuffles._hashjoin._same": INNER,
    # _skew: the heavy keys of a join
    "hpcproc.shuffles._skew._table": [K2],
    "hpcproc.shuffles._skew._count": [f"{K2}, {K2}, i8[::1], i4[::1]"],
    "hpcproc.shuffles._skew._count_few": [f"{K2}, {K2}, i8[::1], i4[::1]"],
    "hpcproc.shuffles._skew._route": signatures("i4[::1], i1[::1], i8, {d}[::1], i8[::1]",
                                                d=DEST),
}


def lookup(qualname: str) -> tuple:
    """The signatures to build for the kernel ``qualname`` (empty: Numba only)."""
    entry = SIGNATURES.get(qualname, ())
    return () if isinstance(entry, str) else tuple(entry)
