"""What an append (``hp.write(mode="a")``) does with a dataset that exists already.

``if_exists`` (keyword-only on :func:`hpcproc.write` / :func:`hpcproc.write_table`):

* ``"error"`` (default): :class:`~hpcproc.errors.DatasetExistsError`, the file unchanged;
* ``"skip_identical"``: nothing is written when the existing dataset has the same shape,
  dtype (byte order included) and bytes; every rank compares its own rows
  (:func:`differs`), one allreduce decides. Anything else is a ``DatasetExistsError``;
* ``"replace"``: the new dataset is written under a temporary name; only when every rank
  has written it does :func:`swap_in` move the old one aside (a sibling
  ``<mark><tag>-old-<name>``), the new one to its name, then delete the old one.

A process killed during the swap leaves the aside copy behind: the next append to the
file (:func:`restore_stale`) puts it back if its name is free, else deletes it.
"""

from __future__ import annotations

import re

import h5py
import numpy as np

from .. import _faults
from ..errors import DatasetExistsError
from . import _target

__all__ = ["IF_EXISTS", "check_existing", "differs", "swap_in", "restore_stale", "is_aside",
           "delete"]

IF_EXISTS = ("error", "skip_identical", "replace")
_ASIDE = re.compile(r"^" + re.escape(_target.TMP_MARK)
                    + r"(?P<tag>.+-\d+-[0-9a-f]{12})-old-(?P<base>.+)$")


def _final(name: str) -> str:
    return "/" + name.strip("/")


def check_existing(f, path: str, names, arrays, if_exists: str) -> list[bool]:
    """Which datasets ``names`` exist in the open file ``f``; raise
    :class:`DatasetExistsError` where ``if_exists`` forbids one. Not collective."""
    present = []
    for name, x in zip(names, arrays):
        final = _final(name)
        kind = f.get(final, getclass=True)
        if kind is None:
            present.append(False)
            continue
        if if_exists == "error":
            raise DatasetExistsError(
                f"dataset {final!r} already exists in {path} (mode 'a' never overwrites; "
                f"pass if_exists='skip_identical' or 'replace')")
        if kind is not h5py.Dataset:
            raise DatasetExistsError(f"{final!r} in {path} is a group, not a dataset; "
                                     f"it is never replaced")
        d = f[final]
        if if_exists == "skip_identical" and (tuple(d.shape) != tuple(x.global_shape)
                                              or d.dtype != x.dtype):
            raise DatasetExistsError(
                f"dataset {final!r} already exists in {path} with shape {tuple(d.shape)} "
                f"and dtype {d.dtype.str}, not {tuple(x.global_shape)} {x.dtype.str} "
                f"(if_exists='skip_identical' skips only an identical dataset)")
        present.append(True)
    return present


def differs(path: str, name: str, x) -> bool:
    """True if this rank's rows of ``x`` differ (bit for bit) from the rows of the
    dataset ``name`` in ``path`` at the same global positions. Not collective."""
    n = x.local.shape[0]
    if n == 0:
        return False
    with h5py.File(path, "r") as f:
        old = f[_final(name)][x.offset:x.offset + n]
    new = np.ascontiguousarray(x.local)
    return old.shape != new.shape or old.tobytes() != new.tobytes()


def is_aside(name: str) -> bool:
    """True for the name of a dataset moved aside by :func:`swap_in`."""
    return _ASIDE.match(name) is not None


def _aside(final: str, tag: str) -> str:
    parent, base = final.rsplit("/", 1)
    return f"{parent}/{_target.TMP_MARK}{tag}-old-{base}"


def swap_in(f, layouts, tag: str) -> None:
    """Move every written dataset (``lay["tmp"]``) to its name (``lay["final"]``), the
    dataset it replaces aside first; delete those only once all are in place. On an
    error the file is put back as it was (new datasets under their temporary names)."""
    done = []
    try:
        for lay in layouts:
            parent = lay["final"].rsplit("/", 1)[0]
            if parent:
                f.require_group(parent)
            aside = None
            if f.get(lay["final"], getclass=True) is h5py.Dataset and lay.get("replace"):
                aside = _aside(lay["final"], tag)
                f.move(lay["final"], aside)
            done.append((lay, aside))
            _faults.check("write.swap", len(done) - 1)  # tests: fail at the i-th swap
            f.move(lay["tmp"], lay["final"])
    except BaseException:
        for lay, aside in reversed(done):
            try:
                if lay["final"] in f and lay["tmp"] not in f:
                    f.move(lay["final"], lay["tmp"])
                if aside is not None and aside in f:
                    f.move(aside, lay["final"])
            except Exception:  # noqa: BLE001 - best effort; the first error is raised
                pass
        raise
    for _, aside in done:
        if aside is not None:
            delete(f, aside)


def delete(f, name: str) -> None:
    """Delete dataset ``name``, detaching it from its dimension scales first (a scale
    must not keep a reference to a deleted dataset: netCDF readers follow them)."""
    obj = f[name]
    if isinstance(obj, h5py.Dataset) and not obj.is_scale:
        for dim in obj.dims:
            for scale in list(dim.values()):
                try:
                    dim.detach_scale(scale)
                except (RuntimeError, ValueError, KeyError):
                    pass
    del f[name]


def restore_stale(f, groups, now: float) -> None:
    """Put back (or delete) the datasets a killed replacement left aside in ``groups``."""
    for group in groups:
        g = f.get(group)
        if not isinstance(g, h5py.Group):
            continue
        for name in [n for n in g if n.startswith(_target.TMP_MARK)]:
            m = _ASIDE.match(name)
            if m is None or not _target.is_stale(".x" + _target.TMP_MARK + m.group("tag"),
                                                 now, now):
                continue
            if m.group("base") in g:
                del g[name]
            else:
                g.move(name, m.group("base"))
