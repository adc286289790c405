"""Fixtures of the conformance suite: bundles, a runtime CLI wrapper, strict cleanup.

Every test runs real containers with the runtime named by ``OCIPY_RUNTIME``
(default ``<repo>/.venv/bin/ocipy``) under a private ``--root`` in the test's
tmp_path.  The suite is written and checked against runc (its CLI is ocipy's
CLI); tests marked ``ocipy_only`` pin down where ocipy must differ from runc
and run only when the runtime's basename is ``ocipy``.

After every test the autouse ``_cleanup`` fixture force-deletes what is left
in the private root and then *asserts* that no process the test started is
alive, that no mount under tmp_path remains on the host, that the private
root is empty and that the shared rootfs was not modified.  The pytest process
is a child subreaper (PR_SET_CHILD_SUBREAPER), so detached containers' init
processes become its children: tests can wait for them and collect their exit
status, and cleanup reaps them so no zombie remains.
"""
from __future__ import annotations

import copy
import ctypes
import errno
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTFS = REPO / "bundles" / "busybox" / "rootfs"
# the directory itself, as mountinfo's root field names a bind of it (ROOTFS
# may be a searchable bind mount of it instead: see the rootfs fixture)
ROOTFS_DIR = ROOTFS
RUNTIME = os.environ.get("OCIPY_RUNTIME") or str(REPO / ".venv" / "bin" / "ocipy")
IS_OCIPY = os.path.basename(RUNTIME) == "ocipy"

# Every subprocess the suite starts has a timeout; a container that should
# exit quickly gets this long.
TIMEOUT = 20.0

PR_SET_CHILD_SUBREAPER = 36
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ocipy_only: behaviour where ocipy is required to differ from runc; "
        "skipped unless the runtime under test is named ocipy",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_OCIPY:
        return
    skip = pytest.mark.skip(reason=f"ocipy_only: runtime under test is {RUNTIME}")
    for item in items:
        if item.get_closest_marker("ocipy_only"):
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    return f"runtime under test: {RUNTIME} (ocipy_only tests {'run' if IS_OCIPY else 'skipped'})"


# --------------------------------------------------------------------------
# The base config: runc's `spec` defaults trimmed to what every test needs.
# --------------------------------------------------------------------------

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

BASE_CONFIG: dict[str, Any] = {
    "ociVersion": "1.0.2",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["true"],
        "env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/root",
        ],
        "cwd": "/",
        "capabilities": {
            "bounding": DEFAULT_CAPS,
            "effective": DEFAULT_CAPS,
            "permitted": DEFAULT_CAPS,
        },
    },
    "root": {"path": str(ROOTFS), "readonly": True},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
    ],
    "linux": {
        "namespaces": [
            {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
            {"type": "uts"}, {"type": "mount"},
        ],
    },
}


class Bundle:
    """A bundle directory whose config.json is ``self.config``, written on demand.

    Tests change ``config`` (a plain dict) and the runtime helpers call
    ``write()`` before invoking the runtime, so the file always matches the
    dict.  ``root.path`` is absolute: by default the shared busybox rootfs,
    mounted read-only, which tests must never write to.
    """

    def __init__(self, path: Path, config: dict[str, Any] | None = None) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.config: dict[str, Any] = copy.deepcopy(BASE_CONFIG if config is None else config)

    # ---- process -------------------------------------------------------
    @property
    def process(self) -> dict[str, Any]:
        return self.config["process"]

    @property
    def args(self) -> list[str]:
        return self.config["process"]["args"]

    @args.setter
    def args(self, value: list[str]) -> None:
        self.config["process"]["args"] = list(value)

    def sh(self, script: str) -> "Bundle":
        """Make the container's process ``sh -c script``."""
        self.args = ["sh", "-c", script]
        return self

    # ---- linux ---------------------------------------------------------
    @property
    def linux(self) -> dict[str, Any]:
        return self.config.setdefault("linux", {})

    def add_namespace(self, ns_type: str, path: str | None = None) -> "Bundle":
        self.remove_namespace(ns_type)
        entry = {"type": ns_type}
        if path is not None:
            entry["path"] = path
        self.linux.setdefault("namespaces", []).append(entry)
        return self

    def remove_namespace(self, ns_type: str) -> "Bundle":
        self.linux["namespaces"] = [
            ns for ns in self.linux.get("namespaces", []) if ns["type"] != ns_type
        ]
        return self

    # ---- mounts and root ------------------------------------------------
    def add_mount(self, destination: str, type: str | None = None, source: str | None = None,
                  options: Iterable[str] | None = None) -> "Bundle":
        mount: dict[str, Any] = {"destination": destination}
        if type is not None:
            mount["type"] = type
        if source is not None:
            mount["source"] = source
        if options is not None:
            mount["options"] = list(options)
        self.config.setdefault("mounts", []).append(mount)
        return self

    def use_rootfs(self, path: Path | str, readonly: bool = False) -> "Bundle":
        self.config["root"] = {"path": str(path), "readonly": readonly}
        return self

    # ---- files -----------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def write(self) -> Path:
        self.config_path.write_text(json.dumps(self.config, indent=2))
        return self.path

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


# --------------------------------------------------------------------------
# Process bookkeeping: the pytest process is a subreaper, so everything the
# test starts stays in its process tree.
# --------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict; empty if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, ppid) of a process, None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[1])


def _process_table() -> dict[int, tuple[str, int]]:
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
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
        if pid in found:
            continue
        found[pid] = table[pid][0]
        todo.extend(children.get(pid, []))
    return found


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def live_descendants(exclude: Iterable[int] = (), settle: float = 2.0) -> set[int]:
    """Our live descendants not in ``exclude``, after reaping zombie children
    and giving exiting processes up to ``settle`` seconds to go."""
    excluded = set(exclude)
    deadline = time.monotonic() + settle
    while True:
        reap_zombie_children()
        live = {pid for pid, st in descendants().items()
                if pid not in excluded and st not in ("Z", "X")}
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.02)


def reap_zombie_children() -> None:
    """waitpid every zombie whose parent is us (known pids only, never -1)."""
    me = os.getpid()
    for pid, (state, ppid) in _process_table().items():
        if ppid == me and state in ("Z", "X"):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def wait_for(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition",
             interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns a true value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_pid(pid: int, timeout: float = TIMEOUT) -> int | None:
    """Wait for ``pid`` (a child of ours thanks to the subreaper) to exit.

    Returns its status like ``Popen.returncode`` (exit code, or ``-signal``);
    None when the pid is not our child and only its disappearance was seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            wait_for(lambda: not pid_alive(pid), max(0.0, deadline - time.monotonic()),
                     f"pid {pid} (not our child) to exit")
            return None
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for pid {pid} to exit")
        time.sleep(0.01)


# --------------------------------------------------------------------------
# Mounts
# --------------------------------------------------------------------------

def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[dict[str, Any]]:
    """Parse mountinfo text into dicts: id, parent, root, mount_point, options
    (per-mount, list), optional (list of optional fields), fstype, source, super_options."""
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        mounts.append({
            "id": int(f[0]), "parent": int(f[1]), "dev": f[2],
            "root": _unescape(f[3]), "mount_point": _unescape(f[4]),
            "options": f[5].split(","), "optional": f[6:],
            "fstype": r[0], "source": _unescape(r[1]) if len(r) > 1 else "",
            "super_options": r[2].split(",") if len(r) > 2 else [],
        })
    return mounts


def host_mounts() -> list[dict[str, Any]]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def mounts_under(path: Path | str) -> list[str]:
    """Host mount points whose path contains ``path``."""
    needle = str(path)
    return [m["mount_point"] for m in host_mounts() if needle in m["mount_point"]]


def umount_detach(path: str) -> None:
    if _libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount2 {path}: {os.strerror(err)}")


# --------------------------------------------------------------------------
# The runtime CLI
# --------------------------------------------------------------------------

def _run_to_files(argv: list[str], out_path: Path, err_path: Path, *, timeout: float,
                  stdin: Any = subprocess.DEVNULL, **popen_kwargs: Any
                  ) -> subprocess.CompletedProcess:
    """Run argv with stdout/stderr appended to files; return their text."""
    with open(out_path, "ab") as out, open(err_path, "ab") as err:
        try:
            proc = subprocess.run(argv, stdin=stdin, stdout=out, stderr=err,
                                  timeout=timeout, **popen_kwargs)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{' '.join(argv)} did not finish within {timeout}s; stderr so far: "
                f"{err_path.read_text(errors='replace')!r}") from None
    return subprocess.CompletedProcess(
        argv, proc.returncode,
        out_path.read_text(errors="replace"), err_path.read_text(errors="replace"))


def with_fd3(argv: list[str], path: Path | None) -> list[str]:
    """argv started with ``path`` open read-only as an extra inherited fd 3
    (unchanged when ``path`` is None): sh opens the file without close-on-exec
    and becomes argv[0]."""
    if path is None:
        return argv
    return ["/bin/sh", "-c", 'exec "$@" 3<"$0"', str(path), *argv]


def _describe(proc: subprocess.CompletedProcess) -> str:
    return (f"{' '.join(map(str, proc.args))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout!r}\nstderr: {proc.stderr!r}")


class Runtime:
    """The runtime's CLI with a private ``--root``.

    Every call has a timeout and sends the runtime's stdout/stderr to files,
    never to pipes: a container inheriting the runtime's stdio (``create``,
    ``run -d``) would otherwise hold the pipe open and hang the reader.
    Results are ``subprocess.CompletedProcess`` with text stdout/stderr.
    Methods taking ``check`` assert exit status 0 when it is true.

    A detached container's stdout/stderr are files read with
    ``stdout(id)``/``stderr(id)``; the runtime's own messages from ``create``
    land there too, as the container inherits the runtime's stdio.
    """

    def __init__(self, binary: str, root: Path, workdir: Path) -> None:
        self.binary = binary
        self.root = root
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pids: dict[str, int] = {}
        self._seq = 0

    # ---- plumbing --------------------------------------------------------
    @staticmethod
    def new_id(hint: str = "c") -> str:
        """A container id unique on this host (cgroup paths are host-wide)."""
        return f"spec-{hint}-{uuid.uuid4().hex[:10]}"

    def argv(self, *args: Any) -> list[str]:
        return [self.binary, "--root", str(self.root), *map(str, args)]

    def _io_paths(self, tag: str) -> tuple[Path, Path]:
        self._seq += 1
        base = self.workdir / f"{self._seq:03d}-{tag}"
        return Path(f"{base}.out"), Path(f"{base}.err")

    def cmd(self, *args: Any, timeout: float = TIMEOUT, check: bool = False,
            **popen_kwargs: Any) -> subprocess.CompletedProcess:
        """``runtime --root R *args`` to completion (global flags go first in args)."""
        out, err = self._io_paths(str(args[0]).lstrip("-") if args else "none")
        proc = _run_to_files(self.argv(*args), out, err, timeout=timeout,
                             cwd=self.workdir, **popen_kwargs)
        if check:
            assert proc.returncode == 0, _describe(proc)
        return proc

    def spawn(self, *args: Any, **popen_kwargs: Any) -> tuple[subprocess.Popen, Path, Path]:
        """Start ``runtime --root R *args`` without waiting: (Popen, stdout file, stderr file).

        The caller must ``communicate``/``wait`` with a timeout."""
        out, err = self._io_paths(str(args[0]) if args else "none")
        with open(out, "ab") as o, open(err, "ab") as e:
            popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
            proc = subprocess.Popen(self.argv(*args), stdout=o, stderr=e,
                                    cwd=self.workdir, **popen_kwargs)
        return proc, out, err

    # ---- container output ------------------------------------------------
    def stdout_path(self, cid: str) -> Path:
        return self.workdir / f"{cid}.stdout"

    def stderr_path(self, cid: str) -> Path:
        return self.workdir / f"{cid}.stderr"

    def stdout(self, cid: str) -> str:
        p = self.stdout_path(cid)
        return p.read_text(errors="replace") if p.exists() else ""

    def stderr(self, cid: str) -> str:
        p = self.stderr_path(cid)
        return p.read_text(errors="replace") if p.exists() else ""

    def wait_output(self, cid: str, text: str, timeout: float = TIMEOUT) -> str:
        """Wait until the detached container's stdout contains ``text``."""
        return wait_for(lambda: self.stdout(cid) if text in self.stdout(cid) else None,
                        timeout, f"{text!r} on the stdout of {cid} "
                                 f"(stdout {self.stdout(cid)!r}, stderr {self.stderr(cid)!r})")

    # ---- commands ----------------------------------------------------------
    def run(self, cid: str, bundle: Bundle | Path, *flags: Any, timeout: float = TIMEOUT,
            check: bool = False, fd3: Path | None = None, **popen_kwargs: Any
            ) -> subprocess.CompletedProcess:
        """``run --bundle B *flags ID``; foreground unless flags say ``-d``.

        With ``-d`` the container keeps this call's stdout/stderr, which are
        the files behind ``stdout(id)``/``stderr(id)``.  ``fd3``: start the
        runtime with that file open (read-only) as an extra inherited fd 3."""
        path = bundle.write() if isinstance(bundle, Bundle) else bundle
        detached = "-d" in flags or "--detach" in flags
        if detached:
            out, err = self.stdout_path(cid), self.stderr_path(cid)
        else:
            out, err = self._io_paths(f"run-{cid}")
        argv = with_fd3(self.argv("run", "--bundle", path, *flags, cid), fd3)
        proc = _run_to_files(argv, out, err, timeout=timeout, cwd=self.workdir, **popen_kwargs)
        if check:
            assert proc.returncode == 0, _describe(proc)
        if detached and proc.returncode == 0:
            self._remember_pid(cid)
        return proc

    def run_ok(self, bundle: Bundle, args: list[str] | str | None = None, *flags: Any,
               timeout: float = TIMEOUT, **kwargs: Any) -> str:
        """Run a container in the foreground, assert it exits 0, return its stdout.

        ``args`` given as a string means ``sh -c args``; ``kwargs`` go to ``run``."""
        if isinstance(args, str):
            bundle.sh(args)
        elif args is not None:
            bundle.args = args
        proc = self.run(self.new_id("run"), bundle, *flags, timeout=timeout, **kwargs)
        assert proc.returncode == 0, _describe(proc)
        return proc.stdout

    def exec(self, cid: str, *args: Any, flags: Iterable[Any] = (), timeout: float = TIMEOUT,
             check: bool = False, fd3: Path | None = None, **popen_kwargs: Any
             ) -> subprocess.CompletedProcess:
        """``exec *flags ID *args``: a new process in a running container.

        Its stdout/stderr (and the runtime's) go to files, so a ``-d`` process
        keeps writing there after the call returns.  ``fd3`` as for ``run``."""
        out, err = self._io_paths(f"exec-{cid}")
        argv = with_fd3(self.argv("exec", *flags, cid, *args), fd3)
        proc = _run_to_files(argv, out, err, timeout=timeout, cwd=self.workdir, **popen_kwargs)
        if check:
            assert proc.returncode == 0, _describe(proc)
        return proc

    def create(self, cid: str, bundle: Bundle | Path, *flags: Any, check: bool = True,
               timeout: float = TIMEOUT, **popen_kwargs: Any) -> subprocess.CompletedProcess:
        """``create --bundle B *flags ID`` with the container's stdio on files."""
        path = bundle.write() if isinstance(bundle, Bundle) else bundle
        proc = _run_to_files(self.argv("create", "--bundle", path, *flags, cid),
                             self.stdout_path(cid), self.stderr_path(cid),
                             timeout=timeout, cwd=self.workdir, **popen_kwargs)
        if check:
            assert proc.returncode == 0, _describe(proc)
        if proc.returncode == 0:
            self._remember_pid(cid)
        return proc

    def _remember_pid(self, cid: str) -> None:
        proc = self.cmd("state", cid)
        if proc.returncode == 0:
            pid = json.loads(proc.stdout).get("pid") or 0
            if pid > 0:
                self.pids[cid] = pid

    def start(self, cid: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
        return self.cmd("start", cid, check=check, **kw)

    def state(self, cid: str) -> dict[str, Any]:
        """The parsed ``state ID`` output (asserts success)."""
        proc = self.cmd("state", cid, check=True)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"state printed invalid JSON: {proc.stdout!r}") from None

    def status(self, cid: str) -> str:
        return self.state(cid)["status"]

    def kill(self, cid: str, *args: Any, check: bool = True, **kw: Any
             ) -> subprocess.CompletedProcess:
        """``kill [flags] ID [SIGNAL]``: flags (e.g. ``--all``) before the id,
        the signal (if any) after it."""
        flags = [a for a in args if str(a).startswith("-")]
        rest = [a for a in args if not str(a).startswith("-")]
        return self.cmd("kill", *flags, cid, *rest, check=check, **kw)

    def delete(self, cid: str, *flags: Any, check: bool = True, **kw: Any
               ) -> subprocess.CompletedProcess:
        return self.cmd("delete", *flags, cid, check=check, **kw)

    def list(self, *flags: Any, check: bool = True) -> subprocess.CompletedProcess:
        return self.cmd("list", *flags, check=check)

    # ---- waiting -----------------------------------------------------------
    def wait(self, cid: str, timeout: float = TIMEOUT) -> int | None:
        """Wait for the container's init to exit; return its status like
        Popen.returncode (None if it was not our child: no status known)."""
        pid = self.pids.get(cid)
        assert pid, f"no init pid known for {cid}"
        return wait_pid(pid, timeout)

    def ids(self) -> list[str]:
        """Entries of the private root (one per container for runc and ocipy)."""
        return sorted(os.listdir(self.root)) if self.root.exists() else []


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

def _tree_snapshot(top: Path) -> dict[str, tuple]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [".", *dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            snap[os.path.relpath(p, top)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                              st.st_mtime_ns)
    return snap


def _searchable_by_everyone(path: Path) -> bool:
    """Whether every directory above ``path`` lets any uid through (o+x)."""
    return all(os.stat(parent).st_mode & 0o001 for parent in path.parents)


@pytest.fixture(scope="session")
def rootfs() -> Iterator[Path]:
    """The shared busybox rootfs (built if missing). Never write to it.

    A container whose root is mapped to an unprivileged host uid walks the
    path to its rootfs as that uid (runc too: opencontainers/runc#2484).  A
    checkout below a directory others may not enter (``mktemp -d`` makes
    0700 ones) would fail every user-namespace test for that reason alone,
    so then the rootfs is bind-mounted at a searchable place under /tmp for
    the session, and ROOTFS and the base config name that place (/tmp, not
    /run: the systemd tests run the runtime with a private /run)."""
    global ROOTFS
    built = ROOTFS_DIR
    subprocess.run(["sh", str(REPO / "bundles" / "make-rootfs.sh"), str(built)],
                   check=True, timeout=120)
    if _searchable_by_everyone(built):
        yield built
        return
    exposed = Path(f"/tmp/ocipy-spec-rootfs-{os.getpid()}")
    exposed.mkdir()
    exposed.chmod(0o755)  # whatever the umask
    try:
        subprocess.run(["mount", "--bind", str(built), str(exposed)], check=True, timeout=60)
        ROOTFS = exposed
        BASE_CONFIG["root"]["path"] = str(exposed)
        try:
            yield exposed
        finally:
            ROOTFS = built
            BASE_CONFIG["root"]["path"] = str(built)
            umount_detach(str(exposed))
    finally:
        exposed.rmdir()


@pytest.fixture(scope="session")
def _session(rootfs: Path) -> Iterator[dict[str, Any]]:
    """Make the pytest process a child subreaper for the whole suite."""
    if not os.access(RUNTIME, os.X_OK):
        pytest.fail(f"runtime under test {RUNTIME} is not executable "
                    f"(build it with `make setup` or set OCIPY_RUNTIME)")
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.fail(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    state = {"rootfs_snapshot": _tree_snapshot(rootfs)}
    yield state
    reap_zombie_children()
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture(autouse=True)
def _cleanup(_session: dict[str, Any], tmp_path: Path) -> Iterator[None]:
    """After each test: force-delete leftovers, then assert nothing survived."""
    before = set(descendants())
    yield
    problems: list[str] = []
    rt = Runtime(RUNTIME, tmp_path / "root", tmp_path / "cleanup")
    for cid in rt.ids():
        try:
            rt.delete(cid, "--force", check=False, timeout=TIMEOUT)
        except AssertionError as exc:  # the runtime hung: report, go on cleaning
            problems.append(str(exc))

    # Processes: give killed containers a moment to die, reaping as we go.
    def leftovers() -> dict[int, str]:
        reap_zombie_children()
        return {pid: st for pid, st in descendants().items() if pid not in before}

    deadline = time.monotonic() + 5
    while (left := leftovers()) and time.monotonic() < deadline:
        time.sleep(0.02)
    if left:
        cmdlines = {}
        for pid in left:
            try:
                cmdlines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                cmdlines[pid] = b"?"
        problems.append(f"processes started by the test survived: {cmdlines}")
        for pid in left:  # by pid, never by name
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not leftovers(), 5, "leftover processes to die")

    # Mounts on the host under tmp_path (deepest first).
    leaked = mounts_under(tmp_path)
    if leaked:
        problems.append(f"mounts left on the host: {leaked}")
        for mp in sorted(set(leaked), key=len, reverse=True):
            umount_detach(mp)

    # The private root must be empty.
    if rt.ids():
        problems.append(f"private root {rt.root} not empty after delete --force: {rt.ids()}")
        shutil.rmtree(rt.root, ignore_errors=True)

    # The shared rootfs must be untouched.
    snap = _tree_snapshot(ROOTFS)
    if snap != _session["rootfs_snapshot"]:
        old = _session["rootfs_snapshot"]
        changed = sorted(k for k in set(snap) | set(old) if snap.get(k) != old.get(k))
        problems.append(f"the shared rootfs {ROOTFS} was modified: {changed[:20]}")
        _session["rootfs_snapshot"] = snap

    if problems:
        pytest.fail("cleanup found:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    """The runtime under test with a private --root in tmp_path."""
    return Runtime(RUNTIME, tmp_path / "root", tmp_path / "io")


@pytest.fixture
def bundle_factory(tmp_path: Path) -> Callable[..., Bundle]:
    """``bundle_factory(name="bundle", config=None)`` -> a new Bundle in tmp_path."""
    def make(name: str = "bundle", config: dict[str, Any] | None = None) -> Bundle:
        return Bundle(tmp_path / name, config)
    return make


@pytest.fixture
def bundle(bundle_factory: Callable[..., Bundle]) -> Bundle:
    """A bundle with the base config on the shared read-only rootfs."""
    return bundle_factory()


@pytest.fixture
def private_rootfs(tmp_path: Path, rootfs: Path) -> Path:
    """A writable copy of the busybox rootfs for tests that change it."""
    dest = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", str(rootfs), str(dest)], check=True, timeout=60)
    return dest


@pytest.fixture
def netns() -> Iterator[Callable[[], Path]]:
    """``netns()`` -> path of a new named network namespace (deleted afterwards)."""
    names: list[str] = []

    def make() -> Path:
        name = f"spec-{uuid.uuid4().hex[:10]}"
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=TIMEOUT,
                       stdin=subprocess.DEVNULL, capture_output=True)
        names.append(name)
        return Path("/run/netns") / name

    yield make
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=TIMEOUT,
                       stdin=subprocess.DEVNULL, capture_output=True)


@pytest.fixture
def util() -> SimpleNamespace:
    """Helpers for test modules (they cannot import conftest reliably: pytest
    may load another directory's conftest under the same module name)."""
    return SimpleNamespace(
        ROOTFS=ROOTFS, ROOTFS_DIR=ROOTFS_DIR, RUNTIME=RUNTIME, IS_OCIPY=IS_OCIPY, TIMEOUT=TIMEOUT,
        proc_status=proc_status, status_field=status_field, descendants=descendants,
        live_descendants=live_descendants,
        pid_alive=pid_alive, wait_for=wait_for, wait_pid=wait_pid,
        parse_mountinfo=parse_mountinfo, host_mounts=host_mounts, mounts_under=mounts_under,
        umount_detach=umount_detach, ns_inode=ns_inode, Bundle=Bundle,
    )


def status_field(text: str, key: str) -> str:
    """A field of /proc/<pid>/status text."""
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k == key:
            return v.strip()
    raise AssertionError(f"{key} not in status output: {text!r}")


def ns_inode(path: str | Path) -> int:
    return os.stat(path).st_ino


# --------------------------------------------------------------------------
# A seccomp agent for SCMP_ACT_NOTIFY (config-linux.md "Seccomp",
# listenerPath): it receives the container process state and the listener
# fd, and answers notifications with SECCOMP_IOCTL_NOTIF_RECV/SEND.
# --------------------------------------------------------------------------

import array as _array  # noqa: E402  (kept with the agent: only it needs them)
import fcntl as _fcntl  # noqa: E402
import select as _select  # noqa: E402
import socket as _socket  # noqa: E402
import struct as _struct  # noqa: E402
import threading as _threading  # noqa: E402

AGENT_TIMEOUT = 20.0

# <linux/seccomp.h>: SECCOMP_IOWR(0, struct seccomp_notif) etc., magic '!'
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # struct seccomp_notif: 80 bytes
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # struct seccomp_notif_resp: 24 bytes
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
_NOTIF = _struct.Struct("=QIIiIQ6Q")  # id, pid, flags, data{nr, arch, ip, args[6]}
_RESP = _struct.Struct("=QqiI")  # id, val, error, flags


class Notification:
    """One struct seccomp_notif: ``pid`` is in the agent's pid namespace."""

    def __init__(self, raw: bytes) -> None:
        fields = _NOTIF.unpack(raw)
        self.id, self.pid, self.flags, self.nr, self.arch, self.ip = fields[:6]
        self.args = fields[6:]


# handler(notification) -> (val, error, flags) for SECCOMP_IOCTL_NOTIF_SEND;
# error is a negative errno
Answer = tuple[int, int, int]
CONTINUE: Answer = (0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)


class SeccompAgent:
    """The seccomp agent at listenerPath: accepts connections, records what
    each one carried (data and SCM_RIGHTS fds) and answers the notifications
    of every listener fd it receives with ``handler``."""

    def __init__(self, path: Path, handler: Callable[["Connection", Notification], Answer]
                 ) -> None:
        self.path = path
        self.handler = handler
        self.server = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.server.settimeout(0.1)
        self.connections: list[Connection] = []
        self.errors: list[BaseException] = []
        self.stop = _threading.Event()
        self._threads: list[_threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Callable, *args: Any) -> None:
        def guarded() -> None:
            try:
                target(*args)
            except BaseException as exc:  # reported by close()
                self.errors.append(exc)
        thread = _threading.Thread(target=guarded, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except _socket.timeout:
                continue
            connection = Connection(self, conn)
            self.connections.append(connection)
            self._spawn(connection.receive)

    def wait_connections(self, count: int, timeout: float = AGENT_TIMEOUT) -> list["Connection"]:
        deadline = time.monotonic() + timeout
        while len([c for c in self.connections if c.listener is not None]) < count:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, (
                f"the agent got {len(self.connections)} connection(s), wanted {count} "
                f"carrying a listener fd")
            time.sleep(0.01)
        return self.connections

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(AGENT_TIMEOUT)
        self.server.close()
        for connection in self.connections:
            connection.close()


class Connection:
    """One runtime connection to the agent: what it sent (``data``,
    ``messages``, ``fds``, ``eof``) and the notifications of its listener."""

    def __init__(self, agent: SeccompAgent, conn: _socket.socket) -> None:
        self.agent = agent
        self.conn = conn
        self.data = b""
        self.messages = 0
        self.fds: list[int] = []
        self.truncated = False
        self.eof = _threading.Event()
        self.listener: int | None = None
        self.notifications: list[Notification] = []
        self.ppids: dict[int, int] = {}  # notification id -> the caller's parent

    def receive(self) -> None:
        self.conn.settimeout(0.1)
        while not self.agent.stop.is_set():
            try:
                data, anc, flags, _ = self.conn.recvmsg(1 << 16, _socket.CMSG_SPACE(16 * 4))
            except _socket.timeout:
                continue
            if flags & _socket.MSG_CTRUNC:
                self.truncated = True
            got = []
            for level, kind, payload in anc:
                if (level, kind) == (_socket.SOL_SOCKET, _socket.SCM_RIGHTS):
                    fds = _array.array("i")
                    fds.frombytes(payload[:len(payload) - len(payload) % 4])
                    got.extend(fds)
            self.fds.extend(got)
            if not data and not anc:
                self.eof.set()
                return
            self.messages += 1
            self.data += data
            if got and self.listener is None:
                self.listener = got[0]
                self.agent._spawn(self.serve)

    def payload(self) -> dict:
        return json.loads(self.data)

    def serve(self) -> None:
        """Answer the notifications of this connection's listener until the
        processes behind it are gone (POLLHUP) or the agent stops."""
        fd = self.listener
        poller = _select.poll()
        poller.register(fd, _select.POLLIN)
        while not self.agent.stop.is_set():
            events = poller.poll(100)
            if not events:
                continue
            mask = events[0][1]
            if mask & _select.POLLIN:
                buf = bytearray(_NOTIF.size)  # must be zeroed (the kernel checks)
                try:
                    _fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, buf, True)
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.EINTR):  # the caller went away
                        continue
                    raise
                notif = Notification(bytes(buf))
                self.notifications.append(notif)
                self.ppids[notif.id] = (_stat(notif.pid) or ("", 0))[1]
                val, err, flags = self.agent.handler(self, notif)
                resp = bytearray(_RESP.pack(notif.id, val, err, flags))
                try:
                    _fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, resp, True)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:  # killed while we decided
                        raise
            elif mask & (_select.POLLHUP | _select.POLLERR):
                return

    def close(self) -> None:
        self.conn.close()
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()


@pytest.fixture
def seccomp_agent(tmp_path: Path) -> Iterator[Callable[..., "SeccompAgent"]]:
    """``seccomp_agent(handler)`` -> a SeccompAgent listening on a socket in
    tmp_path (``agent.path`` goes to linux.seccomp.listenerPath); closed, and
    its threads' errors reported, after the test."""
    agents: list[SeccompAgent] = []

    def make(handler: Callable[[Connection, Notification], Answer]) -> SeccompAgent:
        agent = SeccompAgent(tmp_path / f"agent{len(agents)}.sock", handler)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()
    for agent in agents:
        assert not agent.errors, agent.errors
