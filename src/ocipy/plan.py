"""Turn a validated config.json into the plan the native child executes.

Pure: reads the config, the bundle path and a few host facts passed in; makes
no system call that changes anything.  The plan is a plain dict whose keys
are read by ``ocipy._native.spawn.spawn`` (see child.h for their meaning):

* namespaces: clone_flags, unshare_flags, joins [(path, CLONE_NEW*, index)],
  new_userns, new_cgroupns, fork_after_ns, timens_offsets, uid_mappings,
  gid_mappings, keyring
* rootfs: setup_rootfs, rootfs, initial_propagation, rootfs_propagation,
  root_readonly, no_pivot, mounts [...], make_devices, bind_devices,
  devices [...], masked, readonly, hostname, domainname, sysctl [(path, value)]
* process: None or {args, env, path_env, cwd, rlimits, oom_score_adj, umask,
  uid, gid, groups, set_groups, caps, last_cap, no_new_privs, apparmor, selinux}
* preserve_fds
"""
from __future__ import annotations

import _stat as stat  # the C module stat.py re-exports: no stat.py import

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy import mountopts as mo
from ocipy.errors import ConfigError, OcipyError

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

# The devices every container gets when its /dev is not bound from the host
# (runtime-spec config-linux.md "Default Devices"; runc AllowedDevices).
DEFAULT_DEVICES = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)

_DEVICE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}

# sysctls that belong to a namespace (runc libcontainer/configs/validate:
# sysctl()); any other sysctl would change the host and is refused.
_IPC_SYSCTLS = {
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
}

_REMOUNT_MASK = (mo.MS_RDONLY | mo.MS_NOSUID | mo.MS_NODEV | mo.MS_NOEXEC | mo.MS_NOATIME
                 | mo.MS_NODIRATIME | mo.MS_RELATIME | mo.MS_STRICTATIME | mo.MS_SYNCHRONOUS
                 | mo.MS_DIRSYNC | mo.MS_NOSYMFOLLOW)


class Host:
    """The host facts a plan depends on; tests pass their own."""

    def __init__(self, *, last_cap: int | None = None, cgroup_layout: str | None = None,
                 cgroup_mounts: list[tuple[str, str, str]] | None = None,
                 apparmor: bool | None = None, selinux: bool | None = None) -> None:
        from ocipy import host
        from ocipy.capabilities import last_cap as _last_cap

        self.last_cap = _last_cap() if last_cap is None else last_cap
        self.cgroup_layout = host.cgroup_layout() if cgroup_layout is None else cgroup_layout
        self._cgroup_mounts = cgroup_mounts
        self.apparmor = host.apparmor_enabled() if apparmor is None else apparmor
        self.selinux = host.selinux_enabled() if selinux is None else selinux

    @property
    def cgroup_mounts(self) -> list[tuple[str, str, str]]:
        if self._cgroup_mounts is None:
            from ocipy import host
            self._cgroup_mounts = host.cgroup_mounts()
        return self._cgroup_mounts


def plan_container(config: dict, bundle: str, *, container_id: str, host: Host,
                   no_pivot: bool = False, no_new_keyring: bool = False,
                   preserve_fds: int = 0) -> dict:
    """The whole plan for `create`: namespaces, rootfs and process."""
    linux = config.get("linux") or {}
    plan: dict = {"preserve_fds": preserve_fds}
    namespaces = plan_namespaces(linux, plan)
    plan["keyring"] = None if no_new_keyring else container_id

    root = config.get("root") or {}
    rootfs = os.path.normpath(os.path.join(bundle, root.get("path", "rootfs")))
    if not os.path.isdir(rootfs):
        raise ConfigError("root.path", f"rootfs {rootfs!r} does not exist or is not a directory")
    # Without a mount namespace the container shares ours (runtime.md: an
    # unlisted namespace is inherited): the child builds the rootfs tree in
    # our namespace and chroots; ocipy detaches the tree at delete.
    plan.update(setup_rootfs=True, rootfs=os.path.realpath(rootfs),
                root_readonly=bool(root.get("readonly")), no_pivot=no_pivot,
                host_mount_ns="mount" not in namespaces)
    plan_propagation(linux, plan)
    plan["mounts"] = plan_mounts(config.get("mounts") or [], bundle, host)
    dev_bound = any(m["dest"] == "/dev" and m["is_bind"] for m in plan["mounts"])
    plan["make_devices"] = not dev_bound
    # in a user namespace mknod is refused and host paths may be out of
    # reach: devices are bound from the host, bind sources cloned by the parent
    plan["bind_devices"] = "user" in namespaces
    plan["devices"] = plan_devices(linux.get("devices") or [])
    plan["masked"] = list(linux.get("maskedPaths") or [])
    plan["readonly"] = list(linux.get("readonlyPaths") or [])

    for key, field in (("hostname", "hostname"), ("domainname", "domainname")):
        value = config.get(field)
        if value and "uts" not in namespaces:
            raise ConfigError(field, f"cannot set the {field} without a UTS namespace")
        plan[key] = value or None
    plan["sysctl"] = plan_sysctls(linux.get("sysctl") or {}, namespaces)

    process = config.get("process")
    plan["process"] = None if process is None else plan_process(
        process, host, in_userns="user" in namespaces, seccomp=linux.get("seccomp"))
    return plan


def plan_namespaces(linux: dict, plan: dict) -> dict[str, dict]:
    """Fill the namespace keys of plan; return {type: entry} of the config."""
    namespaces: dict[str, dict] = {}
    for i, ns in enumerate(linux.get("namespaces") or []):
        kind = ns.get("type")
        if kind not in NAMESPACE_FLAGS:
            raise ConfigError(f"linux.namespaces[{i}].type", f'unknown namespace type "{kind}"')
        if kind in namespaces:
            raise ConfigError(f"linux.namespaces[{i}].type",
                              f'namespace "{kind}" is listed twice')
        namespaces[kind] = dict(ns, index=i)

    joins = [(ns["path"], NAMESPACE_FLAGS[k], ns["index"])
             for k, ns in namespaces.items() if ns.get("path")]
    new = {k for k, ns in namespaces.items() if not ns.get("path")}
    new_flags = 0
    for kind in new:
        new_flags |= NAMESPACE_FLAGS[kind]
    if joins:
        # Namespaces we create must be owned by the user namespace we join,
        # and a joined net/ipc/... namespace is owned by a user namespace our
        # own new one would have no rights over: join first, then unshare
        # (runc's nsexec does the same).
        clone_flags, unshare_flags = 0, new_flags & ~CLONE_NEWCGROUP
    elif new_flags & CLONE_NEWTIME:
        # a time namespace can only be unshared (clone() has no flag bit for
        # it) and applies to children: the init is forked after it, and the
        # pid namespace must be unshared with it, since a pid namespace's
        # init may not fork with CLONE_PARENT
        late = CLONE_NEWTIME | CLONE_NEWPID
        clone_flags = new_flags & ~(late | CLONE_NEWCGROUP)
        unshare_flags = new_flags & late
    else:
        clone_flags, unshare_flags = new_flags & ~CLONE_NEWCGROUP, 0
    plan.update(
        clone_flags=clone_flags,
        unshare_flags=unshare_flags,
        joins=joins,
        new_userns="user" in new,
        new_cgroupns="cgroup" in new,
        # setns/unshare of pid and time namespaces apply to children only
        fork_after_ns=("pid" in namespaces and bool(unshare_flags & CLONE_NEWPID
                                                    or namespaces["pid"].get("path")))
        or bool(unshare_flags & CLONE_NEWTIME),
    )

    if "user" in new:
        for key in ("uidMappings", "gidMappings"):
            if not linux.get(key):
                raise ConfigError(f"linux.{key}", "a new user namespace needs id mappings")
    elif linux.get("uidMappings") or linux.get("gidMappings"):
        raise ConfigError("linux.uidMappings", "id mappings need a new user namespace")
    plan["uid_mappings"] = [(m["containerID"], m["hostID"], m["size"])
                            for m in linux.get("uidMappings") or []]
    plan["gid_mappings"] = [(m["containerID"], m["hostID"], m["size"])
                            for m in linux.get("gidMappings") or []]

    offsets = linux.get("timeOffsets")
    if offsets:
        if "time" not in new:
            raise ConfigError("linux.timeOffsets", "time offsets need a new time namespace")
        lines = []
        for clock in ("monotonic", "boottime"):
            if clock in offsets:
                o = offsets[clock]
                lines.append(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n")
        plan["timens_offsets"] = "".join(lines)
    else:
        plan["timens_offsets"] = None
    return namespaces


def plan_propagation(linux: dict, plan: dict) -> None:
    wanted = linux.get("rootfsPropagation")
    if wanted is None:
        plan["initial_propagation"] = mo.MS_SLAVE | mo.MS_REC  # runc's default: rslave
        plan["rootfs_propagation"] = 0
        return
    flag = mo.ROOTFS_PROPAGATION.get(wanted)
    if flag is None:
        raise ConfigError("linux.rootfsPropagation", f'unknown propagation "{wanted}"')
    private = flag & mo.MS_PRIVATE
    plan["initial_propagation"] = mo.MS_REC | (mo.MS_PRIVATE if private else mo.MS_SLAVE)
    plan["rootfs_propagation"] = flag


def plan_mounts(mounts: list[dict], bundle: str, host: Host) -> list[dict]:
    planned: list[dict] = []
    for i, m in enumerate(mounts):
        dest = m.get("destination", "")
        if not dest.startswith("/"):
            raise ConfigError(f"mounts[{i}].destination",
                              f'"{dest}" is not an absolute path')
        dest = os.path.normpath(dest)
        fstype = m.get("type") or None
        opts = mo.parse_mount_options(m.get("options") or [])
        source = m.get("source")
        is_bind = fstype == "bind" or bool(opts.flags & mo.MS_BIND)
        entry = {"dest": dest, "index": i, "propagation": list(opts.propagation),
                 "is_bind": is_bind, "no_symlink": fstype in ("proc", "sysfs")}
        if fstype in ("cgroup", "cgroup2"):
            planned.extend(plan_cgroup_mount(entry, opts, host))
            continue
        if is_bind:
            if not source:
                raise ConfigError(f"mounts[{i}].source", "a bind mount needs a source")
            source = os.path.join(bundle, source)  # relative to the bundle, as runc
            try:
                st = os.stat(source)
            except OSError as e:
                raise ConfigError(f"mounts[{i}].source",
                                  f"{source}: {os.strerror(e.errno or 0).lower()}") from None
            remount = opts.flags & _REMOUNT_MASK
            entry.update(source=source, fstype=None, data=None,
                         flags=mo.MS_BIND | (opts.flags & mo.MS_REC),
                         remount_flags=(mo.MS_BIND | mo.MS_REMOUNT | remount) if remount else 0,
                         dest_is_file=not stat.S_ISDIR(st.st_mode))
        else:
            entry.update(source=source or fstype or "none", fstype=fstype, data=opts.data,
                         flags=opts.flags & ~mo.MS_REC, remount_flags=0, dest_is_file=False)
        planned.append(entry)
    return planned


def plan_cgroup_mount(entry: dict, opts: mo.MountOptions, host: Host) -> list[dict]:
    """A cgroup mount inside the container, as runc builds it.

    cgroup v2: one cgroup2 mount.  v1/hybrid: a tmpfs with one mount per
    hierarchy the host has, then the tmpfs remounted read-only if asked.
    Inside a cgroup namespace each hierarchy's root is the container's cgroup.
    Without one, bind_cgroup_hierarchies() turns each hierarchy's mount into
    a bind of the container's own directory once the cgroups exist (the
    "cgroup_hierarchy" key names the host mount point it stands for).
    """
    flags = (opts.flags & ~mo.MS_REC) | mo.MS_NOSUID | mo.MS_NODEV | mo.MS_NOEXEC
    dest = entry["dest"]
    base = {"index": entry["index"], "propagation": [], "is_bind": False, "no_symlink": False,
            "remount_flags": 0, "dest_is_file": False}
    if host.cgroup_layout == "v2":
        from ocipy.host import CGROUP_ROOT

        return [dict(base, dest=dest, source="cgroup2", fstype="cgroup2", data=None, flags=flags,
                     cgroup_hierarchy=CGROUP_ROOT)]
    planned = [dict(base, dest=dest, source="tmpfs", fstype="tmpfs", data="mode=755",
                    flags=flags & ~mo.MS_RDONLY)]
    for mountpoint, fstype, superopts in host.cgroup_mounts:
        if not mountpoint.startswith("/sys/fs/cgroup/"):
            continue
        name = mountpoint.rsplit("/", 1)[1]
        data = None
        if fstype == "cgroup":
            data = ",".join(o for o in superopts.split(",") if o not in ("rw", "ro")) or None
        planned.append(dict(base, dest=f"{dest}/{name}", source="cgroup", fstype=fstype,
                            data=data, flags=flags, cgroup_hierarchy=mountpoint))
    if flags & mo.MS_RDONLY:
        planned.append(dict(base, dest=dest, source=None, fstype=None, data=None,
                            flags=mo.MS_REMOUNT | flags))
    return planned


def bind_cgroup_hierarchies(plan: dict, leaf_dirs: list[str]) -> None:
    """Without a cgroup namespace a fresh cgroup mount would show the host's
    whole hierarchy: bind the container's own directory there instead, as
    runc does (rootfs_linux.go mountCgroupV1/V2), read-only if the mount is.
    A hierarchy with no directory of the container's keeps its mount."""
    if plan.get("new_cgroupns"):
        return
    for entry in plan.get("mounts", []):
        hierarchy = entry.get("cgroup_hierarchy")
        if not hierarchy:
            continue
        own = [d for d in leaf_dirs if d == hierarchy or d.startswith(hierarchy + "/")]
        if not own:
            continue
        ro = entry["flags"] & mo.MS_RDONLY
        entry.update(source=own[0], fstype=None, data=None, is_bind=True,
                     flags=mo.MS_BIND,
                     remount_flags=mo.MS_BIND | mo.MS_REMOUNT | mo.MS_NOSUID | mo.MS_NODEV
                     | mo.MS_NOEXEC | ro)


def plan_devices(devices: list[dict]) -> list[dict]:
    planned = {path: {"path": path, "mode": stat.S_IFCHR | 0o666, "major": major,
                      "minor": minor, "uid": 0, "gid": 0, "index": -1}
               for path, major, minor in DEFAULT_DEVICES}
    for i, d in enumerate(devices):
        path = os.path.normpath(d.get("path", ""))
        if not path.startswith("/dev/"):
            raise ConfigError(f"linux.devices[{i}].path", f'"{path}" is not under /dev')
        kind = d.get("type")
        if kind not in _DEVICE_TYPES:
            raise ConfigError(f"linux.devices[{i}].type", f'unknown device type "{kind}"')
        if kind != "p" and ("major" not in d or "minor" not in d):
            raise ConfigError(f"linux.devices[{i}]", "a device needs major and minor")
        mode = d.get("fileMode", 0o666) & 0o7777
        planned[path] = {"path": path, "mode": _DEVICE_TYPES[kind] | mode,
                         "major": d.get("major", 0), "minor": d.get("minor", 0),
                         "uid": d.get("uid", 0), "gid": d.get("gid", 0), "index": i}
    return list(planned.values())


def plan_sysctls(sysctls: dict[str, str], namespaces: dict[str, dict]) -> list[tuple[str, str]]:
    from ocipy.config import json_path

    planned = []
    for key, value in sysctls.items():
        if key.startswith("net."):
            need = "network"
        elif key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            need = "ipc"
        elif key in ("kernel.hostname", "kernel.domainname"):
            need = "uts"
        else:
            raise ConfigError(json_path(("linux", "sysctl", key)),
                              "is not in a separate kernel namespace: a container may set "
                              "net.*, the IPC ones (kernel.msg*, kernel.sem, kernel.shm*, "
                              "fs.mqueue.*) and kernel.hostname/domainname")
        if need not in namespaces:
            raise ConfigError(json_path(("linux", "sysctl", key)),
                              f"needs a {need} namespace: it would change the host; add "
                              f'{{"type": "{need}"}} to linux.namespaces')
        planned.append(("/proc/sys/" + key.replace(".", "/"), str(value)))
    return planned


def plan_process(process: dict, host: Host, *, in_userns: bool,
                 seccomp: dict | None = None) -> dict:
    from ocipy.capabilities import caps_to_mask

    args = process.get("args") or []
    if not args:
        raise ConfigError("process.args", "must name the program to run")
    env = list(process.get("env") or [])
    path_env = None
    for item in env:
        if item.startswith("PATH="):
            path_env = item[5:]
    cwd = process.get("cwd", "/")
    if not cwd.startswith("/"):
        raise ConfigError("process.cwd", f'"{cwd}" is not an absolute path')

    rlimits = []
    seen: set[str] = set()
    for i, r in enumerate(process.get("rlimits") or []):
        kind = r.get("type")
        if kind not in RLIMITS:
            raise ConfigError(f"process.rlimits[{i}].type", f'unknown rlimit "{kind}"')
        if kind in seen:
            raise ConfigError(f"process.rlimits[{i}].type", f'rlimit "{kind}" is listed twice')
        seen.add(kind)
        if r["soft"] > r["hard"]:
            raise ConfigError(f"process.rlimits[{i}]", "soft limit is above the hard limit")
        rlimits.append((RLIMITS[kind], r["soft"], r["hard"]))

    caps_config = process.get("capabilities") or {}
    caps = {}
    for key in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        caps[key] = caps_to_mask(caps_config.get(key) or [], f"process.capabilities.{key}")

    user = process.get("user") or {}
    apparmor = process.get("apparmorProfile") or None
    if apparmor and not host.apparmor:
        raise OcipyError(f'apply AppArmor profile "{apparmor}"',
                         "AppArmor is not enabled on this host")
    selinux = process.get("selinuxLabel") or None
    if selinux and not host.selinux:
        raise OcipyError(f'apply SELinux label "{selinux}"', "SELinux is not enabled on this host")

    return {
        "args": list(args),
        "env": env,
        "path_env": path_env,
        "cwd": cwd,
        "rlimits": rlimits,
        "oom_score_adj": process.get("oomScoreAdj"),
        "umask": user.get("umask", 0o022),
        "uid": user.get("uid", 0),
        "gid": user.get("gid", 0),
        "groups": list(user.get("additionalGids") or []),
        "set_groups": True,
        "caps": caps,
        "last_cap": host.last_cap,
        "no_new_privs": bool(process.get("noNewPrivileges")),
        "apparmor": apparmor,
        "selinux": selinux,
        "terminal": bool(process.get("terminal")),
        "seccomp": _plan_seccomp(seccomp),
    }


def _plan_seccomp(seccomp: dict | None) -> dict | None:
    if not seccomp:
        return None
    from ocipy.seccomp import plan_seccomp  # libseccomp only for configs that use it

    return plan_seccomp(seccomp)
