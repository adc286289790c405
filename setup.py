"""Build the Cython extension that executes the container plan.

Everything that runs in the child between clone and execve lives in C
(src/ocipy/_native/child.c); the .pyx modules only convert the Python plan
into C memory before the clone.
"""
from setuptools import Extension, setup
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

setup(ext_modules=cythonize(extensions, language_level=3, compiler_directives={"embedsignature": True}))
