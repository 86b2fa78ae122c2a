"""Build the Cython extensions; everything else lives in pyproject.toml."""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

# Every gosipd/_*.pyx is one extension module of the same name.
extensions = [
    Extension(f"gosipd.{pyx.stem}", [str(pyx)], extra_compile_args=["-O3", "-funroll-loops"])
    for pyx in sorted(Path("gosipd").glob("_*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
