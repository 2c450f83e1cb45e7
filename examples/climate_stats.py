"""Per-variable statistics and histograms of a netCDF4 climate file (netCDF4 = HDF5).

    mpiexec -n 4 python examples/climate_stats.py era5.nc [--vars t2m tp] [--bins 20] [--json]
    mpiexec -n 2 python examples/climate_stats.py sample.nc --generate   # writes a sample

Every data variable with ``time`` as its first dimension is read with ``hp.read`` (each
rank gets a block of time steps; compressed variables are read chunk by chunk), which
decodes its CF encoding block by block: ``scale_factor``/``add_offset`` unpack packed
integers and ``_FillValue``/``missing_value`` become NaN. Then, collectively: ``hp.stats`` over all
values (missing ones skipped), ``hp.stats(axis=0)`` for the time mean of every grid cell
(the warmest/wettest cell is reported), and ``hp.histogram`` between the variable's min
and max. Metadata (names, attributes) is read once, on rank 0, with the netCDF4 package.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from mpi4py import MPI

import hpcproc as hp


def write_sample(path: str, nt: int = 48, nlat: int = 73, nlon: int = 144, seed: int = 3):
    """A small ERA5-like file: float t2m (compressed), packed int16 u10 with a fill
    value, float tp with missing values. Not collective (call on one rank)."""
    import netCDF4

    rng = np.random.default_rng(seed)
    lat = np.linspace(90, -90, nlat)
    lon = np.arange(nlon) * 360.0 / nlon
    hours = np.arange(nt)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", None)
        nc.createDimension("latitude", nlat)
        nc.createDimension("longitude", nlon)
        nc.createVariable("time", "i4", ("time",))[:] = hours
        nc["time"].units = "hours since 2020-01-01 00:00:00"
        nc.createVariable("latitude", "f4", ("latitude",))[:] = lat
        nc.createVariable("longitude", "f4", ("longitude",))[:] = lon
        dims = ("time", "latitude", "longitude")
        base = 288 - 40 * np.sin(np.deg2rad(lat))[:, None] ** 2
        diurnal = 5 * np.sin(2 * np.pi * (hours[:, None, None] / 24 + lon[None, None, :] / 360))
        t2m = nc.createVariable("t2m", "f4", dims, zlib=True, complevel=4,
                                chunksizes=(6, nlat, nlon))
        t2m.units, t2m.long_name = "K", "2 metre temperature"
        t2m[:] = base[None] + diurnal + rng.normal(0, 2, (nt, nlat, nlon))
        u10 = nc.createVariable("u10", "i2", dims, fill_value=np.int16(-32767))
        u10.units, u10.scale_factor, u10.add_offset = "m s**-1", 0.001, 2.0
        u = rng.normal(2, 5, (nt, nlat, nlon))
        u10.set_auto_maskandscale(False)
        packed = np.round((u - 2.0) / 0.001).clip(-32000, 32000).astype(np.int16)
        packed[rng.random(packed.shape) < 0.01] = -32767  # missing
        u10[:] = packed
        tp = nc.createVariable("tp", "f8", dims, fill_value=-9999.0, zlib=True)
        tp.units = "m"
        rain = rng.gamma(0.3, 0.002, (nt, nlat, nlon))
        rain[rng.random(rain.shape) < 0.05] = -9999.0
        tp.set_auto_maskandscale(False)
        tp[:] = rain


def variables(path: str, wanted=None) -> list[dict]:
    """Data variables with time first, and their CF attributes. Not collective."""
    import netCDF4

    out = []
    with netCDF4.Dataset(path) as nc:
        for name, v in nc.variables.items():
            if name in nc.dimensions or not v.dimensions or v.dimensions[0] != "time":
                continue
            if wanted and name not in wanted:
                continue
            attrs = {k: v.getncattr(k) for k in v.ncattrs()}
            fills = [attrs[k] for k in ("_FillValue", "missing_value") if k in attrs]
            out.append({"name": name, "units": str(attrs.get("units", "")),
                        "scale": float(attrs.get("scale_factor", 1.0)),
                        "offset": float(attrs.get("add_offset", 0.0)),
                        "fill": [float(f) for f in np.ravel(fills)]})
    if wanted and len(out) != len(set(wanted)):
        missing = sorted(set(wanted) - {v["name"] for v in out})
        raise KeyError(f"no time-dependent variable {', '.join(missing)} in {path}")
    return out


def summarise(path: str, var: dict, bins: int, comm) -> dict:
    """Statistics, time-mean map extreme and histogram of one variable. Collective."""
    x = hp.read(path, "/" + var["name"], comm=comm)  # CF-decoded: missing values are NaN
    x = x.with_local(x.local.astype(np.float64, copy=False))
    s = hp.stats(x, skipna=True)
    cell = hp.stats(x, axis=0, skipna=True)["mean"]  # time mean of every grid cell
    counts, edges = hp.histogram(x, bins=bins, range=(s["min"], s["max"]))
    top = np.unravel_index(np.nanargmax(cell), cell.shape)
    return {"variable": var["name"], "units": var["units"], "shape": list(x.global_shape),
            "count": s["count"], "missing": s["nan_count"], "mean": s["mean"],
            "std": s["std"], "min": s["min"], "max": s["max"],
            "time_mean_max": float(cell[top]), "time_mean_argmax": [int(i) for i in top],
            "hist_counts": counts.tolist(), "hist_edges": edges.tolist()}


def main(argv=None, comm=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", help="netCDF4 file")
    ap.add_argument("--vars", nargs="+", help="variables (default: all with time first)")
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--generate", action="store_true", help="write a sample file first")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    comm = comm if comm is not None else MPI.COMM_WORLD
    rank = comm.Get_rank()

    err = found = None
    if rank == 0:  # metadata once, on one rank; the error (if any) raised on every rank
        try:
            if args.generate:
                write_sample(args.path)
            found = variables(args.path, args.vars)
        except Exception as exc:  # noqa: BLE001
            err, found = exc, None
    err, found = comm.bcast((err, found), root=0)
    if err is not None:
        raise err

    results = [summarise(args.path, var, args.bins, comm) for var in found]
    if rank == 0:
        if args.json:
            print(json.dumps(results, indent=1))
        for r in results if not args.json else ():
            print(f"{r['variable']} [{r['units']}] {tuple(r['shape'])}: {r['count']} values, "
                  f"{r['missing']} missing")
            print(f"  mean {r['mean']:.6g}  std {r['std']:.6g}  min {r['min']:.6g}  "
                  f"max {r['max']:.6g}  highest time mean {r['time_mean_max']:.6g} at "
                  f"(lat, lon) index {tuple(r['time_mean_argmax'])}")
            peak = max(r["hist_counts"]) or 1
            for c, lo in zip(r["hist_counts"], r["hist_edges"]):
                print(f"  {lo:12.5g} {'#' * round(40 * c / peak)} {c}")
    return 0


if __name__ == "__main__":
    with hp.abort_on_error():
        sys.exit(main())
