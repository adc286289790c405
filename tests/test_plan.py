"""The planner: config.json -> the plan the native child executes.  Pure: no root needed."""
from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from ocipy import mountopts as mo
from ocipy import plan as pl
from ocipy.errors import ConfigError, OcipyError

HOST = pl.Host(last_cap=40, cgroup_layout="v1", apparmor=False, selinux=False,
               cgroup_mounts=[("/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
                              ("/sys/fs/cgroup/cpu", "cgroup", "rw,cpu"),
                              ("/sys/fs/cgroup/unified", "cgroup2", "rw"),
                              ("/elsewhere/cpuset", "cgroup", "rw,cpuset")])
ALL = ("pid", "network", "ipc", "uts", "mount", "user", "cgroup", "time")


def config(**over) -> dict:
    doc = {
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/bin:/usr/bin"],
                    "user": {"uid": 0, "gid": 0}},
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "uts", "ipc")]},
    }
    doc.update(over)
    return doc


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "file").write_text("x")
    return str(tmp_path)


def make(cfg: dict, bundle: str, **kw) -> dict:
    return pl.plan_container(cfg, bundle, container_id="c1", host=HOST, **kw)


def with_namespaces(*kinds, **paths) -> dict:
    entries = [{"type": k} for k in kinds]
    entries += [{"type": k, "path": p} for k, p in paths.items()]
    return config(linux={"namespaces": entries, "uidMappings": [
        {"containerID": 0, "hostID": 1000, "size": 10}], "gidMappings": [
        {"containerID": 0, "hostID": 1000, "size": 10}]} if "user" in kinds else
        {"namespaces": entries})


def test_new_namespaces_are_created_by_clone_itself(bundle):
    plan = make(config(), bundle)
    assert plan["clone_flags"] == pl.CLONE_NEWPID | pl.CLONE_NEWNS | pl.CLONE_NEWUTS \
        | pl.CLONE_NEWIPC
    assert plan["unshare_flags"] == 0
    assert not plan["fork_after_ns"]
    assert plan["joins"] == []


def test_a_cgroup_namespace_is_unshared_after_the_cgroup_placement(bundle):
    plan = make(with_namespaces("pid", "mount", "cgroup"), bundle)
    assert not plan["clone_flags"] & pl.CLONE_NEWCGROUP
    assert plan["new_cgroupns"]


def test_joining_a_namespace_moves_every_creation_after_the_join(bundle):
    plan = make(with_namespaces("mount", "pid", network="/run/netns/x"), bundle)
    assert plan["clone_flags"] == 0
    assert plan["unshare_flags"] == pl.CLONE_NEWNS | pl.CLONE_NEWPID
    assert plan["joins"] == [("/run/netns/x", pl.CLONE_NEWNET, 2)]
    assert plan["fork_after_ns"]  # a pid namespace from unshare applies to children


def test_a_time_namespace_forks_the_init_after_unsharing_it_with_the_pid_namespace(bundle):
    plan = make(with_namespaces("mount", "pid", "time"), bundle)
    assert plan["unshare_flags"] == pl.CLONE_NEWTIME | pl.CLONE_NEWPID
    assert not plan["clone_flags"] & (pl.CLONE_NEWTIME | pl.CLONE_NEWPID)
    assert plan["fork_after_ns"]


def test_a_namespace_listed_twice_is_an_error(bundle):
    with pytest.raises(ConfigError) as e:
        make(with_namespaces("mount", "pid", "pid"), bundle)
    assert e.value.path == "linux.namespaces[2].type"
    assert "twice" in e.value.reason


def test_a_new_user_namespace_needs_mappings(bundle):
    cfg = config(linux={"namespaces": [{"type": "mount"}, {"type": "user"}]})
    with pytest.raises(ConfigError) as e:
        make(cfg, bundle)
    assert e.value.path == "linux.uidMappings"


def test_mappings_without_a_user_namespace_are_an_error(bundle):
    cfg = config()
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1, "size": 1}]
    with pytest.raises(ConfigError):
        make(cfg, bundle)


def test_without_a_mount_namespace_the_tree_is_built_in_ours(bundle):
    assert make(with_namespaces("pid"), bundle)["host_mount_ns"]
    assert not make(with_namespaces("pid", "mount"), bundle)["host_mount_ns"]


def test_time_offsets_need_a_time_namespace(bundle):
    cfg = config()
    cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 1}}
    with pytest.raises(ConfigError) as e:
        make(cfg, bundle)
    assert e.value.path == "linux.timeOffsets"


def test_time_offsets_become_the_timens_offsets_text(bundle):
    cfg = with_namespaces("mount", "time")
    cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": 5, "nanosecs": 7},
                                   "boottime": {"secs": -3}}
    assert make(cfg, bundle)["timens_offsets"] == "monotonic 5 7\nboottime -3 0\n"


@settings(max_examples=150, deadline=None)
@given(hs.sets(hs.sampled_from(ALL)), hs.sets(hs.sampled_from(ALL)))
def test_every_namespace_is_created_exactly_once_or_joined(tmp_path_factory, new, joined):
    joined -= new
    bundle = tmp_path_factory.mktemp("b")
    os.mkdir(bundle / "rootfs")
    plan = make(with_namespaces(*sorted(new), **{k: f"/x/{k}" for k in sorted(joined)}),
                str(bundle))
    flags_new = 0
    for kind in new:
        flags_new |= pl.NAMESPACE_FLAGS[kind]
    assert plan["clone_flags"] & plan["unshare_flags"] == 0
    created = plan["clone_flags"] | plan["unshare_flags"] \
        | (pl.CLONE_NEWCGROUP if plan["new_cgroupns"] else 0)
    assert created == flags_new
    assert {j[1] for j in plan["joins"]} == {pl.NAMESPACE_FLAGS[k] for k in joined}
    # clone() has no time flag; pid/time from setns/unshare need a fork
    assert not plan["clone_flags"] & pl.CLONE_NEWTIME
    needs_fork = "pid" in joined or bool(plan["unshare_flags"] & (pl.CLONE_NEWPID
                                                                  | pl.CLONE_NEWTIME))
    assert plan["fork_after_ns"] == needs_fork
    if joined:  # joins come first, so nothing may be created by clone
        assert plan["clone_flags"] == 0


def test_hostname_needs_a_uts_namespace(bundle):
    cfg = with_namespaces("mount", "pid")
    cfg["hostname"] = "box"
    with pytest.raises(ConfigError) as e:
        make(cfg, bundle)
    assert e.value.path == "hostname"


def test_sysctls_must_belong_to_a_namespace_the_container_owns(bundle):
    cfg = config()
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    with pytest.raises(ConfigError) as e:
        make(cfg, bundle)
    assert e.value.path == 'linux.sysctl["net.ipv4.ip_forward"]'
    cfg["linux"]["sysctl"] = {"vm.swappiness": "1"}
    with pytest.raises(ConfigError):
        make(cfg, bundle)
    cfg["linux"]["sysctl"] = {"kernel.shm_rmid_forced": "1"}
    assert make(cfg, bundle)["sysctl"] == [("/proc/sys/kernel/shm_rmid_forced", "1")]


def test_a_read_only_bind_mount_is_bound_then_remounted(bundle):
    cfg = config(mounts=[{"destination": "/data", "source": "data",
                          "options": ["rbind", "ro", "nosuid"]}])
    (m,) = make(cfg, bundle)["mounts"]
    assert m["is_bind"]
    assert m["source"] == os.path.join(bundle, "data")  # relative to the bundle
    assert m["flags"] == mo.MS_BIND | mo.MS_REC
    assert m["remount_flags"] == mo.MS_BIND | mo.MS_REMOUNT | mo.MS_RDONLY | mo.MS_NOSUID
    assert not m["dest_is_file"]


def test_a_bind_mount_of_a_file_creates_a_file_destination(bundle):
    cfg = config(mounts=[{"destination": "/etc/x", "type": "bind", "source": "file"}])
    (m,) = make(cfg, bundle)["mounts"]
    assert m["dest_is_file"]
    assert m["remount_flags"] == 0


def test_a_bind_mount_of_a_missing_source_is_an_error(bundle):
    cfg = config(mounts=[{"destination": "/x", "type": "bind", "source": "nope"}])
    with pytest.raises(ConfigError) as e:
        make(cfg, bundle)
    assert e.value.path == "mounts[0].source"


def test_a_relative_mount_destination_is_an_error(bundle):
    cfg = config(mounts=[{"destination": "tmp", "type": "tmpfs", "source": "tmpfs"}])
    with pytest.raises(ConfigError) as e:
        make(cfg, bundle)
    assert e.value.path == "mounts[0].destination"


def test_a_filesystem_mount_keeps_data_and_flags(bundle):
    cfg = config(mounts=[{"destination": "/proc", "type": "proc", "source": "proc"},
                         {"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                          "options": ["nosuid", "mode=755", "size=1m", "rprivate"]}])
    proc, tmp = make(cfg, bundle)["mounts"]
    assert proc["no_symlink"] and not tmp["no_symlink"]
    assert tmp["flags"] == mo.MS_NOSUID
    assert tmp["data"] == "mode=755,size=1m"
    assert tmp["propagation"] == [mo.MS_PRIVATE | mo.MS_REC]


def test_a_cgroup_mount_on_v1_becomes_a_tmpfs_with_one_mount_per_hierarchy(bundle):
    cfg = config(mounts=[{"destination": "/sys/fs/cgroup", "type": "cgroup",
                          "source": "cgroup", "options": ["ro", "nosuid"]}])
    mounts = make(cfg, bundle)["mounts"]
    assert [m["dest"] for m in mounts] == ["/sys/fs/cgroup", "/sys/fs/cgroup/memory",
                                           "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified",
                                           "/sys/fs/cgroup"]
    assert mounts[0]["fstype"] == "tmpfs" and not mounts[0]["flags"] & mo.MS_RDONLY
    assert mounts[1]["fstype"] == "cgroup" and mounts[1]["data"] == "memory"
    assert mounts[3]["fstype"] == "cgroup2"
    assert mounts[-1]["flags"] & mo.MS_REMOUNT and mounts[-1]["flags"] & mo.MS_RDONLY


def test_a_cgroup_mount_on_v2_is_one_cgroup2_mount(bundle):
    host = pl.Host(last_cap=40, cgroup_layout="v2", apparmor=False, selinux=False,
                   cgroup_mounts=[])
    cfg = config(mounts=[{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "c"}])
    (m,) = pl.plan_container(cfg, bundle, container_id="c", host=host)["mounts"]
    assert m["fstype"] == "cgroup2"


@pytest.mark.parametrize("namespaces", [[], [{"type": "cgroup"}]], ids=["no-cgroupns", "cgroupns"])
def test_without_a_cgroup_namespace_each_hierarchy_binds_the_containers_directory(
        bundle, namespaces):
    cfg = config(mounts=[{"destination": "/sys/fs/cgroup", "type": "cgroup",
                          "source": "cgroup", "options": ["ro"]}])
    cfg["linux"]["namespaces"] += namespaces
    plan = make(cfg, bundle)
    leaves = ["/sys/fs/cgroup/memory/ocipy/c", "/sys/fs/cgroup/cpu/ocipy/c"]  # no unified
    pl.bind_cgroup_hierarchies(plan, leaves)
    by_dest = {m["dest"]: m for m in plan["mounts"][1:-1]}
    if namespaces:  # the namespace's root is the container's cgroup already
        assert all(m["fstype"] in ("cgroup", "cgroup2") for m in by_dest.values())
        return
    memory, cpu = by_dest["/sys/fs/cgroup/memory"], by_dest["/sys/fs/cgroup/cpu"]
    assert memory["source"] == leaves[0] and cpu["source"] == leaves[1]
    for m in (memory, cpu):
        assert m["is_bind"] and m["fstype"] is None and m["flags"] == mo.MS_BIND
        assert m["remount_flags"] & mo.MS_RDONLY and m["remount_flags"] & mo.MS_NOEXEC
    # a hierarchy the container has no directory in keeps its own mount
    assert by_dest["/sys/fs/cgroup/unified"]["fstype"] == "cgroup2"


def test_default_devices_are_planned_and_a_config_device_can_replace_one(bundle):
    cfg = config()
    cfg["linux"]["devices"] = [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3,
                                "fileMode": 0o600, "uid": 5},
                               {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    devices = {d["path"]: d for d in make(cfg, bundle)["devices"]}
    assert set(devices) == {"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                            "/dev/urandom", "/dev/tty", "/dev/fuse"}
    assert devices["/dev/null"]["mode"] == stat.S_IFCHR | 0o600
    assert devices["/dev/null"]["uid"] == 5 and devices["/dev/null"]["index"] == 0
    assert devices["/dev/fuse"]["major"] == 10 and devices["/dev/fuse"]["minor"] == 229
    assert devices["/dev/zero"]["index"] == -1


def test_a_device_outside_dev_is_an_error(bundle):
    cfg = config()
    cfg["linux"]["devices"] = [{"path": "/etc/null", "type": "c", "major": 1, "minor": 3}]
    with pytest.raises(ConfigError) as e:
        make(cfg, bundle)
    assert e.value.path == "linux.devices[0].path"


def test_rootfs_propagation_is_applied_after_pivot_root(bundle):
    for name, flag in (("shared", mo.MS_SHARED), ("unbindable", mo.MS_UNBINDABLE),
                       ("slave", mo.MS_SLAVE)):
        cfg = config()
        cfg["linux"]["rootfsPropagation"] = name
        plan = make(cfg, bundle)
        assert plan["rootfs_propagation"] == flag
        assert plan["initial_propagation"] == mo.MS_SLAVE | mo.MS_REC
    cfg["linux"]["rootfsPropagation"] = "private"
    assert make(cfg, bundle)["initial_propagation"] == mo.MS_PRIVATE | mo.MS_REC
    del cfg["linux"]["rootfsPropagation"]
    assert make(cfg, bundle)["rootfs_propagation"] == 0


def test_a_missing_rootfs_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        make(config(), str(tmp_path))
    assert e.value.path == "root.path"


def test_the_process_gets_its_path_caps_and_rlimits(bundle):
    cfg = config()
    cfg["process"].update(
        env=["A=1", "PATH=/opt/bin"],
        capabilities={"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"]},
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}],
        oomScoreAdj=100, noNewPrivileges=True)
    cfg["process"]["user"].update(umask=0o077, additionalGids=[5, 6])
    proc = make(cfg, bundle)["process"]
    assert proc["path_env"] == "/opt/bin"
    assert proc["caps"]["bounding"] == (1 << 5) | (1 << 0)
    assert proc["caps"]["effective"] == 1 << 5
    assert proc["caps"]["ambient"] == 0
    assert proc["rlimits"] == [(7, 10, 20)]
    assert proc["oom_score_adj"] == 100 and proc["no_new_privs"]
    assert proc["umask"] == 0o077 and proc["groups"] == [5, 6]


def test_a_config_without_process_plans_no_process(bundle):
    cfg = config()
    del cfg["process"]
    assert make(cfg, bundle)["process"] is None


@pytest.mark.parametrize("rlimits, path", [
    ([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}], "process.rlimits[0].type"),
    ([{"type": "RLIMIT_CORE", "soft": 1, "hard": 1}] * 2, "process.rlimits[1].type"),
    ([{"type": "RLIMIT_CORE", "soft": 2, "hard": 1}], "process.rlimits[0]"),
])
def test_bad_rlimits_are_errors(bundle, rlimits, path):
    cfg = config()
    cfg["process"]["rlimits"] = rlimits
    with pytest.raises(ConfigError) as e:
        make(cfg, bundle)
    assert e.value.path == path


def test_an_unknown_capability_is_an_error(bundle):
    cfg = config()
    cfg["process"]["capabilities"] = {"permitted": ["CAP_KILL", "CAP_FLY"]}
    with pytest.raises(ConfigError) as e:
        make(cfg, bundle)
    assert e.value.path == "process.capabilities.permitted[1]"


def test_an_apparmor_profile_on_a_host_without_apparmor_is_an_error(bundle):
    cfg = config()
    cfg["process"]["apparmorProfile"] = "docker-default"
    with pytest.raises(OcipyError) as e:
        make(cfg, bundle)
    assert "AppArmor is not enabled" in str(e.value)


def test_the_session_keyring_is_named_after_the_container_unless_disabled(bundle):
    assert make(config(), bundle)["keyring"] == "c1"
    assert make(config(), bundle, no_new_keyring=True)["keyring"] is None
