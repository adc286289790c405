"""The parent's side of starting a container process.

``launch(plan)`` hands the plan to the native child and answers its
requests over the sync socket until it reports ready (create) or exits
(an error).  It writes the uid/gid maps for a new user namespace, and words
any error the child reports as one OcipyError naming the step, the object
from the config and the cause.
"""
from __future__ import annotations

import errno

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy.errors import ConfigError, OcipyError

MSG_USERNS, MSG_READY, MSG_ERROR, MSG_HOOKS, MSG_TRACE = 1, 2, 3, 4, 5

# index = enum oci_step in child.h
STEP_NAMES = (
    "setup", "sync", "setns", "unshare", "userns", "timens", "fork", "propagation",
    "rootfs", "mkdir", "mount", "device", "pivot", "mask", "readonly", "hostname",
    "domainname", "sysctl", "cwd", "lookup", "fifo", "rlimit", "oom", "user", "caps",
    "nnp", "lsm", "keyring", "exec", "console", "hook_createContainer", "hook_startContainer",
    "seccomp", "init", "cgroup",
)

_NS_GET_NSTYPE = 0xB703  # ioctl(2) on a namespace fd: its CLONE_NEW* type


def open_namespaces(joins: list[tuple[str, int, int]], kinds: dict[int, str]) -> list:
    """Open each namespace path and check it is of the type the config says."""
    import fcntl

    opened = []
    try:
        for path, nstype, index in joins:
            where = f"linux.namespaces[{index}].path"
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise ConfigError(where, f"{path}: {os.strerror(e.errno or 0).lower()}") from None
            opened.append((fd, nstype, index))
            try:
                actual = fcntl.ioctl(fd, _NS_GET_NSTYPE)
            except OSError:
                raise ConfigError(where, f"{path} is not a namespace") from None
            if actual != nstype:
                raise ConfigError(where, f"{path} is a {kinds.get(actual, 'different')} "
                                         f"namespace, not a {kinds[nstype]} namespace")
    except BaseException:
        for fd, _, _ in opened:
            os.close(fd)
        raise
    return opened


def open_bind_sources(mounts: list[dict]) -> list[dict]:
    """Clone every bind source here, on the host side, for the child to
    attach with move_mount (spawn takes ownership of the fds)."""
    from ocipy._native.spawn import open_tree_clone
    from ocipy.mountopts import MS_REC

    opened = []
    for m in mounts:
        if m.get("is_bind") and m.get("source"):
            try:
                fd = open_tree_clone(m["source"], bool(m["flags"] & MS_REC))
            except OSError as e:
                for done in opened:
                    if done.get("source_fd", -1) >= 0:
                        os.close(done["source_fd"])
                raise ConfigError(f"mounts[{m['index']}].source",
                                  f"{m['source']}: {os.strerror(e.errno or 0).lower()}") from None
            m = dict(m, source_fd=fd)
        opened.append(m)
    return opened


def open_placement(placement) -> dict:
    """The files through which the child enters its cgroups itself (child.c
    join_cgroups; Manager.self_placement): native plan keys, the fds owned
    by spawn from then on.  A best-effort one that will not open is left
    out; a required one is an error now."""
    cgroup2_dir, cgroup2_required, tasks = placement
    opened: list[int] = []
    keys: dict = {"cgroup_tasks": [], "cgroup_task_paths": []}
    try:
        if cgroup2_dir:
            procs = os.path.join(cgroup2_dir, "cgroup.procs")
            try:
                # O_PATH is enough: clone3 takes the fd raw
                dir_fd = os.open(cgroup2_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                opened.append(dir_fd)
                procs_fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
                opened.append(procs_fd)
                keys.update(cgroup_fd=dir_fd, cgroup_procs_fd=procs_fd,
                            cgroup_required=cgroup2_required, cgroup2_dir=cgroup2_dir)
            except OSError as e:
                if cgroup2_required:
                    raise _placement_error(cgroup2_dir if len(opened) == 0 else procs,
                                           e) from None
                for fd in opened:
                    os.close(fd)
                opened.clear()
        for path, required in tasks:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except OSError as e:
                if required:
                    raise _placement_error(path, e) from None
                continue
            opened.append(fd)
            keys["cgroup_tasks"].append((fd, required))
            keys["cgroup_task_paths"].append(path)
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise
    return keys


def _placement_error(path: str, e: OSError) -> OcipyError:
    return OcipyError(f"add the container process to {path}",
                      os.strerror(e.errno or 0).lower(), errno=e.errno)


def write_id_maps(pid: int, plan: dict) -> None:
    for name, key in (("uid_map", "uid_mappings"), ("gid_map", "gid_mappings")):
        text = "".join(f"{c} {h} {n}\n" for c, h, n in plan[key])
        try:
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise OcipyError.from_os(f"write {name} of the user namespace ({text.strip()!r})",
                                     e) from None


def _send(sock: int, data: bytes) -> None:
    """A message to the child.  If it is gone, the next recv_msg says so
    (EOF), and the child's exit status words the error."""
    try:
        os.write(sock, data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def launch(plan: dict, config: dict, *, until_exec: bool = False, on_hooks=None,
           cgroup=None, meanwhile=None) -> int:
    """Clone the container's process and drive it until it is ready; return its pid.

    until_exec: (ocipy exec) also wait until the process has exec'd: the sync
    socket is close-on-exec, so EOF after READY means execve succeeded.
    cgroup: the container's cgroups.Manager, or None.  The child enters them
    before anything else, so every allocation is accounted: by itself
    (Manager.self_placement, see open_placement), or, for a manager that
    places from outside (the systemd driver's new unit), by its ``add`` right
    after the clone, before the child may go on.
    meanwhile(pid): called once the child may go on, while it sets itself up.
    on_hooks(pid): called when the child's mounts are done and pivot_root is
    next; runs the runtime-namespace hooks and returns the state JSON the
    child hands to its createContainer/startContainer hooks.

    On any failure every process started here is killed and reaped before
    the error propagates: nothing is left running.
    """
    from ocipy._native import spawn as native
    from ocipy.log import current
    from ocipy.plan import NAMESPACE_FLAGS

    log = current()
    kinds = {flag: name for name, flag in NAMESPACE_FLAGS.items()}
    mounts = plan.get("mounts", [])
    if plan.get("bind_devices"):
        # in a user namespace the container's root may be unable to walk to
        # a bind source: clone it here, on the host side.  Otherwise a plain
        # bind inside the new mount namespace keeps the mounts in config
        # order in mountinfo, which runtime-tools checks.
        mounts = open_bind_sources(mounts)
    placement = cgroup.self_placement() if cgroup is not None else None
    # a manager that places from outside moves the child before it goes on:
    # it waits for our go-ahead (and cannot share our memory meanwhile)
    parent_places = cgroup is not None and placement is None
    # the plan the child gets, and the one its errors are worded from (the
    # cgroup files' paths included); every fd in it is spawn's to close,
    # also when opening the next ones fails here
    native_plan = dict(plan, joins=[], mounts=mounts, trace=log.debug_enabled,
                       parent_places=parent_places, join_paths=plan.get("joins", []))
    try:
        native_plan["joins"] = open_namespaces(plan.get("joins", []), kinds)
        if placement is not None:
            native_plan.update(open_placement(placement))
    except BaseException:
        for fd in native.handed_in(native_plan):
            os.close(fd)
        raise
    t = log.clock()
    try:
        pid, sock = native.spawn(native_plan)
    except OSError as e:
        # clone3 refused by the cgroup it was to create the process in
        if native_plan.get("cgroup2_dir") and e.strerror == "clone":
            raise OcipyError(
                f"create the container process in cgroup {native_plan['cgroup2_dir']}",
                os.strerror(e.errno or 0).lower(), errno=e.errno) from None
        raise
    log.step("clone", t, pid=pid)
    children = {pid}
    try:
        if parent_places:
            t = log.clock()
            cgroup.add(pid)
            log.step("place in cgroups", t)
            _send(sock, b"G")  # cgroups are in place
        t_ready = t = log.clock()
        if meanwhile is not None:
            meanwhile(pid)
        while True:
            msg = native.recv_msg(sock)
            if msg is None:
                status = _reap_status(pid)
                raise OcipyError("start the container process",
                                 f"it exited before it was ready ({status})"
                                 + _exit_hint(status, config))
            kind, step, err, index, detail, sender = msg
            if sender > 0:
                children.add(sender)
            if kind == MSG_TRACE:
                # the child's own timing of one step (err: microseconds)
                log.debug(f"child: {_trace_what(step, index, detail)}",
                          duration_ms=round(err / 1000, 3))
            elif kind == MSG_USERNS:
                t = log.clock()
                write_id_maps(sender, plan)
                log.step("write uid/gid maps", t)
                _send(sock, b"G")
            elif kind == MSG_HOOKS:
                t = log.clock()
                _send(sock, on_hooks(sender))
                log.step("prestart and createRuntime hooks", t)
            elif kind == MSG_READY:
                init = sender
                log.step("child ready (namespaces, rootfs, ocipy-init)", t_ready)
                break
            else:
                raise child_error(native_plan, config, step, err, index, detail)
        if init != pid:
            os.waitpid(pid, 0)  # the intermediate process exits once it forked the init
        if until_exec:
            t = log.clock()
            msg = native.recv_msg(sock)
            while msg is not None and msg[0] == MSG_TRACE:
                msg = native.recv_msg(sock)
            log.step("execve", t)
            if msg is not None:
                _, step, err, index, detail, _ = msg
                raise child_error(native_plan, config, step, err, index, detail)
        return init
    except BaseException:
        for child in children:
            _kill_and_reap(child)
        raise
    finally:
        os.close(sock)


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, 9)  # SIGKILL; the signal module would import enum
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _reap_status(pid: int) -> str:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _trace_what(step: int, index: int, detail: str) -> str:
    name = STEP_NAMES[step] if 0 <= step < len(STEP_NAMES) else f"step {step}"
    where = f" [{index}]" if index >= 0 else ""
    return f'{name}{where} "{detail}"' if detail else f"{name}{where}"


def child_error(plan: dict, config: dict, step: int, err: int, index: int,
                detail: str) -> OcipyError:
    """Word a failure the child reported: ``<step> "<object>" (<config path>): <cause>``."""
    name = STEP_NAMES[step] if 0 <= step < len(STEP_NAMES) else f"step {step}"
    why = os.strerror(err).lower() if err else detail
    if name == "lookup":
        program = detail
        if err:
            return OcipyError(f'exec: "{program}"', f"stat {program}: {why}", errno=err)
        return OcipyError(f'exec: "{program}"', "executable file not found in $PATH")
    if name == "setup":
        return OcipyError(detail, why if err else None, errno=err or None)
    if name.startswith("hook_"):
        kind = name[5:]
        path = ((config.get("hooks") or {}).get(kind) or [{}])[index].get("path", "")
        if err == errno.ETIMEDOUT:
            why = "timed out"
        elif not err:
            why = detail.rsplit(": ", 1)[-1]
        return OcipyError(f'run {kind} hook "{path}" (hooks.{kind}[{index}])', why)
    what = _describe(name, plan, config, index, detail)
    return OcipyError(what, why + _hint(name, err, index, plan, config), errno=err or None)


# ---- what to fix: hints for the mistakes people make most (docs/errors.md) --------
# Each is shown only when the step, the errno and the config say it applies.

def _hint(name: str, err: int, index: int, plan: dict, config: dict) -> str:
    process = config.get("process") or {}
    linux = config.get("linux") or {}
    if name == "mount" and err == errno.ENODEV and index >= 0:
        fstype = ((config.get("mounts") or [])[index]).get("type")
        return (f': is the filesystem type "{fstype}" right? /proc/filesystems lists the '
                "ones this kernel has")
    if name == "mkdir" and err == errno.ENOTDIR:
        return ": a part of the destination is a file in the rootfs, not a directory"
    if name == "mkdir" and err == errno.EROFS:
        return (": create the mount point in the rootfs, or do not make the rootfs "
                "read-only (root.readonly)")
    if name == "rlimit" and err == errno.EPERM and not _have_cap("CAP_SYS_RESOURCE"):
        return (": raising a hard limit above the runtime's own needs CAP_SYS_RESOURCE, "
                "which this host's bounding set lacks (see ocipy check)")
    if name == "rlimit" and err == errno.EPERM:
        return ": the soft limit must not be above the hard one"
    if name == "oom" and err in (errno.EACCES, errno.EPERM) and not _have_cap("CAP_SYS_RESOURCE"):
        return (": lowering oom_score_adj below the runtime's own needs CAP_SYS_RESOURCE, "
                "which this host's bounding set lacks (see ocipy check)")
    if name == "user" and err == errno.EINVAL and any(
            ns.get("type") == "user" for ns in linux.get("namespaces") or []):
        user = process.get("user") or {}
        for key, field in (("uid", "uidMappings"), ("gid", "gidMappings")):
            value = user.get(key, 0)
            ranges = linux.get(field) or []
            if ranges and not any(m["containerID"] <= value < m["containerID"] + m["size"]
                                  for m in ranges):
                return f": process.user.{key} {value} is not mapped by linux.{field}"
    if name == "caps" and err == errno.EPERM:
        return ": a capability of the config is not in the runtime's bounding set "                "(see ocipy check)"
    if name == "setns" and err == errno.EINVAL:
        return ": joining it needs the user namespace that owns it in linux.namespaces"
    if name == "unshare" and err == errno.ENOSPC:
        return ": the host's limit on namespaces of this kind is reached " \
               "(/proc/sys/user/max_*_namespaces)"
    if name == "sysctl" and err in (errno.ENOENT, errno.EROFS, errno.EACCES):
        return ": this sysctl is not namespaced, or its namespace is not in linux.namespaces"
    return ""


def _have_cap(name: str) -> bool:
    from ocipy.capabilities import CAPABILITIES

    try:
        bit = CAPABILITIES[name]
        with open("/proc/self/status") as f:
            bounding = next(int(line.split()[1], 16) for line in f
                            if line.startswith("CapBnd:"))
    except (KeyError, ValueError, OSError, StopIteration):
        return True
    return bool(bounding >> bit & 1)


def _exit_hint(status: str, config: dict) -> str:
    limit = (((config.get("linux") or {}).get("resources") or {}).get("memory") or {}) \
        .get("limit")
    if limit is None or limit <= 0:
        return ""
    if status == "killed by signal 9":
        return (f": out of memory? the OOM killer may have killed it: "
                f"linux.resources.memory.limit is {limit} bytes")
    if status == "exit status 1":
        # the child exits 1 without a word when its error report cannot be
        # sent (seen with a 4 KB limit: mount ENOMEM, then the report's
        # send ENOBUFS).  Until it executes ocipy-init it shares our memory,
        # vfork-style, and the OOM killer spares such a process: its
        # allocations fail instead.
        return (f": out of memory? its error report could not even be sent: "
                f"linux.resources.memory.limit is {limit} bytes")
    return ""


def _describe(name: str, plan: dict, config: dict, index: int, detail: str) -> str:
    linux = config.get("linux") or {}
    if name in ("mount", "mkdir", "propagation") and index >= 0:
        m = (config.get("mounts") or [])[index]
        verb = {"mount": "mount", "mkdir": "create mount point for",
                "propagation": "set propagation of"}[name]
        return (f'{verb} "{m.get("source", m.get("type", ""))}" on "{m.get("destination")}" '
                f"(mounts[{index}])")
    if name == "setns":
        ns = (linux.get("namespaces") or [])[index]
        # exec joins the init's namespaces: the config names no path
        path = ns.get("path") or next(
            (j[0] for j in plan.get("join_paths") or () if j[2] == index), None)
        return f'join {ns.get("type")} namespace "{path}" (linux.namespaces[{index}])'
    if name == "device":
        where = f" (linux.devices[{index}])" if index >= 0 else ""
        return f'create device "{detail}"{where}'
    if name == "mask":
        return f'mask "{detail}" (linux.maskedPaths[{index}])'
    if name == "readonly":
        return f'make "{detail}" read-only (linux.readonlyPaths[{index}])'
    if name == "sysctl":
        return f'set sysctl "{detail}"'
    if name == "rlimit":
        r = ((config.get("process") or {}).get("rlimits") or [])[index]
        return f'set {r.get("type")} (process.rlimits[{index}])'
    if name == "cwd":
        return f'change to the working directory "{detail}" (process.cwd)'
    if name == "pivot":
        return f'pivot_root into the rootfs "{plan.get("rootfs")}" ({detail})'
    if name == "rootfs":
        return f'prepare the rootfs "{plan.get("rootfs")}" ({detail})'
    if name == "hostname":
        return f'set hostname "{detail}"'
    if name == "domainname":
        return f'set domainname "{detail}"'
    if name == "cgroup":
        if index >= 0:
            path = plan["cgroup_task_paths"][index]
        else:
            path = os.path.join(plan.get("cgroup2_dir") or "", "cgroup.procs")
        return f"add the container process to {path}"
    if name == "exec":
        return f'exec "{detail}"'
    if name == "oom":
        return f"set oom_score_adj to {detail} (process.oomScoreAdj)"
    if name == "user":
        return f"switch to the user ({detail})"
    if name == "caps":
        return f"set capabilities ({detail})" if detail else "set capabilities"
    words = {"unshare": "create namespaces", "userns": "set up the user namespace",
             "timens": "set time namespace offsets", "fork": "fork the container init",
             "nnp": "set no_new_privs", "lsm": "apply the LSM label",
             "keyring": "join a new session keyring", "console": "set up the console",
             "seccomp": "load the seccomp filter (linux.seccomp)"}
    what = words.get(name, name)
    return f"{what} ({detail})" if detail else what
