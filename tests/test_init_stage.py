"""ocipy-init, the static program a container process's last stage runs in
(src/ocipy/_native/init.c): what it does when something else runs it.

The containers that use it are tested in spec-tests (test_hardening.py: the
`#!/proc/self/exe` attack and the waiting init's sealed memfd)."""
from __future__ import annotations

import fcntl
import os
import subprocess

import pytest

from ocipy._native import spawn

F_GET_SEALS = 1034
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE = 1, 2, 4, 8


@pytest.fixture
def image():
    fd = spawn.init_image_fd()
    yield fd
    os.close(fd)


def _run(image: int, argv: list[str], pass_fds=()) -> subprocess.CompletedProcess:
    return subprocess.run(argv, executable=f"/proc/self/fd/{image}", pass_fds=(image, *pass_fds),
                          capture_output=True, text=True, timeout=10)


def test_the_image_is_a_sealed_static_executable(image):
    seals = fcntl.fcntl(image, F_GET_SEALS)
    assert seals == F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE
    head = os.pread(image, 64, 0)
    assert head[:4] == b"\x7fELF"
    # static: no PT_INTERP, so it runs in a root without our loader
    assert b"ld-linux" not in os.pread(image, 4096, 0)
    with pytest.raises(OSError):
        os.write(image, b"x")
    assert fcntl.fcntl(image, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


@pytest.mark.parametrize("argv", [["/proc/self/exe"], ["/proc/self/exe", "/evil"],
                                  ["ocipy-init"], ["ocipy-init", "x"], ["ocipy-init", "1"],
                                  ["ocipy-init", "3", "extra"]])
def test_run_as_anything_else_it_refuses(image, argv):
    # what a `#!/proc/self/exe` script or a curious process gets
    proc = _run(image, argv)
    assert proc.returncode == 127
    assert proc.stderr == "ocipy-init: ocipy's container init stage; not a program to run\n"
    assert proc.stdout == ""


@pytest.mark.parametrize("blob", [b"", b"oci2", b"\x6f\x63\x69\x32" + b"\0" * 4 + b"x" * 64,
                                  os.urandom(8192)])
def test_a_plan_it_cannot_read_is_refused(image, blob):
    fd = os.memfd_create("plan")
    try:
        os.write(fd, blob)
        os.lseek(fd, 0, os.SEEK_SET)
        proc = _run(image, ["ocipy-init", str(fd)], pass_fds=(fd,))
    finally:
        os.close(fd)
    assert proc.returncode == 127
    assert proc.stderr == "ocipy-init: the plan from ocipy is unreadable\n"


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_it_builds_on_either_libc_and_refuses_to_run_alone(libc, tmp_path):
    """setup.py links it with musl where musl-tools is installed (small and
    quick to start), else with glibc: both builds must compile cleanly and
    behave alike."""
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    native = repo / "src" / "ocipy" / "_native"
    if libc == "musl" and shutil.which("musl-gcc") is None:
        pytest.fail("musl-gcc is missing: make setup installs musl-tools")
    env = dict(os.environ, OCIPY_CC_LIBC=libc)
    out = tmp_path / "ocipy-init"
    subprocess.run([str(repo / "tools" / "cc-static"), str(out), "-Os", "-Wall", "-Werror",
                    "-Wno-unused-function", "-D_GNU_SOURCE", "-I", str(native),
                    str(native / "init.c"), str(native / "child.c")],
                   check=True, timeout=120, env=env, capture_output=True)
    assert b"ld-linux" not in out.read_bytes()[:4096]
    proc = subprocess.run([str(out)], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 127
    assert proc.stderr == "ocipy-init: ocipy's container init stage; not a program to run\n"


def test_the_embedded_image_is_the_small_musl_build(image):
    # the parent copies it into a memfd for every container process
    import shutil

    if shutil.which("musl-gcc") is None:
        pytest.fail("musl-gcc is missing: make setup installs musl-tools")
    assert os.fstat(image).st_size < 128 * 1024
