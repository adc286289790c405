"""Facts about the host the planner needs: cgroup layout, LSMs, kernel limits.

Each probe reads one small file; nothing here changes the system.
"""
from __future__ import annotations

from ocipy import _os as os  # os without importing os (see _os.py)

CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_layout() -> str:
    """"v2" on a pure cgroup2 host, "v1" on legacy and hybrid hosts."""
    return "v2" if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers") else "v1"


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) of every cgroup/cgroup2 mount we can see."""
    from ocipy.cgroups.paths import mountinfo_fields, read_proc, unescape

    found = []
    for mount, fields in mountinfo_fields(read_proc("mountinfo")):
        if len(fields) < 3 or fields[0] not in ("cgroup", "cgroup2") or len(mount) < 5:
            continue
        found.append((unescape(mount[4]), fields[0], fields[2]))
    return found


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y" and os.path.isdir("/sys/kernel/security/apparmor")
    except OSError:
        return False


def selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


def has_time_namespace() -> bool:
    return os.path.exists("/proc/self/ns/time")
