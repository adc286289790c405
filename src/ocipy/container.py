"""The container lifecycle: create, start, state, kill, delete, run, list.

This is the library the CLI calls; each function does one operation of the
runtime-spec (runtime.md "Operations") the way runc does it.  Modules that
only some operations need are imported inside the function that needs them,
so `ocipy state` or `ocipy kill` pay for json and the state module only.
"""
from __future__ import annotations

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy import _resume_gc
from ocipy import state as st
from ocipy.errors import ContainerNotFound, ContainerNotRunning, OcipyError

_SIGKILL = 9  # the signal module imports enum: keep it off the hot path

# How long `start` waits for an init that never opens its fifo, and `delete
# --force` for a killed init to go away, before reporting a failure.
_POLL_MS = 100
_KILL_WAIT_S = 10.0


def create(root: str, container_id: str, bundle: str, *, pid_file: str | None = None,
           console_socket: str | None = None, no_pivot: bool = False,
           no_new_keyring: bool = False, preserve_fds: int = 0,
           console_fd: int | None = None, systemd_cgroup: bool = False) -> int:
    """Create the container and leave its init waiting for `start`; return the init's pid.

    console_fd: a connected socket to send the pty master to, instead of
    --console-socket (a foreground `run` receives the terminal itself).
    """
    st.check_id(container_id)
    bundle = os.path.abspath(bundle)
    return _create(root, container_id, bundle, pid_file=pid_file,
                   console_socket=console_socket, no_pivot=no_pivot,
                   no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
                   console_fd=console_fd, systemd_cgroup=systemd_cgroup)


def _create(root: str, container_id: str, bundle: str, *, pid_file: str | None,
            console_socket: str | None, no_pivot: bool, no_new_keyring: bool,
            preserve_fds: int, console_fd: int | None, systemd_cgroup: bool) -> int:
    from ocipy import OCI_VERSION
    from ocipy.config import load_config
    from ocipy import hooks
    from ocipy.launch import launch
    from ocipy.log import current
    from ocipy.plan import Host, plan_container

    log = current()
    t = log.clock()
    config = load_config(bundle)
    log.step("load and validate config.json", t, bundle=bundle)
    t = log.clock()
    plan = plan_container(config, bundle, container_id=container_id, host=Host(),
                          no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                          preserve_fds=preserve_fds)
    log.step("plan", t)
    terminal = plan["process"] is not None and plan["process"]["terminal"]
    if console_fd is None or not terminal:
        # runc's rules: a terminal needs somewhere to go, and a console
        # socket is only for a terminal
        if terminal and not console_socket:
            raise OcipyError("create a terminal",
                             "process.terminal is true but no --console-socket was given")
        if console_socket and not terminal:
            raise OcipyError(f'use the console socket "{console_socket}"',
                             "process.terminal is false")
    if console_fd is not None and not terminal:
        os.close(console_fd)
        console_fd = None
    plan.update(hooks.plan_hooks(config))
    if terminal:
        size = (config.get("process") or {}).get("consoleSize") or {}
        plan["console_size"] = (size.get("height", 0), size.get("width", 0))

    from ocipy import cgroups

    linux = config.get("linux") or {}
    cgroup = cgroups.manager_for(linux.get("cgroupsPath"), container_id,
                                 systemd=systemd_cgroup)
    record = {
        "ociVersion": config.get("ociVersion", OCI_VERSION),
        "id": container_id,
        "status": "creating",
        "pid": 0,
        "bundle": bundle,
        "rootfs": plan["rootfs"],
        "annotations": config.get("annotations") or {},
        **({"hooks": True} if config.get("hooks") else {}),
        "ocipy": {
            "created": _rfc3339_now(),
            "owner": _owner(),
            "init_start": 0,
            # who is creating it: a create killed half-way leaves
            # "creating" behind, which `state` then reports as stopped
            "creator": [os.getpid(), (st.proc_start_time(os.getpid()) or (0,))[0]],
        },
    }
    if not linux.get("cgroupsPath"):
        # /ocipy/<id> is this id's alone: if create is killed while it makes
        # the dirs, delete removes whatever of them exists
        record["ocipy"]["cgroup_pending"] = cgroup.to_state()
    # the dir appears with its state.json (rename into place): a create
    # killed at any point leaves no dir without a state
    t = log.clock()
    path = st.make_dir(root, container_id, record)
    log.step("state dir", t, path=os.path.join(root, container_id))
    init = 0
    cgroup_made = False
    kept: list[str] = []
    try:
        if console_fd is not None:
            plan["console_fd"] = console_fd
        elif console_socket:
            plan["console_fd"] = connect_console_socket(console_socket)
        seccomp = (plan["process"] or {}).get("seccomp")
        if seccomp and seccomp.get("listener_path"):
            _prepare_seccomp_listener(plan, seccomp)
        fifo = os.path.join(path, st.FIFO_FILE)
        os.mkfifo(fifo, 0o622)
        # the init opens it for writing as the container's root: make it
        # writable whatever our umask and whatever uid root maps to (runc too)
        os.chmod(fifo, 0o622)
        _chown_to_container_root(fifo, plan)
        plan["fifo_fd"] = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        hook_failed = False

        def runtime_hooks(pid: int) -> bytes:
            # prestart (deprecated, still sent by docker) then createRuntime,
            # both in our namespaces, after the mounts and before pivot_root
            nonlocal hook_failed
            creating = hooks.state_json(record, "creating", pid)
            try:
                hooks.run_hooks(config, "prestart", creating)
                hooks.run_hooks(config, "createRuntime", creating)
            except OcipyError:
                hook_failed = True
                raise
            return (creating + b"\0" + hooks.state_json(record, "created", pid) + b"\0"
                    + _listener_payload(plan, record, pid))

        # the container's cgroup exists before its first process, which
        # enters it before anything else (launch.open_placement), so all it
        # allocates is accounted (and a cgroup namespace is rooted there)
        t = log.clock()
        cgroup.create(linux.get("resources"))
        cgroup_made = True
        log.step("create cgroups and write linux.resources", t)
        from ocipy.plan import bind_cgroup_hierarchies

        bind_cgroup_hierarchies(plan, cgroup.leaf_dirs())
        record["ocipy"].pop("cgroup_pending", None)
        record["ocipy"].update(cgroup=cgroup.to_state(), freezer=cgroup.freezer_file(),
                               cgroup_dirs=cgroup.removable_dirs())
        # on disk before the first process exists: if create is killed from
        # here on, delete still finds the cgroup to remove
        st.save(path, record)
        host_top = _top_mount(plan["rootfs"]) if plan["host_mount_ns"] else None
        ahead = []

        def meanwhile(pid: int) -> None:
            # the state.<status> files while the child sets itself up: the
            # pid is the init's unless it forks once more (fork_after_ns)
            if not plan["fork_after_ns"]:
                st.write_status_files(path, dict(record, pid=pid))
                ahead.append(pid)

        try:
            init = launch(plan, config, on_hooks=runtime_hooks, cgroup=cgroup,
                          meanwhile=meanwhile)
        except BaseException:
            if plan["host_mount_ns"]:
                _detach_ours(plan["rootfs"], host_top)
            if hook_failed:
                # runtime.md: a failed prestart/createRuntime hook stops the
                # container and the lifecycle goes on at delete: poststop
                hooks.run_poststop(config, hooks.state_json(record, "stopped", 0))
            raise
        if plan["host_mount_ns"]:
            # the tree the child built in our mount namespace: delete detaches it
            record["ocipy"]["host_mount"] = [plan["rootfs"], _top_mount(plan["rootfs"])]
        t = log.clock()
        # the systemd driver knows its unit only now
        if not linux.get("cgroupsPath"):
            kept = _keep_default_parent(cgroup)
        record["ocipy"].update(cgroup=cgroup.to_state(), freezer=cgroup.freezer_file(),
                               cgroup_dirs=cgroup.removable_dirs())
        info = st.proc_start_time(init)
        record["status"] = "created"
        record["pid"] = init
        record["ocipy"]["init_start"] = info[0] if info else 0
        st.save(path, record, status_files_written=ahead == [init])
        log.step("state: created", t, pid=init)
        if pid_file:
            write_pid_file(pid_file, init)
    except BaseException:
        if init:
            _kill_and_wait(init)
            if plan["host_mount_ns"]:
                _detach_ours(plan["rootfs"], host_top)
        if cgroup_made:
            # not created after all: the parent it made goes too, if empty
            cgroup.created[:0] = kept
            _destroy_cgroup(cgroup)
        st.remove_dir(path)
        raise
    return init


def _cgroup_of(record: dict):
    doc = record["ocipy"].get("cgroup")
    if not doc:
        return None
    from ocipy.cgroups import Manager

    return Manager.from_state(doc)


def _destroy_cgroup(cgroup) -> None:
    try:
        cgroup.destroy()
    except OcipyError:
        pass  # best effort on an error path: the original error matters more


def _keep_default_parent(cgroup) -> list[str]:
    """Containers without linux.cgroupsPath live in /ocipy/<id>: that parent,
    once made, stays for the next ones, as Docker's /docker does (making and
    removing it with each container cost a create and a delete two dozen
    cgroup mkdirs and rmdirs on a v1 host).  A create that fails still
    removes the one it made: only a container that was created keeps it.
    Returns the directories kept that this create made.

    As with /docker, a v1 cpuset /ocipy keeps the CPUs and memory nodes it
    copied when it was made: CPUs added to the host later are not in it."""
    from ocipy.cgroups.paths import DEFAULT_PARENT

    if os.path.dirname(cgroup.inner.rstrip("/")) != DEFAULT_PARENT:
        return []
    return cgroup.keep({os.path.dirname(leaf) for leaf in cgroup.leaf_dirs()})


def _top_mount(path: str) -> int:
    """The id of the topmost mount at path in our mount namespace, 0 if none."""
    from ocipy.cgroups.paths import mountinfo_fields, read_proc, unescape

    top = 0
    for fields, _ in mountinfo_fields(read_proc("mountinfo")):
        if len(fields) > 4 and unescape(fields[4]) == path:
            top = int(fields[0])
    return top


def _detach_ours(path: str, before: int | None) -> None:
    """Detach the mount tree a container without a mount namespace left at
    path, if the topmost mount there is not the one that was there before."""
    from ocipy._native.spawn import detach_mount

    if _top_mount(path) not in (before, 0):
        try:
            detach_mount(path)
        except OSError:
            pass


def _rfc3339_now() -> str:
    """UTC now with microseconds, as runc's created (datetime imports enum)."""
    import time

    ns = time.time_ns()
    seconds, micros = divmod(ns // 1000, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def _owner(passwd: str = "/etc/passwd") -> str:
    """The user who created the container, by name (runc's `list` OWNER).

    Looked up in /etc/passwd itself, as runc's libcontainer/user does, not
    through NSS: getpwuid loads the NSS modules (~0.5 ms on every create)."""
    uid = os.geteuid()
    try:
        fd = os.open(passwd, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return str(uid)
    try:
        data = b""
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    except OSError:
        return str(uid)
    finally:
        os.close(fd)
    wanted = str(uid).encode()
    for line in data.split(b"\n"):
        fields = line.split(b":", 3)
        # name:password:uid:...; runc skips comments and short lines too
        if len(fields) >= 3 and fields[2] == wanted and not line.startswith(b"#"):
            return fields[0].decode(errors="replace")
    return str(uid)


def connect_console_socket(path: str) -> int:
    return _connect_unix(path, f'connect to the console socket "{path}"')


def _connect_unix(path: str, what: str) -> int:
    import _socket  # the C module: socket.py imports enum and selectors (~13 ms)

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise OcipyError.from_os(what, e) from None
    return sock.detach()


def _prepare_seccomp_listener(plan: dict, seccomp: dict) -> None:
    """SCMP_ACT_NOTIFY: connect to the agent now, so a missing listener fails
    create; the child sends it the listener fd once the filter is loaded."""
    path = seccomp["listener_path"]
    plan["seccomp_listener_fd"] = _connect_unix(
        path, f'connect to the seccomp agent "{path}" (linux.seccomp.listenerPath)')
    plan["hooks_sync"] = True  # the payload names the pid: the child asks for it


def _listener_payload(plan: dict, record: dict, pid: int) -> bytes:
    """runtime-spec config-linux.md "containerProcessState", sent with the fd."""
    from ocipy import hooks
    from ocipy._fastjson import dumps, loads

    seccomp = (plan.get("process") or {}).get("seccomp") or {}
    if not seccomp.get("listener_path"):
        return b""
    doc = {"ociVersion": record["ociVersion"], "fds": ["seccompFd"], "pid": pid,
           "metadata": seccomp.get("listener_metadata") or "",
           # runc sends the state as it is while the process is being set up
           "state": loads(hooks.state_json(record, "creating", record.get("pid") or pid))}
    return dumps(doc).encode()


def _chown_to_container_root(path: str, plan: dict) -> None:
    uid = _host_id(plan.get("uid_mappings"), 0)
    gid = _host_id(plan.get("gid_mappings"), 0)
    if uid or gid:
        os.chown(path, uid, gid)


def _host_id(mappings, container_id: int) -> int:
    for inside, outside, size in mappings or ():
        if inside <= container_id < inside + size:
            return outside + container_id - inside
    return 0


def write_pid_file(pid_file: str, pid: int) -> None:
    """Digits only, no newline: containerd parses it with a plain Atoi."""
    path = os.path.abspath(pid_file)
    tmp = f"{path}.ocipy-tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as e:
        raise OcipyError.from_os(f'write the pid file "{pid_file}"', e) from None


def start(root: str, container_id: str) -> None:
    """Release the init waiting on its exec fifo; return once it has exec'd."""
    from ocipy._native.spawn import poll_in

    path, record = st.load(root, container_id)
    handed_over = _start_error_from_frontend(path, record)
    if handed_over is not None:
        raise handed_over
    status = st.status(path, record)
    if status != "created":
        raise OcipyError(f'start container "{container_id}"',
                         f"the container is {status}, not created")
    from ocipy.log import current

    log = current()
    fifo = os.path.join(path, st.FIFO_FILE)
    t = log.clock()
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OcipyError(f'start container "{container_id}"',
                         "it was started already") from None
    try:
        received = b""
        released = False
        while True:
            if not poll_in(fd, _POLL_MS):
                if not st.init_alive(record):
                    raise OcipyError(f'start container "{container_id}"',
                                     "its init process exited before it was started")
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break  # EOF: the init exec'd (the fifo is close-on-exec) or died
            received += chunk
            if not released:
                released = True
                # from now on `state` says running: the fifo is the marker
                os.unlink(fifo)
    finally:
        os.close(fd)
    if not released:
        raise OcipyError(f'start container "{container_id}"',
                         "its init process exited before it was started")
    log.step("exec fifo: released the init, waited for its execve", t)
    if len(received) > 1:
        raise _exec_error(record, received[1:])
    config = _config_of(record) if "hooks" in record else None
    if config and (config.get("hooks") or {}).get("poststart"):
        from ocipy import hooks

        try:
            t = log.clock()
            hooks.run_hooks(config, "poststart", hooks.state_json(record, "running",
                                                                   record["pid"]))
            log.step("poststart hooks", t)
        except OcipyError:
            # runtime-spec 1.3: a failed poststart hook fails start; the
            # container is stopped so it does not run half-started (as runc)
            for pid in container_pids(record):
                try:
                    os.kill(pid, _SIGKILL)
                except ProcessLookupError:
                    pass
            raise


def _start_error_from_frontend(path: str, record: dict) -> OcipyError | None:
    """The native front-end released the init and read an error record back:
    it leaves the record in start.error and runs us to word it."""
    error_file = os.path.join(path, st.START_ERROR_FILE)
    try:
        with open(error_file, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    os.unlink(error_file)
    if not data:
        return OcipyError(f'start container "{record["id"]}"',
                          "its init process exited before it was started")
    return _exec_error(record, data)


def _exec_error(record: dict, data: bytes) -> OcipyError:
    from ocipy._native.spawn import decode_msg
    from ocipy.launch import child_error

    msg = decode_msg(data)
    if msg is None:
        return OcipyError("start the container process", "it reported a malformed error")
    _, step, err, index, detail, _ = msg
    return child_error({"rootfs": record.get("rootfs")}, _config_of(record), step, err,
                       index, detail)


def _config_of(record: dict) -> dict:
    """The config, for wording an error; an empty one if it cannot be read."""
    from ocipy._fastjson import loads

    try:
        with open(os.path.join(record["bundle"], "config.json"), "rb") as f:
            return loads(f.read())
    except (OSError, ValueError):
        return {}


def state(root: str, container_id: str) -> dict:
    path, record = st.load(root, container_id)
    return st.public(record, st.status(path, record))


def kill(root: str, container_id: str, sig: int, *, all_processes: bool = False) -> None:
    path, record = st.load(root, container_id)
    if st.status(path, record) not in ("created", "running", "paused"):
        raise ContainerNotRunning()
    if all_processes:
        cgroup = _cgroup_of(record)
        # runc's order: freeze, signal every process, thaw, so none can fork
        # away in between
        frozen_here = cgroup is not None and sig != _SIGKILL and not cgroup.frozen()
        if frozen_here:
            cgroup.freeze()
        try:
            for pid in container_pids(record):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen_here:
                cgroup.thaw()
        return
    _signal_init(record, sig)


def _signal_init(record: dict, sig: int) -> None:
    """Signal the init through a pidfd, checked against its start time: a pid
    recycled since `create` can never receive the signal."""
    try:
        pidfd = os.pidfd_open(record["pid"])
    except ProcessLookupError:
        raise ContainerNotRunning() from None
    try:
        if not st.init_alive(record):
            raise ContainerNotRunning()
        import _signal

        _signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        raise ContainerNotRunning() from None
    finally:
        os.close(pidfd)


def container_pids(record: dict) -> list[int]:
    """Every process in the container's pid namespace (the init's), init first.

    Only a pid namespace of the container's own tells its processes apart:
    a container that shares ours (no pid namespace in its config) would
    otherwise take in every process of the host.  Then only the init.
    """
    init = record["pid"]
    cgroup = _cgroup_of(record)
    if cgroup is not None:
        # the cgroup is the container's exact set of processes
        in_cgroup = cgroup.pids()
        return [init] + [p for p in in_cgroup if p != init] if init in in_cgroup \
            else in_cgroup
    try:
        ns = os.stat(f"/proc/{init}/ns/pid")
        ours = os.stat("/proc/self/ns/pid")
    except OSError:
        return []
    pids = [init]
    if (ns.st_ino, ns.st_dev) == (ours.st_ino, ours.st_dev):
        return pids
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == init:
            continue
        try:
            other = os.stat(f"/proc/{entry}/ns/pid")
        except OSError:
            continue
        if (other.st_ino, other.st_dev) == (ns.st_ino, ns.st_dev):
            pids.append(int(entry))
    return pids


def delete(root: str, container_id: str, *, force: bool = False) -> None:
    try:
        path, record = st.load(root, container_id)
    except ContainerNotFound:
        if force:
            # runc: deleting what is not there with --force succeeds; podman
            # and containerd clean up that way after a failed create.  A dir
            # without a state (never left by this create, which renames the
            # dir into place with its state) is stale: clear it
            orphan = st.container_dir(root, container_id)
            if os.path.isdir(orphan) and not os.path.exists(os.path.join(orphan,
                                                                         st.STATE_FILE)):
                st.remove_dir(orphan)
            st.clear_stale_tmp(root, container_id)
            return
        raise
    status = st.status(path, record)
    if status != "stopped":
        if not force:
            # runtime-spec runtime.md "Delete": deleting a container that is
            # not stopped MUST fail and MUST leave it alone (runc deletes a
            # created one anyway; we follow the spec).
            raise OcipyError(f'delete container "{container_id}"',
                             f"it is {status}, not stopped (use --force to kill it)")
        if status == "creating":
            raise OcipyError(f'delete container "{container_id}"',
                             "it is still being created")
        from ocipy.log import current

        t = current().clock()
        for pid in container_pids(record):
            try:
                os.kill(pid, _SIGKILL)
            except ProcessLookupError:
                pass
        cgroup = _cgroup_of(record)
        if cgroup is not None and cgroup.frozen():
            cgroup.thaw()  # SIGKILL is delivered once the cgroup thaws
        _wait_stopped(record)
        current().step("kill the container and wait for it", t)
    from ocipy.log import current

    log = current()
    pending = record["ocipy"].get("cgroup_pending")
    if pending:
        from ocipy.cgroups import Manager

        for leaf in Manager.from_state(pending).leaf_dirs():
            try:
                os.rmdir(leaf)  # empty: its processes died with the create
            except OSError:
                pass
    cgroup = _cgroup_of(record)
    if cgroup is not None:
        t = log.clock()
        if cgroup.frozen():
            cgroup.thaw()  # a frozen process cannot die
        _kill_leftovers(cgroup)
        cgroup.destroy()
        log.step("remove cgroups", t)
    host_mount = record["ocipy"].get("host_mount")
    if host_mount and _top_mount(host_mount[0]) == host_mount[1]:
        from ocipy._native.spawn import detach_mount

        try:
            detach_mount(host_mount[0])
        except OSError as e:
            raise OcipyError.from_os(f'detach the rootfs mounts at "{host_mount[0]}"', e) \
                from None
    config = _config_of(record) if "hooks" in record else None
    t = log.clock()
    st.remove_dir(path)
    log.step("remove the state dir", t)
    if config and (config.get("hooks") or {}).get("poststop"):
        from ocipy import hooks

        hooks.run_poststop(config, hooks.state_json(record, "stopped", 0))


def _kill_leftovers(cgroup) -> None:
    """Processes still in a stopped container's cgroup (the init died, its
    children may not have: no pid namespace, or they escaped its reaping)."""
    import time

    deadline = time.monotonic() + _KILL_WAIT_S
    while (pids := cgroup.pids()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, _SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


def _wait_stopped(record: dict) -> None:
    import time

    deadline = time.monotonic() + _KILL_WAIT_S
    while st.init_alive(record):
        if time.monotonic() > deadline:
            raise OcipyError(f'delete container "{record["id"]}"',
                             "its init did not exit after SIGKILL")
        time.sleep(0.005)


def _kill_and_wait(pid: int) -> None:
    try:
        os.kill(pid, _SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def run(root: str, container_id: str, bundle: str, *, detach: bool = False,
        keep: bool = False, **create_options) -> int:
    """create + start; in the foreground, wait and return the exit status."""
    console_ours = theirs = None
    if not detach and not create_options.get("console_socket"):
        # a foreground run with process.terminal gets the pty master itself
        console_ours, theirs = _socketpair()
        create_options["console_fd"] = theirs.detach()
    try:
        init = create(root, container_id, bundle, **create_options)
        master = _receive_master(console_ours) if console_ours is not None else None
    finally:
        if console_ours is not None:
            console_ours.close()
    if detach:
        try:
            start(root, container_id)
        except BaseException:
            _cleanup_after_failed_run(root, container_id, init)
            raise
        return 0

    forwarded = _forward_signals(init)
    _resume_gc()
    try:
        try:
            start(root, container_id)
        except BaseException:
            _cleanup_after_failed_run(root, container_id, init)
            raise
        if master is not None:
            from ocipy.terminal import proxy

            proxy(master)
        while True:
            try:
                _, status = os.waitpid(init, 0)
                break
            except ChildProcessError:
                status = 0
                break
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # killed by a signal: 128+N, as runc
    finally:
        _restore_signals(forwarded)
    if not keep:
        delete(root, container_id, force=True)
    return code


def _receive_master(sock) -> int | None:
    """The pty master the init sent, if it made a terminal (it did so before
    reporting ready, so it is already queued)."""
    import _socket
    import sys

    sock.setblocking(False)
    try:
        _, ancillary, _, _ = sock.recvmsg(64, _socket.CMSG_SPACE(4))
    except BlockingIOError:
        return None
    for level, kind, data in ancillary:
        # one C int; not array("i"): importing array imports collections
        # (~3 ms, and every foreground run comes here)
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
            return int.from_bytes(data[:4], sys.byteorder, signed=True)
    return None


def _socketpair():
    """A connected AF_UNIX stream pair from the C module, skipping socket.py."""
    import _socket

    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    return a, b


def _cleanup_after_failed_run(root: str, container_id: str, init: int) -> None:
    _kill_and_wait(init)
    try:
        delete(root, container_id, force=True)
    except OcipyError:
        pass


def _forward_signals(pid: int) -> dict:
    """While `run` waits, every signal it receives goes to the container's init."""
    import _signal as signal  # the signal module would import enum

    def forward(sig, _frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    previous = {}
    for sig in signal.valid_signals():
        if sig in (_SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGWINCH):
            continue
        if sig >= signal.SIGRTMIN:
            continue
        try:
            previous[sig] = signal.signal(sig, forward)
        except (OSError, ValueError):
            pass
    return previous


def _restore_signals(previous: dict) -> None:
    import _signal as signal

    for sig, handler in previous.items():
        signal.signal(sig, handler)


def list_containers(root: str) -> list[dict]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if name.startswith(st.TMP_PREFIX):
            continue  # a create between mkdir and rename
        try:
            path, record = st.load(root, name)
        except (OcipyError, ValueError, OSError):
            continue
        found.append(st.public(record, st.status(path, record)))
    return found


# /proc/<pid>/ns/ file names of the runtime-spec namespace types
_NS_FILES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
             "user": "user", "cgroup": "cgroup", "time": "time"}


def exec_process(root: str, container_id: str, process: dict, *, detach: bool = False,
                 pid_file: str | None = None, console_socket: str | None = None,
                 preserve_fds: int = 0) -> int:
    """Run one more process in a running container (runc exec); return its exit status.

    The child joins every namespace of the container's init (the user
    namespace first), forks once more so it is inside the pid namespace, and
    applies the process's user, capabilities, rlimits and no_new_privs before
    execve; with detach, return 0 once it has exec'd.
    """
    path, record = st.load(root, container_id)
    status = st.status(path, record)
    if status not in ("created", "running"):
        raise OcipyError(f'exec in container "{container_id}"', f"the container is {status}")
    from ocipy.launch import launch
    from ocipy.plan import NAMESPACE_FLAGS, Host, plan_process

    from ocipy.log import current

    log = current()
    t = log.clock()
    config = _config_of(record)
    namespaces = [ns.get("type") for ns in (config.get("linux") or {}).get("namespaces") or []]
    init = record["pid"]
    joins = [(f"/proc/{init}/ns/{_NS_FILES[kind]}", NAMESPACE_FLAGS[kind], i)
             for i, kind in enumerate(namespaces) if kind in _NS_FILES]
    # the exec'd process gets the container's seccomp profile too
    proc_plan = plan_process(process, Host(), in_userns="user" in namespaces,
                             seccomp=(config.get("linux") or {}).get("seccomp"))
    plan = {
        "joins": joins,
        "fork_after_ns": "pid" in namespaces or "time" in namespaces,
        "setup_rootfs": False,
        "fifo_fd": -1,
        "process": proc_plan,
        "preserve_fds": preserve_fds,
    }
    # the init's namespaces may vanish under us: recheck after opening them
    if not st.init_alive(record):
        raise ContainerNotRunning()
    log.step("plan the process", t)

    console_ours = None
    if proc_plan["terminal"]:
        size = process.get("consoleSize") or {}
        plan["console_size"] = (size.get("height", 0), size.get("width", 0))
        if console_socket:
            plan["console_fd"] = connect_console_socket(console_socket)
        elif detach:
            raise OcipyError("create a terminal",
                             "--tty with --detach needs a --console-socket")
        else:
            console_ours, theirs = _socketpair()
            plan["console_fd"] = theirs.detach()
    elif console_socket:
        raise OcipyError(f'use the console socket "{console_socket}"', "--tty is not set")

    exec_config = dict(config, process=process)
    if proc_plan["seccomp"] and proc_plan["seccomp"].get("listener_path"):
        _prepare_seccomp_listener(plan, proc_plan["seccomp"])

    def payload(pid: int) -> bytes:
        return b"{}\0{}\0" + _listener_payload(plan, record, pid)

    try:
        pid = launch(plan, exec_config, until_exec=True, on_hooks=payload,
                     cgroup=_cgroup_of(record))
        master = _receive_master(console_ours) if console_ours is not None else None
    finally:
        if console_ours is not None:
            console_ours.close()
    if pid_file:
        write_pid_file(pid_file, pid)
    if detach:
        return 0
    forwarded = _forward_signals(pid)
    _resume_gc()
    try:
        if master is not None:
            from ocipy.terminal import proxy

            proxy(master)
        _, status_word = os.waitpid(pid, 0)
    finally:
        _restore_signals(forwarded)
    code = os.waitstatus_to_exitcode(status_word)
    return 128 - code if code < 0 else code


def exec_process_spec(base: dict, *, args: list[str], env: list[str], cwd: str | None,
                      user: str | None, additional_gids: list[int], caps: list[str],
                      no_new_privs: bool, apparmor: str | None, label: str | None,
                      tty: bool) -> dict:
    """The process `ocipy exec ARGS...` runs: the container's own process with
    runc exec's overrides applied (runc utils_linux.go getProcess/newProcess)."""
    process = _copy_json(base)
    if not args:
        raise OcipyError("exec", "no command given: pass ARGS or --process")
    process["args"] = list(args)
    merged = {e.split("=", 1)[0]: e for e in process.get("env") or []}
    for item in env:
        merged[item.split("=", 1)[0]] = item
    process["env"] = list(merged.values())
    if cwd:
        process["cwd"] = cwd
    process.setdefault("cwd", "/")
    user_doc = process.setdefault("user", {"uid": 0, "gid": 0})
    if user:
        uid, _, gid = user.partition(":")
        try:
            user_doc["uid"] = int(uid)
            if gid:
                user_doc["gid"] = int(gid)
        except ValueError:
            raise OcipyError(f'exec --user "{user}"', "only numeric UID[:GID] is supported") \
                from None
    if additional_gids:
        user_doc["additionalGids"] = list(additional_gids)
    if caps:
        sets = process.setdefault("capabilities", {})
        for name in ("bounding", "effective", "permitted"):
            sets[name] = [*(sets.get(name) or []), *caps]
        # runc: ambient only when the spec already has inheritable caps,
        # since an ambient cap needs the inheritable bit
        if sets.get("inheritable") is not None:
            sets["ambient"] = [*(sets.get("ambient") or []), *caps]
    if no_new_privs:
        process["noNewPrivileges"] = True
    if apparmor:
        process["apparmorProfile"] = apparmor
    if label:
        process["selinuxLabel"] = label
    process["terminal"] = tty
    return process


def process_for_exec(root: str, container_id: str, **overrides) -> dict:
    """The process `exec ARGS...` runs in this container: its config's process
    with exec_process_spec's overrides (args, env, cwd, user, ...)."""
    _, record = st.load(root, container_id)
    return exec_process_spec(_config_of(record).get("process") or {}, **overrides)


def _copy_json(value):
    """A deep copy of a JSON document (copy.deepcopy costs an import of 1 ms)."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


def _running_cgroup(root: str, container_id: str, allowed: tuple[str, ...]):
    path, record = st.load(root, container_id)
    status = st.status(path, record)
    if status not in allowed:
        raise ContainerNotRunning()
    cgroup = _cgroup_of(record)
    if cgroup is None:
        raise OcipyError(f'container "{container_id}"', "it has no cgroup of its own")
    return record, cgroup


def pause(root: str, container_id: str) -> None:
    """Freeze every process of the container (runc pause)."""
    _, cgroup = _running_cgroup(root, container_id, ("running", "created"))
    cgroup.freeze()


def resume(root: str, container_id: str) -> None:
    _, cgroup = _running_cgroup(root, container_id, ("paused",))
    cgroup.thaw()


def processes(root: str, container_id: str) -> list[int]:
    """The host pids of the container's processes (runc ps --format json)."""
    path, record = st.load(root, container_id)
    if st.status(path, record) == "stopped":
        raise ContainerNotRunning()
    return container_pids(record)


def update(root: str, container_id: str, resources: dict) -> None:
    """Apply new linux.resources to a live container (runc update)."""
    _, cgroup = _running_cgroup(root, container_id, ("created", "running", "paused"))
    cgroup.update(resources)


def events(root: str, container_id: str, *, interval: float = 5.0, stats_once: bool = False,
           emit=None) -> None:
    """runc events: {"type":"stats",...} every interval (once with --stats) and
    {"type":"oom",...} whenever the OOM killer struck, until the container stops."""
    import time

    from ocipy._fastjson import dumps

    def out(doc: dict) -> None:
        line = dumps(doc) + "\n"
        if emit is not None:
            emit(line)
        else:
            os.write(1, line.encode())

    path, record = st.load(root, container_id)
    cgroup = _cgroup_of(record)
    if cgroup is None or st.status(path, record) == "stopped":
        raise ContainerNotRunning()
    if stats_once:
        out({"type": "stats", "id": container_id, "data": cgroup.stats()})
        return
    _resume_gc()
    ooms = cgroup.oom_count()
    next_stats = time.monotonic()
    while st.status(path, record) != "stopped":
        now = time.monotonic()
        count = cgroup.oom_count()
        if count > ooms:
            out({"type": "oom", "id": container_id})
            ooms = count
        if now >= next_stats:
            out({"type": "stats", "id": container_id, "data": cgroup.stats()})
            next_stats = now + interval
        time.sleep(min(0.2, interval))
    # an OOM kill that stopped the container within the last sleep
    if cgroup.oom_count() > ooms:
        out({"type": "oom", "id": container_id})
