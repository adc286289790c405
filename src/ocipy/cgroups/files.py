"""Reading and writing cgroupfs files, creating and removing cgroup directories.

Shared by the v1 and v2 managers.  Writes are one open + one write(2), so
the kernel sees the value in a single call (cgroupfs parses each write on
its own); errors stay OSError here and are worded by the caller, which
knows the JSON path the value came from.
"""
from __future__ import annotations

import errno
import time

from ocipy import _os as os  # os without importing os (see _os.py)

MAX_U64 = (1 << 64) - 1


def write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


class Writer:
    """``write`` for a run of writes: consecutive writes to one file share
    its fd (devices.allow takes one rule per write, a dozen per create)."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._fd = -1

    def write(self, path: str, value: str) -> None:
        if path != self._path:
            self.close()
            self._fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            self._path = path
        os.write(self._fd, value.encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._path = -1, None


def read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            chunks.append(chunk)
            # a short read is the end of a cgroup (seq_file) or /proc file:
            # no second read for the EOF
            if len(chunk) < 65536:
                break
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def read_optional(path: str) -> str | None:
    try:
        return read(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def parse_uint(text: str) -> int:
    """A cgroup number: "max" is the largest u64, as runc's GetCgroupParamUint reads it."""
    text = text.strip()
    if text == "max":
        return MAX_U64
    value = int(text)
    # v1 reports "unlimited" as a huge positive number; clamp negatives (a
    # kernel bug on some fields) to 0 as runc does
    return max(value, 0)


def read_uint(path: str, default: int | None = None) -> int:
    text = read_optional(path)
    if text is None:
        if default is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return default
    return parse_uint(text)


def parse_keyed(text: str) -> dict[str, int]:
    """"key value" lines (memory.stat, cpu.stat, memory.events, ...)."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        value = value.strip()
        if key and value:
            try:
                values[key] = parse_uint(value)
            except ValueError:
                continue
    return values


def read_keyed(path: str) -> dict[str, int]:
    text = read_optional(path)
    return parse_keyed(text) if text is not None else {}


def make_dirs(mountpoint: str, inner: str) -> tuple[str, list[str]]:
    """Create ``mountpoint``/``inner`` one component at a time.

    Returns the full path and the directories this call created, top
    first: only those are ours to remove.  The mount point itself is never
    created.
    """
    parts = [p for p in inner.strip("/").split("/") if p]
    if len(parts) > 1:
        # the usual case first: the parents exist (/ocipy stays once made),
        # so one mkdir instead of one per component
        full = os.path.join(mountpoint, *parts)
        try:
            os.mkdir(full, 0o755)
            return full, [full]
        except FileExistsError:
            return full, []
        except FileNotFoundError:
            pass  # a parent to make: one component at a time
    attempt = 0
    while True:
        current = mountpoint
        created: list[str] = []
        try:
            for part in parts:
                current = os.path.join(current, part)
                try:
                    os.mkdir(current, 0o755)
                except FileExistsError:
                    continue
                created.append(current)
            return current, created
        except OSError as exc:
            # leave nothing half made
            for directory in reversed(created):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass
            attempt += 1
            # ENOENT: a parent was removed under us (a failed create or the
            # delete of a container whose cgroupsPath made it, the last one
            # under it, removed it meanwhile): start again
            if exc.errno != errno.ENOENT or attempt == 5:
                raise


def remove_dir(path: str, *, timeout: float = 5.0) -> None:
    """rmdir ``path`` and the cgroups below it, deepest first.

    A cgroup with processes that are still exiting answers EBUSY for a
    moment: retry until ``timeout`` (runc retries too).  A directory that is
    already gone is fine; other errors are raised as OSError.
    """
    # the usual case first: a leaf with no cgroups below it (walking the
    # tree costs a scandir per hierarchy on every delete)
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            raise
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            for below in _subdirs_deepest_first(path):
                os.rmdir(below)
            os.rmdir(path)
            return
        except FileNotFoundError:
            if not os.path.exists(path):
                return
            if time.monotonic() > deadline:
                raise
            continue  # a child vanished under us: walk again
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _subdirs_deepest_first(path: str) -> list[str]:
    found = []
    for top, dirs, _files in os.walk(path, topdown=True):
        found.extend(os.path.join(top, d) for d in dirs)
    # a child path is always longer than its parent's
    found.sort(key=len, reverse=True)
    return found


def procs(path: str, *, recursive: bool = True) -> list[int]:
    """The pids in a cgroup's cgroup.procs, and in every cgroup below it."""
    pids: set[int] = set()
    if recursive:
        dirs = [top for top, _dirs, _files in os.walk(path)]
    else:
        dirs = [path]
    for directory in dirs:
        text = read_optional(os.path.join(directory, "cgroup.procs"))
        if text:
            pids.update(int(line) for line in text.split())
    return sorted(pids)
