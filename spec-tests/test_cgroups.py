"""Cgroups in real containers (config-linux.md "Control groups", runc's
`update`, `pause`, `resume`, `ps`, `events`, `kill --all`).

Each limit of linux.resources is read back from the container's cgroup
files; `update` changes them live; `pause` freezes and `resume` thaws; `ps`
lists the container's processes; an OOM kill shows up in `events`; absolute,
relative and default cgroupsPath place the container where runc does; the
cgroup namespace and a cgroup mount inside the container; and no cgroup
directory is left behind by any test, failed creates included.

The container's cgroup is always found from /proc/<init>/cgroup, never
assumed: ocipy's default is /ocipy/<id>, runc's is the caller's cgroup plus
the id.  Read-backs use the v1 files (this host is hybrid: v1 controllers
under /sys/fs/cgroup/<ctrl>, cgroup2 at /sys/fs/cgroup/unified); the v2
managers are covered by tests/test_cgroups.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

CGROUP_ROOT = "/sys/fs/cgroup"
MiB = 1 << 20

# cgroup v1 super options that are not controllers
_NOT_CONTROLLERS = {"rw", "ro", "clone_children", "noprefix", "xattr", "cpuset_v2_mode",
                    "nsdelegate", "favordynmods", "memory_localevents",
                    "memory_recursiveprot"}

needs_v1 = pytest.mark.skipif(
    not os.path.isfile(f"{CGROUP_ROOT}/memory/memory.limit_in_bytes"),
    reason="reads cgroup v1 files: the host has no v1 memory hierarchy at "
           f"{CGROUP_ROOT}/memory (v2 is covered by tests/test_cgroups.py)")


# ---- where cgroups are ------------------------------------------------------------

def _hierarchies() -> dict[str, tuple[str, str]]:
    """{key: (mount point, mount root)} of every cgroup hierarchy of the host.

    Keys as in /proc/<pid>/cgroup: a v1 controller ("memory", "name=systemd")
    and "" for cgroup2.  A hierarchy mounted twice is taken from its first mount.
    """
    found: dict[str, tuple[str, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if not extra or extra[0] not in ("cgroup", "cgroup2"):
            continue
        keys = [""] if extra[0] == "cgroup2" else [
            o for o in extra[2].split(",")
            if o not in _NOT_CONTROLLERS and not o.startswith("release_agent=")]
        for key in keys:
            found.setdefault(key, (fields[4], fields[3]))
    return found


def _parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup -> {controller: path}; cgroup2 under ""."""
    paths = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for key in controllers.split(",") if controllers else [""]:
            paths[key] = path
    return paths


def proc_cgroup(pid: int | str) -> dict[str, str]:
    return _parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())


def _on_host(key: str, path: str) -> str:
    """The host directory of cgroup ``path`` in hierarchy ``key``."""
    mountpoint, root = _hierarchies()[key]
    rel = os.path.relpath(path, root)
    return os.path.normpath(os.path.join(mountpoint, rel))


def cgroup_dirs(pid: int) -> dict[str, str]:
    """{controller: host directory} of the cgroups process ``pid`` is in."""
    hierarchies = _hierarchies()
    return {key: _on_host(key, path) for key, path in proc_cgroup(pid).items()
            if key in hierarchies}


def read(directory: str, name: str) -> str:
    return Path(directory, name).read_text().strip()


def procs(directory: str) -> set[int]:
    return {int(p) for p in read(directory, "cgroup.procs").split()}


def _rmdir_tree(path: str) -> None:
    """rmdir ``path`` and the cgroups below it, deepest first (empty cgroups
    only: rmdir never removes one that holds a process)."""
    for dirpath, _, _ in sorted(os.walk(path, topdown=False), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


class Cgroups:
    """Names this test's containers and cgroups with one unique prefix, so the
    check after the test finds every cgroup directory it left, and nothing of
    the other tests running on the host at the same time."""

    def __init__(self) -> None:
        self.prefix = f"spec-cg{uuid.uuid4().hex[:8]}"
        self._n = 0
        self.bases: list[str] = []  # extra directories whose children are checked
        # top-level names of cgroups that only hold the container's: runc 1.1
        # removes the container's own cgroup on delete and leaves its parents
        self.parents: set[str] = set()

    def new_id(self, hint: str = "c") -> str:
        self._n += 1
        return f"{self.prefix}-{hint}{self._n}"

    def name(self, hint: str) -> str:
        """A top-level cgroup name of this test (e.g. for an absolute cgroupsPath)."""
        return f"{self.prefix}-{hint}"

    def parent(self, hint: str) -> str:
        """A top-level name for cgroups nested below it: once empty, it may
        stay after delete (runc) and is removed quietly after the test."""
        name = self.name(hint)
        self.parents.add(name)
        return name

    def leftovers(self) -> list[str]:
        """Cgroup directories named with this test's prefix, in every hierarchy:
        at its root (absolute paths), in /ocipy (ocipy's default), under our own
        cgroup (relative paths, runc's default) and under registered bases."""
        found = []
        own = proc_cgroup("self")
        for key, (mountpoint, _) in _hierarchies().items():
            bases = {mountpoint, os.path.join(mountpoint, "ocipy"), *self.bases}
            if key in own:
                bases.add(_on_host(key, own[key]))
            for base in bases:
                if not base.startswith(mountpoint + "/") and base != mountpoint:
                    continue
                try:
                    names = os.listdir(base)
                except FileNotFoundError:
                    continue
                found += [os.path.join(base, n) for n in names if n.startswith(self.prefix)]
        return sorted(set(found))

    def remove_empty_parents(self, paths: list[str]) -> list[str]:
        """rmdir the registered parents among ``paths`` that hold no cgroup
        below them; the other paths are returned."""
        rest = []
        for path in paths:
            if os.path.basename(path) in self.parents and not any(
                    dirnames for _, dirnames, _ in os.walk(path)):
                try:
                    os.rmdir(path)
                    continue
                except OSError:
                    pass
            rest.append(path)
        return rest


@pytest.fixture(autouse=True)
def cg(runtime) -> Iterator[Cgroups]:
    """After each test: force-delete its containers (conftest's cleanup runs
    after this one and asserts the rest), then fail if a cgroup directory
    of the test remains on the host (and remove it)."""
    tracker = Cgroups()
    yield tracker
    for cid in runtime.ids():
        runtime.delete(cid, "--force", check=False)
    # a dying container's cgroup may hold exiting processes for a moment
    deadline = time.monotonic() + 5
    while (left := tracker.remove_empty_parents(tracker.leftovers())) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        for path in sorted(left, key=len, reverse=True):
            _rmdir_tree(path)
        pytest.fail(f"cgroup directories left behind: {left}", pytrace=False)


# ---- containers ------------------------------------------------------------------

def _start(runtime, bundle, cg, script: str, *, resources: dict | None = None,
           hint: str = "c", wait_for: str | None = None) -> tuple[str, int]:
    """A running container whose init is ``sh -c script``: (id, init pid)."""
    if resources is not None:
        bundle.linux["resources"] = resources
    cid = cg.new_id(hint)
    runtime.create(cid, bundle.sh(script))
    runtime.start(cid)
    if wait_for is not None:
        runtime.wait_output(cid, wait_for)
    return cid, runtime.pids[cid]


def _created(runtime, bundle, cg, resources: dict, hint: str = "c") -> tuple[str, int]:
    """A created (not started) container with ``resources``: its cgroup is in place."""
    bundle.linux["resources"] = resources
    cid = cg.new_id(hint)
    runtime.create(cid, bundle.sh("exec sleep 1000"))
    return cid, runtime.pids[cid]


def _run_ok(runtime, cg, bundle, script: str) -> str:
    """``sh -c script`` in the foreground with an id of this test: its stdout."""
    proc = runtime.run(cg.new_id("run"), bundle.sh(script))
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def _container_procs(util, init: int) -> set[int]:
    """The init and its live descendants, seen from the host."""
    return {init} | {p for p, st in util.descendants(init).items() if st not in ("Z", "X")}


def _dirs_named(cid_or_path: str) -> list[str]:
    """Every directory of any hierarchy whose path ends with ``cid_or_path``."""
    tail = cid_or_path.strip("/")
    found = []
    for mountpoint, _ in set(_hierarchies().values()):
        for dirpath, dirnames, _ in os.walk(mountpoint):
            for name in dirnames:
                path = os.path.join(dirpath, name)
                if path.endswith("/" + tail):
                    found.append(path)
    return found


# ---- linux.resources read back from the cgroup files -----------------------------

RESOURCE_CASES = {
    "memory.limit": ({"memory": {"limit": 64 * MiB}},
                     [("memory", "memory.limit_in_bytes", str(64 * MiB))]),
    "memory.reservation": ({"memory": {"limit": 64 * MiB, "reservation": 32 * MiB}},
                           [("memory", "memory.soft_limit_in_bytes", str(32 * MiB))]),
    "memory.swap": ({"memory": {"limit": 64 * MiB, "swap": 96 * MiB}},
                    [("memory", "memory.limit_in_bytes", str(64 * MiB)),
                     ("memory", "memory.memsw.limit_in_bytes", str(96 * MiB))]),
    "memory.swappiness": ({"memory": {"swappiness": 17}},
                          [("memory", "memory.swappiness", "17")]),
    "cpu.shares": ({"cpu": {"shares": 512}}, [("cpu", "cpu.shares", "512")]),
    "cpu.quota+period": ({"cpu": {"quota": 20000, "period": 50000}},
                         [("cpu", "cpu.cfs_quota_us", "20000"),
                          ("cpu", "cpu.cfs_period_us", "50000")]),
    "cpu.cpus+mems": ({"cpu": {"cpus": "0", "mems": "0"}},
                      [("cpuset", "cpuset.cpus", "0"), ("cpuset", "cpuset.mems", "0")]),
    "pids.limit": ({"pids": {"limit": 42}}, [("pids", "pids.max", "42")]),
}


@needs_v1
@pytest.mark.parametrize("case", RESOURCE_CASES)
def test_resource_is_written_to_the_cgroup_file(runtime, bundle, cg, case):
    resources, expected = RESOURCE_CASES[case]
    _, init = _created(runtime, bundle, cg, resources)
    dirs = cgroup_dirs(init)
    got = [(c, f, read(dirs[c], f)) for c, f, _ in expected]
    assert got == expected


@needs_v1
def test_cpuset_confines_the_process_to_its_cpus(runtime, bundle, cg):
    bundle.linux["resources"] = {"cpu": {"cpus": "0"}}
    out = _run_ok(runtime, cg, bundle, "grep Cpus_allowed_list /proc/self/status")
    assert out.split() == ["Cpus_allowed_list:", "0"]


@needs_v1
def test_pids_limit_is_enforced(runtime, bundle, cg):
    # the init and 3 sleeps make 4: the 4th sleep cannot be forked, and
    # busybox sh gives up with "can't fork"
    bundle.linux["resources"] = {"pids": {"limit": 4}}
    proc = runtime.run(cg.new_id(), bundle.sh("for i in 1 2 3 4 5; do echo $i; sleep 1000 & done"))
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == "1\n2\n3\n4\n"
    assert "can't fork" in proc.stderr, proc.stderr


@needs_v1
def test_blkio_weight_is_written_to_the_cgroup_file(runtime, bundle, cg):
    # the root blkio cgroup has no weight file; a child has blkio.bfq.weight
    # when the BFQ scheduler is loaded, blkio.weight with CFQ (gone since
    # 5.0).  A kernel with neither gets the precise error and nothing made.
    bundle.linux["resources"] = {"blockIO": {"weight": 300}}
    cid = cg.new_id("c")
    proc = runtime.create(cid, bundle.sh("exec sleep 1000"), check=False)
    if proc.returncode != 0:
        assert proc.stderr == ("ocipy: invalid config.json: linux.resources.blockIO.weight: "
                               "neither blkio.bfq.weight nor blkio.weight is available "
                               "on this kernel\n"), proc.stderr
        assert runtime.ids() == []  # and the cg fixture finds no cgroup left
        return
    directory = cgroup_dirs(runtime.pids[cid])["blkio"]
    names = [n for n in ("blkio.bfq.weight", "blkio.weight")
             if os.path.exists(os.path.join(directory, n))]
    assert names, f"create accepted a weight {directory} has no file for"
    assert read(directory, names[0]).splitlines()[0].split()[-1] == "300"


# ---- devices ---------------------------------------------------------------------
# c 240:* is a "local/experimental" major with no driver: opening a node of
# it fails with EPERM when the device cgroup denies it, and with ENXIO (no
# driver) once the cgroup lets it through.  runc's default devices (null,
# zero, ...) are appended after the user's rules, so /dev/null itself cannot
# be denied through linux.resources.devices (runc's specconv does the same).

DENIED = "Operation not permitted"
NO_DRIVER = "No such device or address"


def _node(path: str, minor: int) -> dict[str, Any]:
    return {"path": path, "type": "c", "major": 240, "minor": minor, "fileMode": 0o666,
            "uid": 0, "gid": 0}


@needs_v1
def test_device_without_an_allow_rule_is_denied(runtime, bundle, cg):
    bundle.linux["devices"] = [_node("/dev/spec0", 0)]
    bundle.linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    out = _run_ok(runtime, cg, bundle, "head -c1 /dev/spec0 2>&1; echo rc=$?; "
                                 "head -c1 /dev/null; echo null=$?")
    assert DENIED in out and "rc=1" in out, out
    assert "null=0" in out, out


@needs_v1
def test_allow_rule_opens_the_device_for_the_listed_access_only(runtime, bundle, cg):
    bundle.linux["devices"] = [_node("/dev/spec0", 0)]
    bundle.linux["resources"] = {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 240, "minor": 0, "access": "r"}]}
    cid, init = _start(runtime, bundle, cg, "echo ready; exec sleep 1000", wait_for="ready")
    listed = read(cgroup_dirs(init)["devices"], "devices.list").splitlines()
    assert "c 240:0 r" in listed, listed
    assert "c 1:3 rwm" in listed, listed  # /dev/null, a default
    assert "a *:* rwm" not in listed, listed
    proc = runtime.exec(cid, "sh", "-c", "head -c1 /dev/spec0 2>&1; echo > /dev/spec0")
    assert NO_DRIVER in proc.stdout, proc.stdout  # read: past the cgroup
    assert DENIED in proc.stderr, proc.stderr  # write: not allowed


@needs_v1
def test_deny_rule_after_allow_all_denies_that_device_only(runtime, bundle, cg):
    bundle.linux["devices"] = [_node("/dev/spec0", 0), _node("/dev/spec1", 1)]
    bundle.linux["resources"] = {"devices": [
        {"allow": True, "access": "rwm"},
        # "rw" only: the runtime still needs "m" to make the node
        {"allow": False, "type": "c", "major": 240, "minor": 0, "access": "rw"}]}
    out = _run_ok(runtime, cg, bundle, "head -c1 /dev/spec0 2>&1; head -c1 /dev/spec1 2>&1; true")
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert DENIED in lines[0] and NO_DRIVER in lines[1], out


@needs_v1
def test_default_devices_stay_usable_after_a_deny_all(runtime, bundle, cg):
    bundle.linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    out = _run_ok(runtime, cg, bundle, "head -c1 /dev/zero | wc -c; echo x > /dev/null && echo ok")
    assert out.split() == ["1", "ok"]


# ---- update ----------------------------------------------------------------------

BASE_LIMITS = {"memory": {"limit": 64 * MiB}, "cpu": {"shares": 1024}, "pids": {"limit": 100}}


def _limits(init: int) -> dict[str, str]:
    dirs = cgroup_dirs(init)
    files = [("memory", "memory.limit_in_bytes"), ("memory", "memory.soft_limit_in_bytes"),
             ("memory", "memory.memsw.limit_in_bytes"), ("cpu", "cpu.shares"),
             ("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_period_us"),
             ("cpuset", "cpuset.cpus"), ("pids", "pids.max")]
    return {name: read(dirs[c], name) for c, name in files}


@needs_v1
def test_update_flags_change_the_limits_live(runtime, bundle, cg):
    cid, init = _start(runtime, bundle, cg, "echo ready; exec sleep 1000",
                       resources=BASE_LIMITS, wait_for="ready")
    runtime.cmd("update", "--memory", "128m", "--memory-swap", "256m",
                "--memory-reservation", "16m", "--cpu-share", "256", "--cpu-quota", "30000",
                "--cpu-period", "200000", "--cpuset-cpus", "0", "--pids-limit", "50", cid,
                check=True)
    assert _limits(init) == {
        "memory.limit_in_bytes": str(128 * MiB), "memory.soft_limit_in_bytes": str(16 * MiB),
        "memory.memsw.limit_in_bytes": str(256 * MiB), "cpu.shares": "256",
        "cpu.cfs_quota_us": "30000", "cpu.cfs_period_us": "200000", "cpuset.cpus": "0",
        "pids.max": "50"}
    assert runtime.status(cid) == "running"


UPDATE_DOC = {"memory": {"limit": 96 * MiB, "reservation": 8 * MiB},
              "cpu": {"shares": 300, "quota": 25000, "period": 100000},
              "pids": {"limit": 30}}
UPDATED = {"memory.limit_in_bytes": str(96 * MiB), "memory.soft_limit_in_bytes": str(8 * MiB),
           "cpu.shares": "300", "cpu.cfs_quota_us": "25000", "cpu.cfs_period_us": "100000",
           "pids.max": "30"}


@needs_v1
@pytest.mark.parametrize("source", ["stdin", "file"])
def test_update_resources_document_changes_the_limits_live(runtime, bundle, cg, tmp_path,
                                                           source):
    cid, init = _start(runtime, bundle, cg, "echo ready; exec sleep 1000",
                       resources=BASE_LIMITS, wait_for="ready")
    doc = tmp_path / "resources.json"
    doc.write_text(json.dumps(UPDATE_DOC))
    if source == "stdin":  # containerd: --resources -
        with open(doc, "rb") as stdin:
            runtime.cmd("update", "--resources", "-", cid, stdin=stdin, check=True)
    else:  # podman: a file
        runtime.cmd("update", "--resources", doc, cid, check=True)
    limits = _limits(init)
    assert {k: limits[k] for k in UPDATED} == UPDATED
    assert runtime.status(cid) == "running"
    assert init in procs(cgroup_dirs(init)["pids"])


@needs_v1
def test_update_pids_limit_is_enforced_at_once(runtime, bundle, cg):
    cid, _ = _start(runtime, bundle, cg, "sleep 1001 & echo ready; wait",
                    resources={"pids": {"limit": 100}}, wait_for="ready")
    fork = ("sh", "-c", "sleep 1 & echo forked")
    # init + sleep: with a limit of 2 nothing more can be forked inside (the
    # exec'd shell itself may still be moved in, or fail to start at all)
    runtime.cmd("update", "--pids-limit", "2", cid, check=True)
    assert "forked" not in runtime.exec(cid, *fork).stdout
    runtime.cmd("update", "--pids-limit", "10", cid, check=True)
    assert runtime.exec(cid, *fork, check=True).stdout == "forked\n"


# ---- pause and resume ------------------------------------------------------------

COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"


def _count(runtime, cid: str) -> int:
    return len(runtime.stdout(cid).splitlines())


def test_pause_freezes_and_resume_thaws(runtime, bundle, cg, util):
    cid, init = _start(runtime, bundle, cg, COUNTER, wait_for="3\n")
    runtime.cmd("pause", cid, check=True)
    assert runtime.status(cid) == "paused"
    frozen_at = _count(runtime, cid)
    time.sleep(0.5)
    assert _count(runtime, cid) == frozen_at, "the counter kept counting while paused"
    freezer = cgroup_dirs(init).get("freezer")
    if freezer:
        assert read(freezer, "freezer.state") == "FROZEN"

    runtime.cmd("resume", cid, check=True)
    assert runtime.status(cid) == "running"
    util.wait_for(lambda: _count(runtime, cid) >= frozen_at + 3, 5, "the counter to go on")
    if freezer:
        assert read(freezer, "freezer.state") == "THAWED"


def test_exec_into_a_paused_container_fails(runtime, bundle, cg, util):
    cid, init = _start(runtime, bundle, cg, COUNTER, wait_for="1\n")
    runtime.cmd("pause", cid, check=True)
    before = _container_procs(util, init)
    proc = runtime.exec(cid, "sh", "-c", "echo inside", timeout=10)
    assert proc.returncode != 0
    assert "inside" not in proc.stdout
    assert _container_procs(util, init) == before
    runtime.cmd("resume", cid, check=True)
    assert runtime.exec(cid, "echo", "inside", check=True).stdout == "inside\n"


def test_resume_of_a_running_container_fails(runtime, bundle, cg):
    cid, _ = _start(runtime, bundle, cg, "echo ready; exec sleep 1000", wait_for="ready")
    assert runtime.cmd("resume", cid).returncode != 0
    assert runtime.status(cid) == "running"


def test_delete_force_cleans_a_paused_container(runtime, bundle, cg, util):
    cid, init = _start(runtime, bundle, cg, COUNTER, wait_for="1\n")
    dirs = set(cgroup_dirs(init).values())
    runtime.cmd("pause", cid, check=True)
    runtime.delete(cid, "--force")
    assert not util.pid_alive(init)
    assert runtime.ids() == []
    assert [d for d in dirs if os.path.isdir(d)] == []


# ---- ps --------------------------------------------------------------------------

CHILDREN = "sleep 1001 & sleep 1002 & echo ready; wait"


@pytest.fixture
def detached_execs(util) -> Iterator[list[int]]:
    """Pids of `exec -d` processes: killed and reaped after the test, before
    the container's delete.  Their parent was the runtime, so they are our
    children now; a pid namespace's dying init waits until they are reaped."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)  # by pid: a process this test started
        except ProcessLookupError:
            pass
        util.wait_pid(pid, 10)


def _exec_detached(runtime, cid: str, tmp_path: Path, detached_execs: list[int],
                   *args: str) -> int:
    """`exec -d --pid-file P ID args`: the exec'd process's host pid."""
    pid_file = tmp_path / f"exec{len(detached_execs)}.pid"
    runtime.exec(cid, *args, flags=["-d", "--pid-file", pid_file], check=True)
    pid = int(pid_file.read_text())
    detached_execs.append(pid)
    return pid


def _with_an_exec(runtime, bundle, cg, util, tmp_path, detached_execs
                  ) -> tuple[str, set[int]]:
    """A container with an init, two children and an `exec -d` process:
    (id, every pid of it seen from the host).  The exec'd process is not the
    init's descendant (its parent was the runtime): its pid comes from --pid-file."""
    cid, init = _start(runtime, bundle, cg, CHILDREN, wait_for="ready")
    exec_pid = _exec_detached(runtime, cid, tmp_path, detached_execs, "sleep", "1003")
    util.wait_for(lambda: len(_container_procs(util, init)) == 3, 5,
                  f"3 processes under the init: {_container_procs(util, init)}")
    return cid, _container_procs(util, init) | {exec_pid}


def test_ps_json_lists_exactly_the_containers_pids(runtime, bundle, cg, util, tmp_path,
                                                   detached_execs):
    cid, expected = _with_an_exec(runtime, bundle, cg, util, tmp_path, detached_execs)
    proc = runtime.cmd("ps", "--format", "json", cid, check=True)
    pids = json.loads(proc.stdout)
    assert isinstance(pids, list) and all(isinstance(p, int) for p in pids), proc.stdout
    assert sorted(pids) == sorted(expected)
    assert os.getpid() not in pids
    # the same set the kernel lists in the container's cgroup
    init = runtime.pids[cid]
    assert procs(cgroup_dirs(init)["pids"]) == expected


def test_ps_json_without_a_pid_namespace_lists_only_the_container(runtime, bundle, cg, util):
    bundle.remove_namespace("pid")
    cid, init = _start(runtime, bundle, cg, CHILDREN, wait_for="ready")
    util.wait_for(lambda: len(_container_procs(util, init)) == 3, 5, "the init's children")
    pids = json.loads(runtime.cmd("ps", "--format", "json", cid, check=True).stdout)
    assert sorted(pids) == sorted(_container_procs(util, init))


def test_exec_detached_without_a_pid_namespace_lives_on_in_the_cgroup(
        runtime, bundle, cg, util, tmp_path, detached_execs):
    # the exec'd process outlives `exec -d` (no parent-death signal across
    # execve) and is one of the container's processes
    bundle.remove_namespace("pid")
    cid, init = _start(runtime, bundle, cg, CHILDREN, wait_for="ready")
    pid = _exec_detached(runtime, cid, tmp_path, detached_execs, "sleep", "1003")
    time.sleep(0.2)
    assert util.pid_alive(pid), f"the exec'd process died: {util.wait_pid(pid, 1)}"
    assert pid in procs(cgroup_dirs(init)["pids"])
    assert pid in json.loads(runtime.cmd("ps", "--format", "json", cid, check=True).stdout)


def _table_pids(text: str) -> set[int]:
    lines = text.splitlines()
    column = lines[0].split().index("PID")
    return {int(line.split()[column]) for line in lines[1:]}


def test_ps_table_shows_the_containers_processes(runtime, bundle, cg, util, tmp_path,
                                                 detached_execs):
    cid, expected = _with_an_exec(runtime, bundle, cg, util, tmp_path, detached_execs)
    out = runtime.cmd("ps", cid, check=True).stdout
    assert _table_pids(out) == expected, out
    assert "sleep 1003" in out, out


def test_ps_passes_its_options_to_ps(runtime, bundle, cg, util, tmp_path, detached_execs):
    cid, expected = _with_an_exec(runtime, bundle, cg, util, tmp_path, detached_execs)
    out = runtime.cmd("ps", cid, "-eo", "pid,args", check=True).stdout
    assert out.splitlines()[0].split() == ["PID", "COMMAND"], out
    assert _table_pids(out) == expected, out


@pytest.mark.ocipy_only  # runc 1.1 prints "null" and exits 0
def test_ps_of_a_stopped_container_fails(runtime, bundle, cg):
    cid = cg.new_id()
    runtime.create(cid, bundle.sh("exit 0"))
    runtime.start(cid)
    runtime.wait(cid)
    assert runtime.cmd("ps", "--format", "json", cid).returncode != 0


# ---- kill --all ------------------------------------------------------------------

TRAPPING_INIT = ("trap 'echo trapped' TERM; sleep 1001 & sleep 1002 & echo ready; "
                 "while :; do wait; sleep 0.1; done")


@pytest.mark.parametrize("pidns", [True, False], ids=["pidns", "host-pidns"])
def test_kill_all_signals_every_process(runtime, bundle, cg, util, pidns):
    if not pidns:
        bundle.remove_namespace("pid")
    cid, init = _start(runtime, bundle, cg, TRAPPING_INIT, wait_for="ready")
    children = util.wait_for(lambda: {p for p in util.descendants(init)} or None, 5,
                             "the init's children")
    assert len(children) == 2, children
    runtime.kill(cid, "--all", "TERM")
    util.wait_for(lambda: not any(util.pid_alive(p) for p in children), 5,
                  "the children to die of SIGTERM")
    runtime.wait_output(cid, "trapped")
    assert util.pid_alive(init), "the init traps SIGTERM: it must survive"
    assert runtime.status(cid) == "running"

    runtime.kill(cid, "--all", "KILL")
    assert runtime.wait(cid) == -signal.SIGKILL
    util.wait_for(lambda: runtime.status(cid) == "stopped", 5, "the container to stop")


# ---- events: stats and OOM -------------------------------------------------------

@needs_v1
def test_events_stats_reports_the_limits_and_usage(runtime, bundle, cg):
    cid, _ = _start(runtime, bundle, cg, "sleep 1001 & echo ready; wait",
                    resources={"memory": {"limit": 64 * MiB}, "pids": {"limit": 20}},
                    wait_for="ready")
    out = runtime.cmd("events", "--stats", cid, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 1, out
    event = json.loads(lines[0])
    assert event["type"] == "stats" and event["id"] == cid, event
    data = event["data"]
    assert data["memory"]["usage"]["limit"] == 64 * MiB, data["memory"]
    assert 0 < data["memory"]["usage"]["usage"] <= 64 * MiB, data["memory"]
    assert data["pids"] == {"current": 2, "limit": 20}, data["pids"]
    assert data["cpu"]["usage"]["total"] > 0, data["cpu"]


def _events(runtime, cid: str):
    """`events --interval 100ms ID` in the background, once it is watching
    (its first stats line is out): (Popen, stdout path)."""
    proc, out, _ = runtime.spawn("events", "--interval", "100ms", cid)
    try:
        deadline = time.monotonic() + 10
        while '"stats"' not in out.read_text():
            assert proc.poll() is None, f"events exited {proc.returncode}: {out.read_text()!r}"
            assert time.monotonic() < deadline, "events printed no stats within 10s"
            time.sleep(0.02)
    except BaseException:
        _stop(proc)
        raise
    return proc, out


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()  # by its pid: the process this test started
    try:
        proc.wait(timeout=10)
    except Exception:
        proc.kill()
        proc.wait(timeout=10)


def _types(out: Path) -> list[str]:
    return [json.loads(line)["type"] for line in out.read_text().splitlines() if line]


# memory+swap at the limit too, so the allocation cannot go to swap;
# `tail` keeps its whole input when it sees no newline
OOM_LIMITS = {"memory": {"limit": 32 * MiB, "swap": 32 * MiB}}
# busybox tail keeps a line until its newline: /dev/zero has none, so tail
# grows until the OOM killer takes it (it is the largest process in the
# cgroup by far) and the shell around it reports 137 (128 + SIGKILL)
GROW = "tail /dev/zero"
# the kernel reclaims page cache before it kills, which takes long on a
# loaded machine: the OOM tests wait longer than the suite's default
OOM_TIMEOUT = 60


@needs_v1
def test_oom_kill_shows_in_events_and_delete_cleans_up(runtime, bundle, cg, util):
    bundle.linux["resources"] = OOM_LIMITS
    cid = cg.new_id()
    runtime.create(cid, bundle.sh(f"{GROW}; echo survived $?; exec sleep 1000"))
    init = runtime.pids[cid]
    dirs = set(cgroup_dirs(init).values())
    events, out = _events(runtime, cid)
    try:
        runtime.start(cid)
        # the child was killed, the init lives on
        runtime.wait_output(cid, "survived 137", timeout=OOM_TIMEOUT)
        util.wait_for(lambda: "oom" in _types(out), OOM_TIMEOUT,
                      f"an oom event in the events output {out.read_text()[-400:]!r}")
        oom = [json.loads(line) for line in out.read_text().splitlines()
               if json.loads(line)["type"] == "oom"]
        assert oom[0] == {"type": "oom", "id": cid}, oom
        assert events.poll() is None, "events stopped while the container runs"
    finally:
        _stop(events)
    assert runtime.status(cid) == "running"
    runtime.delete(cid, "--force")
    assert [d for d in dirs if os.path.isdir(d)] == []


@needs_v1
def test_oom_killed_init_shows_in_events_and_delete_cleans_up(runtime, bundle, cg, util):
    bundle.linux["resources"] = OOM_LIMITS
    cid = cg.new_id()
    bundle.args = GROW.split()  # the init itself grows until it is killed
    runtime.create(cid, bundle)
    init = runtime.pids[cid]
    dirs = set(cgroup_dirs(init).values())
    events, out = _events(runtime, cid)
    try:
        runtime.start(cid)
        assert runtime.wait(cid, timeout=OOM_TIMEOUT) == -signal.SIGKILL
        util.wait_for(lambda: "oom" in _types(out), OOM_TIMEOUT,
                      f"an oom event in the events output {out.read_text()[-400:]!r}")
    finally:
        _stop(events)
    assert runtime.status(cid) == "stopped"
    assert all(os.path.isdir(d) for d in dirs), "the cgroup went before delete"
    runtime.delete(cid)
    assert [d for d in dirs if os.path.isdir(d)] == []
    assert runtime.ids() == []


# ---- cgroupsPath -------------------------------------------------------------------

def _assert_placed(init: int, expected: dict[str, str]) -> None:
    """/proc/<init>/cgroup names ``expected[key]`` for every hierarchy the
    host has, and the init is in each of those cgroups' procs."""
    got = proc_cgroup(init)
    hierarchies = _hierarchies()
    mismatched = {k: (got.get(k), want) for k, want in expected.items()
                  if k in hierarchies and got.get(k) != want}
    assert not mismatched, mismatched
    for key in expected:
        if key in hierarchies:
            assert init in procs(_on_host(key, expected[key])), key


def test_absolute_cgroups_path_is_taken_from_each_hierarchy_root(runtime, bundle, cg):
    top = cg.parent("abs")
    bundle.linux["cgroupsPath"] = f"/{top}/c"
    cid, init = _created(runtime, bundle, cg, {"pids": {"limit": 10}})
    _assert_placed(init, {k: f"/{top}/c" for k in _hierarchies()})
    assert read(_on_host("pids", f"/{top}/c"), "pids.max") == "10"
    runtime.delete(cid, "--force")
    assert _dirs_named(f"{top}/c") == []


@pytest.mark.ocipy_only  # runc 1.1 removes the container's own cgroup, not its parents
def test_delete_removes_the_parents_create_made(runtime, bundle, cg):
    top = cg.name("abs")  # not a cg.parent: it must go
    bundle.linux["cgroupsPath"] = f"/{top}/a/b"
    cid, _ = _created(runtime, bundle, cg, {})
    runtime.delete(cid, "--force")
    assert _dirs_named(top) == []


def _own_cgroups() -> dict[str, str]:
    own = proc_cgroup("self")
    return {k: v for k, v in own.items() if k in _hierarchies()}


@pytest.mark.ocipy_only  # runc 1.1 leaves the parents
def test_a_relative_cgroups_path_named_like_the_default_parent_leaves_no_parent(
        runtime, bundle, cg):
    # "ocipy/<id>", relative, is the caller's cgroup's ocipy/<id>: not the
    # default parent, so the parent create made goes at delete
    own = _own_cgroups()
    parents = {k: os.path.join(_on_host(k, path), "ocipy") for k, path in own.items()}
    for path in parents.values():
        try:
            os.rmdir(path)  # ocipy's default parent, when empty (at the root)
        except OSError:
            pass
    existed = {k: os.path.isdir(p) for k, p in parents.items()}
    assert not all(existed.values()), "a container lives in the default parent"
    cid = cg.new_id("relocipy")
    bundle.linux["cgroupsPath"] = f"ocipy/{cid}"
    runtime.create(cid, bundle.sh("exec sleep 1000"))
    assert all(os.path.isdir(os.path.join(p, cid)) for p in parents.values())
    runtime.delete(cid, "--force")
    assert {k: os.path.isdir(p) for k, p in parents.items()} == existed


def test_relative_cgroups_path_is_under_the_callers_cgroup(runtime, bundle, cg):
    rel = f"{cg.parent('rel')}/c"
    bundle.linux["cgroupsPath"] = rel
    cid, init = _created(runtime, bundle, cg, {"pids": {"limit": 10}})
    own = _own_cgroups()
    _assert_placed(init, {k: os.path.join(path, rel) for k, path in own.items()})
    runtime.delete(cid, "--force")
    assert _dirs_named(rel) == []


@pytest.fixture
def caller_cgroup(runtime, cg) -> Iterator[tuple[str, Any]]:
    """(name, preexec_fn): /<name> in every hierarchy (a v1 cpuset gets its
    parent's cpus and mems, or no process could join it), and a preexec_fn
    that moves the runtime, not pytest, there before it executes."""
    name = cg.name("caller")
    made: list[str] = []
    for key, (mountpoint, _) in _hierarchies().items():
        path = os.path.join(mountpoint, name)
        if path in made:
            continue
        os.mkdir(path)
        made.append(path)
        if key == "cpuset":
            for f in ("cpuset.cpus", "cpuset.mems"):
                Path(path, f).write_text(read(mountpoint, f))
    cg.bases += made

    def join() -> None:
        for path in made:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write("0")

    yield name, join
    for cid in runtime.ids():  # before cg's own delete: the caller dirs must be empty
        runtime.delete(cid, "--force", check=False)
    for path in made:  # what is left in them is reported by cg
        rel = [os.path.join(path, n) for n in os.listdir(path)
               if os.path.isdir(os.path.join(path, n))]
        for child in rel:
            if os.path.basename(child) in cg.parents:
                cg.remove_empty_parents([child])
        try:
            os.rmdir(path)
        except OSError:
            pass  # the cg check reports what is left in it


def _create_from_caller(runtime, bundle, cg, join) -> tuple[str, str, int]:
    rel = f"{cg.parent('rel')}/c"
    bundle.linux["cgroupsPath"] = rel
    bundle.linux["resources"] = {"pids": {"limit": 10}}
    cid = cg.new_id()
    runtime.create(cid, bundle.sh("exec sleep 1000"), preexec_fn=join)
    return cid, rel, runtime.pids[cid]


def test_relative_cgroups_path_follows_the_caller_into_its_cgroup(runtime, bundle, cg,
                                                                  caller_cgroup):
    caller, join = caller_cgroup
    cid, rel, init = _create_from_caller(runtime, bundle, cg, join)
    # every v1 hierarchy; runc 1.1 puts the hybrid cgroup2 one under the root (below)
    _assert_placed(init, {k: f"/{caller}/{rel}" for k in _hierarchies() if k})
    runtime.delete(cid, "--force")
    assert _dirs_named(f"{caller}/{rel}") == []


@pytest.mark.ocipy_only  # runc 1.1 ignores the caller's cgroup2 cgroup on a hybrid host
def test_relative_cgroups_path_follows_the_caller_in_the_hybrid_cgroup2(runtime, bundle, cg,
                                                                       caller_cgroup):
    if "" not in _hierarchies():
        pytest.skip("no cgroup2 hierarchy on this host")
    caller, join = caller_cgroup
    _, rel, init = _create_from_caller(runtime, bundle, cg, join)
    _assert_placed(init, {"": f"/{caller}/{rel}"})


def test_default_cgroup_is_the_containers_own(runtime, bundle, cg):
    cid, init = _created(runtime, bundle, cg, {})
    got = proc_cgroup(init)
    for key in _hierarchies():
        assert got[key].endswith(f"/{cid}"), (key, got[key])
        assert procs(_on_host(key, got[key])) == {init}, key


@pytest.mark.ocipy_only  # runc's default is the caller's cgroup + id
def test_default_cgroup_is_ocipy_id(runtime, bundle, cg):
    cid, init = _created(runtime, bundle, cg, {})
    _assert_placed(init, {k: f"/ocipy/{cid}" for k in _hierarchies()})


def test_delete_removes_the_containers_cgroups(runtime, bundle, cg, util):
    cid, init = _start(runtime, bundle, cg, CHILDREN, wait_for="ready")
    dirs = set(cgroup_dirs(init).values())
    assert dirs
    runtime.kill(cid, "KILL")
    runtime.wait(cid)
    util.wait_for(lambda: runtime.status(cid) == "stopped", 5, "the container to stop")
    runtime.delete(cid)
    assert [d for d in dirs if os.path.isdir(d)] == []


# ---- cgroup namespace and cgroup mount -------------------------------------------

CGROUP_MOUNT_OPTIONS = ["nosuid", "noexec", "nodev", "relatime", "ro"]


def test_cgroup_namespace_roots_every_hierarchy_at_the_container(runtime, bundle, cg):
    bundle.add_namespace("cgroup")
    path = f"/{cg.parent('ns')}/c"
    bundle.linux["cgroupsPath"] = path
    cid, init = _start(runtime, bundle, cg, "cat /proc/self/cgroup; echo ready; "
                                            "exec sleep 1000", wait_for="ready")
    inside = _parse_proc_cgroup(runtime.stdout(cid).split("ready")[0])
    assert set(inside.values()) == {"/"}, inside
    # from the host, the same process is in the container's cgroup
    assert set(proc_cgroup(init).values()) == {path}


@needs_v1
@pytest.mark.parametrize("cgroupns", [
    True,
    # without a cgroup namespace each hierarchy is a bind of the container's
    # own directory (as runc does), not the host's root
    False,
], ids=["cgroupns", "no-cgroupns"])
def test_cgroup_mount_shows_the_containers_cgroup_read_only(runtime, bundle, cg, util,
                                                             cgroupns):
    if cgroupns:
        bundle.add_namespace("cgroup")
    bundle.add_mount("/sys/fs/cgroup", "cgroup", "cgroup", CGROUP_MOUNT_OPTIONS)
    bundle.linux["resources"] = {"memory": {"limit": 48 * MiB}, "pids": {"limit": 33}}
    out = _run_ok(runtime, cg, bundle,
                  "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max;"
                  " mkdir /sys/fs/cgroup/memory/spec-x 2>&1;"
                  " echo 5 2>&1 > /sys/fs/cgroup/pids/pids.max;"
                  " touch /sys/fs/cgroup/spec-x 2>/dev/null; echo touch=$?;"
                  " echo ---; cat /proc/self/mountinfo")
    head, _, mountinfo = out.partition("---\n")
    lines = head.splitlines()
    # the container's own limits, not the host's root cgroup
    assert lines[:2] == [str(48 * MiB), "33"], out
    assert "Read-only file system" in lines[2], out
    assert "Read-only file system" in lines[3], out
    assert lines[4] == "touch=1", out  # nothing can be added at the top either
    mounts = [m for m in util.parse_mountinfo(mountinfo)
              if m["mount_point"].startswith("/sys/fs/cgroup/")
              and m["fstype"] in ("cgroup", "cgroup2")]
    assert "/sys/fs/cgroup/memory" in [m["mount_point"] for m in mounts], mounts
    writable = [m["mount_point"] for m in mounts if "ro" not in m["options"]]
    assert writable == [], writable


# ---- failed creates leave no cgroup ----------------------------------------------

FAILING_CREATES = {
    "cpuset the host lacks": lambda b: b.linux.update(resources={"cpu": {"cpus": "63"}}),
    "cpu period below the kernel minimum": lambda b: b.linux.update(
        resources={"cpu": {"quota": 1000, "period": 100}}),
    "missing executable": lambda b: b.process.update(args=["/no/such/binary"]),
    "failing createRuntime hook": lambda b: b.config.update(
        hooks={"createRuntime": [{"path": "/bin/false"}]}),
}


@pytest.mark.parametrize("case", FAILING_CREATES)
@pytest.mark.parametrize("path", ["default", "absolute", "relative"])
def test_failed_create_leaves_no_cgroup(runtime, bundle, cg, util, case, path):
    FAILING_CREATES[case](bundle)
    bundle.linux.setdefault("resources", {}).setdefault("pids", {"limit": 10})
    if path == "absolute":
        bundle.linux["cgroupsPath"] = f"/{cg.parent('abs')}/c"
    elif path == "relative":
        bundle.linux["cgroupsPath"] = cg.name("rel")
    cid = cg.new_id()
    proc = runtime.create(cid, bundle, check=False)
    assert proc.returncode != 0, proc.stderr
    assert runtime.ids() == []
    assert _dirs_named(bundle.linux.get("cgroupsPath") or cid) == []


def test_no_cgroup_is_left_after_run(runtime, bundle, cg):
    # a foreground run deletes its container: the autouse check sees the rest
    bundle.linux["resources"] = {"pids": {"limit": 10}, "memory": {"limit": 64 * MiB}}
    proc = runtime.run(cg.new_id(), bundle.sh("exit 3"))
    assert proc.returncode == 3
    assert runtime.ids() == []


# ---- how a container's process enters its cgroups (child.c join_cgroups) ----------
# By itself, before anything else: "0" to each v1 hierarchy's tasks (no global
# migration lock) and clone3(CLONE_INTO_CGROUP) for cgroup2.

DEFAULT_PARENT = "/sys/fs/cgroup/pids/ocipy"


@needs_v1
@pytest.mark.ocipy_only
@pytest.mark.parametrize("mistake", ["schema", "missing executable", "none", "cgroupsPath"])
def test_a_create_leaves_no_default_parent_it_did_not_need(runtime, bundle, cg, mistake):
    # the default parent /ocipy is made for a container without cgroupsPath
    # only, and a create that fails removes the one it made; a container
    # that was created leaves it for the next ones (the session removes it)
    try:
        os.rmdir(DEFAULT_PARENT)  # ocipy's own, when empty
    except OSError:
        pass  # a container lives there (or none ever did)
    existed = os.path.isdir(DEFAULT_PARENT)
    bundle.linux.pop("cgroupsPath", None)
    cid = cg.new_id()
    if mistake == "cgroupsPath":
        bundle.linux["cgroupsPath"] = f"/{cid}"
        bundle.process["args"] = ["true"]
        runtime.create(cid, bundle)
        assert os.path.isdir(DEFAULT_PARENT) == existed
        with open(f"/sys/fs/cgroup/pids/{cid}/cgroup.procs") as f:
            assert f.read().split() == [str(runtime.pids[cid])]
        runtime.delete(cid, "--force")
        assert os.path.isdir(DEFAULT_PARENT) == existed
        return
    if mistake == "schema":
        bundle.process["args"] = "sh"  # not an array
    elif mistake == "missing executable":
        bundle.process["args"] = ["/no/such/binary"]
    else:
        bundle.process["args"] = ["true"]
    proc = runtime.create(cid, bundle, check=False)
    if mistake != "none":
        assert proc.returncode == 1, proc.stderr
        assert os.path.isdir(DEFAULT_PARENT) == existed
        return
    assert proc.returncode == 0, proc.stderr
    # only the container is in the parent's subtree
    with open(os.path.join(DEFAULT_PARENT, "cgroup.procs")) as f:
        assert f.read().split() == []
    with open(os.path.join(DEFAULT_PARENT, cid, "cgroup.procs")) as f:
        assert f.read().split() == [str(runtime.pids[cid])]
    runtime.delete(cid, "--force")
    assert not os.path.exists(os.path.join(DEFAULT_PARENT, cid))
    assert os.path.isdir(DEFAULT_PARENT)  # for the next container


def test_an_execd_process_is_in_every_cgroup_of_the_container(runtime, bundle, cg):
    # every hierarchy, the cgroup2 one of a hybrid host included, and
    # nothing of ours left in the default parent
    bundle.linux.pop("cgroupsPath", None)
    cid = cg.new_id()
    runtime.run(cid, bundle.sh("echo ready; exec sleep 1000"), "-d", check=True)
    runtime.wait_output(cid, "ready")
    init = runtime.pids[cid]
    proc = runtime.exec(cid, "sh", "-c", "cat /proc/self/cgroup; echo done", check=True)
    assert proc.stdout.endswith("done\n")
    inside = _parse_proc_cgroup(proc.stdout.rsplit("done", 1)[0])
    assert inside == proc_cgroup(init), proc.stdout
    assert set(inside.values()) == {f"/ocipy/{cid}"}, inside
    if os.path.isdir(DEFAULT_PARENT):
        with open(os.path.join(DEFAULT_PARENT, "cgroup.procs")) as f:
            assert f.read().split() == []


@pytest.mark.ocipy_only
def test_without_clone3_the_process_still_enters_every_cgroup(runtime, bundle, cg, tmp_path):
    # clone3 refused with ENOSYS, as a container engine's seccomp profile
    # does: the plain clone, then the child writes its cgroup2 cgroup.procs
    wrapper = tmp_path / "no-clone3"
    wrapper.write_text(_NO_CLONE3.format(python=sys.executable, runtime=runtime.binary))
    wrapper.chmod(0o755)
    refused = type(runtime)(str(wrapper), runtime.root, tmp_path / "io")
    path = f"/{cg.parent('noclone3')}/c"
    bundle.linux["cgroupsPath"] = path
    cid = cg.new_id()
    refused.create(cid, bundle.sh("exec sleep 1000"))
    try:
        assert set(proc_cgroup(refused.pids[cid]).values()) == {path}
        check = refused.cmd("exec", cid, "cat", "/proc/self/cgroup", check=True)
        assert set(_parse_proc_cgroup(check.stdout).values()) == {path}, check.stdout
    finally:
        runtime.delete(cid, "--force")


# a wrapper that execs the runtime under a seccomp filter failing clone3
# with ENOSYS (libseccomp through ctypes)
_NO_CLONE3 = """#!{python} -I
import ctypes, os, sys
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
ALLOW, ERRNO_ENOSYS = 0x7FFF0000, 0x00050000 | 38
ctx = ctypes.c_void_p(lib.seccomp_init(ALLOW))
nr = lib.seccomp_syscall_resolve_name(b"clone3")
assert lib.seccomp_rule_add(ctx, ERRNO_ENOSYS, nr, 0) == 0
assert lib.seccomp_load(ctx) == 0
os.execv({runtime!r}, [{runtime!r}] + sys.argv[1:])
"""


@pytest.mark.ocipy_only
@pytest.mark.skipif(not any(line.split(" - ")[1].startswith("cgroup2")
                            for line in Path("/proc/self/mountinfo").read_text().splitlines()),
                    reason="no cgroup2 hierarchy on this host")
def test_on_a_pure_cgroup2_host_the_process_is_cloned_into_its_cgroup(runtime, bundle, cg,
                                                                     tmp_path):
    # a pure cgroup v2 host, seen from a private mount namespace whose
    # /sys/fs/cgroup is the cgroup2 hierarchy alone: the init is created in
    # its cgroup (clone3 CLONE_INTO_CGROUP, required), an exec'd process too,
    # and delete removes it
    cid = cg.new_id("v2")
    bundle.linux.pop("cgroupsPath", None)
    bundle.remove_namespace("cgroup")
    bundle.write()
    ocipy = " ".join(runtime.argv())
    script = tmp_path / "v2.sh"
    script.write_text(f"""set -e
mount --make-rprivate /
umount -l /sys/fs/cgroup
mount -t cgroup2 none /sys/fs/cgroup
{ocipy} run -d --bundle {bundle.path} {cid} </dev/null >/dev/null 2>{tmp_path}/err
pid=$({ocipy} state {cid} | sed -n 's/^ *"pid": \\([0-9]*\\),$/\\1/p')
grep '^0::' /proc/$pid/cgroup
{ocipy} exec {cid} cat /proc/self/cgroup | grep '^0::'
ls /sys/fs/cgroup/ocipy/{cid}/cgroup.procs
{ocipy} delete --force {cid}
test ! -e /sys/fs/cgroup/ocipy/{cid} && echo gone
""")
    bundle.args = ["sleep", "1000"]
    bundle.write()
    proc = subprocess.run(["unshare", "-m", "sh", str(script)], capture_output=True,
                          text=True, check=False, timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr,
                                  (tmp_path / "err").read_text() if (tmp_path / "err").exists()
                                  else "")
    assert proc.stdout.split() == [f"0::/ocipy/{cid}", f"0::/ocipy/{cid}",
                                   f"/sys/fs/cgroup/ocipy/{cid}/cgroup.procs", "gone"]
