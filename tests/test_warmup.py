"""ocipy.warmup: the background thread that pays the first cgroup
migration's grace period early (see the module's docstring), against the
real v1 pids hierarchy in a cgroup of the test's own."""
from __future__ import annotations

import os
import time
import uuid

import pytest

from ocipy import warmup

PIDS = "/sys/fs/cgroup/pids"
needs_v1_pids = pytest.mark.skipif(not os.path.isfile(f"{PIDS}/cgroup.procs"),
                                   reason="no v1 pids hierarchy on this host (pure cgroup v2)")


def _tasks(directory: str) -> list[str]:
    with open(os.path.join(directory, "tasks")) as f:
        return f.read().split()


def _wait(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


@pytest.fixture
def directory():
    path = f"{PIDS}/ocipy-test-warmup-{uuid.uuid4().hex[:8]}"
    yield path
    _wait(lambda: not os.path.isdir(path) or not _tasks(path), "the thread left")
    if os.path.isdir(path):
        os.rmdir(path)


@needs_v1_pids
def test_the_thread_moves_into_the_cgroup_until_stopped(directory):
    os.mkdir(directory)
    warm = warmup.start(directory)
    _wait(lambda: _tasks(directory), "a thread of ours in the cgroup")
    (tid,) = _tasks(directory)
    assert os.path.isdir(f"/proc/self/task/{tid}")  # ours, not the main thread
    assert int(tid) != os.getpid()
    warm.stop()
    _wait(lambda: not _tasks(directory), "the thread gone after stop")
    # the main thread never moved
    with open("/proc/self/cgroup") as f:
        assert not any(line.endswith(os.path.basename(directory)) for line in f.read().splitlines())


@needs_v1_pids
def test_finish_removes_the_directory_it_made(directory):
    warm = warmup.Warmup(directory, make=True)
    assert warm.made and os.path.isdir(directory)
    warm.finish()
    assert not os.path.isdir(directory)


@needs_v1_pids
def test_finish_keeps_a_directory_it_did_not_make(directory):
    os.mkdir(directory)
    warm = warmup.Warmup(directory, make=True)
    assert not warm.made
    warm.finish()
    assert os.path.isdir(directory)


@needs_v1_pids
@pytest.mark.parametrize("made", [True, False])
def test_the_front_ends_default_parent_goes_once_empty_whoever_made_it(directory, made):
    # a failed create whose /ocipy another create had made (or whose delete
    # ran meanwhile) must not leave it behind
    os.mkdir(directory)
    warm = warmup.FrontendWarmup(0, made)
    warm.directory = directory
    warm.finish()
    assert not os.path.isdir(directory)


@needs_v1_pids
def test_the_front_ends_default_parent_stays_while_a_container_lives_there(directory):
    os.mkdir(directory)
    os.mkdir(os.path.join(directory, "c1"))
    warm = warmup.FrontendWarmup(0, True)
    warm.directory = directory
    try:
        warm.finish()
        assert os.path.isdir(os.path.join(directory, "c1"))
    finally:
        os.rmdir(os.path.join(directory, "c1"))


def test_no_directory_means_no_thread():
    warm = warmup.start(None)
    warm.stop()
    warm.finish()


@pytest.mark.parametrize("doc, expected", [
    (None, None),
    ({"version": "v2", "dir": "/sys/fs/cgroup/x"}, None),
    ({"version": "v1", "dirs": {"pids": "/sys/fs/cgroup/pids/ocipy/c",
                                "freezer": "/sys/fs/cgroup/freezer/ocipy/c"}},
     "/sys/fs/cgroup/pids/ocipy"),
    ({"version": "v1", "dirs": {"pids": "/sys/fs/cgroup/pids/docker/c",
                                "memory": "/sys/fs/cgroup/memory/docker/c"}},
     "/sys/fs/cgroup/pids/docker/c"),
    ({"version": "v1", "dirs": {"freezer": "/sys/fs/cgroup/freezer/x",
                                "devices": "/sys/fs/cgroup/devices/x"}}, None),
])
def test_the_directory_is_never_the_freezer_devices_or_cpuset(doc, expected):
    assert warmup.v1_directory(doc) == expected


def test_a_variable_from_a_process_that_is_not_our_child_is_ignored(monkeypatch):
    monkeypatch.setenv("OCIPY_WARMUP", f"{os.getppid()} 1")
    assert warmup.from_frontend() is None
    assert "OCIPY_WARMUP" not in os.environ


def test_the_config_peek_never_blocks_on_a_fifo_or_reads_a_device(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    assert warmup._peek(str(fifo)) is None  # returns at once: no writer needed
    assert warmup._peek("/dev/zero") is None
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (2 << 20))
    assert warmup._peek(str(big)) is None
    small = tmp_path / "small.json"
    small.write_bytes(b'{"a": 1}')
    assert warmup._peek(str(small)) == b'{"a": 1}'
