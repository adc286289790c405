"""Where cgroups are written: the container's cgroup managers.

    layout()                       "v1" (legacy and hybrid hosts) or "v2"
    manager_for(path, id)          a Manager for linux.cgroupsPath
    Manager.from_state(doc)        the same Manager again, from state.json
    resources_from_update_flags()  runc `update`'s flags as LinuxResources

Modules: paths.py (cgroupsPath -> directories), resources.py
(linux.resources -> file writes), devices.py (device rules, the v2 eBPF
program), convert.py (v1 <-> v2 values), stats.py (runc's events JSON),
manager.py (the shared Manager), v1.py and v2.py (the two layouts),
flags.py (`update` flags).
"""
from __future__ import annotations

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy.cgroups import paths
from ocipy.cgroups.manager import Manager
from ocipy.errors import OcipyError

__all__ = ["Manager", "layout", "manager_for", "ram_in_bytes", "resources_from_update_flags"]

SYSTEMD_RUNNING = "/run/systemd/system"


def __getattr__(name: str):
    # `update`'s flag parsing (flags.py imports math) stays off create's path
    if name in ("ram_in_bytes", "resources_from_update_flags"):
        from ocipy.cgroups import flags

        return getattr(flags, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def layout(root: str = paths.CGROUP_ROOT) -> str:
    """"v2" when ``root`` is a cgroup2 mount, "v1" on legacy and hybrid hosts."""
    return "v2" if os.path.exists(os.path.join(root, "cgroup.controllers")) else "v1"


def manager_for(cgroups_path: str | None, container_id: str, *, systemd: bool = False,
                cgroup_root: str | None = None, proc_cgroup: str | None = None,
                mountinfo: str | None = None) -> Manager:
    """The manager for a container's cgroup; nothing is created until ``create``.

    ``cgroups_path`` is linux.cgroupsPath: absolute (from each hierarchy's
    root), relative (under the caller's own cgroup) or None (/ocipy/<id>).
    ``systemd`` is --systemd-cgroup, with the "slice:prefix:name" form.

    ``cgroup_root`` roots a v2 manager at another cgroup2 mount (the tests
    use a hybrid host's /sys/fs/cgroup/unified); ``proc_cgroup`` and
    ``mountinfo`` replace the caller's /proc/self files (tests).
    """
    if systemd:
        from ocipy.cgroups.systemd import manager

        return manager(cgroups_path, container_id)

    inner, absolute = paths.container_path(cgroups_path, container_id)
    if proc_cgroup is None:
        proc_cgroup = paths.read_proc("cgroup")
    own = paths.parse_proc_cgroup(proc_cgroup)
    if mountinfo is None:
        mountinfo = paths.read_proc("mountinfo")
    mounts = paths.parse_mountinfo(mountinfo)

    if cgroup_root is not None or layout() == "v2":
        from ocipy.cgroups.v2 import V2Manager

        mountpoint = os.path.normpath(cgroup_root or paths.CGROUP_ROOT)
        if cgroup_root is not None and layout(mountpoint) != "v2":
            raise OcipyError(f"cgroup root {mountpoint}", "not a cgroup2 mount")
        root = next((m.root for m in mounts
                     if m.fstype == "cgroup2" and m.mountpoint == mountpoint), "/")
        directory = paths.v2_dir(mountpoint, root, own, inner, absolute)
        return V2Manager(inner, mountpoint, directory)

    from ocipy.cgroups.v1 import V1Manager

    dirs = paths.v1_dirs(mounts, own, inner, absolute)
    if not dirs:
        raise OcipyError("cgroup", "no cgroup hierarchy is mounted")
    return V1Manager(inner, dirs)
