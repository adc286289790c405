"""Build the Cython extension that executes the container plan.

Everything that runs in the child between clone and execve lives in C
(src/ocipy/_native/child.c); the .pyx modules only convert the Python plan
into C memory before the clone.
"""
import os
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from Cython.Build import cythonize

NATIVE = "src/ocipy/_native"

extensions = [
    Extension(
        "ocipy._native.spawn",
        sources=[f"{NATIVE}/spawn.pyx", f"{NATIVE}/child.c"],
        include_dirs=[NATIVE],
        libraries=["seccomp"],
        extra_compile_args=["-O2", "-Wall", "-Wno-unused-function", "-D_GNU_SOURCE"],
    ),
    # the parent compiles linux.seccomp to BPF with libseccomp; the child only loads it
    Extension(
        "ocipy._native.seccomp",
        sources=[f"{NATIVE}/seccomp.pyx"],
        include_dirs=[NATIVE],
        libraries=["seccomp"],
        extra_compile_args=["-O2", "-Wall", "-Wno-unused-function", "-D_GNU_SOURCE"],
    ),
    # bpf(2) for the cgroup v2 device program
    Extension(
        "ocipy._native.bpf",
        sources=[f"{NATIVE}/bpf.pyx"],
        extra_compile_args=["-O2", "-Wall", "-Wno-unused-function", "-D_GNU_SOURCE"],
    ),
]

class build_py_with_schema_check(build_py):
    """Write src/ocipy/_schema_check.py, our schema as Python (tools/gen_validator.py),
    before the modules are collected: wheels and editable installs both get it."""

    def run(self):
        generator = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools",
                                 "gen_validator.py")
        # SystemExit, not an exception: an editable install swallows exceptions
        # from a custom build_py (setuptools >= 64) and would go on without the check
        if subprocess.call([sys.executable, generator]) != 0:
            raise SystemExit("tools/gen_validator.py failed")
        super().run()


setup(ext_modules=cythonize(extensions, language_level=3, compiler_directives={"embedsignature": True}),
      cmdclass={"build_py": build_py_with_schema_check})
