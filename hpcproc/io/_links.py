"""Which files a read of ``FILE:/dataset`` really opens, found as HDF5 finds them.

* :func:`walk`: the file and name at the end of a dataset's links. Soft links, external
  links and any chain of them (soft -> external -> external, external -> soft inside the
  target file...) are followed one link at a time.
* :func:`find_file`: the file HDF5 opens for the file name stored in an external link or
  a virtual dataset (VDS) mapping. HDF5's search (``H5F_prefix_open_file``): an absolute
  name as stored, else its last component; then each directory of ``HDF5_EXT_PREFIX`` /
  ``HDF5_VDS_PREFIX`` (``:``-separated, a leading ``${ORIGIN}`` is the directory of the
  file that holds the link or VDS); then that directory; then the name relative to the
  current directory; then the directory of that file with symbolic links resolved. The
  first candidate that is an HDF5 file wins.
* :func:`data_files`: the files that hold a dataset's data besides its own file: the
  source files of a VDS (``"."`` is the VDS's own file; ``%b`` patterns of unlimited
  mappings match every file of that name; sources that are themselves virtual, external or
  reached by links are followed) and external raw storage files (relative names are
  relative to ``HDF5_EXTFILE_PREFIX`` when set, else to the current directory).
* :func:`read_files`: all of them for ``FILE:/dataset`` (used to refuse outputs that are
  inputs). Local: called on rank 0 only.
"""

from __future__ import annotations

import glob
import os
import posixpath

import h5py

__all__ = ["walk", "find_file", "data_files", "read_files", "MAX_LINKS"]

#: HDF5's default limit on the links followed in one path (``H5Pset_nlinks``)
MAX_LINKS = 16
_MAX_SOURCES = 100_000  # files of nested VDS sources visited, at most
_ENV = {"elink": "HDF5_EXT_PREFIX", "vds": "HDF5_VDS_PREFIX"}


def _prefixes(kind: str, origin: str) -> list[str]:
    env = os.environ.get(_ENV[kind]) or ""
    out = []
    for p in env.split(":"):
        if p.startswith("${ORIGIN}"):
            p = origin + p[len("${ORIGIN}"):]
        if p:
            out.append(p)
    return out


def _candidates(name: str, parent: str, kind: str) -> list[str]:
    """The names HDF5 tries, in order, for ``name`` stored in the file ``parent``."""
    origin = os.path.dirname(os.path.abspath(parent))
    out = []
    if os.path.isabs(name):
        out.append(name)
        name = os.path.basename(name)
    out += [os.path.join(p, name) for p in _prefixes(kind, origin)]
    out += [os.path.join(origin, name), name,
            os.path.join(os.path.dirname(os.path.realpath(parent)), name)]
    return out


def _is_hdf5(path: str) -> bool:
    try:
        return os.path.isfile(path) and h5py.is_hdf5(path)
    except OSError:
        return False


def find_file(name: str, parent: str, kind: str = "elink") -> str:
    """The absolute path of the file HDF5 opens for ``name`` (stored in an external link,
    ``kind="elink"``, or a VDS mapping, ``kind="vds"``, of the file ``parent``). When no
    candidate exists, the first one after an absolute name: the directory of ``parent``."""
    candidates = _candidates(name, parent, kind)
    for path in candidates:
        if _is_hdf5(path):
            return os.path.abspath(path)
    return os.path.abspath(candidates[-3])


def _pattern_files(name: str, parent: str) -> list[str]:
    """Every existing file a VDS ``%b`` file-name pattern names (at any candidate)."""
    pattern = glob.escape(name).replace("%b", "*").replace("%%", "%")
    found = []
    for candidate in _candidates(pattern, parent, "vds"):
        found += [os.path.abspath(p) for p in sorted(glob.glob(candidate)) if _is_hdf5(p)]
    return list(dict.fromkeys(found))


def walk(f: h5py.File, name: str, files: list | None = None) -> tuple[str, str]:
    """``(file, name)`` at the end of ``name``'s links, starting in the open file ``f``.

    Every file an external link leads through is appended to ``files`` (when given).
    Raises ``KeyError`` for a name that leads nowhere, ``OSError`` for more than
    :data:`MAX_LINKS` links (a cycle).
    """
    opened = []
    try:
        return _walk(f, name, files, opened)
    finally:
        for g in opened:
            g.close()


def _walk(f, name, files, opened):
    hops = 0
    parts = [p for p in name.split("/") if p and p != "."]
    here = "/"
    while parts:
        part = parts.pop(0)
        group = f[here]
        link = group.get(part, getlink=True) if isinstance(group, h5py.Group) else None
        if link is None:
            raise KeyError(f"no object {posixpath.join(here, part)!r} in {f.filename}")
        if isinstance(link, h5py.HardLink):
            here = posixpath.join(here, part)
            continue
        hops += 1
        if hops > MAX_LINKS:
            raise OSError(f"more than {MAX_LINKS} links in {name!r} (a cycle?)")
        if isinstance(link, h5py.SoftLink):
            start = link.path if link.path.startswith("/") else posixpath.join(here, link.path)
            parts = [p for p in start.split("/") if p and p != "."] + parts
            here = "/"
        elif isinstance(link, h5py.ExternalLink):
            path = find_file(link.filename, f.filename, "elink")
            if files is not None:
                files.append(path)
            f = h5py.File(path, "r")
            opened.append(f)
            parts = [p for p in link.path.split("/") if p and p != "."] + parts
            here = "/"
        else:
            raise OSError(f"cannot follow the user-defined link {posixpath.join(here, part)!r}"
                          f" in {f.filename}")
    return os.path.abspath(f.filename), here


def _external_raw(dcpl, parent: str) -> list[str]:
    prefix = os.environ.get("HDF5_EXTFILE_PREFIX") or ""
    if prefix.startswith("${ORIGIN}"):
        prefix = os.path.dirname(os.path.abspath(parent)) + prefix[len("${ORIGIN}"):]
    out = []
    for i in range(dcpl.get_external_count()):
        name = os.fsdecode(dcpl.get_external(i)[0])
        if not os.path.isabs(name) and prefix not in ("", "."):
            name = os.path.join(prefix, name)
        out.append(os.path.abspath(name))
    return out


def data_files(path: str, name: str) -> tuple[str, ...]:
    """Files other than ``path`` that hold the data of its dataset ``name`` (VDS sources,
    followed through links and nested VDS; external raw storage files), as absolute
    paths. Local; files that cannot be opened are recorded but not looked into."""
    own = os.path.abspath(path)
    found: dict[str, None] = {}
    todo = [(own, name)]
    seen = set()
    while todo and len(seen) < _MAX_SOURCES:
        path, name = todo.pop()
        if (path, name) in seen:
            continue
        seen.add((path, name))
        try:
            with h5py.File(path, "r") as f:
                real, real_name, via = _open_walk(f, name)
                for p in via:
                    found[p] = None
                with h5py.File(real, "r") as g:
                    d = g[real_name]
                    if not isinstance(d, h5py.Dataset):
                        continue
                    dcpl = d.id.get_create_plist()
                    for p in _external_raw(dcpl, real):
                        found[p] = None
                    if d.is_virtual:
                        todo += _vds_sources(dcpl, real, found)
        except (OSError, KeyError, ValueError, RuntimeError):
            continue  # a missing source reads as fill values: its name is recorded already
    found.pop(own, None)
    return tuple(found)


def _open_walk(f, name):
    via = []
    real, real_name = walk(f, name, via)
    return real, real_name, via


def _vds_sources(dcpl, vds_path, found) -> list:
    """Record the source files of a VDS; return ``(file, dataset)`` pairs to inspect."""
    todo = []
    names = {}
    for i in range(dcpl.get_virtual_count()):
        names.setdefault(dcpl.get_virtual_filename(i), set()).add(dcpl.get_virtual_dsetname(i))
    for filename, dsets in names.items():
        if filename == ".":
            paths = [os.path.abspath(vds_path)]
        elif "%b" in filename:
            paths = _pattern_files(filename, vds_path)
        else:
            paths = [find_file(filename, vds_path, "vds")]
        for path in paths:
            found[path] = None
            todo += [(path, d) for d in dsets if "%b" not in d]
    return todo


def read_files(path: str, name: str) -> list[str]:
    """Every file a read of ``path:name`` depends on: ``path``, the files its links lead
    through and to, and :func:`data_files`. Best effort and local (rank 0): a dataset
    that cannot be opened adds nothing (the read itself reports it)."""
    path = os.fspath(path)
    out = [os.path.abspath(path)]
    try:
        with h5py.File(path, "r") as f:
            real, real_name = walk(f, name, out)
            out.append(real)
            out += data_files(real, real_name)
    except (OSError, KeyError, ValueError, RuntimeError, TypeError):
        pass
    return list(dict.fromkeys(out))
