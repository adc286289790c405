"""The native front-end (src/ocipy/_native/frontend.c) against the Python path.

The front-end answers `state`, `start`, `kill` and `delete` itself in the
simple cases and execs the Python launcher for everything else; each test
checks one behaviour on real containers created with the Python CLI in a
private --root, and compares with the Python path (OCIPY_NO_FAST=1 makes the
same binary hand everything over).

No speed is asserted here: machines differ and a timing test flakes.  The
front-end exists for issue 6's targets; `make bench` (bench/bench.py)
measures state/start/kill/delete against runc and crun.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "src" / "ocipy" / "_native" / "frontend.c"
# the Python launcher make setup installs (ocipy/launcher.py: the embedded
# program, or the script where that cannot be built)
LAUNCHER = REPO / ".venv/bin/ocipy-py"
LAUNCHER = LAUNCHER if LAUNCHER.exists() else None
ROOTFS = REPO / "bundles" / "busybox" / "rootfs"
TIMEOUT = 20
PR_SET_CHILD_SUBREAPER = 36

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(LAUNCHER is None, reason="no Python launcher: run make setup"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed to build it"),
]

CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def config(args: list[str], rootfs: Path = ROOTFS, readonly: bool = True) -> dict:
    return {
        "ociVersion": "1.2.0",
        "process": {
            "user": {"uid": 0, "gid": 0}, "args": args, "cwd": "/",
            "env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"],
            "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
        },
        "root": {"path": str(rootfs), "readonly": readonly},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "mode=755", "size=1m"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts")]},
    }


@pytest.fixture(scope="module")
def frontend(tmp_path_factory) -> str:
    """The front-end built from source, handing over to the real launcher."""
    out = tmp_path_factory.mktemp("frontend") / "ocipy"
    # as the Makefile builds it (musl where installed), warnings as errors
    subprocess.run([str(REPO / "tools" / "cc-static"), str(out), "-O2", "-Wall", "-Werror",
                    f"-DLAUNCHER=\"{LAUNCHER}\"", str(SOURCE)],
                   check=True, timeout=60, env=dict(os.environ, OCIPY_CC_GLIBC="dynamic"))
    return str(out)


@pytest.mark.parametrize("libc", ["musl", "glibc"])
def test_frontend_builds_without_warnings_on_either_libc(libc, tmp_path):
    if libc == "musl" and shutil.which("musl-gcc") is None:
        pytest.fail("musl-gcc is missing: make setup installs musl-tools")
    env = dict(os.environ, OCIPY_CC_GLIBC="dynamic", OCIPY_CC_LIBC=libc)
    out = tmp_path / "ocipy"
    subprocess.run([str(REPO / "tools" / "cc-static"), str(out), "-O2", "-Wall", "-Werror",
                    f"-DLAUNCHER=\"{LAUNCHER}\"", str(SOURCE)], check=True, timeout=60, env=env)
    # --version is not the front-end's: it hands over to Python
    proc = subprocess.run([str(out), "--version"], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0 and proc.stdout.startswith("ocipy version"), proc


@pytest.fixture(scope="module", autouse=True)
def _subreaper():
    # detached inits become our children, so their exit is ours to reap
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield


class Cli:
    """The front-end with a private --root; stdout and stderr go to files
    (a created init inherits them and would hold a pipe open)."""

    def __init__(self, binary: str, tmp: Path) -> None:
        self.binary = binary
        self.tmp = tmp
        self.root = tmp / "root"
        self.calls = 0

    def __call__(self, *args: str, fast: bool = True, stdout: Path | None = None,
                 prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        self.calls += 1
        out = stdout or self.tmp / f"out.{self.calls}"
        err = self.tmp / f"err.{self.calls}"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if not fast:
            env["OCIPY_NO_FAST"] = "1"
        with open(out, "ab") as o, open(err, "wb") as e:
            proc = subprocess.run([*prefix, self.binary, "--root", str(self.root), *args],
                                  stdin=subprocess.DEVNULL, stdout=o, stderr=e, env=env,
                                  timeout=TIMEOUT)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read_bytes(),
                                           err.read_bytes())

    def create(self, cid: str, cfg: dict, stdout: Path | None = None) -> int:
        bundle = self.tmp / f"bundle-{cid}"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(cfg))
        pid_file = self.tmp / f"{cid}.pid"
        proc = self("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid,
                    fast=False, stdout=stdout)
        assert proc.returncode == 0, proc.stderr
        return int(pid_file.read_text())

    def status(self, cid: str) -> str:
        return json.loads(self("state", cid, fast=False).stdout)["status"]

    def both(self, *args: str) -> tuple[subprocess.CompletedProcess,
                                         subprocess.CompletedProcess]:
        """The same call through the front-end, then through Python."""
        return self(*args), self(*args, fast=False)


@pytest.fixture
def cli(frontend, tmp_path):
    cli = Cli(frontend, tmp_path)
    yield cli
    for cid in os.listdir(cli.root) if cli.root.exists() else ():
        cli("delete", "--force", cid, fast=False)
    _reap()
    assert not cli.root.exists() or not os.listdir(cli.root)


def _reap() -> None:
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == me and fields[0] == "Z":
            try:
                os.waitpid(int(name), os.WNOHANG)
            except ChildProcessError:
                pass


def wait_for(predicate, what: str):
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
        _reap()


def execs(cli: Cli, tmp: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the front-end under strace: its result and every execve it made."""
    trace = tmp / "trace"
    proc = cli(*args, prefix=("strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace)))
    return proc, [line for line in trace.read_text().splitlines() if "execve(" in line]


def fast_lines(cli: Cli, cid: str) -> dict[str, str]:
    lines = (cli.root / cid / "fast").read_text().splitlines()[1:]
    return dict(line.partition(" ")[::2] for line in lines)


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


SLEEPER = ["sleep", "1000"]
# traps USR1, TERM and signal 40 (RTMIN+6) and says so; sleeps in short
# steps because busybox sh runs a trap only between commands
TRAPPER = ["sh", "-c", "trap 'echo got-usr1' USR1; trap 'echo got-term' TERM; "
                       "trap 'echo got-40' 40; echo ready; while :; do sleep 0.05; done"]


def stopped(cli: Cli, cid: str, pid: int) -> None:
    """Kill the init through Python and wait until the status says stopped."""
    assert cli("kill", cid, "KILL", fast=False).returncode == 0
    wait_for(lambda: cli.status(cid) == "stopped", "the container to stop")


# ------------------------------------------------------------------ state

def test_state_is_byte_identical_to_python_in_created_running_and_stopped(cli):
    pid = cli.create("c1", config(SLEEPER))
    seen = []
    for step in ("created", "running", "stopped"):
        if step == "running":
            assert cli("start", "c1").returncode == 0
        if step == "stopped":
            stopped(cli, "c1", pid)
        fast, python = cli.both("state", "c1")
        assert (fast.returncode, fast.stderr) == (0, b"")
        assert fast.stdout == python.stdout
        seen.append(json.loads(fast.stdout)["status"])
    assert seen == ["created", "running", "stopped"]


def test_state_of_a_paused_container_is_byte_identical_to_python(cli):
    from ocipy.cli import COMMANDS

    if "pause" not in COMMANDS:
        pytest.skip("no `ocipy pause` yet (cgroup freezing)")
    cli.create("c1", config(SLEEPER))
    assert cli("start", "c1").returncode == 0
    paused = cli("pause", "c1", fast=False)
    assert paused.returncode == 0, paused.stderr
    fast, python = cli.both("state", "c1")
    assert fast.stdout == python.stdout
    assert json.loads(fast.stdout)["status"] == "paused"
    assert cli("resume", "c1", fast=False).returncode == 0
    assert json.loads(cli("state", "c1").stdout)["status"] == "running"


def test_state_does_not_start_python(cli, tmp_path):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    cli.create("c1", config(SLEEPER))
    proc, calls = execs(cli, tmp_path, "state", "c1")
    assert proc.returncode == 0
    assert len(calls) == 1 and cli.binary in calls[0]
    # the control: a command it does not answer execs the launcher
    _, calls = execs(cli, tmp_path, "list")
    assert len(calls) == 2 and str(LAUNCHER) in calls[1]


def test_state_with_containerds_log_flags_stays_native(cli, tmp_path):
    # containerd's shim passes --log and --log-format json on every call;
    # on success Python writes nothing to the log, so the front-end may answer
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    cli.create("c1", config(SLEEPER))
    log = tmp_path / "log.json"
    flags = ("--log", str(log), "--log-format", "json")
    fast, python = cli.both(*flags, "state", "c1")
    assert fast.returncode == python.returncode == 0
    assert fast.stdout == python.stdout
    assert not log.exists() or log.read_bytes() == b""
    _, calls = execs(cli, tmp_path, *flags, "state", "c1")
    assert len(calls) == 1 and cli.binary in calls[0]
    # a failure still goes to Python, which writes the error line
    failed = cli(*flags, "state", "nope")
    assert failed.returncode == 1
    assert b'"level": "error"' in log.read_bytes() or b'"level":"error"' in log.read_bytes()


def test_state_of_a_missing_container_is_worded_by_python(cli):
    fast, python = cli.both("state", "nope")
    assert (fast.returncode, fast.stderr) == (python.returncode, python.stderr) == (
        1, b'ocipy: container "nope" does not exist\n')


# ------------------------------------------------------------------- kill

@pytest.mark.parametrize("signal, heard", [("10", b"got-usr1"), ("USR1", b"got-usr1"),
                                           ("sigusr1", b"got-usr1"), ("RTMIN+6", b"got-40"),
                                           ("SIGRTMAX-24", b"got-40")])
def test_kill_by_number_or_name_reaches_the_init(cli, tmp_path, signal, heard):
    log = tmp_path / "container.out"
    cli.create("c1", config(TRAPPER), stdout=log)
    assert cli("start", "c1").returncode == 0
    wait_for(lambda: b"ready" in log.read_bytes(), "the traps to be set")
    proc = cli("kill", "c1", signal)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    wait_for(lambda: heard in log.read_bytes(), f"{heard!r} from the container")


def test_kill_without_a_signal_sends_term(cli, tmp_path):
    log = tmp_path / "container.out"
    cli.create("c1", config(TRAPPER), stdout=log)
    assert cli("start", "c1").returncode == 0
    wait_for(lambda: b"ready" in log.read_bytes(), "the traps to be set")
    assert cli("kill", "c1").returncode == 0
    wait_for(lambda: b"got-term" in log.read_bytes(), "TERM to reach the container")


def test_kill_of_a_stopped_container_fails_like_python(cli):
    pid = cli.create("c1", config(SLEEPER))
    stopped(cli, "c1", pid)
    fast, python = cli.both("kill", "c1", "TERM")
    assert (fast.returncode, fast.stderr) == (python.returncode, python.stderr) == (
        1, b"ocipy: container not running\n")


@pytest.mark.parametrize("signal", ["0", "65", "-9", "+0", "NOPE", "SIG", "RTMIN-1",
                                    "RTMAX+1", "rtmin+", "9x"])
def test_a_signal_it_cannot_parse_is_worded_by_python(cli, signal):
    cli.create("c1", config(SLEEPER))
    fast, python = cli.both("kill", "c1", "--", signal)  # "--": "-9" is no flag
    assert (fast.returncode, fast.stderr) == (python.returncode, python.stderr)
    assert fast.stderr.startswith(b"ocipy: unknown signal")
    assert cli.status("c1") == "created"


# ------------------------------------------------------------------ start

def test_start_returns_once_the_process_has_execd(cli):
    pid = cli.create("c1", config(SLEEPER))
    before = cmdline(pid)
    proc = cli("start", "c1")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    # no waiting: start returned after execve, so the new image is there
    assert cmdline(pid) == b"sleep\x001000\x00" != before
    assert not (cli.root / "c1" / "exec.fifo").exists()
    assert not (cli.root / "c1" / "start.error").exists()


def test_start_of_a_process_that_fails_after_release_fails_like_python(cli, tmp_path):
    # a private rootfs whose executable loses its x bit between create and
    # start: the lookup at create passed, the execve after release fails
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    for name in ("busybox", "app"):
        shutil.copy("/bin/busybox", rootfs / "bin" / name)
    cfg = config(["/bin/app"], rootfs=rootfs, readonly=False)
    results = []
    for cid, fast in (("fast", True), ("slow", False)):
        pid = cli.create(cid, cfg)
        (rootfs / "bin" / "app").chmod(0o644)
        results.append(cli("start", cid, fast=fast))
        (rootfs / "bin" / "app").chmod(0o755)
        wait_for(lambda: cli.status(cid) == "stopped", f"pid {pid} to exit")
        assert not (cli.root / cid / "start.error").exists()
    fast, python = results
    assert fast.returncode == python.returncode == 1
    assert fast.stderr == python.stderr == b'ocipy: exec "/bin/app": permission denied\n'


def test_start_of_a_running_container_is_refused_like_python(cli):
    cli.create("c1", config(SLEEPER))
    assert cli("start", "c1").returncode == 0
    fast, python = cli.both("start", "c1")
    assert (fast.returncode, fast.stderr) == (python.returncode, python.stderr)
    assert fast.returncode == 1 and b"not created" in fast.stderr


# ----------------------------------------------------------------- delete

@pytest.mark.parametrize("force", [(), ("--force",), ("-f",)])
def test_delete_of_a_stopped_container_removes_its_dir_and_cgroups(cli, tmp_path, force):
    pid = cli.create("c1", config(SLEEPER))
    cgroups = fast_lines(cli, "c1")["cgroup"].split()
    stopped(cli, "c1", pid)
    proc, calls = execs(cli, tmp_path, "delete", *force, "c1")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    assert len(calls) == 1  # no Python
    assert not (cli.root / "c1").exists()
    assert [d for d in cgroups if os.path.exists(d)] == []


def test_delete_keeps_a_cgroup_parent_another_container_uses(cli, tmp_path):
    parent = f"/ocipy-frontend-{os.getpid()}-{time.monotonic_ns()}"
    made = {}
    try:
        for cid in ("c1", "c2"):
            cfg = config(SLEEPER)
            cfg["linux"]["cgroupsPath"] = f"{parent}/{cid}"
            pid = cli.create(cid, cfg)
            made[cid] = fast_lines(cli, cid)["cgroup"].split()
            stopped(cli, cid, pid)
        parents = [d for d in made["c1"] if d.endswith(parent)]
        assert parents and not any(d.endswith(parent) for d in made["c2"])
        proc, calls = execs(cli, tmp_path, "delete", "c1")
        assert (proc.returncode, len(calls)) == (0, 1)
        assert all(os.path.isdir(d) for d in parents + made["c2"])
        assert not any(os.path.exists(d) for d in made["c1"] if d not in parents)
        proc, calls = execs(cli, tmp_path, "delete", "c2")
        assert (proc.returncode, len(calls)) == (0, 1)
        assert not any(os.path.exists(d) for d in made["c2"])
    finally:
        for directory in made.get("c1", ()):
            if directory.endswith(parent) and os.path.isdir(directory):
                os.rmdir(directory)  # c1 made it, c1 is gone: nobody else will


def test_delete_with_no_cgroup_dir_of_its_own_is_handed_to_python(cli, tmp_path):
    # a cgroupsPath that already exists in every hierarchy: ocipy made no dir,
    # the fast file lists none, and only Python looks for leftovers there
    name = f"ocipy-frontend-{os.getpid()}-{time.monotonic_ns()}"
    made = []
    try:
        for top in sorted(os.listdir("/sys/fs/cgroup")):
            base = os.path.join("/sys/fs/cgroup", top)
            if not os.path.islink(base) and os.path.exists(os.path.join(base, "cgroup.procs")):
                os.mkdir(os.path.join(base, name))
                made.append(os.path.join(base, name))
        cfg = config(SLEEPER)
        cfg["linux"]["cgroupsPath"] = f"/{name}"
        pid = cli.create("c1", cfg)
        assert fast_lines(cli, "c1")["cgroup"] == ""
        stopped(cli, "c1", pid)
        proc, calls = execs(cli, tmp_path, "delete", "c1")
        assert (proc.returncode, proc.stderr) == (0, b"")
        assert len(calls) == 2
        assert not (cli.root / "c1").exists()
        assert all(os.path.isdir(d) for d in made)  # not ours to remove
    finally:
        for directory in made:
            os.rmdir(directory)


def test_delete_of_a_running_container_without_force_fails_like_python(cli):
    cli.create("c1", config(SLEEPER))
    assert cli("start", "c1").returncode == 0
    fast, python = cli.both("delete", "c1")
    assert (fast.returncode, fast.stderr) == (python.returncode, python.stderr)
    assert fast.returncode == 1 and b"not stopped" in fast.stderr
    assert cli.status("c1") == "running"


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for its reaper (us)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def _container_pids(cgroup_dirs: list[str]) -> list[int]:
    leaf = next(d for d in cgroup_dirs if os.path.exists(os.path.join(d, "cgroup.procs")))
    return [int(p) for p in Path(leaf, "cgroup.procs").read_text().split()]


@pytest.mark.parametrize("started", [False, True], ids=["created", "running"])
def test_delete_force_kills_a_container_with_its_own_pid_namespace_without_python(
        cli, tmp_path, started):
    # the init and a process it forked: both die with the pid namespace
    pid = cli.create("c1", config(["sh", "-c", "sleep 1000 & exec sleep 1001"]))
    cgroups = fast_lines(cli, "c1")["cgroup"].split()
    if started:
        assert cli("start", "c1").returncode == 0
        wait_for(lambda: len(_container_pids(cgroups)) == 2, "the container's two processes")
    pids = _container_pids(cgroups)
    assert pid in pids
    proc, calls = execs(cli, tmp_path, "delete", "--force", "c1")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    assert len(calls) == 1  # no Python
    assert all(_gone(p) for p in pids)
    assert not (cli.root / "c1").exists()
    assert [d for d in cgroups if os.path.exists(d)] == []


def test_delete_force_of_a_paused_container_is_handed_to_python(cli, tmp_path):
    cli.create("c1", config(SLEEPER))
    assert cli("start", "c1").returncode == 0
    assert cli("pause", "c1").returncode == 0
    proc, calls = execs(cli, tmp_path, "delete", "-force", "c1")
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 2  # Python thaws it so that SIGKILL is delivered
    assert not (cli.root / "c1").exists()


def test_delete_force_without_a_pid_namespace_is_handed_to_python(cli, tmp_path):
    # the init's death does not end its children: Python kills the cgroup's
    # every process
    cfg = config(["sh", "-c", "sleep 1000 & exec sleep 1001"])
    cfg["linux"]["namespaces"] = [{"type": t} for t in ("mount", "ipc", "uts")]
    pid = cli.create("c1", cfg)
    cgroups = fast_lines(cli, "c1")["cgroup"].split()
    assert cli("start", "c1").returncode == 0
    wait_for(lambda: len(_container_pids(cgroups)) == 2, "the container's two processes")
    pids = _container_pids(cgroups)
    assert pid in pids
    proc, calls = execs(cli, tmp_path, "delete", "-f", "c1")
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 2
    assert all(_gone(p) for p in pids)
    assert not (cli.root / "c1").exists()
    assert [d for d in cgroups if os.path.exists(d)] == []


# ---------------------------------------------------------- the hand-over

@pytest.mark.parametrize("argv", [
    ("frob", "c1"), ("state",), ("state", "c1", "extra"), ("state", "--bogus", "c1"),
    ("kill", "c1", "TERM", "extra"), ("delete", "--force=maybe", "c1"),
    ("--log-format", "xml", "state", "c1"), ("--rootless=sometimes", "state", "c1"),
    ("--nope", "state", "c1"), ("state", "bad/id"), ("state", ".."), ("-v",),
    ("state", "-h"), (),
])
def test_what_it_does_not_answer_python_answers(cli, argv):
    cli.create("c1", config(SLEEPER))
    fast, python = cli.both(*argv)
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        python.returncode, python.stdout, python.stderr)


@pytest.mark.parametrize("argv", [
    ("-root={root}", "state", "c1"), ("--criu", "x", "--rootless", "false", "state", "c1"),
    ("--systemd-cgroup", "--log-format=json", "state", "--", "c1"),
])
def test_global_options_are_parsed_like_cli_py(cli, argv):
    cli.create("c1", config(SLEEPER))
    argv = tuple(a.format(root=cli.root) for a in argv)
    fast, python = cli.both(*argv)
    assert fast.returncode == 0 and fast.stdout == python.stdout
    assert json.loads(fast.stdout)["id"] == "c1"
