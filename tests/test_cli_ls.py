"""``hpcproc ls FILE [GROUP]`` and ``hpcproc info FILE`` against h5py's view of the file."""

import json

import h5py
import numpy as np
import pytest

from support import SERIAL_ONLY, hpcproc_cmd, run

pytestmark = SERIAL_ONLY

RANKS = [1, 2]
MISSING_FILTER = 300  # HDF5 reserves 256-511 for testing: no plugin provides it


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("ls")
    with h5py.File(d / "other.h5", "w") as f:
        f["t"] = np.arange(7, dtype="<i2")
    path = d / "s.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(100.0)
        f.create_dataset("big", data=np.arange(10, dtype=">f4"))
        f.create_dataset("z", data=np.arange(1000, dtype="i4"), chunks=(100,),
                         compression="gzip", shuffle=True)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        h5py.h5d.create(f.id, b"compact", h5py.h5t.NATIVE_DOUBLE,
                        h5py.h5s.create_simple((4,)), dcpl=dcpl)
        f["compact"][...] = np.arange(4.0)
        f.create_dataset("unalloc", shape=(10,), dtype="u8")
        f.create_dataset("m", data=np.zeros((6, 3), "f4"), chunks=(2, 3), fletcher32=True)
        g = f.create_group("grp/sub")
        g["s"] = np.array([b"ab", b"cd"])
        g["scalar"] = 3.0
        g["vs"] = np.array(["x"], dtype=h5py.string_dtype())
        g["rec"] = np.zeros(3, dtype=[("a", "i4"), ("b", "f8")])
        cf = f.create_dataset("cf", data=np.arange(5, dtype="i2"))
        cf.attrs["scale_factor"] = 0.1
        cf.attrs["_FillValue"] = np.int16(-1)
        cf.attrs["units"] = "K"
        f["soft"] = h5py.SoftLink("/x")
        f["softgrp"] = h5py.SoftLink("/grp")
        f["grp"]["loop"] = h5py.SoftLink("/grp")  # a cycle: listed once
        f["dangling"] = h5py.SoftLink("/nothing")
        f["ext"] = h5py.ExternalLink("other.h5", "/t")
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)  # an optional filter HDF5 lacks
        dcpl.set_chunk((10,))
        dcpl.set_filter(MISSING_FILTER, h5py.h5z.FLAG_OPTIONAL, (0,))
        h5py.h5d.create(f.id, b"nofilter", h5py.h5t.NATIVE_DOUBLE,
                        h5py.h5s.create_simple((20,)), dcpl=dcpl)
    return d, path


def _reference(path):
    """h5py's own view: every dataset reachable by a hard link (visititems), with the
    attributes hpcproc ls reports."""
    ref = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            filters = []  # HDF5's filter ids, in pipeline order
            if obj.shuffle:
                filters.append(2)
            if obj.compression == "gzip":
                filters.append(1)
            if obj.fletcher32:
                filters.append(3)
            if name == "nofilter":
                filters.append(MISSING_FILTER)
            ref["/" + name] = {"shape": list(obj.shape), "dtype_str": obj.dtype.str,
                               "chunks": None if obj.chunks is None else list(obj.chunks),
                               "filters": filters}

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return ref


def _ls(*args, ranks):
    proc = run(hpcproc_cmd(*args), ranks=ranks, timeout=90, check=True)
    return proc.stdout


@pytest.mark.parametrize("ranks", RANKS)
def test_ls_json_matches_h5py(sample, ranks):
    d, path = sample
    doc = json.loads(_ls("ls", path, "--json", ranks=ranks))
    got = {e["name"]: e for e in doc["datasets"]}
    ref = _reference(path)
    for name, want in ref.items():
        e = got[name]
        assert e["shape"] == want["shape"] and e["dtype_str"] == want["dtype_str"], name
        assert e["chunks"] == want["chunks"], name
        assert [f["id"] for f in e["filters"]] == want["filters"], name
        assert all(f["available"] for f in e["filters"]) == (name != "/nofilter"), name
    # soft links are followed (a dataset, and a group listed once), external links shown
    assert got["/soft"]["link"] == {"type": "soft", "target": "/x"}
    assert got["/soft"]["shape"] == [100]
    assert got["/ext"]["link"] == {"type": "external", "file": "other.h5", "target": "/t"}
    assert got["/ext"]["shape"] == [7] and got["/ext"]["dtype_str"] == "<i2"
    assert "error" in got["/dangling"] and "error" in got["/softgrp"]
    assert "listed as /grp" in got["/grp/loop"]["error"]
    listed = {n for n, e in got.items() if "shape" in e and "link" not in e}
    assert listed == set(ref)
    # types, layout, CF attributes and the read strategy of method="auto"
    assert got["/big"]["byte_order"] == "big" and got["/big"]["dtype"] == "float32"
    assert got["/x"]["layout"] == "contiguous" and got["/x"]["read"] == "direct"
    assert got["/z"]["layout"] == "chunked" and got["/z"]["read"] == "chunked"
    assert got["/unalloc"]["read"] == "h5py"  # never written: no bytes to pread
    assert got["/compact"]["layout"] == "compact" and got["/compact"]["read"] == "h5py"
    assert got["/cf"]["cf"] == ["scale_factor", "_FillValue", "units"]
    for name in ("/grp/sub/s", "/grp/sub/scalar", "/grp/sub/vs", "/grp/sub/rec"):
        assert got[name]["read"] is None and got[name]["not_readable"], name


@pytest.mark.parametrize("ranks", RANKS)
def test_ls_text_and_info_file(sample, ranks):
    d, path = sample
    text = _ls("ls", path, ranks=ranks)
    assert text.count(f"{path}:/") == 1  # printed once, by rank 0
    ref = _reference(path)
    table = [ln.split()[0] for ln in text.splitlines()[2:] if ln.startswith("  /")]
    assert set(ref) <= set(table)
    assert "shuffle,deflate (gzip)" in text and "float32 >f4" in text
    assert f"[id {MISSING_FILTER}: MISSING]" in text
    assert _ls("info", path, ranks=ranks) == text  # `info FILE` is `ls FILE`


@pytest.mark.parametrize("ranks", RANKS)
def test_ls_group_and_single_dataset(sample, ranks):
    d, path = sample
    doc = json.loads(_ls("ls", path, "/grp", "--json", ranks=ranks))
    names = {e["name"] for e in doc["datasets"] if "shape" in e}
    assert names == {"/grp/sub/s", "/grp/sub/scalar", "/grp/sub/vs", "/grp/sub/rec"}
    one = json.loads(_ls("ls", f"{path}:/z", "--json", ranks=ranks))
    assert [e["name"] for e in one["datasets"]] == ["/z"]


def test_info_without_file_is_unchanged():
    out = json.loads(_ls("info", "--json", ranks=2))
    assert out["ranks"] == 2 and "hpcproc" in out
