"""Build the Cython extension that executes the container plan.

Everything that runs in the child between clone and execve lives in C
(src/ocipy/_native/child.c); the .pyx modules only convert the Python plan
into C memory before the clone.
"""
import os
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from Cython.Build import cythonize

NATIVE = "src/ocipy/_native"
HERE = os.path.dirname(os.path.abspath(__file__))
# ocipy-init (init.c + child.c): the static program every container process
# runs its last stage in; embedded in the spawn extension (init_image.c)
INIT_BINARY = os.path.join(HERE, "build", "ocipy-init")
INIT_SOURCES = [f"{NATIVE}/init.c", f"{NATIVE}/child.c"]

extensions = [
    Extension(
        "ocipy._native.spawn",
        sources=[f"{NATIVE}/spawn.pyx", f"{NATIVE}/child.c", f"{NATIVE}/init_image.c"],
        include_dirs=[NATIVE],
        define_macros=[("OCI_INIT_PATH", f'"{INIT_BINARY}"')],
        depends=INIT_SOURCES + [f"{NATIVE}/child.h", INIT_BINARY],
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

class build_ext_with_init(build_ext):
    """Build ocipy-init before the extensions that embed it.  Static: it runs
    inside the container's root, where neither our loader nor our libc is."""

    def run(self):
        sources = [os.path.join(HERE, s) for s in INIT_SOURCES]
        headers = [os.path.join(HERE, NATIVE, "child.h")]
        # the build script too: how it links (musl or glibc) is part of the binary
        tools = [os.path.join(HERE, "tools", "cc-static")]
        newest = max(os.path.getmtime(f) for f in sources + headers + tools)
        if not os.path.exists(INIT_BINARY) or os.path.getmtime(INIT_BINARY) < newest:
            os.makedirs(os.path.dirname(INIT_BINARY), exist_ok=True)
            # static, with musl where it is installed (tools/cc-static says why)
            subprocess.check_call(
                [os.path.join(HERE, "tools", "cc-static"), INIT_BINARY + ".tmp",
                 "-Os", "-Wall", "-Wno-unused-function", "-D_GNU_SOURCE",
                 "-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections",
                 "-I", os.path.join(HERE, NATIVE)] + sources)
            os.replace(INIT_BINARY + ".tmp", INIT_BINARY)
        super().run()


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
      cmdclass={"build_py": build_py_with_schema_check, "build_ext": build_ext_with_init})
