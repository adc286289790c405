"""The container's filesystem: root, pivot, propagation, mounts[], /dev,
linux.devices, maskedPaths and readonlyPaths, seen from the inside."""
from __future__ import annotations

import os
import subprocess

import pytest


def _inside_mounts(runtime, bundle, util, *flags) -> list[dict]:
    return util.parse_mountinfo(runtime.run_ok(bundle, ["cat", "/proc/self/mountinfo"], *flags))


def _mount_at(mounts: list[dict], path: str) -> dict:
    found = [m for m in mounts if m["mount_point"] == path]
    assert found, f"nothing mounted at {path}: {[m['mount_point'] for m in mounts]}"
    return found[-1]  # the top one


# ---- root ----------------------------------------------------------------------

@pytest.mark.parametrize("flags", [(), ("--no-pivot",)], ids=["pivot_root", "no-pivot"])
def test_root_is_the_bundle_rootfs(runtime, bundle, util, flags):
    bundle.add_mount("/tmp", "tmpfs", "tmpfs", ["nosuid", "nodev"])
    mounts = _inside_mounts(runtime, bundle, util, *flags)
    root = _mount_at(mounts, "/")
    # The rootfs is a bind of the bundle's root.path: its root within the
    # host filesystem is that directory, and no host path is mounted.
    assert root["root"] == str(util.ROOTFS_DIR)
    points = [m["mount_point"] for m in mounts]
    assert all(not p.startswith(("/work", "/run/netns", "/mnt/sandboxing")) for p in points), points
    assert {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
            "/tmp"} <= set(points)
    assert "busybox" in runtime.run_ok(bundle, ["ls", "/bin"], *flags)


def test_readonly_root_leaves_tmpfs_writable(runtime, bundle, util):
    bundle.add_mount("/tmp", "tmpfs", "tmpfs", ["nosuid", "nodev", "mode=1777"])
    out = runtime.run_ok(bundle, "touch /x 2>&1 && echo root-writable; "
                                 "touch /tmp/x && echo tmp-writable")
    assert "Read-only file system" in out
    assert "root-writable" not in out
    assert "tmp-writable" in out
    assert _root_options(runtime, bundle, util)[0] == "ro"


def _root_options(runtime, bundle, util) -> list[str]:
    return _mount_at(_inside_mounts(runtime, bundle, util), "/")["options"]


def test_writable_root_when_not_readonly(runtime, bundle, util, private_rootfs):
    bundle.use_rootfs(private_rootfs, readonly=False)
    assert runtime.run_ok(bundle, "echo hi > /root/file && cat /root/file") == "hi\n"
    assert (private_rootfs / "root" / "file").read_text() == "hi\n"
    assert _root_options(runtime, bundle, util)[0] == "rw"


# ---- rootfsPropagation ---------------------------------------------------------

@pytest.fixture
def shared_host_rootfs(private_rootfs, util):
    """The private rootfs bind-mounted onto itself on the host as a shared mount,
    so a container's view of it can be a peer, a slave or neither."""
    path = str(private_rootfs)
    subprocess.run(["mount", "--bind", path, path], check=True, timeout=10)
    try:
        subprocess.run(["mount", "--make-shared", path], check=True, timeout=10)
        host = [m for m in util.host_mounts() if m["mount_point"] == path][-1]
        peer_group = [o for o in host["optional"] if o.startswith("shared:")]
        assert peer_group, host
        yield private_rootfs, peer_group[0].split(":")[1]
    finally:
        # A shared rootfs propagates the container's mounts back here: detach all.
        for mp in sorted(set(util.mounts_under(path)), key=len, reverse=True):
            util.umount_detach(mp)


def _root_optional_fields(runtime, bundle, util) -> list[str]:
    mounts = _inside_mounts(runtime, bundle, util)
    return _mount_at(mounts, "/")["optional"]


# runc 1.1 applies rootfsPropagation to the namespace's "/" before it binds the
# rootfs (and makes the rootfs's parent private), so its container root mount
# never carries shared/master/unbindable: those three are ocipy_only.

@pytest.mark.ocipy_only
def test_rootfs_propagation_shared(runtime, bundle, util):
    bundle.config["linux"]["rootfsPropagation"] = "shared"
    fields = _root_optional_fields(runtime, bundle, util)
    assert any(f.startswith("shared:") for f in fields), fields


@pytest.mark.ocipy_only
def test_rootfs_propagation_slave(runtime, bundle, util, shared_host_rootfs):
    rootfs, host_group = shared_host_rootfs
    bundle.use_rootfs(rootfs)
    bundle.config["linux"]["rootfsPropagation"] = "slave"
    fields = _root_optional_fields(runtime, bundle, util)
    assert f"master:{host_group}" in fields, fields
    assert not any(f.startswith("shared:") for f in fields), fields


def test_rootfs_propagation_private(runtime, bundle, util, shared_host_rootfs):
    rootfs, _ = shared_host_rootfs
    bundle.use_rootfs(rootfs)
    bundle.config["linux"]["rootfsPropagation"] = "private"
    fields = _root_optional_fields(runtime, bundle, util)
    assert fields == [], fields


@pytest.mark.ocipy_only
def test_rootfs_propagation_unbindable(runtime, bundle, util, shared_host_rootfs):
    rootfs, _ = shared_host_rootfs
    bundle.use_rootfs(rootfs)
    bundle.config["linux"]["rootfsPropagation"] = "unbindable"
    fields = _root_optional_fields(runtime, bundle, util)
    assert fields == ["unbindable"], fields


# ---- mounts[] --------------------------------------------------------------------

def test_mount_options_are_applied(runtime, bundle, util):
    bundle.add_mount("/home", "tmpfs", "tmpfs", ["ro", "nosuid", "nodev", "noexec"])
    bundle.add_mount("/root", "tmpfs", "tmpfs", ["rw"])
    mounts = _inside_mounts(runtime, bundle, util)
    home = _mount_at(mounts, "/home")["options"]
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(home), home
    root = _mount_at(mounts, "/root")["options"]
    assert "rw" in root and not {"nosuid", "nodev", "noexec"} & set(root), root


def test_bind_mount_shows_host_files(runtime, bundle, tmp_path):
    src = tmp_path / "hostdir"
    src.mkdir()
    (src / "file").write_text("from the host\n")
    bundle.add_mount("/home", "bind", str(src), ["rbind", "rw"])
    bundle.add_mount("/root", "bind", str(src), ["rbind", "ro"])
    out = runtime.run_ok(bundle, "cat /home/file; echo new > /home/new && echo rw-ok; "
                                 "cat /root/file; touch /root/x 2>&1 || echo ro-refused")
    lines = out.splitlines()
    assert lines[0] == "from the host"
    assert lines[1] == "rw-ok"
    assert lines[2] == "from the host"
    assert "Read-only file system" in out and lines[-1] == "ro-refused"
    assert (src / "new").read_text() == "new\n"
    assert not (src / "x").exists()


def test_tmpfs_size_and_mode(runtime, bundle, private_rootfs):
    # A new mount point: runc gives a tmpfs over an existing directory that
    # directory's mode, whatever mode= says.
    bundle.use_rootfs(private_rootfs)
    bundle.add_mount("/scratch", "tmpfs", "tmpfs", ["size=2m", "mode=0710"])
    out = runtime.run_ok(bundle, "stat -f -c '%b %S' /scratch; stat -c '%a' /scratch")
    blocks, bsize = map(int, out.splitlines()[0].split())
    assert blocks * bsize == 2 * 1024 * 1024
    assert out.splitlines()[1] == "710"


def test_missing_mount_destination_is_created_in_rootfs(runtime, bundle, util, private_rootfs):
    bundle.use_rootfs(private_rootfs)
    bundle.add_mount("/new/deep/dir", "tmpfs", "tmpfs", ["size=1m"])
    mounts = _inside_mounts(runtime, bundle, util)
    assert _mount_at(mounts, "/new/deep/dir")["fstype"] == "tmpfs"
    assert (private_rootfs / "new" / "deep" / "dir").is_dir()


def test_mount_destination_symlink_is_not_followed_out_of_rootfs(
        runtime, bundle, util, private_rootfs, tmp_path):
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    # /evil inside the rootfs points at a host path (which does not exist
    # below host_dir): resolving it on the host would create and mount there.
    os.symlink(str(host_dir / "sub"), private_rootfs / "evil")
    bundle.use_rootfs(private_rootfs)
    bundle.add_mount("/evil", "tmpfs", "tmpfs", ["size=1m"])
    bundle.args = ["cat", "/proc/self/mountinfo"]
    proc = runtime.run(runtime.new_id(), bundle)
    # Nothing happened on the host, whether the runtime refused or resolved
    # the link inside the rootfs.
    assert list(host_dir.iterdir()) == []
    assert util.mounts_under(host_dir) == []
    if proc.returncode == 0:
        # Resolved as the container would: under the rootfs.
        mounts = util.parse_mountinfo(proc.stdout)
        points = {m["mount_point"] for m in mounts if m["fstype"] == "tmpfs"}
        assert {"/evil", str(host_dir / "sub")} & points, points
    else:
        assert proc.returncode == 1, proc


# ---- /dev ----------------------------------------------------------------------

DEFAULT_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                   "urandom": (1, 9), "tty": (5, 0)}


def test_default_devices_exist(runtime, bundle):
    names = " ".join(f"/dev/{n}" for n in DEFAULT_DEVICES)
    out = runtime.run_ok(bundle, f"stat -c '%n %F %t %T %a' {names}")
    for line in out.splitlines():
        path, rest = line.split(" ", 1)
        kind, major, minor, mode = rest.rsplit(" ", 3)
        assert kind == "character special file", line
        assert (int(major, 16), int(minor, 16)) == DEFAULT_DEVICES[path[5:]], line
        assert mode == "666", line
    assert len(out.splitlines()) == len(DEFAULT_DEVICES)


def test_default_dev_links_and_mounts(runtime, bundle, util):
    out = runtime.run_ok(bundle, "for l in ptmx fd stdin stdout stderr; do "
                                 "echo $l $(readlink /dev/$l); done")
    links = dict(line.split(" ", 1) for line in out.splitlines())
    assert links == {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                     "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
    mounts = _inside_mounts(runtime, bundle, util)
    assert _mount_at(mounts, "/dev/pts")["fstype"] == "devpts"
    assert _mount_at(mounts, "/dev/shm")["fstype"] == "tmpfs"
    assert _mount_at(mounts, "/dev")["fstype"] == "tmpfs"


def test_linux_devices_are_created(runtime, bundle):
    bundle.linux["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
         "fileMode": 0o640, "uid": 1, "gid": 2},
        {"path": "/dev/other-null", "type": "c", "major": 1, "minor": 3,
         "fileMode": 0o600, "uid": 0, "gid": 0},
    ]
    out = runtime.run_ok(bundle, "stat -c '%F %t:%T %a %u %g' /dev/fuse /dev/other-null")
    assert out.splitlines() == ["character special file a:e5 640 1 2",
                                "character special file 1:3 600 0 0"]


# ---- maskedPaths / readonlyPaths -------------------------------------------------

def test_masked_paths_are_unreadable(runtime, bundle, util):
    bundle.linux["maskedPaths"] = ["/proc/version", "/etc/hostname", "/sys/firmware",
                                   "/proc/does-not-exist"]
    bundle.args = ["sh", "-c", "wc -c < /proc/version; wc -c < /etc/hostname; "
                               "ls -A /sys/firmware | wc -l; touch /sys/firmware/x 2>&1; "
                               "cat /proc/self/mountinfo"]
    proc = runtime.run(runtime.new_id(), bundle)
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    assert lines[0].strip() == "0"           # masked files read empty
    assert lines[1].strip() == "0"
    assert lines[2].strip() == "0"           # the masked dir is empty
    assert "Read-only file system" in lines[3]
    firmware = _mount_at(util.parse_mountinfo("\n".join(lines[4:])), "/sys/firmware")
    assert firmware["fstype"] == "tmpfs"
    assert firmware["options"][0] == "ro"
    # They are not empty on the host, nor in the rootfs.
    assert os.listdir("/sys/firmware")
    assert (util.ROOTFS / "etc" / "hostname").read_text()


def test_readonly_paths_refuse_writes(runtime, bundle, util):
    bundle.add_mount("/home", "tmpfs", "tmpfs", ["mode=1777"])
    bundle.linux["readonlyPaths"] = ["/home", "/proc/sys"]
    out = runtime.run_ok(bundle, "touch /home/x 2>&1; cat /proc/sys/kernel/ostype; "
                                 "cat /proc/self/mountinfo")
    lines = out.splitlines()
    assert "Read-only file system" in lines[0]
    assert lines[1] == "Linux"               # still readable
    mounts = util.parse_mountinfo("\n".join(lines[2:]))
    assert _mount_at(mounts, "/home")["options"][0] == "ro"
    assert _mount_at(mounts, "/proc/sys")["options"][0] == "ro"


# ---- the host's mount table --------------------------------------------------

@pytest.mark.ocipy_only
def test_a_host_mount_path_in_no_encoding_does_not_stop_a_create(runtime, bundle, tmp_path):
    # mountinfo holds every mount's path as bytes, escaping only space, tab,
    # newline and backslash: a path that is not UTF-8, or holds a vertical
    # tab or a carriage return, must not stop the planner reading it for the
    # cgroup mount
    odd = os.fsencode(tmp_path) + b"/caf\xe9 \x0bvt\rcr\\bs"
    os.mkdir(odd)
    subprocess.run([b"mount", b"-t", b"tmpfs", b"tmpfs", odd], check=True, timeout=30)
    try:
        bundle.add_mount("/sys/fs/cgroup", "cgroup", "cgroup",
                         ["nosuid", "noexec", "nodev", "relatime", "ro"])
        out = runtime.run_ok(bundle, "ls /sys/fs/cgroup")
        assert "memory" in out.split() or "cgroup.controllers" in out.split()
    finally:
        subprocess.run([b"umount", odd], check=True, timeout=30)
