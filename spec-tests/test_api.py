"""The Python API on real containers (issue #7): the same lifecycle as the
CLI, errors as exceptions.  ocipy only (it is ocipy's library).  The first
test is the README's example, as written there."""
from __future__ import annotations

import os
import sys

import pytest

import ocipy

pytestmark = pytest.mark.ocipy_only

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- the README example: a container from a pytest fixture ------------------------
@pytest.fixture
def busybox(tmp_path):
    rt = ocipy.Runtime(root=str(tmp_path / "state"))
    yield rt
    for c in rt.list():
        rt.delete(c.id, force=True)


def test_busybox_says_hello(busybox, capfd):
    assert busybox.run("hello", os.path.join(REPO, "bundles/busybox")) == 0
# ------------------------------------------------------------------------------------


@pytest.fixture
def rt(tmp_path):
    runtime = ocipy.Runtime(root=str(tmp_path / "api-root"))
    yield runtime
    for c in runtime.list():
        runtime.delete(c.id, force=True)


def test_the_lifecycle_through_the_api(rt, bundle):
    bundle.args = ["sleep", "100"]
    pid = rt.create("api-c", str(bundle.write()))
    state = rt.state("api-c")
    assert isinstance(state, ocipy.State)
    assert (state.status, state.pid, state.id) == ("created", pid, "api-c")
    rt.start("api-c")
    assert rt.state("api-c").status == "running"
    assert [s.id for s in rt.list()] == ["api-c"]
    assert pid in rt.ps("api-c")
    assert rt.exec("api-c", ["sh", "-c", "exit 7"]) == 7
    rt.pause("api-c")
    assert rt.state("api-c").status == "paused"
    rt.resume("api-c")
    rt.kill("api-c", "KILL")
    os.waitpid(pid, 0)  # our child: conftest made this process a subreaper
    assert rt.state("api-c").status == "stopped"
    rt.delete("api-c")
    assert rt.list() == []


def test_run_returns_the_exit_status(rt, bundle):
    bundle.args = ["sh", "-c", "exit 3"]
    assert rt.run("api-run", str(bundle.write())) == 3
    assert rt.list() == []
    assert rt.run("api-keep", str(bundle.write()), keep=True) == 3
    assert rt.state("api-keep").status == "stopped"


def test_update_changes_a_limit_live(rt, bundle):
    bundle.args = ["sleep", "100"]
    bundle.linux["resources"] = {"pids": {"limit": 10}}
    rt.run("api-up", str(bundle.write()), detach=True)
    rt.update("api-up", {"pids": {"limit": 20}})
    pid = rt.state("api-up").pid
    with open(f"/proc/{pid}/cgroup") as f:
        pids = next(line.split(":")[2].strip() for line in f if ":pids:" in line)
    with open(f"/sys/fs/cgroup/pids{pids}/pids.max") as f:
        assert f.read().strip() == "20"
    rt.delete("api-up", force=True)


def test_errors_are_exceptions_not_exits(rt, bundle):
    with pytest.raises(ocipy.ContainerNotFound):
        rt.state("missing")
    bundle.process["cwd"] = "relative"
    with pytest.raises(ocipy.ConfigError) as raised:
        rt.create("api-bad", str(bundle.write()))
    assert raised.value.path == "process.cwd"
    assert rt.list() == []
    with pytest.raises(ocipy.OcipyError):
        rt.kill("missing", "TERM")
    assert sys.exc_info() == (None, None, None)
