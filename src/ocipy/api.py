"""The Python API: ``ocipy.Runtime``, over the same functions the CLI calls.

    import ocipy

    rt = ocipy.Runtime(root="/run/ocipy")
    status = rt.run("hello", "bundles/busybox")        # the exit status
    rt.create("web", "bundles/web")
    rt.start("web")
    print(rt.state("web").status)                      # "running"
    rt.delete("web", force=True)

Every failure raises an ``ocipy.OcipyError`` (``ocipy.ConfigError`` for a
bad config.json, with ``.path`` and ``.reason``); nothing calls sys.exit.
Containers run with the calling process's stdin, stdout and stderr, like the
CLI's.  Needs root, like the CLI.
"""
from __future__ import annotations

import os

import attrs

from ocipy import container
from ocipy.errors import OcipyError


@attrs.frozen
class State:
    """A container's state (runtime-spec runtime.md "State"), as `ocipy state` prints it."""

    oci_version: str
    id: str
    status: str
    pid: int
    bundle: str
    annotations: dict = attrs.field(factory=dict)
    created: str | None = None
    owner: str | None = None

    @classmethod
    def from_dict(cls, doc: dict) -> State:
        return cls(oci_version=doc["ociVersion"], id=doc["id"], status=doc["status"],
                   pid=doc.get("pid", 0), bundle=doc["bundle"],
                   annotations=dict(doc.get("annotations") or {}),
                   created=doc.get("created"), owner=doc.get("owner"))

    def to_dict(self) -> dict:
        doc = {"ociVersion": self.oci_version, "id": self.id, "status": self.status,
               "pid": self.pid, "bundle": self.bundle}
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        if self.created is not None:
            doc["created"] = self.created
        if self.owner is not None:
            doc["owner"] = self.owner
        return doc


class Runtime:
    """One state root, and the lifecycle operations on the containers in it."""

    def __init__(self, root: str = "/run/ocipy", *, log: str | None = None,
                 log_format: str = "text", debug: bool = False,
                 systemd_cgroup: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.systemd_cgroup = systemd_cgroup
        self._log = (log, log_format, debug)

    def _logging(self) -> None:
        from ocipy.log import Log, set_current

        set_current(Log(*self._log))

    def create(self, container_id: str, bundle: str, *, pid_file: str | None = None,
               console_socket: str | None = None, no_pivot: bool = False,
               no_new_keyring: bool = False, preserve_fds: int = 0) -> int:
        """Create the container and leave it waiting for start; return the init's pid."""
        self._logging()
        return container.create(self.root, container_id, bundle, pid_file=pid_file,
                                console_socket=console_socket, no_pivot=no_pivot,
                                no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
                                systemd_cgroup=self.systemd_cgroup)

    def start(self, container_id: str) -> None:
        """Run the created container's process; returns once it has exec'd."""
        self._logging()
        container.start(self.root, container_id)

    def state(self, container_id: str) -> State:
        return State.from_dict(container.state(self.root, container_id))

    def kill(self, container_id: str, signal: str | int = "TERM", *,
             all: bool = False) -> None:  # noqa: A002 - runc's flag name
        """Send ``signal`` (a number, or a name with or without SIG) to the init,
        or with ``all`` to every process of the container."""
        from ocipy.signals import parse_signal

        self._logging()
        sig = signal if isinstance(signal, int) else parse_signal(signal)
        container.kill(self.root, container_id, sig, all_processes=all)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        """Remove a stopped container (with ``force``, kill it first)."""
        self._logging()
        container.delete(self.root, container_id, force=force)

    def run(self, container_id: str, bundle: str, *, detach: bool = False,
            keep: bool = False, no_pivot: bool = False, no_new_keyring: bool = False,
            preserve_fds: int = 0) -> int:
        """create + start; in the foreground wait for the container and remove it
        (unless ``keep``), returning its exit status (128+N when killed by signal N)."""
        self._logging()
        return container.run(self.root, container_id, bundle, detach=detach, keep=keep,
                             no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                             preserve_fds=preserve_fds, systemd_cgroup=self.systemd_cgroup)

    def exec(self, container_id: str, args: list[str] | None = None, *,
             process: dict | None = None, env: list[str] = (), cwd: str | None = None,
             user: str | None = None, tty: bool = False, detach: bool = False,
             pid_file: str | None = None) -> int:
        """Run one more process in the container (``args``, or a whole runtime-spec
        ``process``); return its exit status (0 once started, with ``detach``)."""
        self._logging()
        if process is None:
            process = container.process_for_exec(
                self.root, container_id, args=list(args or []), env=list(env), cwd=cwd,
                user=user, additional_gids=[], caps=[], no_new_privs=False, apparmor=None,
                label=None, tty=tty)
        return container.exec_process(self.root, container_id, process, detach=detach,
                                      pid_file=pid_file)

    def list(self) -> list[State]:
        return [State.from_dict(doc) for doc in container.list_containers(self.root)]

    def pause(self, container_id: str) -> None:
        self._logging()
        container.pause(self.root, container_id)

    def resume(self, container_id: str) -> None:
        self._logging()
        container.resume(self.root, container_id)

    def update(self, container_id: str, resources: dict) -> None:
        """Apply new linux.resources to the running container."""
        self._logging()
        container.update(self.root, container_id, resources)

    def ps(self, container_id: str) -> list[int]:
        """The host pids of the container's processes."""
        return container.processes(self.root, container_id)


__all__ = ["OcipyError", "Runtime", "State"]
