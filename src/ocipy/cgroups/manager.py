"""The cgroup manager interface and what the v1 and v2 managers share.

A manager owns one container's cgroup: it creates the directories
(remembering which ones it made, so `destroy` removes only those), applies
linux.resources through the planned writes of resources.py, places
processes, freezes and thaws, and reads statistics.  Its state is a small
JSON-able dict kept in the container's state.json, so `ocipy pause` or
`ocipy delete` rebuilds the manager without looking at the host again.
"""
from __future__ import annotations

import abc
import errno
import time

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy.cgroups import devices, files
from ocipy.cgroups import resources as res
from ocipy.errors import ConfigError, OcipyError

FREEZE_TIMEOUT = 10.0  # runc gives up after 1000 x 10ms too


class Manager(abc.ABC):
    """One container's cgroup(s).  Build it with ``manager_for`` or ``Manager.from_state``."""

    version: str = ""  # "v1" or "v2"

    def __init__(self, inner: str, created: list[str] | None = None) -> None:
        self.inner = inner  # the cgroup path inside each hierarchy, e.g. /ocipy/<id>
        # the directories this manager made, top first; destroy removes only these
        self.created: list[str] = list(created or ())

    # ---- lifecycle --------------------------------------------------------

    def create(self, resources: dict | None) -> None:
        """Make the cgroup directories and apply ``resources`` (linux.resources).

        Device rules are always applied: the user's, then runc's defaults, so
        a container with no linux.resources still only sees the usual
        devices.  On failure everything this call created is removed again.
        """
        before = len(self.created)
        try:
            self._make_dirs()
            self._apply(resources, with_devices=True)
        except BaseException:
            made, self.created = self.created[before:], self.created[:before]
            self._remove(made, quiet=True)
            raise

    def update(self, resources: dict, *, devices: bool = False) -> None:
        """Apply new limits to the live cgroup (runc `update`).

        As in runc, device rules are left alone unless ``devices`` is True:
        rewriting them on a running container opens a window with no access.
        """
        self._apply(resources, with_devices=devices)

    def destroy(self) -> None:
        """Remove the directories this manager created, deepest first.

        A container cgroup may still hold exiting processes for a moment:
        EBUSY is retried briefly.  Cgroups below the container's own (made by
        the container itself) go with it; created parents are only removed
        when empty, as another container may live under them.
        """
        made, self.created = self.created, []
        self._remove(made, quiet=False)

    @abc.abstractmethod
    def add(self, pid: int) -> None:
        """Put process ``pid`` into the container's cgroup(s)."""

    def self_placement(self) -> tuple[str | None, bool, list[tuple[str, bool]]] | None:
        """How a new container process enters the cgroup(s) itself instead
        of by ``add`` (launch.open_placement, child.c join_cgroups): the
        cgroup2 directory to be cloned into (clone3 CLONE_INTO_CGROUP) and
        whether that is required, and each v1 hierarchy's ``tasks`` file with
        the same flag.  None: ``add`` places it (the systemd driver)."""
        return None

    # ---- freezer ----------------------------------------------------------

    @abc.abstractmethod
    def freeze(self) -> None:
        """Freeze every process of the container; returns once the kernel reports it frozen."""

    @abc.abstractmethod
    def thaw(self) -> None:
        """Let the container's processes run again."""

    @abc.abstractmethod
    def frozen(self) -> bool:
        """Whether the kernel reports the container's cgroup frozen."""

    @abc.abstractmethod
    def freezer_file(self) -> str | None:
        """The file whose content says paused-ness ("FROZEN"/"FREEZING" on v1, "1" on v2)."""

    # ---- reading ----------------------------------------------------------

    def pids(self) -> list[int]:
        """Every process in the container's cgroup and the cgroups below it."""
        return files.procs(self._procs_dir())

    @abc.abstractmethod
    def stats(self) -> dict:
        """The ``data`` of runc's ``events --stats``."""

    @abc.abstractmethod
    def oom_count(self) -> int:
        """How many processes the OOM killer has killed in the container."""

    def leaf_dirs(self) -> list[str]:
        """The container's own cgroup directory in each hierarchy."""
        return self._leaf_dirs()

    def keep(self, dirs: set[str]) -> list[str]:
        """Leave ``dirs``, parents made for every container that follows,
        out of what ``destroy`` removes (container.create: /ocipy); returns
        those of them this manager had made."""
        kept = [d for d in self.created if d in dirs]
        self.created = [d for d in self.created if d not in dirs]
        return kept

    def removable_dirs(self) -> list[str]:
        """The directories ``destroy`` would remove, deepest first (for state.py's fast file)."""
        return sorted(self.created, key=lambda d: d.count("/"), reverse=True)

    # ---- state ------------------------------------------------------------

    @abc.abstractmethod
    def to_state(self) -> dict:
        """A JSON-able description for state.json; ``Manager.from_state`` reverses it."""

    @staticmethod
    def from_state(doc: dict) -> Manager:
        """Rebuild the manager ``to_state`` described."""
        version = doc.get("version")
        if version == "v1":
            from ocipy.cgroups.v1 import V1Manager
            return V1Manager.from_doc(doc)
        if version == "v2":
            from ocipy.cgroups.v2 import V2Manager
            return V2Manager.from_doc(doc)
        if version == "systemd":
            from ocipy.cgroups.systemd import SystemdManager
            return SystemdManager.from_doc(doc)
        raise OcipyError("cgroup state", f"unknown cgroup manager version {version!r}")

    # ---- what each version provides -----------------------------------------

    @abc.abstractmethod
    def _make_dirs(self) -> None:
        """Create the directories, appending the ones made to self.created."""

    @abc.abstractmethod
    def _leaf_dirs(self) -> list[str]:
        """The container's own cgroup directories (one per hierarchy on v1)."""

    @abc.abstractmethod
    def _dir_for(self, controller: str) -> str | None:
        """The directory holding ``controller``'s files, None when it is not mounted."""

    @abc.abstractmethod
    def _procs_dir(self) -> str:
        """The directory whose cgroup.procs lists the container's processes."""

    @abc.abstractmethod
    def _apply_devices(self, rules: list[devices.Rule]) -> None:
        """Make ``rules`` the container's device access rules."""

    def _base(self, directory: str) -> str:
        """``directory`` without the container's path: the mount point or the caller's cgroup.

        Only the components below it are created (and later removed) by us.
        """
        suffix = self.inner.rstrip("/")
        return directory[: -len(suffix)] if suffix and directory.endswith(suffix) else directory

    def _reader(self, controller: str, name: str) -> str | None:
        directory = self._dir_for(controller)
        return files.read_optional(os.path.join(directory, name)) if directory else None

    def _check_before_apply(self, resources: dict) -> None:
        """Refuse a request before any write (v2's memory.checkBeforeUpdate)."""

    # ---- applying resources -----------------------------------------------

    def _apply(self, resources: dict | None, *, with_devices: bool) -> None:
        resources = resources or {}
        # plan everything first: a config error leaves the cgroup untouched
        writes = res.plan(resources, self.version, self._reader)
        rules = devices.container_rules(resources.get("devices")) if with_devices else None
        self._check_before_apply(resources)
        if rules is not None:
            self._apply_devices(rules)
        self._execute(writes)

    def _execute(self, writes: list[res.Write]) -> None:
        """Perform the writes in order; see resources.Write.group for the retries."""
        deferred: list[res.Write] = []
        group = 0
        writer = files.Writer()
        try:
            for write in writes:
                if write.group != group:
                    for retry in deferred:
                        self._write(retry, writer, may_defer=False)
                    deferred, group = [], write.group
                if not self._write(write, writer, may_defer=write.group != 0):
                    deferred.append(write)
            for retry in deferred:
                self._write(retry, writer, may_defer=False)
        finally:
            writer.close()

    def _write(self, write: res.Write, writer: files.Writer, *, may_defer: bool) -> bool:
        directory = self._dir_for(write.controller)
        if directory is None:
            raise ConfigError(write.path, f"the {write.controller} cgroup controller is not "
                                          "mounted on this host")
        choices = [(write.file, write.value)]
        if write.fallback:
            choices.append(write.fallback)
        for name, value in choices:
            path = os.path.join(directory, name)
            try:
                writer.write(path, value)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if may_defer and exc.errno == errno.EINVAL:
                    return False
                raise self._refused(write, path, value, exc) from None
            if write.verify:
                self._verify(write, path, value)
            return True
        if write.optional:
            return True
        if not os.path.isdir(directory):
            raise OcipyError(f"cgroup {directory}", "no such file or directory",
                             errno=errno.ENOENT)
        raise self._missing(write, directory)

    def _missing(self, write: res.Write, directory: str) -> OcipyError:
        if write.fallback:
            return ConfigError(write.path, f"neither {write.file} nor {write.fallback[0]} is "
                                           "available on this kernel")
        return ConfigError(write.path, f"{write.file} is not available on this kernel")

    def _refused(self, write: res.Write, path: str, value: str, exc: OSError) -> OcipyError:
        code = exc.errno or 0
        why = os.strerror(code).lower()
        if code == errno.EBUSY and write.file == "memory.limit_in_bytes":
            # runc's wording: the kernel cannot reclaim below the new limit
            directory = os.path.dirname(path)
            usage = files.read_uint(os.path.join(directory, "memory.usage_in_bytes"), 0)
            peak = files.read_uint(os.path.join(directory, "memory.max_usage_in_bytes"), 0)
            why = f"unable to set memory limit to {value} (current usage: {usage}, " \
                  f"peak usage: {peak})"
        if write.file in ("cpuset.cpus", "cpuset.mems") and code in (errno.ERANGE,
                                                                       errno.EINVAL):
            # what the parent allows is what this host (or cgroup) has
            parent = os.path.dirname(os.path.dirname(path))
            have = files.read_optional(os.path.join(parent, write.file))
            if have is not None and have.strip():
                what = "CPUs" if write.file == "cpuset.cpus" else "memory nodes"
                why += f": this host has {what} {have.strip()}"
        return OcipyError(f"{write.path}: write {value} to {path}", why, errno=code)

    def _verify(self, write: res.Write, path: str, value: str) -> None:
        got = files.read_uint(path, 0)
        want = int(value)
        if got != want:
            bound = "maximum" if want > got else "minimum"
            raise ConfigError(write.path, f"the {bound} allowed value of {write.file} is {got}")

    # ---- removing ---------------------------------------------------------

    def _remove(self, made: list[str], *, quiet: bool) -> None:
        leaves = set(self._leaf_dirs())
        failures = []
        for directory in sorted(made, key=lambda d: d.count("/"), reverse=True):
            try:
                if directory in leaves:
                    files.remove_dir(directory)
                else:
                    os.rmdir(directory)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if directory not in leaves and exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    continue  # a parent another container still uses
                failures.append((directory, exc))
        if failures and not quiet:
            directory, exc = failures[0]
            # keep what is still there, so a later destroy retries it
            self.created.extend(d for d in made if os.path.isdir(d))
            raise OcipyError(f"remove cgroup {directory}", os.strerror(exc.errno or 0).lower(),
                             errno=exc.errno)


def wait_until(predicate, timeout: float = FREEZE_TIMEOUT) -> bool:
    """Poll ``predicate`` with a growing sleep until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
