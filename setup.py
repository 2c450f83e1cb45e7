"""Packaging for hpcproc (setuptools)."""

import re
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "hpcproc" / "_version.py").read_text()).group(1)

AOT = "hpcproc.kernels._aot_kernels"


class BuildExt(build_ext):
    """Builds the ahead-of-time kernels (hpcproc/kernels/_aot_build.py) with Numba.

    Optional: without Numba at build time (an isolated build), with HPCPROC_AOT_BUILD=0,
    or if the build fails, hpcproc is installed without them and Numba compiles every
    kernel at first use (same results).
    """

    def build_extension(self, ext):
        if ext.name != AOT:
            return super().build_extension(ext)
        import os
        if os.environ.get("HPCPROC_AOT_BUILD", "1").strip().lower() in ("0", "no", "off"):
            print("hpcproc: ahead-of-time kernels not built (HPCPROC_AOT_BUILD=0)")
            return None
        try:
            sys.path.insert(0, str(HERE))
            from hpcproc.kernels._aot_build import build
            n = build(self.get_ext_fullpath(ext.name))
            print(f"hpcproc: built {n} ahead-of-time kernel signatures")
        except Exception as exc:  # noqa: BLE001 - optional: any failure, JIT instead
            print(f"hpcproc: ahead-of-time kernels not built ({type(exc).__name__}: {exc}); "
                  "kernels will be compiled by Numba at first use", file=sys.stderr)
        finally:
            sys.path.remove(str(HERE))
        return None


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
    ext_modules=[Extension(AOT, sources=[])],
    cmdclass={"build_ext": BuildExt},
    entry_points={"console_scripts": ["hpcproc = hpcproc.cli:run"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering",
        "Intended Audience :: Science/Research",
    ],
)
