"""spawn owns every fd a plan hands it: after a clone, and after a failure
before the clone, none of them stays open in the caller."""
from __future__ import annotations

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
