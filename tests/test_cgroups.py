"""cgroup managers: pure path/value/plan logic, then the real kernel.

The real tests create their cgroups under a unique parent
(/ocipy-test-<random>/...) in every hierarchy, end only the processes they
started, and check that nothing under that parent is left afterwards.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocipy import cgroups
from ocipy.cgroups import convert, files, paths, stats
from ocipy.cgroups import resources as res
from ocipy.cgroups.flags import ram_in_bytes, resources_from_update_flags
from ocipy.errors import ConfigError, OcipyError

# ---- fake /proc/self files ------------------------------------------------

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
90 80 0:32 /docker/abc /mnt/other/memory rw,relatime - cgroup cgroup rw,memory
"""
HYBRID_PROC_CGROUP = """\
9:name=systemd:/user.slice/session-1.scope
6:freezer:/
4:memory:/process_api/1b47
3:cpuset:/
1:cpu,cpuacct:/user.slice
0::/user.slice/session-1.scope
"""
NESTED_MOUNTINFO = """\
700 600 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
701 600 0:38 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw
"""


def test_mountinfo_paths_come_back_as_the_kernels_bytes():
    # the kernel octal-escapes space, tab, newline and backslash and leaves
    # every other byte: UTF-8, bytes of no encoding, other whitespace
    import os

    raw = (b"50 31 0:40 /caf\xc3\xa9\\040x /mnt/a\\134b\\011c\x0bd\xe9 rw - cgroup cgroup rw,pids\n"
           b"51 31 0:41 / /mnt/r\rs\x1ct rw - cgroup2 cgroup2 rw\n")
    mounts = paths.parse_mountinfo(os.fsdecode(raw))
    assert [(m.root, m.mountpoint) for m in mounts] == [
        (os.fsdecode(b"/caf\xc3\xa9 x"), os.fsdecode(b"/mnt/a\\b\tc\x0bd\xe9")),
        ("/", "/mnt/r\rs\x1ct")]
    assert mounts[0].controllers == ("pids",)


def test_proc_cgroup_lines_end_at_newlines_only():
    assert paths.parse_proc_cgroup("4:memory:/a\x0bb\rc\n0::/d\x1ce\n") == {
        "memory": "/a\x0bb\rc", "": "/d\x1ce"}


def test_mountinfo_lists_cgroup_mounts_with_their_controllers():
    mounts = paths.parse_mountinfo(HYBRID_MOUNTINFO)
    assert [m.mountpoint for m in mounts] == [
        "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified",
        "/mnt/other/memory"]
    assert mounts[0].controllers == ("cpu", "cpuacct")
    assert mounts[1].controllers == ("cpuset",)  # clone_children is an option
    assert mounts[4].controllers == ("name=systemd",)
    assert mounts[5] == paths.Mount("/sys/fs/cgroup/unified", "/", "cgroup2", ())
    assert mounts[6].root == "/docker/abc"


def test_proc_cgroup_maps_each_controller_and_v2_to_its_path():
    own = paths.parse_proc_cgroup(HYBRID_PROC_CGROUP)
    assert own["cpu"] == own["cpuacct"] == "/user.slice"
    assert own["memory"] == "/process_api/1b47"
    assert own["name=systemd"] == "/user.slice/session-1.scope"
    assert own[""] == "/user.slice/session-1.scope"


@pytest.mark.parametrize("given_path, want", [
    (None, ("/ocipy/c1", True)),
    ("", ("/ocipy/c1", True)),
    ("/a/b", ("/a/b", True)),
    ("/a/../../b/", ("/b", True)),
    ("//a//b", ("/a/b", True)),
    ("a/b", ("/a/b", False)),
    ("../../x", ("/x", False)),  # a relative path cannot climb out of the caller's cgroup
])
def test_cgroups_path_is_cleaned_and_defaults_to_ocipy_id(given_path, want):
    assert paths.container_path(given_path, "c1") == want


def test_the_root_cgroup_is_refused():
    with pytest.raises(ConfigError) as err:
        paths.container_path("/a/..", "c1")
    assert err.value.path == "linux.cgroupsPath"


def test_absolute_path_is_under_each_hierarchy_root():
    mounts = paths.parse_mountinfo(HYBRID_MOUNTINFO)
    own = paths.parse_proc_cgroup(HYBRID_PROC_CGROUP)
    dirs = paths.v1_dirs(mounts, own, "/x/c1", True)
    assert dirs == {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct/x/c1", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/x/c1",
        "cpuset": "/sys/fs/cgroup/cpuset/x/c1", "memory": "/sys/fs/cgroup/memory/x/c1",
        "freezer": "/sys/fs/cgroup/freezer/x/c1", "name=systemd": "/sys/fs/cgroup/systemd/x/c1",
        "": "/sys/fs/cgroup/unified/x/c1"}


def test_relative_path_is_under_the_callers_own_cgroup():
    mounts = paths.parse_mountinfo(HYBRID_MOUNTINFO)
    own = paths.parse_proc_cgroup(HYBRID_PROC_CGROUP)
    dirs = paths.v1_dirs(mounts, own, "/x/c1", False)
    assert dirs["memory"] == "/sys/fs/cgroup/memory/process_api/1b47/x/c1"
    assert dirs["cpu"] == "/sys/fs/cgroup/cpu,cpuacct/user.slice/x/c1"
    assert dirs["freezer"] == "/sys/fs/cgroup/freezer/x/c1"
    assert dirs[""] == "/sys/fs/cgroup/unified/user.slice/session-1.scope/x/c1"


def test_nested_mounts_strip_the_mount_root_from_the_callers_cgroup():
    mounts = paths.parse_mountinfo(NESTED_MOUNTINFO)
    own = {"memory": "/docker/abc/sub", "": "/docker/abc"}
    assert paths.v1_dirs(mounts, own, "/c1", False) == {
        "memory": "/sys/fs/cgroup/memory/sub/c1"}
    assert paths.v2_dir("/sys/fs/cgroup", "/docker/abc", own, "/c1", False) == "/sys/fs/cgroup/c1"


def test_manager_for_resolves_with_the_given_proc_files():
    if cgroups.layout() != "v1":
        pytest.skip("the v1 resolution is used on v1 and hybrid hosts")
    manager = cgroups.manager_for("rel/c1", "c1", proc_cgroup=HYBRID_PROC_CGROUP,
                                  mountinfo=HYBRID_MOUNTINFO)
    assert manager.version == "v1"
    assert manager.dirs["memory"] == "/sys/fs/cgroup/memory/process_api/1b47/rel/c1"
    assert manager.created == []  # nothing is made before create


def test_systemd_driver_needs_systemd():
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here")
    with pytest.raises(OcipyError) as err:
        cgroups.manager_for("system.slice:ocipy:c1", "c1", systemd=True)
    assert str(err.value) == "systemd cgroup driver: systemd is not running on this host"


@pytest.mark.parametrize("given_path, want", [
    ("system.slice:docker:abc", "/system.slice/docker-abc.scope"),
    ("a-b-c.slice:p:n", "/a.slice/a-b.slice/a-b-c.slice/p-n.scope"),
    ("-.slice:p:n", "/p-n.scope"),
    (":p:n", "/system.slice/p-n.scope"),
    # a slice unit's place comes from its name, whatever the slice part says
    # (systemd's rule; runc 1.1 computes machine.slice/sub.slice but systemd
    # puts it at /sub.slice and runc passes the slice only as Wants=)
    ("machine.slice::sub.slice", "/sub.slice"),
    ("machine.slice::machine-sub.slice", "/machine.slice/machine-sub.slice"),
])
def test_systemd_paths_expand_like_systemd(given_path, want):
    assert paths.systemd_unit_path(given_path, "id") == want


@pytest.mark.parametrize("bad", ["a:b", "nodot:p:n", "a--b.slice:p:n", "-a.slice:p:n"])
def test_bad_systemd_paths_are_config_errors(bad):
    with pytest.raises(ConfigError):
        paths.systemd_unit_path(bad, "id")


# ---- v1 <-> v2 values -----------------------------------------------------

def test_cpu_shares_to_weight_keeps_runcs_anchor_points():
    assert convert.cpu_shares_to_weight(0) == 0
    assert convert.cpu_shares_to_weight(1) == 1
    assert convert.cpu_shares_to_weight(2) == 1
    assert convert.cpu_shares_to_weight(1024) == 100  # the defaults match
    assert convert.cpu_shares_to_weight(262144) == 10000
    assert convert.cpu_shares_to_weight(1 << 30) == 10000


@given(st.integers(2, 262144), st.integers(2, 262144))
def test_cpu_shares_to_weight_is_monotonic_and_in_range(a, b):
    low, high = sorted((a, b))
    assert 1 <= convert.cpu_shares_to_weight(low) <= convert.cpu_shares_to_weight(high) <= 10000


def test_every_cpu_weight_round_trips_through_shares():
    for weight in range(1, 10001):
        shares = convert.cpu_weight_to_shares(weight)
        assert convert.cpu_shares_to_weight(shares) == weight
        # and it is the smallest such shares value
        assert shares == 2 or convert.cpu_shares_to_weight(shares - 1) < weight


@given(st.integers(2, 262144))
def test_shares_round_trip_lands_on_the_same_weight(shares):
    weight = convert.cpu_shares_to_weight(shares)
    back = convert.cpu_weight_to_shares(weight)
    assert back <= shares and convert.cpu_shares_to_weight(back) == weight


@given(st.integers(10, 1000))
def test_blkio_weight_maps_onto_io_weight_and_back(weight):
    io_weight = convert.blkio_weight_to_io_weight(weight)
    assert 1 <= io_weight <= 10000
    back = convert.io_weight_to_blkio_weight(io_weight)
    assert back <= weight and convert.blkio_weight_to_io_weight(back) == io_weight


def test_blkio_weight_endpoints():
    assert convert.blkio_weight_to_io_weight(10) == 1
    assert convert.blkio_weight_to_io_weight(1000) == 10000
    assert convert.blkio_weight_to_io_weight(0) == 0


@pytest.mark.parametrize("swap, memory, want", [
    (0, -1, -1), (-1, 100, -1), (0, 100, 0), (300, -1, 300), (300, 100, 200), (100, 100, 0)])
def test_memory_swap_becomes_swap_only_on_v2(swap, memory, want):
    assert convert.memory_swap_to_v2(swap, memory) == want


@pytest.mark.parametrize("swap, memory", [(300, 0), (50, 100)])
def test_impossible_swap_is_refused(swap, memory):
    with pytest.raises(ValueError):
        convert.memory_swap_to_v2(swap, memory)


# ---- runc update flags ---------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("100", 100), ("512m", 512 << 20), ("1g", 1 << 30), ("1G", 1 << 30), ("1gb", 1 << 30),
    ("1GiB", 1 << 30), ("1.5k", 1536), ("10 m", 10 << 20), ("7b", 7), ("2t", 2 << 40)])
def test_ram_in_bytes_reads_runcs_sizes(text, want):
    assert ram_in_bytes(text) == want


@pytest.mark.parametrize("bad", ["", "m", "1x", "1mm", "1mib2", "1kbb", "-5m", "abc"])
def test_ram_in_bytes_refuses_garbage(bad):
    with pytest.raises(ValueError):
        ram_in_bytes(bad)


def test_update_flags_build_linux_resources():
    got = resources_from_update_flags(memory="512m", memory_swap="1g", memory_reservation="256m",
                                      cpu_shares="512", cpu_quota="50000", cpu_period="100000",
                                      cpu_rt_runtime="950", cpu_rt_period="1000",
                                      cpuset_cpus="0-1", cpuset_mems="0", pids_limit="100",
                                      blkio_weight="500", kernel_memory="64m")
    assert got == {
        "memory": {"limit": 512 << 20, "swap": 1 << 30, "reservation": 256 << 20,
                   "kernel": 64 << 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "realtimeRuntime": 950,
                "realtimePeriod": 1000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 100},
        "blockIO": {"weight": 500},
    }


def test_update_flags_apply_runcs_fixups():
    assert resources_from_update_flags(memory="-1") == {"memory": {"limit": -1, "swap": 0}}
    assert resources_from_update_flags(cpu_idle="1") == {"cpu": {"idle": 1, "shares": 0}}
    assert resources_from_update_flags(cpu_quota="-1") == {"cpu": {"quota": -1}}
    assert resources_from_update_flags(pids_limit=-1) == {"pids": {"limit": -1}}
    assert resources_from_update_flags() == {}


@pytest.mark.parametrize("flags", [{"memory": "lots"}, {"cpu_shares": "-1"},
                                   {"cpu_quota": "1.5"}, {"pids_limit": "x"},
                                   {"l3_cache_schema": "L3:0=f"}, {"mem_bw_schema": "MB:0=70"}])
def test_bad_update_flags_are_errors(flags):
    with pytest.raises(OcipyError):
        resources_from_update_flags(**flags)


# ---- planned writes -------------------------------------------------------

def files_of(writes):
    return [(w.controller, w.file, w.value) for w in writes]


def test_v1_plan_writes_runcs_files():
    writes = res.plan({
        "memory": {"limit": 100, "swap": 200, "reservation": 50, "kernelTCP": 10,
                   "swappiness": 0, "disableOOMKiller": True},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "idle": 0},
        "pids": {"limit": 0},
        "blockIO": {"weight": 300, "throttleReadBpsDevice": [{"major": 8, "minor": 0,
                                                              "rate": 1000}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "network": {"classID": 7, "priorities": [{"name": "eth0", "priority": 3}]},
        "rdma": {"mlx": {"hcaHandles": 2}},
    }, "v1")
    assert files_of(writes) == [
        ("cpuset", "cpuset.cpus", "0"),
        ("memory", "memory.limit_in_bytes", "100"),
        ("memory", "memory.memsw.limit_in_bytes", "200"),
        ("memory", "memory.soft_limit_in_bytes", "50"),
        ("memory", "memory.kmem.tcp.limit_in_bytes", "10"),
        ("memory", "memory.swappiness", "0"),
        ("memory", "memory.oom_control", "1"),
        ("cpu", "cpu.shares", "512"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("cpu", "cpu.idle", "0"),
        ("pids", "pids.max", "1"),
        ("blkio", "blkio.bfq.weight", "300"),
        ("blkio", "blkio.throttle.read_bps_device", "8:0 1000"),
        ("hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304"),
        ("hugetlb", "hugetlb.2MB.rsvd.limit_in_bytes", "4194304"),
        ("net_cls", "net_cls.classid", "7"),
        ("net_prio", "net_prio.ifpriomap", "eth0 3"),
        ("rdma", "rdma.max", "mlx hca_handle=2"),
    ]
    by_file = {w.file: w for w in writes}
    assert by_file["memory.memsw.limit_in_bytes"].group == by_file["memory.limit_in_bytes"].group
    assert by_file["blkio.bfq.weight"].fallback == ("blkio.weight", "300")
    assert by_file["cpu.shares"].verify
    assert by_file["hugetlb.2MB.rsvd.limit_in_bytes"].optional
    assert by_file["cpu.cfs_quota_us"].path == "linux.resources.cpu.quota"


def test_v2_plan_converts_the_v1_values():
    writes = res.plan({
        "memory": {"limit": 100, "swap": 300, "reservation": 50},
        "cpu": {"shares": 1024, "quota": 50000, "cpus": "0-1"},
        "pids": {"limit": -1},
        "blockIO": {"weight": 1000, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 9}]},
        "hugepageLimits": [{"pageSize": "1GB", "limit": 0}],
        "unified": {"memory.high": "90", "cgroup.max.depth": "3"},
    }, "v2")
    assert files_of(writes) == [
        ("cpuset", "cpuset.cpus", "0-1"),
        ("memory", "memory.swap.max", "200"),
        ("memory", "memory.max", "100"),
        ("memory", "memory.low", "50"),
        ("cpu", "cpu.weight", "100"),
        ("cpu", "cpu.max", "50000 100000"),
        ("pids", "pids.max", "max"),
        ("io", "io.bfq.weight", "1000"),
        ("io", "io.bfq.weight", "8:0 10"),
        ("io", "io.max", "8:0 wiops=9"),
        ("hugetlb", "hugetlb.1GB.max", "0"),
        ("hugetlb", "hugetlb.1GB.rsvd.max", "0"),
        ("memory", "memory.high", "90"),
        ("", "cgroup.max.depth", "3"),
    ]
    fallbacks = [w.fallback for w in writes if w.file == "io.bfq.weight"]
    assert fallbacks == [("io.weight", "10000"), ("io.weight", "8:0 1")]


def test_v2_unlimited_memory_means_unlimited_swap():
    writes = res.plan({"memory": {"limit": -1}}, "v2")
    assert files_of(writes) == [("memory", "memory.swap.max", "max"),
                                ("memory", "memory.max", "max")]
    assert writes[0].optional  # "max" may be skipped without swap accounting


def test_v2_cpu_max_keeps_the_half_not_given():
    def reader(controller, name):
        return "25000 50000\n" if name == "cpu.max" else None
    assert files_of(res.plan({"cpu": {"period": 200000}}, "v2", reader)) == [
        ("cpu", "cpu.max", "25000 200000")]
    assert files_of(res.plan({"cpu": {"quota": -1}}, "v2", reader)) == [
        ("cpu", "cpu.max", "max 50000")]


@pytest.mark.parametrize("resources, path", [
    ({"memory": {"kernelTCP": 1}}, "linux.resources.memory.kernelTCP"),
    ({"memory": {"kernel": 1}}, "linux.resources.memory.kernel"),
    ({"memory": {"swappiness": 5}}, "linux.resources.memory.swappiness"),
    ({"memory": {"disableOOMKiller": True}}, "linux.resources.memory.disableOOMKiller"),
    ({"memory": {"limit": 100, "swap": 50}}, "linux.resources.memory.swap"),
    ({"cpu": {"realtimeRuntime": 5}}, "linux.resources.cpu.realtimeRuntime"),
    ({"blockIO": {"leafWeight": 5}}, "linux.resources.blockIO.leafWeight"),
    ({"network": {"classID": 5}}, "linux.resources.network.classID"),
    ({"unified": {"../x": "1"}}, 'linux.resources.unified["../x"]'),
])
def test_fields_v2_cannot_express_name_their_json_path(resources, path):
    with pytest.raises(ConfigError) as err:
        res.plan(resources, "v2")
    assert err.value.path == path


def test_unified_is_refused_on_v1():
    with pytest.raises(ConfigError) as err:
        res.plan({"unified": {"memory.high": "1"}}, "v1")
    assert err.value.path == "linux.resources.unified"


def test_zero_values_leave_limits_alone_as_in_runc():
    assert res.plan({"memory": {"limit": 0, "swap": 0}, "cpu": {"shares": 0, "quota": 0},
                     "blockIO": {"weight": 0}}, "v1") == []


# ---- stats helpers ----------------------------------------------------------

def test_stats_helpers_parse_kernel_formats(tmp_path):
    assert stats.parse_list("0-2,5,7-8\n") == [0, 1, 2, 5, 7, 8]
    for bad in ("5-3", "x", "-1", "1-"):
        with pytest.raises(ValueError):
            stats.parse_list(bad)
    assert stats.blkio_entries("8:0 Read 10\n8:0 Write 0\n8:16 4\nTotal 10\n") == [
        {"major": 8, "op": "Read", "value": 10}, {"major": 8, "op": "Write"},
        {"major": 8, "minor": 16, "value": 4}]
    assert stats.memory_entry() == {}
    assert stats.memory_entry(usage=5, limit=9) == {"limit": 9, "usage": 5, "failcnt": 0}
    for name in ("hugepages-2048kB", "hugepages-1048576kB", "hugepages-64kB", "other"):
        (tmp_path / name).mkdir()
    assert stats.hugepage_sizes(str(tmp_path)) == ["1GB", "2MB", "64KB"]
    (tmp_path / "p").write_text("some avg10=1.50 avg60=0.00 avg300=0.00 total=7\n"
                                "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert stats.psi(str(tmp_path / "p")) == {
        "some": {"avg10": 1.5, "avg60": 0.0, "avg300": 0.0, "total": 7}}


# ---- the real kernel ---------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
V1 = pytest.mark.skipif(cgroups.layout() != "v1" or not os.path.isdir("/sys/fs/cgroup/memory"),
                        reason="needs cgroup v1 hierarchies")
UNIFIED = "/sys/fs/cgroup/unified"
HYBRID = pytest.mark.skipif(not os.path.exists(f"{UNIFIED}/cgroup.procs"),
                            reason="needs a hybrid host's cgroup2 mount")


def _cgroup_mounts() -> list[str]:
    return [m.mountpoint for m in paths.parse_mountinfo(paths.read_proc("mountinfo"))]


@pytest.fixture
def parent():
    """A unique top-level cgroup name; afterwards nothing under it may remain."""
    name = f"ocipy-test-{uuid.uuid4().hex[:12]}"
    yield f"/{name}"
    leftovers = []
    for mountpoint in _cgroup_mounts():
        top = os.path.join(mountpoint, name)
        if os.path.isdir(top):
            leftovers.append(top)
            # clean up only what this test made, deepest first
            for below in sorted((os.path.join(d, s) for d, subs, _f in os.walk(top)
                                 for s in subs), key=len, reverse=True):
                os.rmdir(below)
            os.rmdir(top)
    assert leftovers == [], "cgroup directories were left behind"


class Spawner:
    """Starts processes and ends exactly those, by their own pids."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def __call__(self, *argv, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(list(argv), **kwargs)
        self.started.append(proc)
        return proc

    def end(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def spawn():
    spawner = Spawner()
    yield spawner
    spawner.end()


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def proc_state(pid: int) -> str:
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return "?"


# a process that keeps counting into a file
COUNTER = """\
import sys, time
n = 0
while True:
    n += 1
    open(sys.argv[1], "w").write(str(n))
    time.sleep(0.005)
"""

LIMITS = {
    "memory": {"limit": 64 << 20, "swap": 64 << 20, "reservation": 32 << 20},
    "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"},
    "pids": {"limit": 30},
}


@needs_root
@V1
def test_v1_create_applies_the_limits(parent):
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    manager.create(LIMITS)
    try:
        d = manager.dirs
        assert read(f"{d['memory']}/memory.limit_in_bytes") == str(64 << 20)
        assert read(f"{d['memory']}/memory.memsw.limit_in_bytes") == str(64 << 20)
        assert read(f"{d['memory']}/memory.soft_limit_in_bytes") == str(32 << 20)
        assert read(f"{d['cpu']}/cpu.cfs_quota_us") == "20000"
        assert read(f"{d['cpu']}/cpu.cfs_period_us") == "100000"
        assert read(f"{d['cpu']}/cpu.shares") == "512"
        assert read(f"{d['cpuset']}/cpuset.cpus") == "0"
        assert read(f"{d['pids']}/pids.max") == "30"
        assert read(f"{d['devices']}/devices.list").splitlines()[0] == "c *:* m"
    finally:
        manager.destroy()


@needs_root
@V1
def test_v1_add_places_the_process_in_every_hierarchy(parent, spawn):
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    manager.create(None)
    try:
        sleeper = spawn("sleep", "60")
        manager.add(sleeper.pid)
        for directory in set(manager.dirs.values()):
            assert str(sleeper.pid) in read(f"{directory}/cgroup.procs").split()
        assert f"memory:{parent}/c1" in read(f"/proc/{sleeper.pid}/cgroup")
        assert manager.pids() == [sleeper.pid]
    finally:
        spawn.end()
        manager.destroy()


@needs_root
@V1
def test_v1_freeze_stops_the_process_and_thaw_resumes_it(parent, spawn):
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    manager.create(None)
    try:
        sleeper = spawn("sleep", "60")
        manager.add(sleeper.pid)
        assert not manager.frozen()
        manager.freeze()
        assert manager.frozen()
        assert read(manager.freezer_file()) == "FROZEN"
        assert proc_state(sleeper.pid) == "D"  # the v1 freezer's frozen state
        manager.thaw()
        assert not manager.frozen()
        assert read(manager.freezer_file()) == "THAWED"
        deadline = time.monotonic() + 5
        while proc_state(sleeper.pid) == "D" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc_state(sleeper.pid) in ("S", "R")
    finally:
        spawn.end()
        manager.destroy()


@needs_root
@V1
def test_v1_freeze_stops_a_counting_process(parent, spawn, tmp_path):
    counter = tmp_path / "count"
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    manager.create(None)
    try:
        proc = spawn(sys.executable, "-c", COUNTER, str(counter))
        manager.add(proc.pid)
        while not counter.exists() or not counter.read_text():
            time.sleep(0.01)
        manager.freeze()
        frozen_at = counter.read_text()
        time.sleep(0.2)
        assert counter.read_text() == frozen_at
        manager.thaw()
        time.sleep(0.2)
        assert counter.read_text() != frozen_at
    finally:
        spawn.end()
        manager.destroy()


@needs_root
@V1
def test_v1_update_changes_limits_live(parent, spawn):
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    manager.create(LIMITS)
    try:
        sleeper = spawn("sleep", "60")
        manager.add(sleeper.pid)
        # memory+swap above the current memory limit: the write order matters
        manager.update({"memory": {"limit": 128 << 20, "swap": 256 << 20},
                        "cpu": {"quota": 50000}, "pids": {"limit": 5}})
        d = manager.dirs
        assert read(f"{d['memory']}/memory.limit_in_bytes") == str(128 << 20)
        assert read(f"{d['memory']}/memory.memsw.limit_in_bytes") == str(256 << 20)
        assert read(f"{d['cpu']}/cpu.cfs_quota_us") == "50000"
        assert read(f"{d['pids']}/pids.max") == "5"
        manager.update({"memory": {"limit": 16 << 20, "swap": 16 << 20}})  # and back down
        assert read(f"{d['memory']}/memory.memsw.limit_in_bytes") == str(16 << 20)
        update = resources_from_update_flags(memory="-1", pids_limit="-1")
        manager.update(update)
        assert int(read(f"{d['memory']}/memory.limit_in_bytes")) > 1 << 60
        assert read(f"{d['pids']}/pids.max") == "max"
    finally:
        spawn.end()
        manager.destroy()


@needs_root
@V1
def test_v1_pids_lists_processes_of_nested_cgroups(parent, spawn):
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    manager.create(None)
    try:
        first = spawn("sleep", "60")
        manager.add(first.pid)
        # the container makes a cgroup of its own below its cgroup
        nested = os.path.join(manager.dirs["freezer"], "inner")
        os.mkdir(nested)
        second = spawn("sleep", "60")
        with open(os.path.join(nested, "cgroup.procs"), "w") as f:
            f.write(str(second.pid))
        assert manager.pids() == sorted([first.pid, second.pid])
    finally:
        spawn.end()
        manager.destroy()  # the nested cgroup goes with the container's


@needs_root
@V1
def test_v1_stats_are_runcs_events_data(parent, spawn):
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    manager.create(LIMITS)
    try:
        sleeper = spawn("sleep", "60")
        manager.add(sleeper.pid)
        data = json.loads(json.dumps(manager.stats()))
        assert set(data) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb",
                             "intel_rdt", "network_interfaces"}
        assert data["pids"] == {"current": 1, "limit": 30}
        assert data["memory"]["usage"]["limit"] == 64 << 20
        assert data["memory"]["swap"]["limit"] == 64 << 20
        assert "raw" in data["memory"]
        assert data["cpuset"]["cpus"] == [0]
        assert "percpu" in data["cpu"]["usage"]
    finally:
        spawn.end()
        manager.destroy()


@needs_root
@V1
def test_v1_oom_kills_are_counted(parent, spawn):
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    manager.create({"memory": {"limit": 16 << 20, "swap": 16 << 20}})
    try:
        hog = spawn(sys.executable, "-c",
                    "import sys\nsys.stdin.read(1)\nx = bytearray(256 << 20)\nprint('survived')",
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        manager.add(hog.pid)
        hog.stdin.write(b"x")
        hog.stdin.close()
        assert hog.wait(timeout=60) == -signal.SIGKILL
        assert manager.oom_count() == 1
    finally:
        manager.destroy()


@needs_root
@V1
def test_v1_destroy_removes_only_what_it_created(parent):
    existing = os.path.join("/sys/fs/cgroup/memory", parent.lstrip("/"))
    os.mkdir(existing)  # made by "someone else" before the container
    try:
        manager = cgroups.manager_for(f"{parent}/c1", "c1")
        manager.create(None)
        assert existing not in manager.created
        assert os.path.join(existing, "c1") in manager.created
        manager.destroy()
        assert os.path.isdir(existing)
        assert not os.path.exists(os.path.join(existing, "c1"))
        assert not os.path.exists(os.path.join("/sys/fs/cgroup/pids", parent.lstrip("/")))
        assert manager.created == []
        manager.destroy()  # again: nothing to do
    finally:
        os.rmdir(existing)


@needs_root
@V1
def test_v1_a_failed_create_leaves_nothing(parent):
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    with pytest.raises(OcipyError) as err:
        manager.create({"memory": {"limit": 64 << 20}, "cpu": {"cpus": "4095"}})
    assert err.value.errno in (errno.EINVAL, errno.ERANGE)  # the kernel's refusal
    assert "cpuset.cpus" in str(err.value) and "linux.resources.cpu.cpus" in str(err.value)
    assert manager.created == []


@needs_root
@V1
@pytest.mark.parametrize("resources, path, words", [
    ({"network": {"classID": 1}}, "linux.resources.network.classID", "net_cls"),
    ({"unified": {"memory.high": "1"}}, "linux.resources.unified", "cgroup v1"),
    ({"rdma": {"mlx": {"hcaHandles": 1}}}, 'linux.resources.rdma["mlx"]', "rdma"),
    ({"hugepageLimits": [{"pageSize": "64KB", "limit": 1}]},
     "linux.resources.hugepageLimits[0].pageSize", "hugetlb"),
])
def test_v1_fields_the_host_lacks_name_their_json_path(parent, resources, path, words):
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    try:
        manager.create(resources)
    except ConfigError as exc:
        assert exc.path == path
        assert words in exc.reason
    else:
        manager.destroy()
        pytest.skip("this host offers that field")
    assert manager.created == []


@needs_root
@V1
def test_v1_relative_path_is_created_under_the_callers_cgroup(parent):
    fake_own = "".join(f"{i}:{c}:{parent}\n" for i, c in enumerate(
        ("memory", "pids", "freezer", "devices", "cpu,cpuacct", "cpuset", "blkio", "hugetlb",
         "name=systemd"), start=1)) + f"0::{parent}\n"
    above = cgroups.manager_for(parent, "above")
    above.create(None)  # the "caller's" cgroup, made by this test
    try:
        manager = cgroups.manager_for("sub/c1", "c1", proc_cgroup=fake_own)
        assert manager.dirs["pids"] == f"/sys/fs/cgroup/pids{parent}/sub/c1"
        manager.create({"pids": {"limit": 3}})
        assert read(f"/sys/fs/cgroup/pids{parent}/sub/c1/pids.max") == "3"
        assert f"/sys/fs/cgroup/pids{parent}" not in manager.created
        manager.destroy()
        assert os.path.isdir(f"/sys/fs/cgroup/pids{parent}")
    finally:
        above.destroy()


@needs_root
@V1
def test_v1_state_round_trip_keeps_the_manager(parent, spawn):
    manager = cgroups.manager_for(f"{parent}/c1", "c1")
    manager.create(None)
    doc = json.loads(json.dumps(manager.to_state()))
    again = cgroups.Manager.from_state(doc)
    try:
        sleeper = spawn("sleep", "60")
        again.add(sleeper.pid)
        again.freeze()
        assert manager.frozen()
        again.thaw()
        assert again.removable_dirs()[0].endswith("/c1")
    finally:
        spawn.end()
        again.destroy()


# ---- cgroup v2, on the hybrid host's unified mount -----------------------------

@needs_root
@HYBRID
def test_v2_create_add_freeze_thaw_destroy(parent, spawn):
    manager = cgroups.manager_for(f"{parent}/c1", "c1", cgroup_root=UNIFIED)
    assert manager.version == "v2"
    manager.create({"unified": {"cgroup.max.descendants": "2"}})
    try:
        assert manager.dir == f"{UNIFIED}{parent}/c1"
        assert read(f"{manager.dir}/cgroup.max.descendants") == "2"
        sleeper = spawn("sleep", "60")
        manager.add(sleeper.pid)
        assert manager.pids() == [sleeper.pid]
        assert f"0::{parent}/c1" in read(f"/proc/{sleeper.pid}/cgroup").splitlines()
        manager.freeze()
        assert manager.frozen()
        assert read(manager.freezer_file()) == "1"
        assert "frozen 1" in read(f"{manager.dir}/cgroup.events")
        manager.thaw()
        assert not manager.frozen()
        assert read(manager.freezer_file()) == "0"
        assert manager.stats()["pids"] == {"current": 1}
        assert manager.oom_count() == 0
    finally:
        spawn.end()
        manager.destroy()
    assert not os.path.exists(f"{UNIFIED}{parent}")


@needs_root
@HYBRID
def test_v2_counting_process_stops_while_frozen(parent, spawn, tmp_path):
    counter = tmp_path / "count"
    manager = cgroups.manager_for(f"{parent}/c1", "c1", cgroup_root=UNIFIED)
    manager.create(None)
    try:
        proc = spawn(sys.executable, "-c", COUNTER, str(counter))
        manager.add(proc.pid)
        while not counter.exists() or not counter.read_text():
            time.sleep(0.01)
        manager.freeze()
        frozen_at = counter.read_text()
        time.sleep(0.2)
        assert counter.read_text() == frozen_at
        manager.thaw()
        time.sleep(0.2)
        assert counter.read_text() != frozen_at
    finally:
        spawn.end()
        manager.destroy()


@needs_root
@HYBRID
def test_v2_device_program_is_attached_and_updated(parent):
    from ocipy._native import bpf

    manager = cgroups.manager_for(f"{parent}/c1", "c1", cgroup_root=UNIFIED)
    manager.create({"devices": [{"allow": False, "access": "rwm"}]})
    try:
        fd = os.open(manager.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            first, _flags = bpf.prog_query(fd)
            assert len(first) == 1
            manager.update({"devices": [{"allow": True, "access": "rwm"}]}, devices=True)
            second, _flags = bpf.prog_query(fd)
            assert len(second) == 1 and second != first
            manager.update({})  # without devices=True the program stays
            assert bpf.prog_query(fd)[0] == second
        finally:
            os.close(fd)
    finally:
        manager.destroy()


@needs_root
@HYBRID
def test_v2_missing_controller_names_the_json_path(parent):
    available = read(f"{UNIFIED}/cgroup.controllers").split()
    if "memory" in available:
        pytest.skip("the memory controller is available here")
    manager = cgroups.manager_for(f"{parent}/c1", "c1", cgroup_root=UNIFIED)
    with pytest.raises(ConfigError) as err:
        manager.create({"memory": {"limit": 1 << 20}})
    assert err.value.path == "linux.resources.memory.limit"
    assert "memory controller is not enabled" in err.value.reason
    assert manager.created == []


@needs_root
@HYBRID
def test_v2_relative_path_and_state_round_trip(parent, spawn):
    above = cgroups.manager_for(parent, "above", cgroup_root=UNIFIED)
    above.create(None)
    try:
        manager = cgroups.manager_for("c1", "c1", cgroup_root=UNIFIED,
                                      proc_cgroup=f"0::{parent}\n")
        assert manager.dir == f"{UNIFIED}{parent}/c1"
        manager.create(None)
        again = cgroups.Manager.from_state(json.loads(json.dumps(manager.to_state())))
        sleeper = spawn("sleep", "60")
        again.add(sleeper.pid)
        assert manager.pids() == [sleeper.pid]
        spawn.end()
        again.destroy()
        assert not os.path.exists(manager.dir)
        assert os.path.isdir(f"{UNIFIED}{parent}")
    finally:
        above.destroy()


# ---- v2 on a fake cgroupfs tree (the controllers this host's cgroup2 lacks) -------

def fake_v2(tmp_path, controllers="cpu io memory pids", **contents):
    """A V2Manager on plain files: writes land in them, reads come from them."""
    from ocipy.cgroups.v2 import V2Manager

    leaf = tmp_path / "ocipy" / "c1"
    leaf.mkdir(parents=True)
    (leaf / "cgroup.controllers").write_text(controllers + "\n")
    for name, text in contents.items():
        (leaf / name.replace("__", ".")).write_text(text)
    return V2Manager("/ocipy/c1", str(tmp_path), str(leaf)), leaf


def test_v2_limits_land_in_the_v2_files(tmp_path):
    manager, leaf = fake_v2(tmp_path, memory__max="max\n", memory__swap__max="max\n",
                            memory__low="0\n", cpu__weight="100\n", cpu__max="max 100000\n",
                            pids__max="max\n", io__weight="default 100\n", io__max="")
    manager.update({"memory": {"limit": 1 << 30, "swap": 3 << 30, "reservation": 1 << 20},
                    "cpu": {"shares": 2048, "quota": 30000},
                    "pids": {"limit": 64},
                    "blockIO": {"weight": 1000,
                                "throttleReadBpsDevice": [{"major": 8, "minor": 0,
                                                           "rate": 1048576}]}})
    assert (leaf / "memory.max").read_text() == str(1 << 30)
    assert (leaf / "memory.swap.max").read_text() == str(2 << 30)
    assert (leaf / "memory.low").read_text() == str(1 << 20)
    assert (leaf / "cpu.weight").read_text() == str(convert.cpu_shares_to_weight(2048))
    assert (leaf / "cpu.max").read_text() == "30000 100000"
    assert (leaf / "pids.max").read_text() == "64"
    assert (leaf / "io.weight").read_text() == "10000"  # no BFQ: the converted io.weight
    assert (leaf / "io.max").read_text() == "8:0 rbps=1048576"
    manager.update({"cpu": {"period": 50000}})  # the quota set before is kept
    assert (leaf / "cpu.max").read_text() == "30000 50000"


def test_v2_a_controller_not_enabled_names_the_json_path(tmp_path):
    manager, _leaf = fake_v2(tmp_path, controllers="cpu")
    with pytest.raises(ConfigError) as err:
        manager.update({"pids": {"limit": 5}})
    assert err.value.path == "linux.resources.pids.limit"
    assert "pids controller is not enabled" in err.value.reason


def test_v2_check_before_update_refuses_a_limit_below_usage(tmp_path):
    manager, leaf = fake_v2(tmp_path, memory__current="5000\n", memory__max="max\n")
    with pytest.raises(ConfigError) as err:
        manager.update({"memory": {"limit": 4096, "checkBeforeUpdate": True}})
    assert err.value.path == "linux.resources.memory.limit"
    assert (leaf / "memory.max").read_text() == "max\n"  # nothing was written
    manager.update({"memory": {"limit": 8192, "checkBeforeUpdate": True}})
    assert (leaf / "memory.max").read_text() == "8192"


def test_v2_freeze_waits_for_the_kernel_to_report_frozen(tmp_path):
    manager, leaf = fake_v2(tmp_path, cgroup__freeze="0\n", cgroup__events="populated 1\nfrozen 1\n")
    manager.freeze()
    assert (leaf / "cgroup.freeze").read_text() == "1"
    assert manager.frozen()
    manager.thaw()
    assert (leaf / "cgroup.freeze").read_text() == "0"
    assert not manager.frozen()


def test_v2_stats_read_like_runcs_fs2(tmp_path, monkeypatch):
    manager, _leaf = fake_v2(
        tmp_path,
        cpu__stat="usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\n"
                  "nr_throttled 2\nthrottled_usec 30\n",
        cpu__pressure="some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        memory__stat="anon 4096\nfile 8192\n",
        memory__current="12288\n", memory__max="1048576\n", memory__peak="20000\n",
        memory__swap__current="100\n", memory__swap__max="max\n",
        memory__events="low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n",
        pids__current="3\n", pids__max="max\n",
        io__stat="8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
        cgroup__procs="1\n2\n3\n")
    monkeypatch.setattr(stats, "hugepage_sizes", list)
    data = manager.stats()
    assert data["cpu"] == {"usage": {"total": 1500000, "kernel": 500000, "user": 1000000},
                           "throttling": {"periods": 7, "throttledPeriods": 2,
                                          "throttledTime": 30000},
                           "psi": {}}
    assert data["memory"] == {
        "cache": 8192,
        "usage": {"limit": 1048576, "usage": 12288, "max": 20000, "failcnt": 0},
        "swap": {"limit": files.MAX_U64, "usage": 12388, "failcnt": 0},
        "raw": {"anon": 4096, "file": 8192}}
    assert data["pids"] == {"current": 3}
    assert data["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 10},
                                    {"major": 8, "op": "Write", "value": 20}],
        "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 1},
                                {"major": 8, "op": "Write", "value": 2}]}
    assert data["intel_rdt"] == {} and data["network_interfaces"] is None
    assert manager.oom_count() == 1


def test_v1_weight_falls_back_to_the_cfq_file(tmp_path):
    from ocipy.cgroups.v1 import V1Manager

    (tmp_path / "blkio.weight").write_text("500\n")
    manager = V1Manager("/c1", {"blkio": str(tmp_path)})
    manager.update({"blockIO": {"weight": 300}})
    assert (tmp_path / "blkio.weight").read_text() == "300"
    with pytest.raises(ConfigError) as err:
        manager.update({"blockIO": {"leafWeight": 300}})
    assert err.value.path == "linux.resources.blockIO.leafWeight"
    assert err.value.reason == "blkio.leaf_weight is not available on this kernel"
    with pytest.raises(ConfigError) as err:
        manager.update({"pids": {"limit": 1}})
    assert "pids cgroup controller is not mounted" in err.value.reason


# ---- v1 cpuset: a parent half filled by another create -----------------------------

CPUSET = "/sys/fs/cgroup/cpuset"


@pytest.mark.skipif(not os.path.isfile(f"{CPUSET}/cpuset.cpus"),
                    reason="no v1 cpuset hierarchy on this host (pure cgroup v2)")
def test_cpuset_init_fills_a_parent_that_has_cpus_but_no_mems_yet():
    # what a concurrent create leaves for a moment: cpus written, mems not
    # yet; a leaf made under it must still get both, or joining it fails
    # with ENOSPC (found by the 50-parallel benchmark)
    from ocipy.cgroups import v1

    parent = f"{CPUSET}/ocipy-test-{uuid.uuid4().hex[:8]}"
    leaf = f"{parent}/leaf"
    os.mkdir(parent)
    try:
        with open(f"{CPUSET}/cpuset.cpus") as f:
            cpus = f.read().strip()
        with open(f"{parent}/cpuset.cpus", "w") as f:
            f.write(cpus)
        os.mkdir(leaf)
        v1._init_cpuset_path(leaf)
        for directory in (parent, leaf):
            for name in ("cpuset.cpus", "cpuset.mems"):
                with open(f"{directory}/{name}") as f:
                    assert f.read().strip(), f"{directory}/{name} is empty"
    finally:
        for directory in (leaf, parent):
            if os.path.isdir(directory):
                os.rmdir(directory)


@pytest.mark.skipif(not os.path.isfile(f"{CPUSET}/cpuset.cpus"),
                    reason="no v1 cpuset hierarchy on this host (pure cgroup v2)")
def test_cpuset_init_copies_each_level_from_the_nearest_filled_one():
    # two empty levels under the root, the upper one then given cpus "0"
    # only: each file of each level comes from its nearest filled ancestor
    from ocipy.cgroups import v1

    top = f"{CPUSET}/ocipy-test-{uuid.uuid4().hex[:8]}"
    mid, leaf = f"{top}/mid", f"{top}/mid/leaf"
    os.mkdir(top)
    try:
        with open(f"{CPUSET}/cpuset.mems") as f:
            mems = f.read().strip()
        os.mkdir(mid)
        os.mkdir(leaf)
        v1._init_cpuset_path(leaf)
        with open(f"{CPUSET}/cpuset.cpus") as f:
            cpus = f.read().strip()
        for directory in (top, mid, leaf):
            with open(f"{directory}/cpuset.cpus") as f:
                assert f.read().strip() == cpus
            with open(f"{directory}/cpuset.mems") as f:
                assert f.read().strip() == mems
        os.rmdir(leaf)
        os.rmdir(mid)
        os.mkdir(mid)
        with open(f"{mid}/cpuset.cpus", "w") as f:
            f.write("0")
        os.mkdir(leaf)
        v1._init_cpuset_path(leaf)
        with open(f"{leaf}/cpuset.cpus") as f:
            assert f.read().strip() == "0"
        with open(f"{leaf}/cpuset.mems") as f:
            assert f.read().strip() == mems
    finally:
        for directory in (leaf, mid, top):
            if os.path.isdir(directory):
                os.rmdir(directory)


# ---- how a new process enters its cgroups itself (Manager.self_placement) --------

def test_v1_self_placement_names_each_hierarchys_tasks_once_and_the_cgroup2_dir():
    # cpu and cpuacct mounted together share one directory (one write); the
    # named systemd hierarchy and a hybrid host's cgroup2 are best effort,
    # as in add(); cgroup2 is entered by clone3 into its directory
    from ocipy.cgroups.v1 import V1Manager

    manager = V1Manager("/ocipy/c1", {
        "cpu": "/cg/cpu,cpuacct/ocipy/c1", "cpuacct": "/cg/cpu,cpuacct/ocipy/c1",
        "memory": "/cg/memory/ocipy/c1", "name=systemd": "/cg/systemd/ocipy/c1",
        "": "/cg/unified/ocipy/c1"})
    assert manager.self_placement() == ("/cg/unified/ocipy/c1", False, [
        ("/cg/cpu,cpuacct/ocipy/c1/tasks", True), ("/cg/memory/ocipy/c1/tasks", True),
        ("/cg/systemd/ocipy/c1/tasks", False)])


def test_v2_self_placement_is_a_required_clone_into_the_leaf(tmp_path):
    manager, leaf = fake_v2(tmp_path)
    assert manager.self_placement() == (str(leaf), True, [])


def test_the_systemd_drivers_new_units_are_placed_by_add_not_by_the_process(tmp_path):
    # systemd moves the process into the unit it starts (add)
    from ocipy.cgroups import systemd

    fs = cgroups.manager_for("/ocipy-sdtest-unused/x.scope", "x")
    manager = systemd.SystemdManager("system.slice", "x.scope", "x", fs,
                                     (str(tmp_path / "nobody"), False))
    assert fs.self_placement() is not None
    assert manager.self_placement() is None
    # exec into a unit it started: delegated to us, entered as the fs driver's
    manager.started = True
    assert manager.self_placement() == fs.self_placement()


def test_a_process_refused_by_its_cgroup_names_the_file():
    # the child's report (step "cgroup", the index of the tasks fd, or -1
    # for cgroup2's cgroup.procs) worded by the parent
    from ocipy.launch import STEP_NAMES, child_error

    plan = {"cgroup_task_paths": ["/cg/memory/ocipy/c1/tasks"], "cgroup2_dir": "/cg2/ocipy/c1"}
    step = STEP_NAMES.index("cgroup")
    assert str(child_error(plan, {}, step, errno.EACCES, 0, "tasks")) == \
        "add the container process to /cg/memory/ocipy/c1/tasks: permission denied"
    assert str(child_error(plan, {}, step, errno.EBUSY, -1, "cgroup.procs")) == \
        "add the container process to /cg2/ocipy/c1/cgroup.procs: device or resource busy"


# ---- the default parent /ocipy stays for the next container ------------------------

@pytest.mark.parametrize("inner, kept", [
    ("/ocipy/c1", True),            # no cgroupsPath: the default parent
    ("/ocipy/c1/", True),
    ("/elsewhere/c1", False),       # a cgroupsPath's parents go with the container
    ("/ocipy/a/c1", False),         # /ocipy/a is that path's own
])
def test_a_created_container_keeps_only_the_default_parent(inner, kept):
    from ocipy import container
    from ocipy.cgroups.v1 import V1Manager

    inner = inner.rstrip("/")
    top = inner.rsplit("/", 1)[0]
    parents = [f"/cg/{h}{p}" for h in ("memory", "pids")
               for p in ("/" + top.split("/")[1], top) if p != "/"]
    leaves = [f"/cg/{h}{inner}" for h in ("memory", "pids")]
    manager = V1Manager(inner, {"memory": leaves[0], "pids": leaves[1]},
                        list(dict.fromkeys(parents)) + leaves)
    returned = container._keep_default_parent(manager)
    defaults = {f"/cg/{h}/ocipy" for h in ("memory", "pids")} if kept else set()
    assert set(returned) == defaults  # what a failing create puts back
    assert set(manager.removable_dirs()) == set(parents + leaves) - defaults
    assert set(V1Manager.from_doc(manager.to_state()).created) == set(parents + leaves) - defaults


@pytest.mark.parametrize("made_parent", [True, False])
def test_on_cgroup_v2_the_default_parent_stays_too(made_parent):
    from ocipy import container
    from ocipy.cgroups.v2 import V2Manager

    created = (["/cg/ocipy"] if made_parent else []) + ["/cg/ocipy/c1"]
    manager = V2Manager("/ocipy/c1", "/cg", "/cg/ocipy/c1", created)
    assert container._keep_default_parent(manager) == created[:-1]
    assert manager.removable_dirs() == ["/cg/ocipy/c1"]
    assert V2Manager.from_doc(manager.to_state()).created == ["/cg/ocipy/c1"]


# ---- files.make_dirs: what it made is what delete may remove -----------------------

def test_make_dirs_reports_only_the_directories_it_made(tmp_path):
    mount = str(tmp_path)
    assert files.make_dirs(mount, "/ocipy/c1") == (
        f"{mount}/ocipy/c1", [f"{mount}/ocipy", f"{mount}/ocipy/c1"])
    # the parent there: the leaf alone, in one mkdir
    assert files.make_dirs(mount, "/ocipy/c2") == (f"{mount}/ocipy/c2", [f"{mount}/ocipy/c2"])
    # all there: nothing is ours
    assert files.make_dirs(mount, "/ocipy/c2") == (f"{mount}/ocipy/c2", [])
    assert files.make_dirs(mount, "/a/b/c")[1] == [f"{mount}/a", f"{mount}/a/b", f"{mount}/a/b/c"]
    assert files.make_dirs(mount, "/top") == (f"{mount}/top", [f"{mount}/top"])
    assert files.make_dirs(mount, "top") == (f"{mount}/top", [])
    assert sorted(os.listdir(mount)) == ["a", "ocipy", "top"]


def test_make_dirs_on_a_file_in_the_way_makes_nothing(tmp_path):
    (tmp_path / "ocipy").write_text("")
    with pytest.raises(NotADirectoryError):
        files.make_dirs(str(tmp_path), "/ocipy/c1")
    assert os.listdir(tmp_path) == ["ocipy"]
