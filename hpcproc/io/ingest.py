"""What happens to a block right after it is read: checksum, lineage record, validation.

One ``allgather`` of a few numbers per rank (plus rank 0's file facts) per dataset read;
no second pass over the data. Called by ``io/read.py``.
"""

from __future__ import annotations

import sys

import numpy as np

from ..comm import lib_comm
from . import lineage

__all__ = ["after_read", "inline_crc32", "prepare_rules", "BlockChecksum"]


def prepare_rules(validate, info, comm):
    """Normalised rules for ``info``, or None. Collective when ``validate`` is given: a
    rules file missing on one rank only raises on every rank."""
    if validate is None:
        return None
    from ..comm import check_all
    from ..quality.rules import check_rules, load_rules
    return check_all(lambda: check_rules(load_rules(validate), ndim=len(info.shape)), comm)


def _facts(info, rank):
    if rank != 0 or not lineage.enabled():
        return None
    try:
        return lineage.file_facts(info.path, info.name, info.file_size, info.mtime_ns,
                                 info.lineage)
    except Exception as exc:  # noqa: BLE001 - lineage must never break a read
        return {"facts_error": f"{type(exc).__name__}: {exc}"}


def inline_crc32():
    """The crc32 function a reader may apply to each piece it reads (values as
    little-endian bytes, continuing a running crc), or None when lineage is off or this
    machine is big-endian (then :func:`after_read` checksums the block itself)."""
    if lineage.enabled() and sys.byteorder == "little":
        return lineage.crc32_function()
    return None


def after_read(info, start, stop, local: np.ndarray, offset: int, comm, rules=None,
               target=None, crc=None):
    """Collective. Record ``info``'s rows ``[start, stop)`` as an input; validate them.

    ``local`` is this rank's block (possibly CF-decoded), ``offset`` its first row within
    the selection; ``crc`` the checksum of its stored values when the reader computed it
    already (:func:`inline_crc32`; always, when the block was decoded).
    Returns the validation report (``None`` without rules).
    """
    if crc is None and lineage.enabled():
        crc = lineage.block_crc32(local)
    part = error = None
    if rules is not None:
        from ..quality.rules import local_partial
        try:
            part = local_partial(rules, local, offset)
        except Exception as exc:  # noqa: BLE001 - raised on every rank below
            error = exc
    stored = len(local) * info.row_bytes if local.ndim else local.nbytes  # crc'ed bytes
    ours = lib_comm(comm).allgather((crc, int(stored), offset, part,
                                     _facts(info, comm.Get_rank()), repr(error) if error else None))
    return finish(info, start, stop, ours, local, offset, comm, rules, target, error)


def finish(info, start, stop, gathered, local, offset, comm, rules, target, error=None):
    """Turn the gathered per-rank pieces into the lineage record and the report."""
    errors = [e for *_, e in gathered if e]
    if errors:
        if error is not None:
            raise error
        raise ValueError(f"validation failed on another rank: {errors[0]}")
    facts = gathered[0][4] or {}
    if gathered[0][0] is not None:
        crc, nbytes = lineage.combine_parts([(g[0], g[1]) for g in gathered])
    else:
        crc, nbytes = None, sum(g[1] for g in gathered)
    lineage.record_input(info.path, info.name, start, stop,
                            (stop - start,) + tuple(info.shape[1:]), info.native_dtype,
                            crc, nbytes, facts, info.sources)
    if rules is None:
        return None
    from ..quality.rules import key_values, merge
    key = key_values(rules, local) if ("unique" in rules or "monotonic" in rules) else None
    report = merge(rules, info, [g[3] for g in gathered], [g[2] for g in gathered], key,
                   offset, lib_comm(comm))
    report["target"] = target or f"{info.path}:{info.name}"
    report["checksum"] = None if crc is None else f"crc32:{crc:08x}"
    return report


class BlockChecksum:
    """Running per-rank crc32 over the successive blocks of an ``hp.blocks`` scan.

    ``active`` is False when lineage is off, or when this process recorded the same rows
    of the unchanged file with a checksum already (a later pass of a multi-pass
    reduction): then nothing is computed and the earlier record stands.
    """

    def __init__(self, info=None, start: int = 0, stop: int = 0):
        self.crc, self.nbytes = 0, 0
        self.row_bytes = None if info is None else info.row_bytes  # stored bytes per row
        self.active = lineage.enabled() and not (
            info is not None and lineage.checksummed(info.path, info.name, start, stop,
                                                        info.file_size, info.mtime_ns))

    def update(self, block: np.ndarray, crc: int | None = None) -> None:
        """Add ``block``; ``crc``: the running crc including it, when the reader computed
        it (:func:`inline_crc32`)."""
        if crc is not None:
            self.crc = crc
        elif self.active:
            self.crc = lineage.block_crc32(block, self.crc)
        # the stored bytes (what the crc covers), also when the block was CF-decoded
        self.nbytes += int(block.nbytes if self.row_bytes is None or not block.ndim
                           else len(block) * self.row_bytes)

    def finish(self, info, start, stop, comm) -> None:
        """Collective: record the whole scanned selection as an input."""
        if lineage.enabled() and not self.active:
            return  # recorded, with its checksum, by an earlier pass
        crc = self.crc if lineage.enabled() else None
        gathered = lib_comm(comm).allgather((crc, self.nbytes, 0, None,
                                             _facts(info, comm.Get_rank()), None))
        finish(info, start, stop, gathered, None, 0, comm, None, None)


def check_report(report) -> None:
    """Raise ``ValidationError`` (on every rank: the report is the same) if it failed."""
    if report is not None and not report["ok"]:
        from ..quality.rules import ValidationError, format_report
        failed = [c["rule"] for c in report["checks"] if not c["ok"]]
        raise ValidationError(f"{report['target']} breaks validation rule(s) {failed}:\n"
                              f"{format_report(report)}", report)
