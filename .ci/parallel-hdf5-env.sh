#!/usr/bin/env bash
# Build a venv with h5py (parallel, MPI-IO) + mpi4py compiled from source
# against Debian 12's MPICH and libhdf5-mpich.  Used by `make test-parallel-hdf5`
# and CI.  Usage: bash .ci/parallel-hdf5-env.sh .venv-phdf5
#
# This venv must NOT contain PyPI's `mpich` wheel: everything links Debian's
# libmpich, and the tests are launched with Debian's `mpiexec.mpich`.
# mpiexec.mpich (hydra) runs fine as root, needs no extra env vars, and
# oversubscribes by default (-n 3 on 2 cores works, just slower).
set -euo pipefail

VENV="${1:?usage: $0 VENV_DIR}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"      # repo root
MA="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)"
HDF5_DIR="/usr/lib/$MA/hdf5/mpich"          # Debian's parallel HDF5 (1.10.8)
PY=("$VENV/bin/python" -m pip --disable-pip-version-check)
step() { echo "parallel-hdf5-env [+${SECONDS}s] $*"; }

# Stamp = hash of this script + interpreter version: any pin change rebuilds.
STAMP="$VENV/.parallel-hdf5.stamp"
WANT="$(sha256sum < "$0" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -d "$HDF5_DIR" ]] && command -v mpicc.mpich >/dev/null; then
    echo "parallel-hdf5-env: $VENV up to date"; exit 0
fi

step "1/6 Debian packages"   # apt only when something is missing
pkgs=(mpich libhdf5-mpich-dev hdf5-tools pkg-config)
"$PYTHON" -c 'import ensurepip' 2>/dev/null || pkgs+=(python3-venv)   # Debian's python3
"$PYTHON" -c 'import sysconfig,os,sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"]+"/Python.h"))' \
    || pkgs+=(python3-dev)
if ! command -v mpicc.mpich >/dev/null || [[ ! -d "$HDF5_DIR" || ${#pkgs[@]} -gt 4 ]]; then
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi

step "2/6 venv + pinned wheels"   # binary wheels are fine for these
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"${PY[@]}" install -q --upgrade pip setuptools==84.2.1
"${PY[@]}" install -q numpy==2.4.6 numba==0.68.1 llvmlite==0.50.0 xxhash==4.1.0 \
    pytest==9.2.0 pytest-mpi==0.6 pytest-timeout==2.4.0 \
    cython==3.2.9 pkgconfig==1.6.0 packaging==26.3 wheel==0.48.0

# 3./4. Source builds against Debian MPICH.  --no-cache-dir so pip never reuses
# a wheel cached from a build against some other MPI/HDF5.  CFLAGS=-O0: the
# Cython output is huge (mpi4py: ~25 s at -O0 vs ~2 min at -O1, ~3.5 min at the
# default -O2/-O3 on 2 cores); the real work runs in Debian's optimised libs.
step "3/6 mpi4py from source"
MPICC=mpicc.mpich CFLAGS=-O0 "${PY[@]}" install -q --no-cache-dir --no-binary=mpi4py \
    --no-build-isolation mpi4py==4.1.2
step "4/6 h5py from source"
CC=mpicc.mpich HDF5_MPI=ON HDF5_DIR="$HDF5_DIR" CFLAGS=-O0 \
    "${PY[@]}" install -q --no-cache-dir --no-binary=h5py --no-build-isolation h5py==3.16.0

# 5. The project itself (editable, no deps); fall back to a .pth file when the
# tree can't be packaged right now (e.g. setup.py's README.md missing).
step "5/6 hpcproc (editable)"
if ! log="$("${PY[@]}" install -q --no-deps --no-build-isolation -e "$ROOT" 2>&1)"; then
    echo "parallel-hdf5-env: editable install failed, using a .pth file instead:" >&2
    grep -m3 -E 'Error|error:' <<<"$log" >&2 || true
    SP="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$ROOT" > "$SP/hpcproc-src.pth"
fi

# tests/conftest.py launches "$(dirname sys.executable)/mpiexec" (the PyPI mpich
# wheel puts one there); forward it to Debian's launcher.  A wrapper, not a
# symlink: hydra looks for hydra_pmi_proxy next to the path it was started as.
printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v mpiexec.mpich)" > "$VENV/bin/mpiexec"
chmod +x "$VENV/bin/mpiexec"

# 6. Verify: MPI-enabled h5py, mpi4py on Debian's MPICH, a real 2-rank MPI-IO write.
step "6/6 verify"
"$VENV/bin/python" -c "import h5py; assert h5py.get_config().mpi, 'h5py built without MPI'"
"$VENV/bin/python" -c "from mpi4py import MPI; v=MPI.Get_library_version(); assert 'MPICH' in v, v"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
timeout 120 mpiexec.mpich -n 2 "$VENV/bin/python" -c "
from mpi4py import MPI; import h5py, sys
c = MPI.COMM_WORLD
with h5py.File(sys.argv[1], 'w', driver='mpio', comm=c) as f:
    d = f.create_dataset('a', (c.size,), 'f8'); d[c.rank] = c.rank
with h5py.File(sys.argv[1], 'r', driver='mpio', comm=c) as f:
    assert list(f['a'][:]) == list(range(c.size))
" "$TMP/x.h5"

echo "$WANT" > "$STAMP"
step "$VENV ready ($("$VENV/bin/python" -c 'import h5py,mpi4py;print("h5py",h5py.__version__,"hdf5",h5py.version.hdf5_version,"mpi4py",mpi4py.__version__)'))"
