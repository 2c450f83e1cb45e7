"""The file commands: ``hpcproc info`` (versions, MPI, ranks), ``hpcproc generate`` (a
synthetic dataset) and ``hpcproc ls FILE [GROUP]`` (``info FILE`` is the same): list datasets.

``ls``:

Every dataset under ``GROUP`` (default ``/``), recursively, following soft links (each
group is entered once) and showing external links with their target, with its shape,
element type and byte order, storage layout, chunk shape, filters (the io layer's names,
ids, and whether this HDF5 library can load them), the netCDF/CF attributes present, and
the read strategy ``method="auto"`` will use (the io layer's own chooser). Rank 0 reads
the metadata and prints; the other ranks only wait.
"""

from __future__ import annotations

import os
import sys
import time

from .. import __version__
from ..errors import DatasetNotFoundError, UsageError
from . import types
from .common import dumps, echo, split

__all__ = ["add_parsers", "COMMANDS", "list_datasets", "CF_ATTRS"]

#: Attributes of the netCDF/CF conventions that change how values read or are described.
CF_ATTRS = ("scale_factor", "add_offset", "_FillValue", "missing_value", "valid_min",
            "valid_max", "valid_range", "units", "long_name", "standard_name", "calendar",
            "coordinates", "bounds", "axis", "DIMENSION_LIST")


def add_arguments(p) -> None:
    """FILE [GROUP] and --json (shared by ``ls`` and ``info``)."""
    p.add_argument("file", metavar="FILE", help="HDF5 or netCDF-4 file (or FILE:/group)")
    p.add_argument("group", nargs="?", default=None, metavar="GROUP",
                   help="list only this group (recursively) or this one dataset (default /)")


def add_parsers(sub) -> None:
    info = sub.add_parser("info", help="versions, MPI library, ranks, parallel HDF5; "
                                       "with FILE: its datasets (as 'hpcproc ls')")
    info.add_argument("file", nargs="?", metavar="FILE", help="list this file's datasets")
    info.add_argument("group", nargs="?", metavar="GROUP", help="only under this group")
    info.add_argument("--json", action="store_true", help="print JSON")

    ls = sub.add_parser("ls", help="list a file's datasets: shape, dtype, layout, chunks, "
                                   "filters, CF attributes, read strategy")
    add_arguments(ls)
    ls.add_argument("--json", action="store_true", help="print JSON")

    gen = sub.add_parser("generate", help="write a synthetic dataset (fixed seed)")
    gen.add_argument("output", help="output HDF5 file")
    gen.add_argument("--kind", default="normal", choices=("normal", "uniform", "zipf", "particles"))
    size = gen.add_mutually_exclusive_group()
    size.add_argument("--rows", type=types.parse_count, help="number of rows (e.g. 10M, 2^20)")
    size.add_argument("--bytes", type=types.size(0), help="total size instead of rows (e.g. 1G)")
    gen.add_argument("--cols", type=types.integer(1), default=1,
                     help="columns of /x for kind normal")
    gen.add_argument("--keys", type=types.count(1), default=1 << 20,
                     help="key range (uniform, zipf)")
    gen.add_argument("--zipf-a", type=types.real(1, open_low=True), default=1.2,
                     help="Zipf exponent (> 1)")
    gen.add_argument("--seed", type=types.integer(0), default=0, help="random seed (>= 0)")
    gen.add_argument("--chunks", type=types.count(1), help="chunk length in rows (chunked layout)")
    gen.add_argument("--compression", choices=("gzip",), help="compress (implies chunks)")
    gen.add_argument("--json", action="store_true", help="print JSON")


def _byte_order(dtype) -> str:
    order = dtype.byteorder
    if order == "=":
        order = "<" if sys.byteorder == "little" else ">"
    return {"<": "little", ">": "big"}.get(order, "none")


def _type_name(dtype) -> str:
    import h5py

    s = h5py.check_string_dtype(dtype)
    if s is not None:
        return f"string ({s.encoding}, {'variable length' if s.length is None else s.length})"
    if dtype.fields is not None:
        return "compound (" + ", ".join(f"{k}: {v[0]}" for k, v in dtype.fields.items()) + ")"
    return dtype.name


def _layout(dset) -> str:
    import h5py

    dcpl = dset.id.get_create_plist()
    if dset.is_virtual:
        return "virtual"
    if dcpl.get_external_count() > 0:
        return "external"
    return {h5py.h5d.COMPACT: "compact", h5py.h5d.CONTIGUOUS: "contiguous",
            h5py.h5d.CHUNKED: "chunked"}.get(dcpl.get_layout(), "other")


def _filters(dset) -> list:
    import h5py

    from ..io.filters import filter_name

    dcpl = dset.id.get_create_plist()
    out = []
    for i in range(dcpl.get_nfilters()):
        code, _flags, _values, name = dcpl.get_filter(i)
        out.append({"id": int(code), "name": filter_name(code, name),
                    "available": bool(h5py.h5z.filter_avail(code))})
    return out


def _read_strategy(path: str, name: str) -> tuple:
    """(strategy of ``method="auto"``, None) or (None, why hpcproc cannot read it)."""
    from ..comm import error_message
    from ..io._meta import inspect_dataset
    from ..io.read import strategy

    try:
        return strategy(inspect_dataset(path, name)), None
    except Exception as exc:  # noqa: BLE001 - shown in the listing, not fatal
        return None, error_message(exc)


def _describe(path: str, name: str, dset, link: dict | None) -> dict:
    dtype = dset.dtype
    shape = None if dset.shape is None else [int(n) for n in dset.shape]
    read, why = _read_strategy(path, name)
    present = set(dset.attrs.keys())
    rec = {"name": name, "shape": shape, "dtype": _type_name(dtype), "dtype_str": dtype.str,
           "byte_order": _byte_order(dtype), "layout": _layout(dset),
           "chunks": None if dset.chunks is None else [int(n) for n in dset.chunks],
           "filters": _filters(dset), "cf": [a for a in CF_ATTRS if a in present],
           "read": read}
    if why is not None:
        rec["not_readable"] = why
    if link is not None:
        rec["link"] = link
    return rec


def _link(obj_link) -> dict | None:
    import h5py

    if isinstance(obj_link, h5py.SoftLink):
        return {"type": "soft", "target": obj_link.path}
    if isinstance(obj_link, h5py.ExternalLink):
        return {"type": "external", "file": obj_link.filename, "target": obj_link.path}
    return None


def _walk(path: str, group, prefix: str, seen: dict, out: list, later: list) -> None:
    """Datasets under ``group`` into ``out``; groups reached through soft links into
    ``later`` (entered after every hard-linked group, so that each group is listed
    under its own name and a link back to it never loops)."""
    import h5py

    for key in group:
        name = f"{prefix.rstrip('/')}/{key}"
        link = _link(group.get(key, getlink=True))
        try:
            obj = group[key]
        except (KeyError, OSError, ValueError) as exc:  # dangling soft or external link
            why = exc.args[0] if exc.args else type(exc).__name__
            out.append({"name": name, "link": link, "error": f"cannot resolve link ({why})"})
            continue
        if isinstance(obj, h5py.Dataset):
            out.append(_describe(path, name, obj, link))
        elif isinstance(obj, h5py.Group):
            if link is not None and link["type"] == "external":
                out.append({"name": name, "link": link,
                            "error": "external group (list its file to see it)"})
            elif link is not None:
                later.append((name, obj, link))
            elif _enter(obj, name, seen):
                _walk(path, obj, name, seen, out, later)


def _enter(group, name: str, seen: dict) -> bool:
    """True the first time ``group`` (the object, whatever its name) is met."""
    ident = (group.file.filename, hash(group.id))
    if ident in seen:
        return False
    seen[ident] = name
    return True


def _walk_all(path: str, group, name: str, out: list) -> None:
    seen: dict = {}
    later: list = []
    _enter(group, name, seen)
    _walk(path, group, name, seen, out, later)
    while later:
        link_name, obj, link = later.pop(0)
        if _enter(obj, link_name, seen):
            _walk(path, obj, link_name, seen, out, later)
        else:
            out.append({"name": link_name, "link": link, "error":
                        f"group listed as {seen[(obj.file.filename, hash(obj.id))]}"})


def list_datasets(path: str, group: str | None = None) -> dict:
    """The listing of ``path`` under ``group`` (local, no MPI): ``{"file", "group",
    "datasets": [...]}``; ``FileNotFoundError``/``OSError`` for a missing or non-HDF5
    file, ``DatasetNotFoundError`` for a missing group."""
    import h5py

    from ..io._meta import open_file

    group = "/" + (group or "/").strip("/")
    with open_file(path) as f:
        try:
            obj = f[group]
        except (KeyError, ValueError):
            raise DatasetNotFoundError(f"no group or dataset {group!r} in {path}") from None
        out: list = []
        if isinstance(obj, h5py.Dataset):
            out.append(_describe(path, obj.name, obj, _link(f.get(group, getlink=True))))
        else:
            _walk_all(path, obj, group, out)
    return {"file": path, "group": group, "datasets": out}


def _shape(shape) -> str:
    return "null" if shape is None else "(" + ", ".join(map(str, shape)) + \
        ("," if len(shape) == 1 else "") + ")"


def format_listing(doc: dict) -> str:
    """The human-readable table of :func:`list_datasets`'s result."""
    head = ("NAME", "SHAPE", "DTYPE", "LAYOUT", "CHUNKS", "FILTERS", "READ", "CF")
    rows = []
    for d in doc["datasets"]:
        name = d["name"]
        if d.get("link"):
            ln = d["link"]
            name += f" -> {ln['file'] + ':' if ln['type'] == 'external' else ''}{ln['target']}"
        if "shape" not in d:
            rows.append((name, d["error"]))
            continue
        filters = ",".join(f["name"] + ("" if f["available"] else f" [id {f['id']}: MISSING]")
                           for f in d["filters"]) or "-"
        rows.append((name, _shape(d["shape"]), f"{d['dtype']} {d['dtype_str']}", d["layout"],
                     "-" if d["chunks"] is None else _shape(d["chunks"]), filters,
                     d["read"] or "not readable", ",".join(d["cf"]) or "-"))
    full = [r for r in rows if len(r) == len(head)]
    widths = [max(len(str(r[i])) for r in [head, *full]) for i in range(len(head))]
    lines = [f"{doc['file']}:{doc['group']}  ({len(full)} datasets)",
             "  " + "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    for r in rows:
        lines.append("  " + ("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
                             if len(r) == len(head) else f"{r[0]}  {r[1]}"))
    notes = [f"  {d['name']}: {d['not_readable']}" for d in doc["datasets"]
             if d.get("not_readable")]
    if notes:
        lines += ["not readable by hpcproc:", *notes]
    return "\n".join(lines)


def _target(args) -> tuple:
    path, group = args.file, args.group
    if not os.path.exists(path) and ":" in path:
        path, inner = split(path)
        if group is not None:
            raise UsageError(f"give the group once: {args.file} or GROUP {group}, not both")
        group = inner
    return path, group


def cmd_ls(args, comm) -> int:
    """List datasets (collective: rank 0 reads the metadata and renders, all ranks agree
    on errors; rank 0 prints)."""
    from ..comm import root_call

    path, group = _target(args)

    def render():
        doc = list_datasets(path, group)
        return dumps(doc) if args.json else format_listing(doc)
    echo(root_call(render, comm), comm)
    return 0


def cmd_info(args, comm) -> int:
    if args.file is not None:  # `hpcproc info FILE` lists the file, as `hpcproc ls FILE`
        return cmd_ls(args, comm)
    import h5py
    import mpi4py
    import numba
    import numpy
    from mpi4py import MPI

    info = {
        "hpcproc": __version__, "python": sys.version.split()[0], "numpy": numpy.__version__,
        "numba": numba.__version__, "numba_threading_layer": numba.config.THREADING_LAYER,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "h5py": h5py.version.version, "hdf5": h5py.version.hdf5_version,
        "h5py_parallel": bool(h5py.get_config().mpi), "mpi4py": mpi4py.__version__,
        "mpi_library": MPI.Get_library_version().splitlines()[0].strip(),
        "mpi_standard": "%d.%d" % MPI.Get_version(), "ranks": comm.Get_size(),
        "nodes": len(set(comm.allgather(MPI.Get_processor_name()))),
    }
    if args.json:
        echo(dumps(info), comm)
    else:
        echo("\n".join(f"{k:22s} {v}" for k, v in info.items()), comm)
    return 0


def cmd_generate(args, comm) -> int:
    from ..synthetic import generate, row_bytes

    if args.rows is None and args.bytes is None:
        args.rows = 1 << 20
    rows = args.rows if args.rows is not None else args.bytes // row_bytes(args.kind, args.cols)
    if ":/" in args.output and not os.path.exists(os.path.dirname(args.output) or "."):
        raise UsageError(f"generate writes a whole file (its datasets are named by --kind): "
                         f"give a file name, not {args.output!r}")
    from .observe import check_outputs
    check_outputs(comm, ("output", args.output))  # before generating anything
    chunks = None
    if args.chunks or args.compression:
        wide = args.kind == "normal" and args.cols > 1
        chunks = True if not args.chunks else (args.chunks,) + ((args.cols,) if wide else ())
    t0 = time.perf_counter()
    shapes = generate(args.output, args.kind, rows, cols=args.cols, seed=args.seed,
                      keys=args.keys, zipf_a=args.zipf_a, comm=comm, chunks=chunks,
                      compression=args.compression)
    elapsed = time.perf_counter() - t0
    nbytes = rows * row_bytes(args.kind, args.cols)
    out = {"file": args.output, "datasets": {k: list(v) for k, v in shapes.items()},
           "bytes": nbytes, "seconds": elapsed, "ranks": comm.Get_size()}
    if args.json:
        echo(dumps(out), comm)
    else:
        lines = [f"wrote {args.output}: {nbytes / 2**20:.1f} MiB in {elapsed:.2f} s "
                 f"({nbytes / 2**30 / max(elapsed, 1e-9):.2f} GiB/s) on {comm.Get_size()} ranks"]
        lines += [f"  {k}  shape {tuple(v)}" for k, v in shapes.items()]
        echo("\n".join(lines), comm)
    return 0


COMMANDS = {"info": cmd_info, "ls": cmd_ls, "generate": cmd_generate}
