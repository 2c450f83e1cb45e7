"""Packaging for hpcproc (setuptools)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "hpcproc" / "_version.py").read_text()).group(1)

setup(
    name="hpcproc",
    version=VERSION,
    description="MPI-native processing of large HDF5 datasets on HPC clusters",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["hpcproc", "hpcproc.*"]),
    install_requires=["mpi4py>=4.1", "numpy", "numba", "h5py", "xxhash>=3.0"],
    extras_require={
        "test": ["pytest", "pytest-mpi", "pytest-timeout", "netCDF4"],
        "mpich": ["mpich"],
        "fast": ["isal"],  # ISA-L crc32 for lineage checksums (zlib otherwise)
    },
    entry_points={"console_scripts": ["hpcproc = hpcproc.cli:run"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering",
        "Intended Audience :: Science/Research",
    ],
)
