"""`ocipy create --explain` prints what create would do and does none of it
(issue #7).  ocipy only: runc has no --explain."""
from __future__ import annotations

import glob
import json
import os

import pytest

pytestmark = pytest.mark.ocipy_only


def _traces_of(cid: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/ocipy/{cid}") + glob.glob(f"/sys/fs/cgroup/ocipy/{cid}")


def test_explain_lists_the_plan_in_order_and_touches_nothing(runtime, bundle, util):
    bundle.add_mount("/data", "tmpfs", "tmpfs", ["nosuid", "size=1m"])
    bundle.linux["resources"] = {"pids": {"limit": 42}}
    bundle.config["hostname"] = "explained"
    cid = runtime.new_id("ex")
    before = {m["mount_point"] for m in util.host_mounts()}
    hierarchies = glob.glob("/sys/fs/cgroup/*/") + ["/sys/fs/cgroup/"]
    for h in hierarchies:
        try:
            os.rmdir(h + "ocipy")  # the default parent an earlier test left, when empty
        except OSError:
            pass
    parents = {h: os.path.isdir(h + "ocipy") for h in hierarchies}
    proc = runtime.cmd("create", "--explain", "--bundle", bundle.write(), cid, check=True)
    out = proc.stdout
    # namespaces, cgroups with the limit and its JSON path, mounts in config
    # order with resolved flags, the identity, the process, the execve
    assert "1. namespaces" in out and "pid" in out.split("2. cgroups")[0]
    assert f"/ocipy/{cid}" in out
    assert "write pids.max = 42   (linux.resources.pids.limit)" in out
    dests = [m["destination"] for m in bundle.config["mounts"]]
    mount_lines = [line for line in out.splitlines() if line.strip().startswith("mount ")]
    assert [line.split(" on ")[1].split(" type ")[0] for line in mount_lines] == dests
    assert "mount tmpfs on /data type tmpfs flags=nosuid data=size=1m" in out
    assert "hostname: explained" in out
    assert "7. execve" in out and f"argv: {bundle.args!r}" in out
    # nothing was made: no state, no cgroup, no mount, no process (conftest)
    assert runtime.ids() == []
    assert _traces_of(cid) == []
    assert {m["mount_point"] for m in util.host_mounts()} == before
    # nor the default parent /ocipy where there was none
    assert {h: os.path.isdir(h + "ocipy") for h in hierarchies} == parents


def test_explain_json_is_a_document(runtime, bundle):
    bundle.args = ["sh", "-c", "true"]
    proc = runtime.cmd("create", "--explain", "--format", "json", "--bundle", bundle.write(),
                       runtime.new_id("ex"), check=True)
    doc = json.loads(proc.stdout)
    assert doc["executable"] == "/bin/sh"  # found on the process's PATH in the rootfs
    assert doc["process"]["args"] == ["sh", "-c", "true"]
    assert [m["destination"] for m in doc["rootfs"]["mounts"]] == \
        [m["destination"] for m in bundle.config["mounts"]]
    assert doc["process"]["no_new_privileges"] is bundle.process.get("noNewPrivileges", False)


def test_explain_says_when_the_program_is_missing(runtime, bundle):
    bundle.args = ["no-such-program"]
    proc = runtime.cmd("run", "--explain", "--bundle", bundle.write(), runtime.new_id("ex"),
                       check=True)
    assert "no-such-program (NOT FOUND in the rootfs: create would fail)" in proc.stdout


def test_explain_of_a_broken_config_fails_like_create(runtime, bundle):
    bundle.process["cwd"] = "relative/dir"
    cid = runtime.new_id("ex")
    explained = runtime.cmd("create", "--explain", "--bundle", bundle.write(), cid)
    created = runtime.cmd("create", "--bundle", bundle.write(), cid)
    assert explained.returncode == created.returncode == 1
    assert explained.stderr == created.stderr
    assert explained.stderr.count("\n") == 1 and explained.stderr.startswith("ocipy: ")
