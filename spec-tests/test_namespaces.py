"""linux.namespaces: each namespace type is created (or joined by path) and is
what the process sees from the inside."""
from __future__ import annotations

import ctypes
import os

import pytest


def _ns_link(ns: str) -> str:
    """The host's view of one of its own namespaces, as readlink shows it."""
    return os.readlink(f"/proc/self/ns/{ns}")


def _inside_ns_links(runtime, bundle, *names: str) -> dict[str, str]:
    out = runtime.run_ok(bundle, f"for n in {' '.join(names)}; do readlink /proc/self/ns/$n; done")
    return dict(zip(names, out.split()))


def test_pid_namespace_makes_the_process_pid_1(runtime, bundle, util):
    assert runtime.run_ok(bundle, "echo $$") == "1\n"
    # Seen from the host, the init has its host pid and pid 1 in its namespace.
    cid = runtime.new_id()
    runtime.create(cid, bundle.sh("exec sleep 1000"))
    pid = runtime.pids[cid]
    assert util.proc_status(pid)["NSpid"].split() == [str(pid), "1"]


def test_joining_a_pid_namespace_by_path_makes_a_second_process_there(runtime, bundle,
                                                                      util):
    # a pod's containers sharing the sandbox's pid namespace: joining applies
    # to children only, so the init is forked once more, and `state` (the
    # front-end's pre-rendered files) reports that process, not the first
    first = runtime.new_id()
    runtime.create(first, bundle.sh("exec sleep 1000"))
    first_pid = runtime.pids[first]
    bundle.add_namespace("pid", f"/proc/{first_pid}/ns/pid")
    second = runtime.new_id()
    runtime.create(second, bundle.sh("exec sleep 1000"))
    pid = runtime.pids[second]
    assert runtime.state(second)["pid"] == pid
    assert util.ns_inode(f"/proc/{pid}/ns/pid") == util.ns_inode(f"/proc/{first_pid}/ns/pid")
    nspid = util.proc_status(pid)["NSpid"].split()
    assert nspid[0] == str(pid) and nspid[1] != "1", nspid
    # the second init's parent is outside the namespace (here, this test's
    # subreaper): the first init cannot finish dying until it is reaped, as
    # a shim would at once
    runtime.delete(second, "--force")
    runtime.wait(second)
    runtime.delete(first, "--force")


def test_network_namespace_has_only_loopback(runtime, bundle):
    out = runtime.run_ok(bundle, ["cat", "/proc/net/dev"])
    interfaces = [line.split(":")[0].strip() for line in out.splitlines()[2:]]
    assert interfaces == ["lo"]


@pytest.mark.parametrize("ns", ["ipc", "uts", "mnt", "net", "pid"])
def test_namespace_differs_from_the_hosts(runtime, bundle, ns):
    inside = _inside_ns_links(runtime, bundle, ns)[ns]
    assert inside.startswith(f"{ns}:[")
    assert inside != _ns_link(ns)


def test_namespace_left_out_is_shared_with_the_host(runtime, bundle):
    bundle.remove_namespace("ipc")
    inside = _inside_ns_links(runtime, bundle, "ipc", "uts")
    assert inside["ipc"] == _ns_link("ipc")
    assert inside["uts"] != _ns_link("uts")


def test_ipc_namespace_hides_host_message_queues(runtime, bundle):
    # A SysV object created on the host is not visible in the container's ipc ns.
    libc = ctypes.CDLL(None, use_errno=True)
    IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0
    qid = libc.msgget(IPC_PRIVATE, IPC_CREAT | 0o600)
    assert qid >= 0, os.strerror(ctypes.get_errno())
    try:
        host_view = open("/proc/sysvipc/msg").read()
        assert f" {qid} " in host_view
        inside = runtime.run_ok(bundle, ["cat", "/proc/sysvipc/msg"])
        assert len(inside.splitlines()) == 1, inside  # the header only
    finally:
        libc.msgctl(qid, IPC_RMID, None)


def test_uts_namespace_sets_hostname(runtime, bundle):
    bundle.config["hostname"] = "spec-host"
    assert runtime.run_ok(bundle, "hostname; cat /proc/sys/kernel/hostname") == "spec-host\n" * 2
    assert os.uname().nodename != "spec-host"


@pytest.mark.ocipy_only  # runtime-spec 1.1 `domainname`: runc 1.1 ignores it
def test_uts_namespace_sets_domainname(runtime, bundle):
    bundle.config["hostname"] = "spec-host"
    bundle.config["domainname"] = "spec.example"
    out = runtime.run_ok(bundle, "hostname; cat /proc/sys/kernel/domainname")
    assert out.splitlines() == ["spec-host", "spec.example"]


def test_mount_namespace_keeps_container_mounts_private(runtime, bundle, util):
    bundle.add_mount("/home", "tmpfs", "tmpfs", ["size=1m"])
    out = runtime.run_ok(bundle, ["cat", "/proc/self/mountinfo"])
    inside = util.parse_mountinfo(out)
    assert any(m["mount_point"] == "/home" and m["fstype"] == "tmpfs" for m in inside)
    assert not any(m["mount_point"] == str(util.ROOTFS / "home") for m in util.host_mounts())
    assert _inside_ns_links(runtime, bundle, "mnt")["mnt"] != _ns_link("mnt")


def test_cgroup_namespace_shows_root_paths(runtime, bundle):
    bundle.add_namespace("cgroup")
    out = runtime.run_ok(bundle, ["cat", "/proc/self/cgroup"])
    lines = out.splitlines()
    assert lines
    # Every hierarchy (v1 controllers, name=systemd, the unified 0:: line on a
    # hybrid host) is rooted at the container's cgroup.
    for line in lines:
        hierarchy_id, controllers, path = line.split(":", 2)
        assert path == "/", line
    assert _inside_ns_links(runtime, bundle, "cgroup")["cgroup"] != _ns_link("cgroup")


def test_user_namespace_maps_ids(runtime, bundle):
    bundle.add_namespace("user")
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    out = runtime.run_ok(bundle, "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
                                 "stat -c '%u %g' /bin/busybox; "
                                 "grep -E '^(Uid|Gid):' /proc/self/status")
    lines = out.splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "200000", "65536"]
    assert lines[2:4] == ["0", "0"]
    # Host root owns the rootfs: unmapped, it shows as the overflow ids inside.
    assert lines[4] == "65534 65534"
    assert lines[5].split()[1:] == ["0"] * 4
    assert lines[6].split()[1:] == ["0"] * 4


def test_user_namespace_files_are_owned_through_the_mapping(runtime, bundle, tmp_path):
    bundle.add_namespace("user")
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, 100000, 100000)
    (shared / "from-host").write_text("x")
    os.chown(shared / "from-host", 101000, 102000)
    bundle.add_mount("/home", "bind", str(shared), ["rbind", "rw"])
    out = runtime.run_ok(bundle, "stat -c '%u %g' /home/from-host; touch /home/from-inside")
    assert out == "1000 2000\n"
    made = (shared / "from-inside").stat()
    assert (made.st_uid, made.st_gid) == (100000, 100000)


@pytest.mark.ocipy_only  # runtime-spec 1.1 time namespace: runc 1.1 refuses the type
def test_time_namespace_offsets_boottime(runtime, bundle):
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("kernel without time namespaces")
    offset = 10 * 86400
    bundle.add_namespace("time")
    bundle.linux["timeOffsets"] = {"boottime": {"secs": offset, "nanosecs": 0},
                                   "monotonic": {"secs": offset, "nanosecs": 0}}
    host_before = float(open("/proc/uptime").read().split()[0])
    out = runtime.run_ok(bundle, "cat /proc/uptime; cat /proc/self/timens_offsets")
    host_after = float(open("/proc/uptime").read().split()[0])
    lines = out.splitlines()
    inside = float(lines[0].split()[0])
    assert host_before + offset - 1 <= inside <= host_after + offset + 1, (inside, host_before)
    offsets = {line.split()[0]: int(line.split()[1]) for line in lines[1:]}
    assert offsets["boottime"] == offset and offsets["monotonic"] == offset


@pytest.mark.ocipy_only  # runc 1.1 refuses the time namespace type
def test_exec_joins_the_containers_time_namespace(runtime, bundle):
    # setns() into a time namespace needs a process whose memory no other
    # one shares (the kernel says EUSERS otherwise): exec's child must not
    # share the runtime's while it joins
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("kernel without time namespaces")
    offset = 20 * 86400
    bundle.add_namespace("time")
    bundle.linux["timeOffsets"] = {"boottime": {"secs": offset, "nanosecs": 0}}
    bundle.args = ["sleep", "100"]
    cid = runtime.new_id("timens")
    runtime.create(cid, bundle)
    runtime.start(cid)
    proc = runtime.exec(cid, "cat", "/proc/uptime", "/proc/self/timens_offsets")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    assert float(lines[0].split()[0]) >= host + offset - 1, (lines, host)
    offsets = {line.split()[0]: int(line.split()[1]) for line in lines[1:]}
    assert offsets["boottime"] == offset, lines


def test_joining_a_network_namespace_by_path(runtime, bundle, netns, util):
    path = netns()
    bundle.add_namespace("network", str(path))
    inside = _inside_ns_links(runtime, bundle, "net")["net"]
    assert inside == f"net:[{util.ns_inode(path)}]"
    assert inside != _ns_link("net")
