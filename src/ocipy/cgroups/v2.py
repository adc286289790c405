"""cgroup v2: one directory in the unified hierarchy.

Controllers must be enabled top-down: each ancestor's
cgroup.subtree_control gets the controllers its cgroup.controllers offers
(only ever added, never removed).  The container's own cgroup enables
nothing, so it stays a leaf and may hold processes (the "no internal
processes" rule).  Devices are filtered by an eBPF program attached to the
directory.
"""
from __future__ import annotations

import errno

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy.cgroups import devices, files
from ocipy.cgroups.manager import Manager, wait_until
from ocipy.cgroups.resources import Write
from ocipy.errors import ConfigError, OcipyError


class V2Manager(Manager):
    version = "v2"

    def __init__(self, inner: str, mountpoint: str, directory: str,
                 created: list[str] | None = None) -> None:
        super().__init__(inner, created)
        self.mountpoint = mountpoint
        self.dir = directory

    @classmethod
    def from_doc(cls, doc: dict) -> V2Manager:
        return cls(doc["path"], doc["mountpoint"], doc["dir"], doc.get("created"))

    def to_state(self) -> dict:
        return {"version": "v2", "path": self.inner, "mountpoint": self.mountpoint,
                "dir": self.dir, "created": list(self.created)}

    # ---- directories ------------------------------------------------------

    def _leaf_dirs(self) -> list[str]:
        return [self.dir]

    def _make_dirs(self) -> None:
        try:
            _path, made = files.make_dirs(self._base(self.dir), self.inner)
        except OSError as exc:
            raise OcipyError(f"create cgroup {self.dir}", os.strerror(exc.errno or 0).lower(),
                             errno=exc.errno) from None
        self.created.extend(made)
        # enable the controllers from the hierarchy root down to the container's parent
        parent = os.path.dirname(self.dir)
        chain = [self.mountpoint]
        rel = os.path.relpath(parent, self.mountpoint)
        if rel != ".":
            for part in rel.split("/"):
                chain.append(os.path.join(chain[-1], part))
        for directory in chain:
            enable_controllers(directory)

    def _dir_for(self, controller: str) -> str | None:
        return self.dir

    def _procs_dir(self) -> str:
        return self.dir

    def _missing(self, write: Write, directory: str) -> OcipyError:
        controller = write.controller
        available = (files.read_optional(os.path.join(directory, "cgroup.controllers")) or "")
        if controller and controller not in available.split():
            return ConfigError(write.path, f"{write.file} is not available: the {controller} "
                                           "controller is not enabled for this cgroup")
        return super()._missing(write, directory)

    def _check_before_apply(self, resources: dict) -> None:
        """runc's CheckMemoryUsage: with checkBeforeUpdate, refuse a limit below the usage."""
        mem = resources.get("memory") or {}
        if not mem.get("checkBeforeUpdate"):
            return
        limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
        if limit <= 0 and swap <= 0:
            return
        usage = files.read_uint(os.path.join(self.dir, "memory.current"), 0)
        if limit > 0 and usage >= limit:
            raise ConfigError("linux.resources.memory.limit",
                              f"rejecting memory limit {limit} below usage {usage}")
        swap_usage = files.read_optional(os.path.join(self.dir, "memory.swap.current"))
        if swap > 0 and swap_usage is not None and usage + files.parse_uint(swap_usage) >= swap:
            raise ConfigError("linux.resources.memory.swap",
                              f"rejecting memory+swap limit {swap} below usage "
                              f"{usage + files.parse_uint(swap_usage)}")

    # ---- processes --------------------------------------------------------

    def add(self, pid: int) -> None:
        path = os.path.join(self.dir, "cgroup.procs")
        try:
            files.write(path, str(pid))
        except OSError as exc:
            raise OcipyError(f"add pid {pid} to {path}", os.strerror(exc.errno or 0).lower(),
                             errno=exc.errno) from None

    def self_placement(self) -> tuple[str | None, bool, list[tuple[str, bool]]]:
        return self.dir, True, []

    def _apply_devices(self, rules: list[devices.Rule]) -> None:
        try:
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise OcipyError(f"open cgroup {self.dir}", os.strerror(exc.errno or 0).lower(),
                             errno=exc.errno) from None
        try:
            devices.attach_program(fd, rules, cgroup=self.dir)
        finally:
            os.close(fd)

    # ---- freezer ----------------------------------------------------------

    def freezer_file(self) -> str | None:
        return os.path.join(self.dir, "cgroup.freeze")

    def _set_freeze(self, value: str, action: str) -> None:
        path = os.path.join(self.dir, "cgroup.freeze")
        try:
            files.write(path, value)
        except FileNotFoundError:
            raise OcipyError(action, "the cgroup v2 freezer needs Linux 5.2 or later",
                             errno=errno.ENOENT) from None
        except OSError as exc:
            raise OcipyError(f"{action} {path}", os.strerror(exc.errno or 0).lower(),
                             errno=exc.errno) from None

    def _events_frozen(self) -> bool:
        events = files.read_keyed(os.path.join(self.dir, "cgroup.events"))
        return events.get("frozen") == 1

    def freeze(self) -> None:
        self._set_freeze("1", "freeze")
        # cgroup.freeze says what was asked; cgroup.events says when it is done
        if not wait_until(self._events_frozen):
            try:
                self._set_freeze("0", "thaw")
            except OcipyError:
                pass
            raise OcipyError("freeze", "timed out waiting for the cgroup to freeze",
                             errno=errno.ETIMEDOUT)

    def thaw(self) -> None:
        self._set_freeze("0", "thaw")

    def frozen(self) -> bool:
        requested = (files.read_optional(os.path.join(self.dir, "cgroup.freeze")) or "").strip()
        return requested == "1" and self._events_frozen()

    # ---- reading ----------------------------------------------------------

    def stats(self) -> dict:
        from ocipy.cgroups import stats  # events only

        return stats.collect_v2(self.dir)

    def oom_count(self) -> int:
        return files.read_keyed(os.path.join(self.dir, "memory.events")).get("oom_kill", 0)


def enable_controllers(directory: str) -> None:
    """Add every controller ``directory`` offers to its cgroup.subtree_control.

    Best effort, as runc's CreateCgroupPath: all at once, else one by one,
    ignoring refusals (a cgroup with processes of its own cannot enable
    domain controllers).  A limit that then finds its file missing is
    reported by the write with the JSON path.
    """
    available = (files.read_optional(os.path.join(directory, "cgroup.controllers")) or "").split()
    if not available:
        return
    control = os.path.join(directory, "cgroup.subtree_control")
    enabled = set((files.read_optional(control) or "").split())
    missing = [c for c in available if c not in enabled]
    if not missing:
        return
    try:
        files.write(control, " ".join(f"+{c}" for c in missing))
        return
    except OSError:
        pass
    for controller in missing:
        try:
            files.write(control, f"+{controller}")
        except OSError:
            continue
