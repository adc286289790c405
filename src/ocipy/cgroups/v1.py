"""cgroup v1 (and hybrid): one directory per mounted hierarchy.

Controllers mounted together (cpu,cpuacct) share a directory.  The named
``name=systemd`` hierarchy and, on a hybrid host, the cgroup2 mount are
joined too but hold no limits; as in runc, failing to use them is not an
error.
"""
from __future__ import annotations

import errno

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy.cgroups import devices, files
from ocipy.cgroups.manager import Manager, wait_until
from ocipy.cgroups.resources import Write
from ocipy.errors import OcipyError

# hierarchies joined on a best-effort basis: no resource is applied there
BEST_EFFORT = ("name=systemd", "")
# where `pids` lists the processes: the freezer first, as `kill --all` freezes there
PROCS_PREFERENCE = ("freezer", "devices", "pids", "memory", "cpu", "cpuacct", "name=systemd")


class V1Manager(Manager):
    version = "v1"

    def __init__(self, inner: str, dirs: dict[str, str], created: list[str] | None = None
                 ) -> None:
        super().__init__(inner, created)
        self.dirs = dict(dirs)  # controller -> directory ("" is the hybrid cgroup2 mount)

    @classmethod
    def from_doc(cls, doc: dict) -> V1Manager:
        return cls(doc["path"], doc["dirs"], doc.get("created"))

    def to_state(self) -> dict:
        return {"version": "v1", "path": self.inner, "dirs": dict(self.dirs),
                "created": list(self.created)}

    # ---- directories ------------------------------------------------------

    def _unique_dirs(self) -> list[str]:
        return list(dict.fromkeys(self.dirs.values()))

    def _by_dir(self) -> dict[str, list[str]]:
        """Each directory with the controllers mounted there (cpu,cpuacct share one)."""
        by_dir: dict[str, list[str]] = {}
        for controller, directory in self.dirs.items():
            by_dir.setdefault(directory, []).append(controller)
        return by_dir

    def _leaf_dirs(self) -> list[str]:
        return self._unique_dirs()

    def _make_dirs(self) -> None:
        for directory, controllers in self._by_dir().items():
            try:
                _path, made = files.make_dirs(self._base(directory), self.inner)
            except OSError as exc:
                if all(c in BEST_EFFORT for c in controllers):
                    for controller in controllers:
                        del self.dirs[controller]
                    continue
                raise OcipyError(f"create cgroup {directory}", os.strerror(exc.errno or 0).lower(),
                                 errno=exc.errno) from None
            self.created.extend(made)
            if "cpuset" in controllers:
                _init_cpuset_path(directory)

    def _dir_for(self, controller: str) -> str | None:
        return self.dirs.get(controller)

    def _procs_dir(self) -> str:
        for controller in PROCS_PREFERENCE:
            if controller in self.dirs:
                return self.dirs[controller]
        if not self.dirs:
            raise OcipyError("cgroup", "no cgroup hierarchy is mounted")
        return next(iter(self.dirs.values()))

    # ---- processes --------------------------------------------------------

    def add(self, pid: int) -> None:
        for directory, controllers in self._by_dir().items():
            path = os.path.join(directory, "cgroup.procs")
            try:
                files.write(path, str(pid))
            except OSError as exc:
                if all(c in BEST_EFFORT for c in controllers):
                    continue
                raise OcipyError(f"add pid {pid} to {path}", os.strerror(exc.errno or 0).lower(),
                                 errno=exc.errno) from None

    def self_placement(self) -> tuple[str | None, bool, list[tuple[str, bool]]]:
        # the cgroup2 mount of a hybrid host ("") is best effort, as in add
        unified = None
        tasks = []
        for directory, controllers in self._by_dir().items():
            if controllers == [""]:
                unified = directory
            else:
                tasks.append((os.path.join(directory, "tasks"),
                              not all(c in BEST_EFFORT for c in controllers)))
        return unified, False, tasks

    def _apply_devices(self, rules: list[devices.Rule]) -> None:
        self._execute([Write("devices", name, line, "linux.resources.devices")
                       for name, line in devices.v1_lines(rules)])

    # ---- freezer ----------------------------------------------------------

    def freezer_file(self) -> str | None:
        directory = self.dirs.get("freezer")
        return os.path.join(directory, "freezer.state") if directory else None

    def _freezer(self, action: str) -> str:
        path = self.freezer_file()
        if path is None:
            raise OcipyError(action, "the freezer cgroup controller is not mounted on this host")
        return path

    def freeze(self) -> None:
        path = self._freezer("freeze")
        attempts = 0

        def frozen_now() -> bool:
            nonlocal attempts
            attempts += 1
            # runc: a task stuck in FREEZING is sometimes only caught after a
            # thaw and a new freeze, so every 50 tries thaw first
            if attempts % 50 == 0:
                files.write(path, "THAWED")
            files.write(path, "FROZEN")
            state = files.read(path).strip()
            if state not in ("FROZEN", "FREEZING"):
                raise OcipyError("freeze", f"unexpected freezer state {state}")
            return state == "FROZEN"

        try:
            if wait_until(frozen_now):
                return
        except OSError as exc:
            self._thaw_quietly(path)
            raise OcipyError(f"freeze {path}", os.strerror(exc.errno or 0).lower(),
                             errno=exc.errno) from None
        except OcipyError:
            self._thaw_quietly(path)
            raise
        self._thaw_quietly(path)
        raise OcipyError("freeze", "unable to freeze the container's processes",
                         errno=errno.ETIMEDOUT)

    @staticmethod
    def _thaw_quietly(path: str) -> None:
        try:
            files.write(path, "THAWED")
        except OSError:
            pass

    def thaw(self) -> None:
        path = self._freezer("thaw")
        try:
            files.write(path, "THAWED")
        except OSError as exc:
            raise OcipyError(f"thaw {path}", os.strerror(exc.errno or 0).lower(),
                             errno=exc.errno) from None

    def frozen(self) -> bool:
        path = self.freezer_file()
        return bool(path) and (files.read_optional(path) or "").strip() == "FROZEN"

    # ---- reading ----------------------------------------------------------

    def stats(self) -> dict:
        from ocipy.cgroups import stats  # events only

        return stats.collect_v1(self.dirs)

    def oom_count(self) -> int:
        directory = self.dirs.get("memory")
        if not directory:
            return 0
        return files.read_keyed(os.path.join(directory, "memory.oom_control")).get("oom_kill", 0)


_CPUSET_FILES = ("cpuset.cpus", "cpuset.mems")


def _init_cpuset_path(leaf: str) -> None:
    """Initialise every empty cpuset from the first filled ancestor down to
    the leaf (runc's ensureParent): a new v1 cpuset starts with no cpus and
    mems, and no process can join it then (ENOSPC); a parent another create
    made a moment ago may not be filled yet, and a child of an empty cpuset
    stays empty.  Each file is read once: going up, and a value copied down
    is the parent's as read or as just written."""
    chain = []
    directory = leaf
    while True:
        # both files: a parent another create is filling may have its cpus
        # already and its mems not yet (50 parallel creates hit that)
        values = [files.read_optional(os.path.join(directory, name)) for name in _CPUSET_FILES]
        if None in values or all(v.strip() for v in values):
            break
        chain.append((directory, values))
        directory = os.path.dirname(directory)
    inherited = [(v or "").strip() for v in values]
    for directory, mine in reversed(chain):
        for i, name in enumerate(_CPUSET_FILES):
            if mine[i] is None or mine[i].strip():
                inherited[i] = (mine[i] or "").strip()
            elif inherited[i]:
                path = os.path.join(directory, name)
                try:
                    files.write(path, inherited[i])
                except OSError as exc:
                    raise OcipyError(f"write {inherited[i]} to {path}",
                                     os.strerror(exc.errno or 0).lower(),
                                     errno=exc.errno) from None
