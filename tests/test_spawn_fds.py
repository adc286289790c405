"""spawn owns every fd a plan hands it: after a clone, and after a failure
before the clone, none of them stays open in the caller."""
from __future__ import annotations

import errno
import os

import pytest

from ocipy._native import spawn


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_plan_refused_before_the_clone_leaves_none_of_its_fds_open():
    # low fds, below the preserved range: spawn moves some of them up first
    fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(5)]
    plan = {
        "preserve_fds": 40,  # every fd above is moved to 43+ before the failure
        "joins": [(fds[0], 0, 0)],
        "fifo_fd": fds[1],
        "cgroup_fd": fds[2],
        "cgroup_tasks": [(fds[3], True), (fds[4], False)],
        "process": {"args": ["true"], "env": [], "rlimits": [{}] * 100},
    }
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(ValueError, match="too many rlimits"):
        spawn.spawn(plan)
    assert not any(_is_open(fd) for fd in fds)
    assert set(os.listdir("/proc/self/fd")) <= before


def _cgroup2_mount() -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    return None


@pytest.mark.skipif(os.geteuid() != 0 or _cgroup2_mount() is None,
                    reason="needs root and a cgroup2 mount")
def test_a_required_cgroup2_dir_that_refuses_the_clone_fails_it():
    # clone3(CLONE_INTO_CGROUP) into a cgroup removed after it was opened:
    # the kernel's refusal (not "clone3 unusable") is the answer, with no
    # fallback to a plain clone and a migration, and no process is made
    path = os.path.join(_cgroup2_mount(), f"ocipy-test-gone-{os.getpid()}")
    os.mkdir(path)
    dir_fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    procs_fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    os.rmdir(path)
    with pytest.raises(OSError) as err:
        spawn.spawn({"cgroup_fd": dir_fd, "cgroup_procs_fd": procs_fd, "cgroup_required": True})
    assert err.value.strerror == "clone"
    assert err.value.errno == errno.ENOENT
    assert not _is_open(dir_fd) and not _is_open(procs_fd)


def test_poll_in_reports_input_and_runs_signal_handlers_while_it_waits():
    # start's wait on the exec fifo: 0 on timeout, POLLIN (1) with input; a
    # signal meanwhile runs its Python handler (run forwards signals so)
    import signal

    r, w = os.pipe()
    caught = []
    previous = signal.signal(signal.SIGALRM, lambda sig, frame: caught.append(sig))
    try:
        assert spawn.poll_in(r, 10) == 0
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        assert spawn.poll_in(r, 200) == 0
        assert caught == [signal.SIGALRM]
        os.write(w, b"x")
        assert spawn.poll_in(r, 1000) & 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(r)
        os.close(w)


@pytest.mark.skipif(os.geteuid() != 0, reason="open_tree needs root")
def test_a_launch_refused_before_the_clone_closes_what_it_opened(tmp_path):
    # a bind source cloned on the host side, then a namespace path that does
    # not exist: the error, and no fd of either left open
    from ocipy.errors import ConfigError
    from ocipy.launch import launch

    plan = {"bind_devices": True,
            "mounts": [{"is_bind": True, "source": str(tmp_path), "flags": 0, "index": 0,
                        "dest": "/x"}],
            "joins": [(str(tmp_path / "no-such-ns"), 0x40000000, 0)]}
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(ConfigError) as err:
        launch(plan, {})
    assert err.value.path == "linux.namespaces[0].path"
    assert set(os.listdir("/proc/self/fd")) <= before


def test_the_caller_stays_dumpable_after_the_child_is_cloned():
    # the first child shares the caller's memory until its execve (child.c,
    # spawn_shared) and makes itself non-dumpable meanwhile; dumpability
    # belongs to the memory, so the caller must get its own back
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_get_dumpable = 3
    assert libc.prctl(pr_get_dumpable, 0, 0, 0, 0) == 1
    pid, sock = spawn.spawn({"process": {"args": ["/bin/true"], "env": [], "cwd": "/"}})
    try:
        while spawn.recv_msg(sock) is not None:
            pass
    finally:
        os.close(sock)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert libc.prctl(pr_get_dumpable, 0, 0, 0, 0) == 1
