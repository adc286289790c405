"""The example config.json ``ocipy spec`` writes.

Reproduces runc 1.1's ``runc spec`` (libcontainer/specconv/example.go
``Example`` and ``ToRootless``, spec.go) key for key and byte for byte, except
that ``ociVersion`` is the version ocipy implements.
"""

from __future__ import annotations

import json
import os

from ocipy import OCI_VERSION
from ocipy.errors import OcipyError

SPEC_CONFIG = "config.json"

_MOUNTINFO = "/proc/self/mountinfo"
_CGROUP_ROOT = "/sys/fs/cgroup"
_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def _cgroup2_unified() -> bool:
    """Whether /sys/fs/cgroup is a cgroup2 mount (runc's IsCgroup2UnifiedMode,
    which asks statfs(2) for CGROUP2_SUPER_MAGIC; the stdlib has no statfs, so
    read the filesystem type from mountinfo).  The last mount on the path is
    the visible one."""
    from ocipy._os import fsdecode, read_file
    from ocipy.cgroups.paths import mountinfo_fields, unescape

    try:
        text = fsdecode(read_file(_MOUNTINFO))
    except OSError:
        return os.path.exists(os.path.join(_CGROUP_ROOT, "cgroup.controllers"))
    fstype = None
    for fields, extra in mountinfo_fields(text):
        if len(fields) > 4 and extra and unescape(fields[4]) == _CGROUP_ROOT:
            fstype = extra[0]
    return fstype == "cgroup2"


def _mount(destination: str, type_: str, source: str, options: list[str] | None) -> dict:
    # Field order of specs.Mount; Options is omitempty.
    mount: dict = {"destination": destination, "type": type_, "source": source}
    if options:
        mount["options"] = options
    return mount


def default_spec(rootless: bool = False, *, cgroupns: bool | None = None) -> dict:
    """The example spec, as ``runc spec [--rootless]`` writes it.

    Keys are in the order runc's Go structs marshal them, so that
    ``json.dumps(default_spec(), indent="\\t")`` equals runc's file.
    ``cgroupns`` adds the cgroup namespace; by default it is added on a
    cgroup v2 host, as runc does.
    """
    if cgroupns is None:
        cgroupns = _cgroup2_unified()
    process = {
        "terminal": True,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=xterm",
        ],
        "cwd": "/",
        # runc 1.1 lists the same three in all four sets (runc 1.2 drops ambient).
        "capabilities": {
            kind: list(_DEFAULT_CAPS) for kind in ("bounding", "effective", "permitted", "ambient")
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    }
    mounts = [
        _mount("/proc", "proc", "proc", None),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        _mount(
            "/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
        ),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        _mount(
            "/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", "ro"]
        ),
    ]
    namespaces = ["pid", "network", "ipc", "uts", "mount"]
    if cgroupns:
        namespaces.append("cgroup")
    linux: dict = {}

    if rootless:
        # ToRootless: a user namespace mapping the caller to root, no network
        # namespace, /sys bind-mounted (sysfs needs a netns we own), no uid=/gid=
        # mount options (the ids would not be mapped), no cgroup resources.
        namespaces = [ns for ns in namespaces if ns not in ("network", "user")] + ["user"]
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
        rootless_mounts = []
        for mount in mounts:
            if os.path.normpath(mount["destination"]) == "/sys":
                rootless_mounts.append(
                    _mount("/sys", "none", "/sys", ["rbind", "nosuid", "noexec", "nodev", "ro"])
                )
                continue
            options = [o for o in mount.get("options", []) if not o.startswith(("gid=", "uid="))]
            rootless_mounts.append(
                _mount(mount["destination"], mount["type"], mount["source"], options)
            )
        mounts = rootless_mounts
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}

    linux["namespaces"] = [{"type": ns} for ns in namespaces]
    linux["maskedPaths"] = [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
    ]
    linux["readonlyPaths"] = [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": mounts,
        "linux": linux,
    }


def dump_spec(spec: dict) -> str:
    """Serialise like runc: json.MarshalIndent with a tab, no trailing newline."""
    return json.dumps(spec, indent="\t", ensure_ascii=False)


def write_spec(bundle: str, rootless: bool) -> None:
    """Write the example spec to ``<bundle>/config.json``; never overwrite one.

    runc stats the file first and says ``File config.json exists. Remove it
    first``; we give the same message but let O_EXCL do the check, so there
    is no window in which another writer's file could be truncated.
    """
    data = dump_spec(default_spec(rootless)).encode()
    path = os.path.join(bundle or ".", SPEC_CONFIG)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        raise OcipyError(f"File {SPEC_CONFIG} exists. Remove it first") from None
    except OSError as exc:
        raise OcipyError.from_os(f"create {path}", exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise OcipyError.from_os(f"write {path}", exc) from None
