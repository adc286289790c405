"""`ocipy check`: is this host ready to run containers, and what is missing?

Each probe returns one item: a status (OK, WARN, FAIL), what was found, and
what it means for containers.  Probes only look: nothing is mounted, no
namespace is kept, no cgroup is created.  `features` reads the same host
probes (ocipy.host, ocipy.seccomp.supported) for what it reports.
"""
from __future__ import annotations

import os

OK, WARN, FAIL = "OK", "WARN", "FAIL"

# x86_64 numbers; on another architecture the probe says so instead of guessing
_SYSCALLS_X86_64 = {"open_tree": 428, "move_mount": 429, "pidfd_open": 434, "clone3": 435,
                    "close_range": 436, "openat2": 437, "mount_setattr": 442}
_ENOSYS = 38


def item(name: str, status: str, found: str, meaning: str) -> dict:
    return {"name": name, "status": status, "found": found, "meaning": meaning}


def check() -> list[dict]:
    """Every probe's item, in the order a person would read them."""
    items = [_kernel(), _cgroups(), *_namespaces(), _user_namespaces(), _seccomp(),
             *_syscalls(), _memfd_exec(), *_lsms(), _capabilities(), _state_root()]
    return items


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _kernel() -> dict:
    release = os.uname().release
    try:
        major, minor = (int(x) for x in release.split(".")[:2])
    except ValueError:
        return item("kernel", WARN, release, "could not read the version")
    if (major, minor) < (5, 6):
        return item("kernel", FAIL, release,
                    "ocipy needs openat2 (Linux 5.6) to resolve mount targets inside the rootfs")
    return item("kernel", OK, release, "new enough for every feature ocipy uses")


def _cgroups() -> dict:
    from ocipy import cgroups
    from ocipy.cgroups import paths

    mounts = paths.parse_mountinfo(paths.read_proc("mountinfo"))
    if cgroups.layout() == "v2":
        root = paths.CGROUP_ROOT
        available = (_read(f"{root}/cgroup.controllers") or "").split()
        delegated = (_read(f"{root}/cgroup.subtree_control") or "").split()
        found = (f"cgroup v2 at {root}; controllers: {' '.join(available) or 'none'}; "
                 f"enabled for children: {' '.join(delegated) or 'none'}")
        wanted = {"cpu", "memory", "pids", "io"}
        missing = sorted(wanted - set(available))
        writable = os.access(root, os.W_OK)
    else:
        v1 = sorted({os.path.basename(m.mountpoint) for m in mounts
                     if m.fstype == "cgroup" and m.mountpoint.startswith(paths.CGROUP_ROOT)})
        unified = [m.mountpoint for m in mounts if m.fstype == "cgroup2"]
        kind = "hybrid (v1 controllers and a cgroup2 mount)" if unified else "v1"
        found = f"{kind}; v1 hierarchies: {', '.join(v1) or 'none'}" + (
            f"; cgroup2 at {', '.join(unified)}" if unified else "")
        names = {n for h in v1 for n in h.split(",")}
        missing = sorted({"cpu", "memory", "pids", "devices", "freezer"} - names)
        writable = any(os.access(os.path.join(paths.CGROUP_ROOT, h), os.W_OK) for h in v1)
    if not writable:
        return item("cgroups", FAIL, found, "the cgroup hierarchy is not writable: containers "
                                            "cannot get cgroups of their own")
    if missing:
        return item("cgroups", WARN, found, f"missing controllers {', '.join(missing)}: "
                                            "linux.resources for them are refused")
    return item("cgroups", OK, found, "containers get their own cgroups and every usual limit")


def _namespaces() -> list[dict]:
    out = []
    for kind, file in (("mount", "mnt"), ("pid", "pid"), ("network", "net"), ("ipc", "ipc"),
                       ("uts", "uts"), ("user", "user"), ("cgroup", "cgroup"),
                       ("time", "time")):
        present = os.path.exists(f"/proc/self/ns/{file}")
        status = OK if present else (WARN if kind in ("time", "cgroup") else FAIL)
        meaning = (f'"{kind}" in linux.namespaces works' if present else
                   f'a config asking for a {kind} namespace is refused')
        out.append(item(f"namespace {kind}", status, "available" if present else "missing",
                        meaning))
    return out


def _user_namespaces() -> dict:
    limit = _read("/proc/sys/user/max_user_namespaces")
    unpriv = _read("/proc/sys/kernel/unprivileged_userns_clone")
    found = f"max_user_namespaces={limit}" + (
        f", unprivileged_userns_clone={unpriv}" if unpriv is not None else "")
    if limit is not None and int(limit) == 0:
        return item("user namespaces", FAIL, found,
                    "user namespaces are disabled: no uidMappings, no rootless containers")
    if unpriv == "0":
        return item("user namespaces", WARN, found,
                    "root can create them; an unprivileged (rootless) ocipy cannot")
    return item("user namespaces", OK, found, "uid/gid mappings and rootless containers work")


def _seccomp() -> dict:
    from ocipy.errors import OcipyError

    try:
        from ocipy._native.seccomp import libseccomp_version
        from ocipy.seccomp import supported

        info = supported()
        version = libseccomp_version()
    except (ImportError, OcipyError) as exc:
        return item("seccomp", FAIL, f"unavailable ({exc})", "linux.seccomp is refused")
    if not info.get("enabled"):
        return item("seccomp", FAIL, f"libseccomp {version}; the kernel has no seccomp filters",
                    "linux.seccomp is refused")
    actions = ", ".join(a.removeprefix("SCMP_ACT_") for a in info.get("actions", []))
    flags = ", ".join(f.removeprefix("SECCOMP_FILTER_FLAG_") for f in info.get("supportedFlags", []))
    return item("seccomp", OK, f"libseccomp {version}; actions: {actions}; flags: {flags or 'none'}",
                "linux.seccomp profiles (docker's and podman's defaults included) are loaded")


def _syscall_available(name: str) -> bool | None:
    """Whether the kernel has this system call: called with arguments it must
    refuse, so ENOSYS is the only way to learn it is missing."""
    import ctypes
    import platform

    if platform.machine() != "x86_64":
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    number = _SYSCALLS_X86_64[name]
    if name == "pidfd_open":
        fd = libc.syscall(ctypes.c_long(number), ctypes.c_int(os.getpid()), ctypes.c_uint(0))
        if fd >= 0:
            os.close(fd)
            return True
    elif name == "close_range":
        # an empty range that closes nothing
        libc.syscall(ctypes.c_long(number), ctypes.c_uint(0xFFFFFFFF), ctypes.c_uint(0xFFFFFFFF),
                     ctypes.c_uint(0))
    else:
        # fd -1 / NULL pointers / size 0: every one of these fails with EBADF,
        # EFAULT or EINVAL when the call exists
        libc.syscall(ctypes.c_long(number), ctypes.c_int(-1), None, None, ctypes.c_long(0),
                     ctypes.c_long(0))
    return ctypes.get_errno() != _ENOSYS


_SYSCALL_MEANING = {
    "openat2": ("mount targets are resolved inside the rootfs (RESOLVE_IN_ROOT)", FAIL,
                "ocipy cannot resolve mount targets safely: create fails"),
    "open_tree": ("bind sources are cloned on the host side for user namespaces", WARN,
                  "bind mounts in containers with a user namespace fail"),
    "move_mount": ("bind sources are attached from their clones", WARN,
                   "bind mounts in containers with a user namespace fail"),
    "pidfd_open": ("kill and the front-end signal the init by pidfd, never a reused pid", WARN,
                   "kill falls back to plain pids"),
    "clone3": ("available for placing a child straight into its cgroup (v2)", OK,
               "not used by this version"),
    "close_range": ("the container's fds are marked close-on-exec in one call", OK,
                    "ocipy walks the fd table instead"),
    "mount_setattr": ("idmapped mounts and recursive mount attributes (rro, ...)", WARN,
                      "recursive mount options like rro are refused"),
}


def _syscalls() -> list[dict]:
    out = []
    for name, (works, missing_status, missing) in _SYSCALL_MEANING.items():
        present = _syscall_available(name)
        if present is None:
            out.append(item(name, WARN, "not probed on this architecture", works))
        elif present:
            out.append(item(name, OK, "available", works))
        else:
            out.append(item(name, missing_status, "missing (ENOSYS)", missing))
    return out


def _memfd_exec() -> dict:
    policy = _read("/proc/sys/vm/memfd_noexec")
    if policy == "2":
        return item("executable memfds", FAIL, "vm.memfd_noexec=2",
                    "ocipy-init runs from a sealed memfd: no container can start")
    return item("executable memfds", OK, f"vm.memfd_noexec={policy or 'absent (kernel < 6.3)'}",
                "ocipy-init runs from a sealed memfd, out of the container's reach")


def _lsms() -> list[dict]:
    from ocipy import host

    out = []
    for name, enabled, field in (("AppArmor", host.apparmor_enabled(), "apparmorProfile"),
                                 ("SELinux", host.selinux_enabled(), "selinuxLabel")):
        out.append(item(name, OK, "enabled" if enabled else "not enabled",
                        f"process.{field} is applied" if enabled else
                        f"a config with process.{field} is refused"))
    return out


_CAP_MEANING = {
    "CAP_SYS_RESOURCE": "rlimits above the runtime's own hard limits and oom_score_adj "
                        "below its own value fail",
    "CAP_SYS_ADMIN": "no namespaces, mounts or cgroups: no container can be created",
    "CAP_MKNOD": "linux.devices cannot be created",
    "CAP_SETPCAP": "capability sets cannot be set",
    "CAP_SYS_PTRACE": "none for ocipy itself",
    "CAP_NET_ADMIN": "network sysctls and network setup in hooks fail",
}


def _capabilities() -> dict:
    from ocipy.capabilities import last_cap, mask_to_caps

    status = _read("/proc/self/status") or ""
    bounding = next((int(line.split()[1], 16) for line in status.splitlines()
                     if line.startswith("CapBnd:")), 0)
    everything = (1 << (last_cap() + 1)) - 1
    missing = mask_to_caps(everything & ~bounding)
    if not missing:
        return item("capabilities", OK, "the bounding set has every capability",
                    "containers can be given any capability")
    critical = [c for c in missing if c == "CAP_SYS_ADMIN"]
    meanings = "; ".join(f"{c}: {_CAP_MEANING.get(c, 'containers cannot be given it')}"
                         for c in missing)
    return item("capabilities", FAIL if critical else WARN,
                f"missing from the bounding set: {', '.join(missing)}", meanings)


def _state_root() -> dict:
    from ocipy.state import DEFAULT_ROOT

    parent = DEFAULT_ROOT if os.path.isdir(DEFAULT_ROOT) else os.path.dirname(DEFAULT_ROOT)
    if os.access(parent, os.W_OK):
        return item("state root", OK, f"{DEFAULT_ROOT} is writable",
                    "container state is kept there (override with --root)")
    return item("state root", FAIL, f"{parent} is not writable", "pass a writable --root")


def render(items: list[dict]) -> str:
    width = max(len(i["name"]) for i in items)
    lines = [f"{i['status']:<4}  {i['name']:<{width}}  {i['found']}\n"
             f"      {'':<{width}}  {i['meaning']}" for i in items]
    failed = sum(i["status"] == FAIL for i in items)
    warned = sum(i["status"] == WARN for i in items)
    summary = ("ready" if not failed else "not ready") + f": {failed} FAIL, {warned} WARN"
    return "\n".join(lines) + f"\n{summary}\n"
