# hpcproc: `make demo` and `make test` work on a brand-new machine (Python 3.11 + gcc):
# they create the project-local virtual environment .venv with pinned versions first.
PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
MPIEXEC  := $(VENV)/bin/mpiexec
STAMP    := $(VENV)/.hpcproc-installed
# Every MPI launch is bounded: `timeout` kills a hung job, pytest-timeout a hung test.
TIMEOUT  ?= timeout -k 15
PYTEST   := -m pytest -p no:cacheprovider -q
DEMO_DIR := .demo
DEMO_ROWS ?= 20000000

.PHONY: venv lint test test-serial test-mpi test-slurm test-multihost demo native bench-io test-parallel-hdf5 clean

venv: $(STAMP)

# The install builds the ahead-of-time kernels from these sources (hpcproc/kernels/_aot.py:
# BUILTIN, and INLINED, whose code the kernels inline; tests check the list covers both)
AOT_SRC  := $(wildcard hpcproc/kernels/_*_nb.py hpcproc/kernels/_aot*.py \
                       hpcproc/kernels/_intrinsic.py hpcproc/kernels/_prefetch.py \
                       hpcproc/shuffles/_*.py)

$(STAMP): requirements.txt setup.py $(AOT_SRC)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m compileall -q hpcproc  # bytecode now: start-up even with PYTHONDONTWRITEBYTECODE
	@$(PY) -c "from hpcproc.kernels import _aot; print('ahead-of-time kernels:', _aot.status())"
	touch $@

test: lint test-serial test-mpi

# ruff (ruff.toml) over the package, tests, examples and benchmarks; tests/test_layers.py
# (part of the suite) checks the package's layers, cycles and private names.
lint: $(STAMP)
	$(VENV)/bin/ruff check --no-cache .

# 45 minutes: a guard against a hang, far above the ~16 minutes the session takes on an
# idle 2-core machine (every test that launches ranks has its own timeout)
test-serial: $(STAMP)
	$(TIMEOUT) 2700 $(PY) $(PYTEST) --with-mpi tests

# `--only-mpi` without `--with-mpi`: given both, pytest-mpi also runs the unmarked tests
# (which launch their own mpiexec) inside every rank.
test-mpi: $(STAMP)
	$(TIMEOUT) 1200 $(MPIEXEC) -n 2 $(PY) $(PYTEST) --only-mpi tests
	$(TIMEOUT) 1200 $(MPIEXEC) -n 3 $(PY) $(PYTEST) --only-mpi tests

# Only the Slurm tests (part of test-serial too): a real single-node Slurm cluster from
# Debian's packages, started and stopped by tests/slurm/cluster.sh.
test-slurm: $(STAMP)
	$(TIMEOUT) 900 $(PY) $(PYTEST) -rs tests/slurm

# 2 namespace hosts x 2 ranks over shaped veth links vs 4 ranks on one host (root needed;
# part of `make test` too): tests/multihost/
test-multihost: $(STAMP)
	$(TIMEOUT) 900 $(PY) $(PYTEST) -rs tests/multihost

demo: $(STAMP)
	@mkdir -p $(DEMO_DIR)
	$(TIMEOUT) 600 $(MPIEXEC) -n 2 $(VENV)/bin/hpcproc generate $(DEMO_DIR)/demo.h5 --kind normal --rows $(DEMO_ROWS) --seed 1
	$(TIMEOUT) 600 $(MPIEXEC) -n 2 $(VENV)/bin/hpcproc stats $(DEMO_DIR)/demo.h5:/x --timings -v

native: $(STAMP)
	$(MAKE) -C native MPICC=$(abspath $(VENV))/bin/mpicc

bench-io: $(STAMP) native
	$(TIMEOUT) 1800 $(PY) benchmarks/io.py

.PHONY: bench-stats
bench-stats: $(STAMP)
	$(PY) -m pip install --quiet -r benchmarks/requirements-stats.txt
	$(TIMEOUT) 1800 $(PY) benchmarks/stats.py

# Start-up cost: CLI one-liners and first calls vs the mpi4py + h5py import floor
.PHONY: bench-startup
bench-startup: $(STAMP)
	$(TIMEOUT) 1800 $(PY) benchmarks/startup.py

bench-ckpt: $(STAMP)
	$(TIMEOUT) 1800 $(MPIEXEC) -n 2 $(PY) benchmarks/checkpoint.py --size 1G --repeats 5

# Parallel (MPI-enabled) h5py built against Debian's MPICH + HDF5, in its own .venv-phdf5;
# runs every collective test with it at 2 ranks (tests/test_mpio.py needs it and skips
# elsewhere), and at 3 ranks the tests of what parallel h5py changes: reading, writing,
# checkpoints, lineage. (Debian's MPICH 4.0 busy-polls: 3 ranks on 2 cores run the whole
# suite 6x slower than 2; the rest of the suite runs at 3 ranks under `make test`.)
PHDF5_IO_TESTS := tests/test_mpio.py tests/test_read.py tests/test_read_contracts.py \
	tests/test_read_sources.py tests/test_write.py tests/test_write_modes.py tests/test_cf.py \
	tests/test_netcdf_out.py tests/test_output_safety.py tests/test_checkpoint.py \
	tests/test_checkpoint_faults.py tests/test_checkpoint_identity.py tests/test_provenance.py \
	tests/test_scan_pieces.py
test-parallel-hdf5:
	bash .ci/parallel-hdf5-env.sh .venv-phdf5
	$(TIMEOUT) 1200 .venv-phdf5/bin/mpiexec -n 2 .venv-phdf5/bin/python $(PYTEST) --only-mpi tests
	$(TIMEOUT) 1200 .venv-phdf5/bin/mpiexec -n 3 .venv-phdf5/bin/python $(PYTEST) --only-mpi \
		$(PHDF5_IO_TESTS)

clean:
	rm -rf $(DEMO_DIR) build *.egg-info

# Shuffle benchmarks (W2 sort, W3 group-by; 2^26 rows, 2 ranks): benchmarks/results/shuffle.md
.PHONY: bench-shuffle
bench-shuffle: $(STAMP)
	$(TIMEOUT) 3600 $(MPIEXEC) -n 2 $(PY) benchmarks/shuffle.py

# One verified >2 GiB rank-0 -> rank-1 transfer through hp.exchange (~10 GB of RAM):
# benchmarks/results/shuffle_stress.md
.PHONY: bench-shuffle-stress
bench-shuffle-stress: $(STAMP)
	$(TIMEOUT) 900 $(MPIEXEC) -n 2 $(PY) benchmarks/shuffle_stress.py

# Scaling report (benchmarks/results/scaling.md, scaling.png): 1, 2, 4 ranks on one host and
# 2 namespace hosts x 1, 2 ranks over 1 Gbit shaped links. The hosts get their own names and
# subnet (not the multi-host tests' defaults) and are always brought down again.
SCALING_MH := HPCPROC_MH_PREFIX=hpcsc HPCPROC_MH_SUBNET=10.213.9 HPCPROC_MH_DIR=/tmp/hpcproc-scaling \
	PATH=$(abspath $(VENV))/bin:$$PATH
SCALING_ARGS ?=
.PHONY: bench-scaling
bench-scaling: $(STAMP)
	$(PY) -m pip install --quiet -r benchmarks/requirements-scaling.txt
	$(SCALING_MH) bash -c 'trap "tests/multihost/cluster.sh down" EXIT; \
		tests/multihost/cluster.sh up 2 --rate 1gbit && \
		$(TIMEOUT) 5400 $(PY) benchmarks/scaling.py $(SCALING_ARGS)'

# General-key shuffles (full-range sort, group-by, join; dense group-by) against Polars
# (streaming, eager), DuckDB and hand-written mpi4py: benchmarks/results/shuffle_general.md
.PHONY: bench-shuffle-general
bench-shuffle-general: $(STAMP)
	$(PY) -m pip install --quiet -r benchmarks/requirements-shuffle.txt
	$(TIMEOUT) 5400 $(PY) benchmarks/shuffle_general.py
