"""Sort the records of an HDF5 file by key across all ranks: HDF5 in, sorted HDF5 out.

Reads ``/key`` and ``/value`` as the columns of one table (each rank its block), sorts
the whole table by key with a distributed sample sort (whole rows move together), and
writes the sorted columns in parallel. The output is balanced across ranks and globally
sorted in rank order.

Run:  mpiexec -n 2 python examples/sort_records.py IN.h5 OUT.h5
      (make an input with:  mpiexec -n 2 hpcproc generate IN.h5 --kind zipf --rows 1M)
"""

import sys

from mpi4py import MPI

import hpcproc as hp


def main(src: str, dst: str) -> None:
    comm = MPI.COMM_WORLD
    table = hp.read_table(src, {"key": "/key", "value": "/value"}, comm=comm)
    result = hp.sort(table, by="key")                 # collective sample sort
    hp.write_table(dst, result, group="/", comm=comm)
    rows = result.meta["rank_rows"]
    if comm.rank == 0:
        print(f"sorted {table.num_rows} records on {comm.size} ranks; rows per rank {list(rows)}"
              f"; wrote {dst}")


if __name__ == "__main__":
    with hp.abort_on_error():
        main(sys.argv[1], sys.argv[2])
