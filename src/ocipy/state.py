"""Container state on disk: ``<root>/<id>/state.json`` and the exec fifo.

The state file holds the spec's state (runtime.md "State") plus what ocipy
needs to recognise its init process again: the init's start time (field 22
of /proc/<pid>/stat), so a recycled pid is never mistaken for the container.
The status is never trusted from the file: it is derived from the process.

Reading the state is one open and one read; writing is write-to-temp plus
rename, so a reader never sees half a file.  The directory is 0700 and the
files 0600.
"""
from __future__ import annotations

import errno as _errno

from ocipy import _fastjson
from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy.errors import ContainerNotFound, OcipyError

DEFAULT_ROOT = "/run/ocipy"
STATE_FILE = "state.json"
FIFO_FILE = "exec.fifo"

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id: str) -> None:
    """runc's rule: [\\w+-.]+, and never a path component like . or .."""
    if (not container_id or container_id in (".", "..") or len(container_id) > 1024
            or not set(container_id) <= _ID_CHARS):
        raise OcipyError(f'invalid container id "{container_id}"',
                         "use letters, digits and _ + - . only")


def container_dir(root: str, container_id: str) -> str:
    check_id(container_id)
    return os.path.join(root, container_id)


TMP_PREFIX = ".tmp-"


def make_dir(root: str, container_id: str, state: dict) -> str:
    """Create the container's state dir holding ``state``; refuse an id in use.

    The dir is made under a temporary name, gets its state.json, and is
    renamed into place: rename(2) is atomic and fails when the id's dir
    exists (it is never empty), so exactly one create per id wins, and no
    dir ever exists without a state.json, whenever create is killed.
    """
    path = container_dir(root, container_id)
    os.makedirs(root, mode=0o711, exist_ok=True)
    if os.path.exists(path):
        raise OcipyError("container with id exists", container_id)
    tmp = os.path.join(root, f"{TMP_PREFIX}{container_id}-{os.getpid()}")
    os.mkdir(tmp, 0o700)
    try:
        # nobody looks into the temporary dir: no temporary file either (a
        # rename costs ~70 us on ext4, where /run lives on some hosts)
        _write_new(tmp, STATE_FILE, _fastjson.dumps(state).encode())
        os.rename(tmp, path)
    except OSError as e:
        remove_dir(tmp)
        if e.errno in (_errno.EEXIST, _errno.ENOTEMPTY):
            # runc's wording, which clients match on
            raise OcipyError("container with id exists", container_id) from None
        raise
    return path


def clear_stale_tmp(root: str, container_id: str) -> None:
    """Remove what a create of this id left when it was killed between
    make_dir's mkdir and rename: `.tmp-<id>-<pid>` dirs whose creator is gone
    (a live pid, the creator or not, keeps its dir)."""
    prefix = f"{TMP_PREFIX}{container_id}-"
    try:
        names = [n for n in os.listdir(root) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue
        except ProcessLookupError:
            pass
        except OSError:
            continue  # EPERM: it lives
        remove_dir(os.path.join(root, name))


def remove_dir(path: str) -> None:
    """Remove a state dir (its files, then it); a concurrent delete may be
    removing it too."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _write_file(file: str, data: bytes) -> None:
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _write_new(path: str, name: str, data: bytes) -> None:
    _write_file(os.path.join(path, name), data)


def _write_atomic(path: str, name: str, data: bytes, *, replace: bool = True) -> None:
    """Write ``name`` in ``path`` so a reader sees the old file or the new,
    never a part; ``replace``: it exists already (as far as we know)."""
    tmp = os.path.join(path, f".{name}.tmp")
    _write_file(tmp, data)
    target = os.path.join(path, name)
    if replace:
        # swapped in, then the old one unlinked: a rename over a file would
        # make ext4 (/run on some hosts) start writing the new one's data
        # out at once (auto_da_alloc), 0.1-0.2 ms a file, for state that is
        # deleted with the container
        from ocipy._native.spawn import exchange

        try:
            exchange(tmp, target)
        except OSError as e:
            # ENOENT: no old file after all; EINVAL: the filesystem cannot
            # exchange; ENOSYS: nor can the kernel (before 3.15); EPERM,
            # EOPNOTSUPP: a seccomp filter refuses renameat2
            if e.errno not in (_errno.ENOENT, _errno.EINVAL, _errno.ENOSYS, _errno.EPERM,
                               _errno.EOPNOTSUPP):
                try:
                    os.unlink(tmp)
                except OSError:
                    pass  # the exchange's error is the one to report
                raise
        else:
            os.unlink(tmp)
            return
    os.rename(tmp, target)


def save(path: str, state: dict, *, status_files_written: bool = False) -> None:
    """status_files_written: the first save of a create whose state.<status>
    files write_status_files already wrote, with this state's pid."""
    data = _fastjson.dumps(state).encode()
    if "ocipy" not in state or state.get("status") == "creating":
        _write_atomic(path, STATE_FILE, data)
        return
    if os.path.exists(os.path.join(path, FAST_FILE)):
        # a later save, while the front-end may read: every file replaced by
        # rename, the fast files before state.json
        _write_status_files(path, state, _write_atomic)
        _write_atomic(path, FAST_FILE, _fast_text(state))
        _write_atomic(path, STATE_FILE, data)
    else:
        # the first (create): state.<status> in place, as the front-end reads
        # them only once `fast` is there; then state.json, then `fast`, so the
        # front-end acts on a container only once state.json has left
        # `creating` (until then it hands every call to Python, which says
        # "still being created")
        if not status_files_written:
            _write_status_files(path, state, _write_new)
        _write_atomic(path, STATE_FILE, data)
        _write_atomic(path, FAST_FILE, _fast_text(state), replace=False)


def write_status_files(path: str, state: dict) -> None:
    """The state.<status> files of a create's first save, ahead of it (while
    the container's process sets itself up): the front-end reads none of
    them before save writes `fast`."""
    _write_status_files(path, state, _write_new)


# The native front-end (src/ocipy/_native/frontend.c) answers `state`,
# `kill`, `start` and `delete` without starting Python when it can.  It reads
# only these files (see save for the order they are written in):
#   fast           "ocipy-fast 1\n" then one "key value" per line: pid,
#                  start (the init's start time), freezer (path or "-"),
#                  python (1: an operation needs Python, e.g. hooks or a
#                  host mount tree to detach), cgroup (dirs to rmdir at
#                  delete, deepest first, space separated; may be empty)
#   state.<status> the exact `ocipy state` output for each status
FAST_FILE = "fast"
# written by the front-end when the released init reported an error (the
# bytes after the fifo's first byte; empty: it died); `ocipy start` words it
START_ERROR_FILE = "start.error"
FAST_STATUSES = ("created", "running", "paused", "stopped")


def _write_status_files(path: str, state: dict, write) -> None:
    for status_name in FAST_STATUSES:
        doc = _fastjson.dumps(public(state, status_name), indent=4) + "\n"
        write(path, f"state.{status_name}", doc.encode())


def _fast_text(state: dict) -> bytes:
    info = state["ocipy"]
    # systemd's units are stopped over D-Bus: delete needs Python
    needs_python = bool(state.get("hooks") or info.get("host_mount")
                        or (info.get("cgroup") or {}).get("version") == "systemd")
    lines = [
        "ocipy-fast 1",
        f"pid {state['pid']}",
        f"start {info['init_start']}",
        f"freezer {info.get('freezer') or '-'}",
        f"python {int(needs_python)}",
        "cgroup " + " ".join(info.get("cgroup_dirs") or ()),
    ]
    return ("\n".join(lines) + "\n").encode()


def load(root: str, container_id: str) -> tuple[str, dict]:
    path = container_dir(root, container_id)
    try:
        fd = os.open(os.path.join(path, STATE_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ContainerNotFound(container_id) from None
    try:
        data = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    return path, _fastjson.loads(data)


def proc_start_time(pid: int) -> tuple[int, str] | None:
    """(start time, state letter) of a pid, or None when it is gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    # comm may hold spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19]), fields[0].decode()


def init_alive(state: dict) -> bool:
    pid = state.get("pid") or 0
    if pid <= 0:
        return False
    info = proc_start_time(pid)
    return info is not None and info[0] == state["ocipy"]["init_start"] and info[1] not in "ZX"


def status(path: str, state: dict) -> str:
    """creating | created | running | paused | stopped, from the process itself."""
    if state.get("status") == "creating":
        pid, start = state["ocipy"].get("creator") or (0, 0)
        info = proc_start_time(pid) if pid else None
        return "creating" if info and info[0] == start else "stopped"
    if not init_alive(state):
        return "stopped"
    if os.path.exists(os.path.join(path, FIFO_FILE)):
        return "created"
    freezer = state["ocipy"].get("freezer")
    if freezer and _frozen(freezer):
        return "paused"
    return "running"


def _frozen(freezer: str) -> bool:
    try:
        with open(freezer) as f:
            value = f.read().strip()
    except OSError:
        return False
    return value in ("FROZEN", "FREEZING", "1")


def public(state: dict, status_now: str) -> dict:
    """The state document `ocipy state` prints: runtime.md's fields plus runc's extras."""
    doc = {
        "ociVersion": state["ociVersion"],
        "id": state["id"],
        "pid": state["pid"] if status_now in ("created", "running", "paused") else 0,
        "status": status_now,
        "bundle": state["bundle"],
        "rootfs": state.get("rootfs", ""),
        "created": state["ocipy"]["created"],
        "owner": state["ocipy"].get("owner", ""),
    }
    if state.get("annotations"):
        doc["annotations"] = state["annotations"]
    return doc
