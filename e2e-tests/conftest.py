"""Fixtures of the end-to-end suite: containerd, podman and Docker driving ocipy.

Each client runs privately inside the test session.  Everything lives under
one temp dir, ``/tmp/ocipy-e2e-XXXX``:

- containerd with a generated ``config.toml``: its root, state, temp dir and
  sockets under the temp dir, the CRI plugin and the snapshotters we lack
  disabled; ``ctr`` runs tasks with ``--runc-binary <runtime>``,
  ``--runc-root <tmp>/containerd/runtime-root`` and ``--fifo-dir``, in a
  containerd namespace named after the session;
- podman with ``--root``, ``--runroot``, ``--tmpdir``, ``--storage-driver vfs``,
  ``--cgroup-manager cgroupfs``, ``--events-backend file``, ``--runtime
  <runtime>`` and a private ``containers.conf`` (file locks, pinned ulimits,
  the runtime listed in ``runtime_supports_json``);
- dockerd with ``--data-root``, ``--exec-root``, ``--pidfile``, its socket,
  ``--config-file`` (a private ``daemon.json``), no iptables/bridge/forwarding,
  ``--storage-driver vfs``, cgroupfs and ``--add-runtime ocipy=<runtime>
  --default-runtime ocipy``.

The runtime under test is ``OCIPY_RUNTIME`` (default ``<repo>/.venv/bin/ocipy``);
``OCIPY_RUNTIME=/usr/sbin/runc`` runs the same suite against runc.  The clients
are given a two-line trampoline with the runtime's basename,
``<tmp>/bin/<name>``: it appends its argv to ``<tmp>/runtime-calls.log`` and
``exec``s the runtime, so the process tree, fds and signals are the runtime's
own.  That log is how the suite proves the runtime was really called, finds
the containers' state dirs, and shows on every failure exactly how the client
called the runtime (with the daemons' warnings and errors of the same test).

The image is built here, with no registry: ``busybox_image.py`` turns the
busybox-static rootfs into ``rootfs.tar`` (``podman import``, ``docker import``)
and an OCI image layout tar (``ctr images import``).

Cleanup is strict, as in spec-tests: after every test the client removes what
is left, then the test *fails* if a process it started survives, a mount under
the temp dir or a container cgroup remains, or the runtime's state dir of a
container the test created is still there.  The pytest process is a child
subreaper, so shims, conmon and containers stay in its process tree; leftovers
are killed by pid, never by name.  At session end the daemons are stopped (by
the pids we started), their state removed, and anything mounted under the
temp dir unmounted.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import pty
import resource
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ROOTFS = REPO / "bundles" / "busybox" / "rootfs"
RUNTIME = os.environ.get("OCIPY_RUNTIME") or str(REPO / ".venv" / "bin" / "ocipy")
RUNTIME_NAME = os.path.basename(RUNTIME)
# The root a runtime uses when the client passes no --root (podman does so
# for start, kill, pause, update and delete): /run/ocipy, /run/runc, /run/crun.
RUNTIME_DEFAULT_ROOT = Path("/run") / RUNTIME_NAME
IMAGE = "localhost/busybox:test"
DOCKER_RUNTIME = "ocipy"          # the name dockerd knows the runtime under test by

TIMEOUT = 60.0                    # one client command
DAEMON_TIMEOUT = 60.0             # a daemon becoming ready, or stopping
SETTLE = 10.0                     # processes to go away after a cleanup
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Debian's docker.io CLI, which matches its dockerd (20.10); another `docker`
# may come first on PATH.
DOCKER_CLI = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"

# Paths outside the temp dir the clients create and we cannot move: the
# containerd 1.6 shims put their sockets in /run/containerd/s, dockerd makes
# /run/docker/plugins, podman's runtime calls use the runtime's default root.
# Each is removed at session end if the session created it and it is empty.
HOST_DIRS = [Path("/run/containerd/s"), Path("/run/containerd/fifo"), Path("/run/containerd"),
             Path("/run/docker/plugins"), Path("/run/docker"), RUNTIME_DEFAULT_ROOT]

PR_SET_CHILD_SUBREAPER = 36
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)

# Global flags of a runc-compatible CLI that take a value.
_VALUE_FLAGS = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def pytest_report_header(config: pytest.Config) -> str:
    return f"e2e runtime under test: {RUNTIME}"


# --------------------------------------------------------------------------
# Commands: every call has a timeout; output goes to files, never pipes (a
# daemonizing child such as conmon or a shim keeps inherited fds open).
# --------------------------------------------------------------------------

def run(argv: Iterable[Any], *, timeout: float = TIMEOUT, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    """Run ``argv`` (stdin /dev/null); return its exit status and text output.

    Never raises on the exit status; a timeout kills it and fails the test."""
    argv = [str(a) for a in argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                  timeout=timeout, env=env, check=False)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if code is None:
        raise AssertionError(f"{shlex.join(argv)} did not finish within {timeout}s\n"
                             f"stdout: {stdout!r}\nstderr: {stderr!r}")
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def describe(proc: subprocess.CompletedProcess) -> str:
    return (f"{shlex.join(proc.args)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout!r}\nstderr: {proc.stderr!r}")


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, describe(proc)
    return proc


def run_in_pty(argv: Iterable[Any], *, timeout: float = TIMEOUT,
               env: dict[str, str] | None = None, rows: int = 31, cols: int = 97
               ) -> subprocess.CompletedProcess:
    """Run ``argv`` on a new pty (its controlling terminal, ``rows`` x ``cols``).

    Returns the exit status and everything written to the terminal, with the
    terminal's CRLFs turned back into newlines."""
    argv = [str(a) for a in argv]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    try:
        # setsid --ctty makes the pty the controlling terminal of a new session.
        proc = subprocess.Popen(["setsid", "--ctty", *argv], stdin=slave, stdout=slave,
                                stderr=slave, env=env, close_fds=True)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    exited_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"{shlex.join(argv)} on a pty did not finish within "
                                     f"{timeout}s; output so far: {b''.join(chunks)!r}")
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.5:
                break  # the client is gone and late output had its chance
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every holder of the slave is gone
                    break
                if not data:
                    break
                chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except (AssertionError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait(5)
        raise
    finally:
        os.close(master)
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n").replace("\r", "")
    return subprocess.CompletedProcess(argv, code, text, "")


def wait_for(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition",
             interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns a true value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Processes: the pytest process is a child subreaper, so every shim, conmon
# and container process the clients start stays below it.
# --------------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[1])


def _process_table() -> dict[int, tuple[str, int]]:
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            table[int(name)] = st
    return table


def descendants(root_pid: int | None = None) -> dict[int, str]:
    """pid -> state letter of every process below ``root_pid`` (default: us)."""
    root_pid = os.getpid() if root_pid is None else root_pid
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (_, ppid) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = table[pid][0]
            todo.extend(children.get(pid, []))
    return found


def pid_alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def kill_by_pid(pids: Iterable[int]) -> None:
    """SIGKILL processes we started, by pid (never by name), and give them a moment."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)


def reap_zombie_children(exclude: Iterable[int] = ()) -> None:
    """waitpid every zombie child of ours except ``exclude`` (Popen-managed daemons)."""
    me, skip = os.getpid(), set(exclude)
    for pid, (state, ppid) in _process_table().items():
        if ppid == me and state in ("Z", "X") and pid not in skip:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


# --------------------------------------------------------------------------
# Mounts and cgroups
# --------------------------------------------------------------------------

def _unescape(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def host_mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, fstype, super options) of every mount in our namespace."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        mounts.append((_unescape(fields[4]), rfields[0],
                       rfields[2].split(",") if len(rfields) > 2 else []))
    return mounts


def mounts_under(path: Path | str) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    return [mp for mp, _, _ in host_mounts() if mp.startswith(prefix)]


def umount_detach(path: str) -> None:
    if _libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount2 {path}: {os.strerror(err)}")


def cgroup_mounts() -> dict[str, Path]:
    """Controller (or ``name=...``, or ``""`` for cgroup2) -> mount point."""
    found: dict[str, Path] = {}
    for mp, fstype, opts in host_mounts():
        if fstype == "cgroup2":
            found.setdefault("", Path(mp))
        elif fstype == "cgroup":
            for opt in opts:
                if opt not in ("rw", "ro") and not opt.startswith(("clone_", "release_agent")):
                    found.setdefault(opt, Path(mp))
    return found


def cgroup_hierarchies() -> list[Path]:
    return sorted(set(cgroup_mounts().values()))


def proc_cgroups(pid: int) -> dict[str, str]:
    """Controller -> cgroup path of ``pid`` (``""`` is the cgroup2 entry)."""
    paths: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def memory_limit(pid: int) -> int | None:
    """The memory limit of ``pid``'s cgroup in bytes (None: unlimited), read
    on the host from the cgroup the kernel says the process is in."""
    paths, mounts = proc_cgroups(pid), cgroup_mounts()
    if "memory" in paths and "memory" in mounts:
        cg = mounts["memory"] / paths["memory"].lstrip("/")
        value = int((cg / "memory.limit_in_bytes").read_text())
        return None if value >= 1 << 62 else value
    cg = mounts[""] / paths[""].lstrip("/")
    value = (cg / "memory.max").read_text().strip()
    return None if value == "max" else int(value)


def cgroup_dirs_under(parents: Iterable[str]) -> set[Path]:
    """Every cgroup directory strictly below one of ``parents`` (names at the
    top of each hierarchy), in every hierarchy."""
    found: set[Path] = set()
    for hierarchy in cgroup_hierarchies():
        for parent in parents:
            top = hierarchy / parent
            if top.is_dir():
                for dirpath, dirnames, _ in os.walk(top):
                    found.update(Path(dirpath) / d for d in dirnames)
    return found


def remove_cgroups(dirs: Iterable[Path]) -> list[str]:
    """rmdir cgroup dirs, deepest first; return the ones that would not go."""
    stuck = []
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            stuck.append(f"{d}: {exc.strerror}")
    return stuck


def frozen_counter(pid: int, path: str = "tmp/count") -> Callable[[], str]:
    """Read a counter file the container's process keeps bumping, through
    /proc/<pid>/root (works while the container is frozen)."""
    target = Path(f"/proc/{pid}/root") / path
    return lambda: target.read_text().strip() if target.exists() else ""


# A process that counts in /tmp/count every 50 ms and exits 0 on SIGTERM.
COUNTER_SCRIPT = ('trap "exit 0" TERM; i=0; '
                  'while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done')
# A process that runs until SIGTERM, then exits 0 (busybox sh as pid 1 would
# ignore TERM without the trap).
SLEEPER_SCRIPT = 'trap "exit 0" TERM; while true; do sleep 0.1; done'


def assert_counter_stops_and_resumes(pid: int, pause: Callable[[], Any],
                                     resume: Callable[[], Any]) -> None:
    """Pause a container running COUNTER_SCRIPT as ``pid``: its counter must
    not move while paused, and must move again after resume."""
    counter = frozen_counter(pid)
    first = wait_for(counter, 10, "the container's counter to start")
    wait_for(lambda: counter() not in ("", first), 10, "the counter to advance")
    pause()
    frozen = counter()
    time.sleep(0.5)
    assert counter() == frozen, "the counter moved while the container was paused"
    resume()
    wait_for(lambda: counter() != frozen, 10, "the counter to advance after resume")


# --------------------------------------------------------------------------
# The runtime trampoline and its call log
# --------------------------------------------------------------------------

_US = "\x1f"  # separates argv entries in the call log


class RuntimeCall(SimpleNamespace):
    """One logged runtime invocation: ``argv``, ``root``, ``command``, ``args``."""

    def __str__(self) -> str:
        return shlex.join(self.argv)


def parse_call(line: str) -> RuntimeCall:
    pid, *argv = line.rstrip("\n").split(_US)
    root, i = None, 0
    while i < len(argv) and argv[i].startswith("-"):
        flag, eq, value = argv[i].partition("=")
        if flag in _VALUE_FLAGS and not eq:
            value, i = (argv[i + 1] if i + 1 < len(argv) else ""), i + 1
        if flag == "--root":
            root = value
        i += 1
    command = argv[i] if i < len(argv) else ""
    return RuntimeCall(pid=int(pid), argv=[RUNTIME_NAME, *argv], root=root, command=command,
                       args=argv[i + 1:])


# --------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------

class Daemon:
    """A daemon we started: its Popen, log file, and how to see it is ready."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str],
                 ready: Callable[[], bool]) -> None:
        self.name, self.argv, self.log, self.env, self.ready = name, argv, log, env, ready
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            # Its own session: a ^C to pytest does not reach it; we stop it.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        deadline = time.monotonic() + DAEMON_TIMEOUT
        while not self.ready():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited {self.proc.returncode} while starting: "
                            f"{shlex.join(self.argv)}\n{self.log_tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not ready after {DAEMON_TIMEOUT}s\n{self.log_tail()}",
                            pytrace=False)
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> list[str]:
        """SIGTERM our daemon by its pid; SIGKILL it if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(DAEMON_TIMEOUT / 2)
            return []
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return [f"{self.name} ignored SIGTERM for {DAEMON_TIMEOUT / 2}s and was killed"]

    def pids(self) -> set[int]:
        """The daemon and everything below it (dockerd's own containerd)."""
        if self.proc is None or self.proc.poll() is not None:
            return set()
        return {self.proc.pid, *descendants(self.proc.pid)}


class E2ESession:
    """The temp dir, the runtime trampoline, the daemons and the host state
    that must look the same at the end."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ocipy-e2e-", dir="/tmp"))
        os.chmod(self.tmp, 0o755)
        # Names the session's cgroups (and containerd namespace) start with.
        self.name = f"ocipy-e2e-{uuid.uuid4().hex[:8]}"
        self.bin = self.tmp / "bin"
        self.bin.mkdir()
        self.calls_log = self.tmp / "runtime-calls.log"
        self.calls_log.touch()
        self.runtime = self.bin / RUNTIME_NAME
        self.runtime.write_text(
            "#!/bin/sh\n"
            "# e2e-tests: log how the client called the runtime, then become the runtime.\n"
            f"line=$$; for a do line=\"$line{_US}$a\"; done\n"
            f"printf '%s\\n' \"$line\" >> {shlex.quote(str(self.calls_log))}\n"
            f"exec {shlex.quote(RUNTIME)} \"$@\"\n")
        self.runtime.chmod(0o755)
        self.daemons: list[Daemon] = []
        self.cgroup_parents: list[str] = []
        self.host_dirs_before = {p: p.exists() for p in HOST_DIRS}
        self.env = {**os.environ, "PATH": PATH, "HOME": str(self.tmp / "home"),
                    "TMPDIR": str(self.tmp / "tmp")}
        for d in ("home", "tmp"):
            (self.tmp / d).mkdir()

    # ---- logs ----------------------------------------------------------------
    def logs(self) -> dict[str, Path]:
        return {"runtime calls": self.calls_log, **{d.name: d.log for d in self.daemons}}

    def calls(self, since: int = 0) -> list[RuntimeCall]:
        with open(self.calls_log, "rb") as f:
            f.seek(since)
            return [parse_call(line) for line in f.read().decode(errors="replace").splitlines()
                    if line]

    def calls_offset(self) -> int:
        return self.calls_log.stat().st_size

    def daemon_pids(self) -> set[int]:
        return set().union(*(d.pids() for d in self.daemons)) if self.daemons else set()

    # ---- cleanup checks ---------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {"calls": self.calls_offset(), "mounts": set(mounts_under(self.tmp)),
                "cgroups": cgroup_dirs_under(self.cgroup_parents)}

    def leftovers(self, before: dict[str, Any], allowed_cgroups: Iterable[str] = ()
                  ) -> list[str]:
        """What a test left behind after its client cleaned up; also removes it."""
        problems: list[str] = []

        # Processes: only the daemons may remain.
        def live() -> dict[int, str]:
            keep = self.daemon_pids()
            reap_zombie_children(exclude={d.proc.pid for d in self.daemons if d.proc})
            return {pid: cmdline(pid) for pid, st in descendants().items()
                    if pid not in keep and st not in ("Z", "X")}
        deadline = time.monotonic() + SETTLE
        while (left := live()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            problems.append(f"processes survived the test's cleanup: {left}")
            kill_by_pid(left)
            reap_zombie_children(exclude={d.proc.pid for d in self.daemons if d.proc})

        # The runtime's state of every container created during the test.
        for call in self.calls(before["calls"]):
            if call.command == "create" and call.args:
                state = Path(call.root or RUNTIME_DEFAULT_ROOT) / call.args[-1]
                if state.exists():
                    problems.append(f"the runtime's state dir {state} survived the container "
                                    f"(created by: {call})")
                    run([RUNTIME, "--root", state.parent, "delete", "--force", state.name])
                    shutil.rmtree(state, ignore_errors=True)

        # Mounts under the temp dir that were not there before the test.
        new_mounts = [m for m in mounts_under(self.tmp) if m not in before["mounts"]]
        if new_mounts:
            problems.append(f"mounts left under {self.tmp}: {new_mounts}")
            for mp in sorted(new_mounts, key=len, reverse=True):
                umount_detach(mp)

        # Container cgroups below the session's parents.
        allowed = set(allowed_cgroups)
        new_cgroups = {d for d in cgroup_dirs_under(self.cgroup_parents) - before["cgroups"]
                       if d.name not in allowed}
        if new_cgroups:
            problems.append(f"cgroups left behind: {sorted(map(str, new_cgroups))}")
            problems.extend(f"cannot remove cgroup {s}" for s in remove_cgroups(new_cgroups))
        return problems

    def close(self) -> list[str]:
        """End of session: the daemons are stopped; remove everything else."""
        problems: list[str] = []
        for daemon in self.daemons:
            problems.extend(daemon.stop())
        reap_zombie_children()
        left = {pid: cmdline(pid) for pid, st in descendants().items() if st not in ("Z", "X")}
        if left:
            problems.append(f"processes left at session end (killed): {left}")
            kill_by_pid(left)
        reap_zombie_children()
        mounts = mounts_under(self.tmp)
        if mounts:
            problems.append(f"mounts left under {self.tmp} at session end: {mounts}")
            for mp in sorted(mounts, key=len, reverse=True):
                umount_detach(mp)
        parents = [h / p for h in cgroup_hierarchies() for p in self.cgroup_parents
                   if (h / p).is_dir()]
        stuck = remove_cgroups([*cgroup_dirs_under(self.cgroup_parents), *parents])
        problems.extend(f"cannot remove cgroup {s}" for s in stuck)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.tmp.exists():
            problems.append(f"cannot remove {self.tmp}")
        for path in HOST_DIRS:  # children first: the list is ordered that way
            if not self.host_dirs_before[path] and path.is_dir():
                try:
                    path.rmdir()
                except OSError:
                    problems.append(f"{path} was created during the session and is not empty: "
                                    f"{sorted(os.listdir(path))}")
        return problems


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2ESession]:
    """The session: temp dir, runtime trampoline, subreaper; strict teardown."""
    if not os.access(RUNTIME, os.X_OK):
        pytest.fail(f"runtime under test {RUNTIME} is not executable "
                    f"(build it with `make setup` or set OCIPY_RUNTIME)", pytrace=False)
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.fail(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    session = E2ESession()
    yield session
    problems = session.close()
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    if problems:
        pytest.fail("session teardown found:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def images(e2e: E2ESession) -> SimpleNamespace:
    """``rootfs.tar`` and the OCI layout ``busybox-oci.tar`` of the busybox image."""
    check(run(["sh", REPO / "bundles" / "make-rootfs.sh", ROOTFS], timeout=120))
    out = e2e.tmp / "images"
    check(run([sys.executable, HERE / "busybox_image.py", ROOTFS, out, "test"], timeout=120))
    return SimpleNamespace(rootfs_tar=out / "rootfs.tar", oci_tar=out / "busybox-oci.tar")


def _need(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b, path=PATH) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: install the Debian packages of the Makefile's "
                    f"APT_PACKAGES (containerd, podman, conmon, docker.io)", pytrace=False)


# --------------------------------------------------------------------------
# Evidence on failure: how the runtime was called, and the daemons' warnings
# --------------------------------------------------------------------------

_MARKS = pytest.StashKey[dict]()


@pytest.fixture(autouse=True)
def _evidence(request: pytest.FixtureRequest, e2e: E2ESession) -> Iterator[None]:
    request.node.stash[_MARKS] = (e2e, {name: (p.stat().st_size if p.exists() else 0)
                                        for name, p in e2e.logs().items()})
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed or _MARKS not in item.stash:
        return
    session, marks = item.stash[_MARKS]
    for name, path in session.logs().items():
        if report.when != "call" and name != "runtime calls":
            continue
        try:
            with open(path, "rb") as f:
                f.seek(marks.get(name, 0))
                text = f.read().decode(errors="replace")
        except OSError:
            continue
        if name == "runtime calls":
            lines = [str(parse_call(line)) for line in text.splitlines() if line]
        else:
            lines = [line for line in text.splitlines()
                     if "level=error" in line or "level=warn" in line]
        if lines:
            report.sections.append((f"{name} ({report.when})", "\n".join(lines[-80:])))


# --------------------------------------------------------------------------
# containerd
# --------------------------------------------------------------------------

CONTAINERD_CONFIG = """\
version = 2
root = "{d}/root"
state = "{d}/state"
temp = "{d}/tmp"
# No CRI (it wants CNI and /etc/cni), no /opt/containerd, no snapshotters we lack.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""
"""


class Ctr:
    """``ctr`` on the private containerd, in the session's namespace.

    ``run`` and ``task_exec`` add the runtime options: ``--runc-binary`` (the
    shim's BinaryName), ``--runc-root`` and ``--fifo-dir`` under the temp dir."""

    def __init__(self, e2e: E2ESession, home: Path) -> None:
        self.e2e, self.home = e2e, home
        self.address = home / "containerd.sock"
        self.namespace = e2e.name
        self.runtime_root = home / "runtime-root"
        self.fifo_dir = home / "fifo"
        self.log = home / "containerd.log"

    def argv(self, *args: Any) -> list[str]:
        return ["ctr", "--address", str(self.address), "--namespace", self.namespace,
                *map(str, args)]

    def __call__(self, *args: Any, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return run(self.argv(*args), timeout=timeout, env=self.e2e.env)

    def run_flags(self) -> list[str]:
        return ["--runc-binary", str(self.e2e.runtime), "--runc-root", str(self.runtime_root),
                "--fifo-dir", str(self.fifo_dir)]

    def run(self, cid: str, *cmd: Any, flags: Iterable[Any] = (), image: str = IMAGE,
            timeout: float = TIMEOUT, tty: bool = False) -> subprocess.CompletedProcess:
        """``ctr run [flags] IMAGE ID CMD...`` (on a pty when ``tty``)."""
        argv = self.argv("run", *self.run_flags(), *flags, image, cid, *cmd)
        if tty:
            return run_in_pty(argv, timeout=timeout, env=self.e2e.env)
        return run(argv, timeout=timeout, env=self.e2e.env)

    def task_exec(self, cid: str, exec_id: str, *cmd: Any, flags: Iterable[Any] = (),
                  timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return self("task", "exec", "--fifo-dir", self.fifo_dir, "--exec-id", exec_id, *flags,
                    cid, *cmd, timeout=timeout)

    def tasks(self) -> dict[str, tuple[int, str]]:
        """id -> (pid, status) of the namespace's tasks."""
        out = check(self("task", "ls")).stdout.splitlines()[1:]
        return {f[0]: (int(f[1]), f[2]) for f in (line.split() for line in out) if len(f) >= 3}

    def task_pid(self, cid: str) -> int:
        return self.tasks()[cid][0]

    def task_status(self, cid: str) -> str:
        return self.tasks().get(cid, (0, "MISSING"))[1]

    def new_id(self, hint: str) -> str:
        return f"{hint}-{uuid.uuid4().hex[:8]}"

    def cgroup(self, cid: str) -> str:
        """The cgroup ``ctr run`` asks for by default: /<namespace>/<id>."""
        return f"/{self.namespace}/{cid}"

    def remove_all(self) -> list[str]:
        """Kill, delete and remove every task and container of the namespace."""
        problems = []
        for cid, (_, status) in self.tasks().items():
            if status != "STOPPED":
                self("task", "kill", "--signal", "SIGKILL", cid)
                try:
                    wait_for(lambda c=cid: self.task_status(c) in ("STOPPED", "MISSING"), 15,
                             f"task {cid} to stop after SIGKILL")
                except AssertionError as exc:
                    problems.append(str(exc))
            proc = self("task", "delete", "--force", cid)
            if proc.returncode != 0:
                problems.append(f"cleanup: {describe(proc)}")
        for cid in check(self("containers", "ls", "--quiet")).stdout.split():
            proc = self("containers", "rm", cid)
            if proc.returncode != 0:
                problems.append(f"cleanup: {describe(proc)}")
        return problems


@pytest.fixture(scope="session")
def containerd(e2e: E2ESession, images: SimpleNamespace) -> Iterator[Ctr]:
    """A private containerd with the busybox image imported."""
    _need("containerd", "ctr", "containerd-shim-runc-v2")
    home = e2e.tmp / "containerd"
    (home / "tmp").mkdir(parents=True)
    (home / "config.toml").write_text(CONTAINERD_CONFIG.format(d=home))
    client = Ctr(e2e, home)
    e2e.cgroup_parents.append(client.namespace)
    daemon = Daemon("containerd", ["containerd", "--config", str(home / "config.toml")],
                    client.log, e2e.env,
                    ready=lambda: client.address.exists()
                    and run(client.argv("version"), timeout=10, env=e2e.env).returncode == 0)
    e2e.daemons.append(daemon)
    daemon.start()
    check(client("images", "import", "--base-name", IMAGE.rsplit(":", 1)[0], images.oci_tar,
                 timeout=120))
    yield client
    client.remove_all()
    daemon.stop()


@pytest.fixture
def ctr(containerd: Ctr, e2e: E2ESession) -> Iterator[Ctr]:
    """``ctr`` for one test; afterwards every task and container is removed
    and nothing may be left (processes, state, mounts, cgroups)."""
    before = e2e.snapshot()
    yield containerd
    problems = containerd.remove_all()
    problems += e2e.leftovers(before)
    if problems:
        pytest.fail("cleanup found:\n  " + "\n  ".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# podman
# --------------------------------------------------------------------------

def _pinned_ulimits() -> list[str]:
    """Podman (as root) raises nofile and nproc to 1048576 unless told
    otherwise; without CAP_SYS_RESOURCE in our bounding set every runtime
    fails that with EPERM.  Pin them to what podman can really grant:
    our nofile limit, and nproc no higher than kernel.pid_max (podman caps
    its own, and so conmon's, nproc there)."""
    _, nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nproc = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    return [f"nofile={nofile}:{nofile}", f"nproc={nproc}:{nproc}"]


PODMAN_CONF = """\
[containers]
default_ulimits = {ulimits}
netns = "none"

[network]
network_config_dir = "{d}/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
lock_type = "file"
tmp_dir = "{d}/tmp"
volume_path = "{d}/volumes"
static_dir = "{d}/root/libpod"
# Podman passes --log-format=json --log F only to runtimes named here.
runtime_supports_json = ["crun", "runc", "{runtime}"]
"""

STORAGE_CONF = """\
[storage]
driver = "vfs"
runroot = "{d}/runroot"
graphroot = "{d}/root"
"""


class Podman:
    """``podman`` with private storage and config, running ``--runtime <runtime>``."""

    def __init__(self, e2e: E2ESession, home: Path) -> None:
        self.e2e, self.home = e2e, home
        self.cgroup_parent = f"/{e2e.name}-podman"
        self.env = {**e2e.env,
                    "CONTAINERS_CONF": str(home / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(home / "storage.conf"),
                    "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf")}

    def argv(self, *args: Any) -> list[str]:
        h = self.home
        return ["podman", "--root", str(h / "root"), "--runroot", str(h / "runroot"),
                "--tmpdir", str(h / "tmp"), "--storage-driver", "vfs",
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--network-config-dir", str(h / "networks"),
                "--runtime", str(self.e2e.runtime), *map(str, args)]

    def __call__(self, *args: Any, timeout: float = TIMEOUT, tty: bool = False
                 ) -> subprocess.CompletedProcess:
        if tty:
            return run_in_pty(self.argv(*args), timeout=timeout, env=self.env)
        return run(self.argv(*args), timeout=timeout, env=self.env)

    def run(self, *args: Any, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        """``podman run --network none --cgroup-parent <session's> ARGS``."""
        return self("run", "--network", "none", "--cgroup-parent", self.cgroup_parent, *args,
                    timeout=timeout)

    def start_detached(self, script: str, *flags: Any) -> str:
        """A detached ``sh -c script`` container; returns its full id."""
        return check(self.run("-d", *flags, IMAGE, "sh", "-c", script)).stdout.strip()

    def inspect(self, name: str, fmt: str) -> str:
        return check(self("inspect", "--format", fmt, name)).stdout.strip()

    def pid(self, name: str) -> int:
        return int(self.inspect(name, "{{.State.Pid}}"))


@pytest.fixture(scope="session")
def podman_client(e2e: E2ESession, images: SimpleNamespace) -> Iterator[Podman]:
    """podman with private storage, the busybox image imported."""
    _need("podman", "conmon", "unshare", "mount")
    home = e2e.tmp / "podman"
    for d in ("root", "runroot", "tmp", "networks", "volumes"):
        (home / d).mkdir(parents=True)
    (home / "containers.conf").write_text(PODMAN_CONF.format(
        d=home, ulimits=json.dumps(_pinned_ulimits()), runtime=RUNTIME_NAME))
    (home / "storage.conf").write_text(STORAGE_CONF.format(d=home))
    (home / "registries.conf").write_text("unqualified-search-registries = []\n")
    client = Podman(e2e, home)
    e2e.cgroup_parents.append(client.cgroup_parent.lstrip("/"))
    # containers/image keeps a blob-info cache in /var/lib/containers/cache
    # for root whatever --root says.  Import in a mount namespace where
    # /var/lib is read-only: the cache falls back to memory, the host's
    # /var/lib is never written.
    import_argv = client.argv("import", "--change", "CMD=sh", images.rootfs_tar, IMAGE)
    check(run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind /var/lib /var/lib && mount -o remount,bind,ro /var/lib && exec "$@"',
               "sh", *import_argv], timeout=120, env=client.env))
    yield client
    client("rm", "--force", "--all", "--time", "0")


@pytest.fixture
def podman(podman_client: Podman, e2e: E2ESession) -> Iterator[Podman]:
    """podman for one test; afterwards every container is removed and nothing
    may be left (processes, runtime state, mounts, cgroups)."""
    before = e2e.snapshot()
    yield podman_client
    problems = []
    proc = podman_client("rm", "--force", "--all", "--time", "0")
    if proc.returncode != 0:
        problems.append(f"cleanup: {describe(proc)}")
    # podman puts conmon in <cgroup-parent>/conmon and leaves it there.
    problems += e2e.leftovers(before, allowed_cgroups=["conmon"])
    if problems:
        pytest.fail("cleanup found:\n  " + "\n  ".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# Docker
# --------------------------------------------------------------------------

class Docker:
    """The docker CLI on the private dockerd."""

    def __init__(self, e2e: E2ESession, home: Path) -> None:
        self.e2e, self.home = e2e, home
        self.socket = home / "docker.sock"
        self.cgroup_parent = f"/{e2e.name}-docker"
        self.env = {**e2e.env, "DOCKER_HOST": f"unix://{self.socket}",
                    "DOCKER_CONFIG": str(home / "cli-config")}

    def __call__(self, *args: Any, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return run([DOCKER_CLI, *args], timeout=timeout, env=self.env)

    def run(self, *args: Any, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        """``docker run --runtime ocipy --network none ARGS``."""
        return self("run", "--runtime", DOCKER_RUNTIME, "--network", "none", *args,
                    timeout=timeout)

    def start_detached(self, script: str, *flags: Any) -> str:
        """A detached ``sh -c script`` container; returns its full id."""
        return check(self.run("-d", *flags, IMAGE, "sh", "-c", script)).stdout.strip()

    def inspect(self, name: str, fmt: str) -> str:
        return check(self("inspect", "--format", fmt, name)).stdout.strip()

    def pid(self, name: str) -> int:
        return int(self.inspect(name, "{{.State.Pid}}"))

    def remove_all(self) -> list[str]:
        ids = check(self("ps", "--all", "--quiet", "--no-trunc")).stdout.split()
        if not ids:
            return []
        proc = self("rm", "--force", *ids)
        return [] if proc.returncode == 0 else [f"cleanup: {describe(proc)}"]


@pytest.fixture(scope="session")
def dockerd(e2e: E2ESession, images: SimpleNamespace) -> Iterator[Docker]:
    """A private dockerd (with its own managed containerd), the image imported."""
    _need("dockerd", DOCKER_CLI, "containerd", "containerd-shim-runc-v2")
    home = e2e.tmp / "docker"
    home.mkdir()
    (home / "cli-config").mkdir()
    # The daemon's ID key defaults to /etc/docker/key.json: keep it here.
    (home / "daemon.json").write_text(json.dumps({"deprecated-key-path": str(home / "key.json")}))
    client = Docker(e2e, home)
    e2e.cgroup_parents.append(client.cgroup_parent.lstrip("/"))
    argv = ["dockerd", "--config-file", str(home / "daemon.json"),
            "--data-root", str(home / "data"), "--exec-root", str(home / "exec"),
            "--pidfile", str(home / "docker.pid"), "--host", f"unix://{client.socket}",
            "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
            "--bridge=none", "--userland-proxy=false", "--storage-driver", "vfs",
            "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", client.cgroup_parent,
            "--add-runtime", f"{DOCKER_RUNTIME}={e2e.runtime}", "--default-runtime", DOCKER_RUNTIME]
    daemon = Daemon("dockerd", argv, home / "dockerd.log", e2e.env,
                    ready=lambda: client.socket.exists()
                    and client("version", timeout=10).returncode == 0)
    e2e.daemons.append(daemon)
    daemon.start()
    check(client("import", "--change", 'CMD ["sh"]', images.rootfs_tar, IMAGE, timeout=120))
    yield client
    client.remove_all()
    daemon.stop()


@pytest.fixture
def docker(dockerd: Docker, e2e: E2ESession) -> Iterator[Docker]:
    """docker for one test; afterwards every container is removed and nothing
    may be left (processes, runtime state, mounts, cgroups)."""
    before = e2e.snapshot()
    yield dockerd
    problems = dockerd.remove_all()
    problems += e2e.leftovers(before)
    if problems:
        pytest.fail("cleanup found:\n  " + "\n  ".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# Helpers for test modules (they cannot import conftest: --import-mode=importlib)
# --------------------------------------------------------------------------

@pytest.fixture
def util() -> SimpleNamespace:
    return SimpleNamespace(
        RUNTIME=RUNTIME, RUNTIME_NAME=RUNTIME_NAME, IMAGE=IMAGE, TIMEOUT=TIMEOUT,
        COUNTER_SCRIPT=COUNTER_SCRIPT, SLEEPER_SCRIPT=SLEEPER_SCRIPT,
        run=run, run_in_pty=run_in_pty, check=check, describe=describe, wait_for=wait_for,
        pid_alive=pid_alive, proc_cgroups=proc_cgroups, memory_limit=memory_limit,
        frozen_counter=frozen_counter,
        assert_counter_stops_and_resumes=assert_counter_stops_and_resumes,
    )
