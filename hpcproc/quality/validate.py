"""``validate_dataset``: read a dataset in parallel (whole or streamed) and check it
against validation rules (:mod:`.rules`), returning the report instead of raising."""

from __future__ import annotations

import numpy as np

from ..agreement import collective
from ..comm import check_all, get_comm, lib_comm
from ..io import ingest
from ..io.lineage import inputs
from ..io.plan import ReadPlan
from ..io.read import blocks
from .rules import ValidationError, key_values, local_partial, merge, ordered

__all__ = ["validate_dataset", "ValidationError"]


@collective("hp.validate_dataset", paths=("path",))
def validate_dataset(path: str, dataset: str, rules, comm=None, rows=None,
                     method: str = "auto", block_bytes: int | None = None) -> dict:
    """Read ``path:dataset`` in parallel and check it against ``rules``; return the report.

    Collective. Like ``hp.read(..., validate=rules)`` but returns the report (the same on
    every rank) instead of raising :class:`ValidationError`; the data is not kept.
    ``report["ok"]`` tells whether every rule passed; each entry of ``report["checks"]``
    gives the rule, the expected value, the number of violations and the first
    offending global row indices.

    With ``block_bytes`` the dataset is streamed with ``hp.blocks`` (memory bounded by
    ``block_bytes`` per rank, plus 8 bytes per row of the key column when ``unique`` is
    checked on keys that are not sorted).
    """
    comm = get_comm(comm)
    if block_bytes is not None and int(block_bytes) < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    plan = ReadPlan.make(path, dataset, comm, rows, method, what="hp.validate_dataset")
    info, start, stop = plan.info, plan.start, plan.stop
    rules = ingest.prepare_rules(rules, info, comm)
    target = f"{path}:{info.name}"
    if block_bytes is None:
        lo, hi = plan.ranges[comm.Get_rank()]
        local, crc = plan.read(lo, hi, comm)
        return ingest.after_read(info, start, stop, local, lo - start, comm, rules,
                                  target=target, crc=crc)
    stream, errors = _Stream(rules), []
    for blk in blocks(path, dataset, block_bytes, comm, rows=(start, stop), method=method):
        if not errors:  # keep stepping after a local error: the scan is collective
            try:
                stream.add(blk.local, blk.origin - start)
            except Exception as exc:  # noqa: BLE001 - raised on every rank below
                errors.append(exc)

    def agree():
        if errors:
            raise errors[0]
    check_all(agree, comm)
    part, first, key = stream.result()
    gathered = lib_comm(comm).allgather((part, first))
    report = merge(rules, info, [g[0] for g in gathered], [g[1] for g in gathered], key,
                   first, lib_comm(comm))
    rec = next((r for r in reversed(inputs()) if r["dataset"] == info.name
                and r["rows"] == [start, stop]), {})
    report.update(target=target, checksum=rec.get("checksum"))
    return report


class _Stream:
    """One rank's partial results over its successive blocks (they are contiguous)."""

    def __init__(self, rules: dict):
        self.rules, self.part, self.first, self.keys = rules, None, 0, []

    def add(self, block: np.ndarray, offset: int) -> None:
        rules, lim = self.rules, self.rules["limit"]
        p = local_partial(rules, block, offset)
        if rules.get("unique") and block.shape[0]:
            self.keys.append(np.array(key_values(rules, block)))
        q = self.part
        if q is None or q["n"] == 0:  # nothing seen yet on this rank
            self.part, self.first = p, offset
            return
        if p["n"] == 0:
            return
        q["n"] += p["n"]
        for k in ("max_nan", "max_inf", "min", "max", "monotonic"):
            if k in p:
                q[k] = (q[k][0] + p[k][0], (q[k][1] + p[k][1])[:lim])
        if "ends" not in q:
            return
        a, b = q["ends"][1], p["ends"][0]  # the seam between this rank's blocks
        if "monotonic" in rules and not ordered(np.array([a]), np.array([b]),
                                                 rules["monotonic"])[0]:
            q["monotonic"] = (q["monotonic"][0] + 1, sorted(q["monotonic"][1] + [offset])[:lim])
        if "unique" in rules:
            q["sorted"] = bool(q["sorted"] and p["sorted"] and b >= a)
            if not q["sorted"]:
                q["adjacent"] = None
            else:
                seam = [offset] if a == b else []
                q["adjacent"] = (q["adjacent"][0] + p["adjacent"][0] + len(seam),
                                 sorted(q["adjacent"][1] + seam + p["adjacent"][1])[:lim])
        q["ends"] = (q["ends"][0], p["ends"][1])

    def result(self):
        part = self.part if self.part is not None else local_partial(
            self.rules, np.empty(0), 0)
        key = np.concatenate(self.keys) if self.keys else np.empty(0)
        return part, self.first, key
