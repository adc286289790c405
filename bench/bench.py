#!/usr/bin/env python3
"""Side-by-side benchmark of ocipy, runc and crun (issue 6, "The benchmark").

Every round runs the same sequence of CLI calls with each runtime, the
runtimes' order rotating from round to round so that machine drift hits all
of them alike. Each call is timed with time.perf_counter() around
posix_spawn() + wait4(). Peak RSS comes from a few extra rounds run under
GNU time, and the waiting init's RSS from /proc. The results are printed and
written to bench/results.md with the machine and versions.
Targets are shown as met / not met; nothing is asserted: the script exits 0
when it ran, whatever the numbers, and non-zero only when it could not run.

Standard library only. Must run as root. See bench/README.md.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTFS = REPO / "bundles" / "busybox" / "rootfs"
MAKE_ROOTFS = REPO / "bundles" / "make-rootfs.sh"
DEFAULT_OUTPUT = REPO / "bench" / "results.md"

# Table order of the timed operations (issue 6).
OPERATIONS = ("run", "create", "start", "state", "kill", "delete", "exec")

# Targets: ratio ocipy/runc of the median time, per operation and for the sum.
SPEED_TARGETS = {"run": 0.75, "create": 0.75, "exec": 0.75,
                 "state": 1.3, "start": 1.3, "kill": 1.3, "delete": 1.3}
SUM_TARGET = 0.8
PEAK_RSS_TARGET_KIB = 25 * 1024

PR_SET_CHILD_SUBREAPER = 36
# Peak RSS is read through GNU time (or busybox's): wait4()'s ru_maxrss of a
# child we spawn ourselves would include our own ~18 MiB, because the kernel
# folds the high-water mark of the mm a process had before execve() into it.
RSS_WRAPPERS = (["/usr/bin/time", "-f", "%M", "-o"], ["/bin/busybox", "time", "-f", "%M", "-o"])
HUGETLB_MOUNT = "/sys/fs/cgroup/hugetlb"

# The runtimes run with this environment only, as a shim would call them:
# nothing of the caller's leaks in. In particular PYTHONDONTWRITEBYTECODE, set
# in some sandboxes, would make CPython compile ocipy from source on every call.
RUNTIME_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


# ---------------------------------------------------------------- processes

@dataclass
class Call:
    """One CLI invocation: wall time, exit status, stderr on failure, and the
    peak RSS when it ran under the RSS wrapper (its time is then not used)."""
    ms: float
    rc: int
    cpu_ms: float  # user+sys of the process and the children it waited for
    stderr: str = ""
    maxrss_kib: int | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0


_ERR_LOCK = threading.Lock()
_ERR_SEQ = 0


def spawn(argv: list[str], errdir: Path, *, keep_stderr: bool = False,
          rss_wrapper: list[str] | None = None) -> Call:
    """Run argv with stdin/stdout on /dev/null and stderr in a file; never a pipe,
    so a container process that inherits the stdio can never hold us up."""
    global _ERR_SEQ
    with _ERR_LOCK:
        _ERR_SEQ += 1
        errfile = errdir / f"{_ERR_SEQ}.err"
        rssfile = errdir / f"{_ERR_SEQ}.rss"
    if rss_wrapper:
        argv = [*rss_wrapper, str(rssfile), *argv]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, str(errfile), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, RUNTIME_ENV, file_actions=actions)
    _, status, rusage = os.wait4(pid, 0)
    ms = (time.perf_counter() - t0) * 1000.0
    rc = os.waitstatus_to_exitcode(status)
    text = ""
    if rc != 0 or keep_stderr:
        try:
            text = errfile.read_text(errors="replace")
        except OSError:
            pass
    maxrss = None
    if rss_wrapper:
        try:
            maxrss = int(rssfile.read_text().split()[-1])
            rssfile.unlink()
        except (OSError, ValueError, IndexError):
            pass
    try:
        errfile.unlink()
    except OSError:
        pass
    return Call(ms, rc, (rusage.ru_utime + rusage.ru_stime) * 1000.0, text.strip(), maxrss)


def reap(pid: int, timeout: float = 10.0) -> None:
    """Wait until pid is gone or a zombie; reap it when it is our child (we are
    the subreaper, as containerd's shim is, so orphaned inits come to us)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return
        except ChildProcessError:
            state = _proc_state(pid)
            if state is None or state in "ZX":
                return
        time.sleep(0.001)


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:][:1].decode()


def reap_all_children() -> None:
    """Collect whatever zombie children are left (no other waiter runs now)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def proc_rss_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, RssAnon) of a live process, in KiB."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon"):
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return None
    if len(values) != 2:
        return None
    return values["VmRSS"], values["RssAnon"]


def read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def read_pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- runtimes

@dataclass
class Runtime:
    name: str
    binary: str
    root: Path = Path()
    prefix: list[str] = field(default_factory=list)  # an interpreter to run binary with
    version: str = ""
    skipped: str = ""  # why it is not benchmarked ("" when it is)
    calls: dict[str, list[Call]] = field(default_factory=dict)
    peak_rss: dict[str, list[int]] = field(default_factory=dict)  # KiB
    init_rss: list[tuple[int, int]] = field(default_factory=list)
    own_cgroup: set[bool] = field(default_factory=set)  # init outside our cgroups?
    failures: dict[str, list[str]] = field(default_factory=dict)
    # parallel test: (wall ms, failures, CPU s of every process it reaped)
    parallel: list[tuple[float, int, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cli(self, *args: str) -> list[str]:
        return [*self.prefix, self.binary, "--root", str(self.root), *args]

    def record(self, op: str, call: Call) -> None:
        if call.ok and call.maxrss_kib is not None:
            self.peak_rss.setdefault(op, []).append(call.maxrss_kib)
        elif call.ok:
            self.calls.setdefault(op, []).append(call)
        else:
            self.failures.setdefault(op, []).append(f"exit {call.rc}: {call.stderr[-400:]}")

    def median_ms(self, op: str) -> float | None:
        calls = self.calls.get(op)
        return statistics.median(c.ms for c in calls) if calls else None


def apt_install(package: str) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
    return subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode == 0


def locate(name: str, path: str, package: str | None, install: bool) -> Runtime:
    rt = Runtime(name, path)
    if not os.access(path, os.X_OK):
        if package and install:
            print(f"{name}: {path} missing, apt-get install {package}", flush=True)
            apt_install(package)
        if not os.access(path, os.X_OK):
            rt.skipped = f"{path} not found"
            return rt
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        rt.version = "; ".join(line.strip() for line in out.stdout.splitlines() if line.strip())
    except (OSError, subprocess.SubprocessError) as e:
        rt.skipped = f"{path} --version failed: {e}"
    return rt


# ---------------------------------------------------------------- host set-up

def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount of this namespace."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mounts.append((left.split()[4], right.split()[0]))
    return mounts


def default_cgroup_parents() -> set[str]:
    """ocipy's default cgroup parent, /ocipy, in each cgroup hierarchy where
    it exists: it stays once a container was created in it."""
    points = {point for point, fstype in _mountinfo() if fstype in ("cgroup", "cgroup2")}
    return {p for p in (os.path.join(m, "ocipy") for m in points) if os.path.isdir(p)}


def prepare_cgroups_for_crun() -> str:
    """crun 1.8 refuses a hybrid cgroup layout while any controller is still
    attached to the v2 hierarchy; on this host that is hugetlb. The documented
    step for the host is to move hugetlb to a v1 mount. Returns what was done
    (for the output), raises OSError when the mount fails. A pure cgroup v2
    host (or a pure v1 one) is left alone."""
    mounts = _mountinfo()
    fstypes = {point: fstype for point, fstype in mounts}
    if fstypes.get("/sys/fs/cgroup") == "cgroup2":
        return "pure cgroup v2 host: no cgroup change needed for crun"
    hybrid = any(t == "cgroup2" for p, t in mounts if p.startswith("/sys/fs/cgroup/"))
    if not hybrid:
        return "cgroup v1 host without a v2 hierarchy: no cgroup change needed for crun"
    if HUGETLB_MOUNT in fstypes:
        return f"hybrid cgroups; hugetlb already on a v1 mount at {HUGETLB_MOUNT}"
    os.makedirs(HUGETLB_MOUNT, exist_ok=True)
    done = subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", HUGETLB_MOUNT],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"mount -t cgroup -o hugetlb cgroup {HUGETLB_MOUNT}: "
                      f"{done.stderr.strip()}")
    return (f"hybrid cgroups: ran `mkdir -p {HUGETLB_MOUNT} && mount -t cgroup -o hugetlb "
            f"cgroup {HUGETLB_MOUNT}` so that crun accepts the layout (left in place)")


def ensure_rootfs() -> None:
    if (ROOTFS / "bin" / "busybox").exists():
        return
    print(f"building {ROOTFS}", flush=True)
    subprocess.run(["sh", str(MAKE_ROOTFS), str(ROOTFS)], check=True)


def bench_config(args: list[str]) -> dict:
    """The bench bundle: busybox, read-only root, pid/ipc/uts/mount/network."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME=/root"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": str(ROOTFS), "readonly": True},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def write_bundle(path: Path, args: list[str]) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(bench_config(args), indent=2))
    return path


# ---------------------------------------------------------------- the rounds

class Bench:
    def __init__(self, work: Path, runtimes: list[Runtime]):
        self.work = work
        self.errdir = work / "stderr"
        self.errdir.mkdir()
        self.true_bundle = write_bundle(work / "bundle-true", ["/bin/true"])
        self.sleep_bundle = write_bundle(work / "bundle-sleep", ["sleep", "1000"])
        self.runtimes = runtimes
        self.tag = f"bench{os.getpid()}"
        self.init_pids: set[int] = set()  # every init seen, for the final sweep
        self.reference: list[float] = []
        self.rss_wrapper: list[str] | None = None
        self.bytecode = ""
        self.cgroup_parents = default_cgroup_parents()  # not ours to remove

    def call(self, rt: Runtime, *args: str, keep_stderr: bool = False,
             rss_wrapper: list[str] | None = None) -> Call:
        return spawn(rt.cli(*args), self.errdir, keep_stderr=keep_stderr,
                     rss_wrapper=rss_wrapper)

    def force_delete(self, rt: Runtime, cid: str) -> None:
        self.call(rt, "delete", "--force", cid)

    def lifecycle(self, rt: Runtime, label: str, *, keep_stderr: bool = False,
                  rss_wrapper: list[str] | None = None,
                  profiling: bool = False) -> dict[str, Call]:
        """One round for one runtime: run; create, state, start, exec, kill,
        delete of a `sleep` container. Returns the calls made, by operation."""
        calls: dict[str, Call] = {}
        plain = not profiling and rss_wrapper is None

        def timed(op: str, *args: str) -> Call:
            calls[op] = c = self.call(rt, *args, keep_stderr=keep_stderr,
                                      rss_wrapper=rss_wrapper)
            return c

        run_id = f"{self.tag}-{rt.name}-{label}-run"
        if not timed("run", "run", "--bundle", str(self.true_bundle), run_id).ok \
                or (rt.root / run_id).exists():
            if (rt.root / run_id).exists():
                note = "`run` left the container's state behind (not auto-removed)"
                if note not in rt.notes:
                    rt.notes.append(note)
            self.force_delete(rt, run_id)

        cid = f"{self.tag}-{rt.name}-{label}"
        pid_file = self.work / f"{cid}.pid"
        if not timed("create", "create", "--bundle", str(self.sleep_bundle),
                     "--pid-file", str(pid_file), cid).ok:
            self.force_delete(rt, cid)
            return calls
        pid = read_pid_file(pid_file)
        if pid is not None:
            self.init_pids.add(pid)
            rss = proc_rss_kib(pid)
            if rss is not None and plain:
                rt.init_rss.append(rss)
                cgroups = read_text(f"/proc/{pid}/cgroup")
                if cgroups is not None:
                    rt.own_cgroup.add(cgroups != read_text("/proc/self/cgroup"))
        try:
            timed("state", "state", cid)
            if not timed("start", "start", cid).ok:
                return calls
            timed("exec", "exec", cid, "/bin/true")
            if timed("kill", "kill", cid, "KILL").ok and pid is not None:
                reap(pid)  # as a shim would: the init is stopped before delete
                timed("delete", "delete", cid)
        finally:
            if not calls.get("delete") or not calls["delete"].ok:
                self.force_delete(rt, cid)
            if pid is not None:
                reap(pid, timeout=2.0)
        return calls

    def parallel(self, rt: Runtime, n: int, label: str) -> tuple[float, int, list[str]]:
        """n threads, each creating a container and deleting it (--force, as it
        is still `created`), all released at once. Wall time and failures."""
        barrier = threading.Barrier(n + 1)
        failures: list[str] = []
        pids: list[int] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            cid = f"{self.tag}-{rt.name}-{label}-p{i}"
            pid_file = self.work / f"{cid}.pid"
            barrier.wait()
            created = self.call(rt, "create", "--bundle", str(self.sleep_bundle),
                                "--pid-file", str(pid_file), cid)
            deleted = self.call(rt, "delete", "--force", cid)
            pid = read_pid_file(pid_file)
            with lock:
                if pid is not None:
                    pids.append(pid)
                for what, c in (("create", created), ("delete", deleted)):
                    if not c.ok:
                        failures.append(f"{what} {cid}: exit {c.rc}: {c.stderr[-300:]}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = (time.perf_counter() - t0) * 1000.0
        for pid in pids:
            self.init_pids.add(pid)
            reap(pid, timeout=2.0)
        return wall, len(failures), failures

    def python_floor(self) -> float:
        """`python -I -S -c pass`: the interpreter's bare start-up, for scale."""
        c = spawn([sys.executable, "-I", "-S", "-c", "pass"], self.errdir)
        return c.ms

    def cleanup(self) -> None:
        """Force-delete every container left in our roots, then make sure no
        init we saw survives (by pid, only if it is still our child)."""
        for rt in self.runtimes:
            if rt.skipped or not rt.root.is_dir():
                continue
            for entry in rt.root.iterdir():
                if entry.is_dir() and entry.name.startswith(self.tag):
                    self.force_delete(rt, entry.name)
        for pid in self.init_pids:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
        reap_all_children()
        # the default parents our containers made, once empty: the host as it was
        for path in default_cgroup_parents() - self.cgroup_parents:
            try:
                os.rmdir(path)
            except OSError:
                pass


def bytecode_note(ocipy: str) -> str:
    """How many of ocipy's modules have a bytecode cache at least as new as
    their source: without one CPython compiles the module on every call."""
    interp = shebang(ocipy)
    python = interp[0] if interp else sys.executable
    try:
        code = ("import importlib.util as u, os, pathlib, ocipy\n"
                "src = sorted(pathlib.Path(ocipy.__file__).parent.glob('*.py'))\n"
                "def fresh(f):\n"
                "    c = u.cache_from_source(str(f))\n"
                "    return os.path.exists(c) and os.path.getmtime(c) >= f.stat().st_mtime\n"
                "print(sum(map(fresh, src)), len(src))")
        out = subprocess.run([python, "-c", code], capture_output=True, text=True,
                             env=RUNTIME_ENV, timeout=30)
        fresh, total = out.stdout.split()
    except (OSError, ValueError, subprocess.SubprocessError):
        return "unknown"
    return f"{fresh} of {total} modules of the package have an up-to-date .pyc after the run"


def rotate(items: list, k: int) -> list:
    k %= len(items)
    return items[k:] + items[:k]


def shebang(script: str) -> list[str] | None:
    """The interpreter line of a script, as the kernel splits it: the
    interpreter and at most one argument."""
    try:
        with open(script, "rb") as f:
            first = f.readline().decode()
    except (OSError, UnicodeDecodeError):
        return None
    if not first.startswith("#!"):
        return None
    interp, _, arg = first[2:].strip().partition(" ")
    return [interp, arg.strip()] if arg.strip() else [interp]


def import_profile(bench: Bench, rt: Runtime, repeats: int = 3) -> dict[str, tuple[float, list]]:
    """Each operation with `-X importtime` (the launcher may run Python with
    -I, which ignores PYTHONPROFILEIMPORTTIME, so the flag goes on the
    interpreter's command line): the total import time and the heaviest
    top-level packages (self time summed per package), median of `repeats`
    runs. Empty when ocipy is not a Python script."""
    interp = shebang(rt.binary)
    if not interp or "python" not in Path(interp[0]).name:
        return {}
    profiled = Runtime(rt.name, rt.binary, rt.root, prefix=[*interp, "-X", "importtime"])
    per_op: dict[str, list[dict[str, float]]] = {}
    for i in range(repeats):
        calls = bench.lifecycle(profiled, f"imp{i}", keep_stderr=True, profiling=True)
        for op, call in calls.items():
            per_pkg: dict[str, float] = {}
            for line in call.stderr.splitlines():
                if not line.startswith("import time:") or "self [us]" in line:
                    continue
                try:
                    self_us, _, name = line[len("import time:"):].split("|", 2)
                    self_ms = int(self_us) / 1000.0
                except ValueError:
                    continue
                pkg = name.strip().split(".")[0]
                per_pkg[pkg] = per_pkg.get(pkg, 0.0) + self_ms
            per_op.setdefault(op, []).append(per_pkg)
    result = {}
    for op, runs in per_op.items():
        pkgs = {p for run in runs for p in run}
        med = {p: statistics.median(run.get(p, 0.0) for run in runs) for p in pkgs}
        total = statistics.median(sum(run.values()) for run in runs)
        result[op] = (total, sorted(med.items(), key=lambda kv: -kv[1]))
    return result


# ---------------------------------------------------------------- report

def fmt_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def fmt_mib(kib: float | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}x"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def machine_facts() -> list[tuple[str, str]]:
    mem = cpu = os_name = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [("nproc", str(len(os.sched_getaffinity(0)))), ("memory", mem),
            ("kernel", platform.release()), ("CPU", cpu), ("OS", os_name),
            ("load average at start", load)]


def report(bench: Bench, args: argparse.Namespace, facts: list[tuple[str, str]],
           cgroup_note: str, imports: dict | None, started: str, elapsed: float) -> str:
    rts = bench.runtimes
    by = {rt.name: rt for rt in rts}
    ocipy, runc, crun = by.get("ocipy"), by.get("runc"), by.get("crun")
    live = [rt for rt in rts if not rt.skipped]

    def med(rt: Runtime | None, op: str) -> float | None:
        return None if rt is None or rt.skipped else rt.median_ms(op)

    out: list[str] = []
    w = out.append
    w("# ocipy benchmark results")
    w("")
    w(f"Written by `bench/bench.py` on {started} ({elapsed:.0f} s). "
      f"{args.rounds} rounds after {args.warmup} warm-up round(s), runtimes alternating "
      f"round by round; {args.parallel} parallel containers x {args.parallel_rounds} rounds. "
      "Times are medians in milliseconds of one CLI invocation, spawned and waited for "
      "by the script. Targets from issue 6; nothing is asserted.")
    w("")
    w("## Machine and versions")
    w("")
    w("| | |")
    w("| --- | --- |")
    end_load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for k, v in [*facts, ("load average at end", end_load)]:
        w(f"| {k} | {v} |")
    w(f"| python | {platform.python_version()} ({sys.executable}) |")
    for rt in rts:
        w(f"| {rt.name} | {rt.version or '—'} ({rt.binary})"
          f"{' — skipped: ' + rt.skipped if rt.skipped else ''} |")
    w(f"| cgroups | {cgroup_note} |")
    if bench.bytecode:
        w(f"| ocipy bytecode | {bench.bytecode} |")
    w("| runtimes' environment | `PATH` only (nothing of the caller's, e.g. no "
      "PYTHONDONTWRITEBYTECODE) |")
    if bench.reference:
        w(f"| `python -I -S -c pass` | {statistics.median(bench.reference):.1f} ms "
          "(median, measured every round: the interpreter's floor) |")
    w("")

    w("## Time per operation (median ms)")
    w("")
    w("| operation | ocipy | runc | crun | ocipy/runc | ocipy/crun | target (ocipy/runc) |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    sums: dict[str, float | None] = {}
    for rt in (ocipy, runc, crun):
        if rt is None or rt.skipped:
            continue
        vals = [rt.median_ms(op) for op in OPERATIONS]
        sums[rt.name] = None if any(v is None for v in vals) else sum(vals)
    for op in OPERATIONS:
        o, r, c = med(ocipy, op), med(runc, op), med(crun, op)
        rr = ratio(o, r)
        target = SPEED_TARGETS[op]
        w(f"| {op} | {fmt_ms(o)} | {fmt_ms(r)} | {fmt_ms(c)} | {fmt_ratio(rr)} | "
          f"{fmt_ratio(ratio(o, c))} | "
          f"≤ {target}x: {verdict(None if rr is None else rr <= target)} |")
    so, sr, sc = sums.get("ocipy"), sums.get("runc"), sums.get("crun")
    rr = ratio(so, sr)
    w(f"| **sum** | **{fmt_ms(so)}** | **{fmt_ms(sr)}** | **{fmt_ms(sc)}** | "
      f"**{fmt_ratio(rr)}** | **{fmt_ratio(ratio(so, sc))}** | "
      f"≤ {SUM_TARGET}x: {verdict(None if rr is None else rr <= SUM_TARGET)} |")
    w("")

    w(f"## {args.parallel} containers created and deleted in parallel")
    w("")
    w("CPU: user+sys of every process of the test (runtimes and container inits), "
      f"median; {len(os.sched_getaffinity(0))} CPUs were available.")
    w("")
    w("| runtime | wall ms (median) | wall ms (all rounds) | CPU s | failures | target |")
    w("| --- | ---: | --- | ---: | ---: | --- |")
    runc_wall = (statistics.median(x for x, _, _ in runc.parallel)
                 if runc and not runc.skipped and runc.parallel else None)
    for rt in live:
        if not rt.parallel:
            continue
        wall = statistics.median(x for x, _, _ in rt.parallel)
        cpu = statistics.median(c for _, _, c in rt.parallel)
        fails = sum(f for _, f, _ in rt.parallel)
        rounds = ", ".join(f"{x:.0f}" for x, _, _ in rt.parallel)
        target = "—"
        if rt.name == "ocipy":
            ok = None if runc_wall is None else (fails == 0 and wall <= runc_wall)
            target = f"no failure, wall ≤ runc's: {verdict(ok)}"
        w(f"| {rt.name} | {wall:.0f} | {rounds} | {cpu:.2f} | {fails} | {target} |")
    w("")

    w(f"## Peak RSS of each invocation (MiB, median / max of {args.rss_rounds} extra rounds)")
    w("")
    if bench.rss_wrapper:
        w(f"Maximum RSS as `{' '.join(bench.rss_wrapper[:-1])}` reports it (the runtime process "
          "and the children it waited for, e.g. `runc init` for runc).")
    else:
        w("Not measured: neither /usr/bin/time nor /bin/busybox is available.")
    w("")
    limit = PEAK_RSS_TARGET_KIB // 1024
    w(f"| operation | ocipy | runc | crun | target (ocipy max ≤ {limit} MiB) |")
    w("| --- | ---: | ---: | ---: | --- |")
    for op in OPERATIONS:
        cells = []
        for rt in (ocipy, runc, crun):
            rss = [] if rt is None or rt.skipped else rt.peak_rss.get(op, [])
            cells.append(f"{fmt_mib(statistics.median(rss))} / {fmt_mib(max(rss))}"
                         if rss else "—")
        orss = [] if ocipy is None or ocipy.skipped else ocipy.peak_rss.get(op, [])
        ok = max(orss) <= PEAK_RSS_TARGET_KIB if orss else None
        w(f"| {op} | {' | '.join(cells)} | {verdict(ok)} |")
    w("")

    w("## The container's init while it waits for `start` (MiB, median)")
    w("")
    w("From /proc/<pid>/status of the pid in --pid-file, right after `create` "
      "returned (for runc that is `runc init`, for crun its forked child). "
      "\"cgroups of its own\": whether the runtime moved the init out of the "
      "benchmark's cgroups (creating them is part of the work timed).")
    w("")
    w("| runtime | VmRSS | RssAnon | cgroups of its own | target (ocipy ≤ runc, both) |")
    w("| --- | ---: | ---: | --- | --- |")
    runc_rss = (runc.init_rss if runc and not runc.skipped else [])
    for rt in live:
        own = {frozenset({True}): "yes", frozenset({False}): "no (the caller's)"}.get(
            frozenset(rt.own_cgroup), "varies" if rt.own_cgroup else "—")
        if not rt.init_rss:
            w(f"| {rt.name} | — | — | {own} | |")
            continue
        vm = statistics.median(x for x, _ in rt.init_rss)
        anon = statistics.median(y for _, y in rt.init_rss)
        target = ""
        if rt.name == "ocipy":
            ok = None
            if runc_rss:
                ok = (vm <= statistics.median(x for x, _ in runc_rss)
                      and anon <= statistics.median(y for _, y in runc_rss))
            target = verdict(ok)
        w(f"| {rt.name} | {fmt_mib(vm)} | {fmt_mib(anon)} | {own} | {target} |")
    w("")

    w("## Spread (ms: min / median / p90)")
    w("")
    w("| operation | " + " | ".join(rt.name for rt in live) + " |")
    w("| --- |" + " ---: |" * len(live))
    for op in OPERATIONS:
        cells = []
        for rt in live:
            xs = sorted(c.ms for c in rt.calls.get(op, []))
            if not xs:
                cells.append("—")
                continue
            p90 = xs[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]
            cells.append(f"{xs[0]:.1f} / {statistics.median(xs):.1f} / {p90:.1f}")
        w(f"| {op} | " + " | ".join(cells) + " |")
    w("")

    w("## CPU per operation (median ms, user+sys)")
    w("")
    w("The runtime process and the children it waited for (wait4's rusage): "
      "the part of the wall time that is work rather than waiting.")
    w("")
    w("| operation | " + " | ".join(rt.name for rt in live) + " |")
    w("| --- |" + " ---: |" * len(live))
    for op in OPERATIONS:
        cells = []
        for rt in live:
            calls = rt.calls.get(op, [])
            cells.append(f"{statistics.median(c.cpu_ms for c in calls):.1f}" if calls else "—")
        w(f"| {op} | " + " | ".join(cells) + " |")
    w("")

    if imports:
        w("## Where ocipy's start-up goes: imports per operation")
        w("")
        w("`-X importtime`, self time summed per top-level package, "
          "median of 3 runs (the profiler itself adds overhead; compare, don't add up).")
        w("")
        w("| operation | all imports ms | heaviest packages (ms) |")
        w("| --- | ---: | --- |")
        for op in OPERATIONS:
            if op not in imports:
                continue
            total, pkgs = imports[op]
            top = ", ".join(f"{p} {ms:.1f}" for p, ms in pkgs[:6])
            w(f"| {op} | {total:.1f} | {top} |")
        w("")

    problems = [(rt, op, msgs) for rt in live for op, msgs in rt.failures.items()]
    notes = [(rt, n) for rt in live for n in rt.notes]
    w("## Failures and notes")
    w("")
    for rt in rts:
        if rt.skipped:
            w(f"- {rt.name}: skipped ({rt.skipped})")
    for rt, op, msgs in problems:
        first = " ".join(msgs[0].split())[:300]
        w(f"- {rt.name} `{op}`: {len(msgs)} failure(s); first: `{first}`")
    for rt, n in notes:
        w(f"- {rt.name}: {n}")
    if not (problems or notes or any(rt.skipped for rt in rts)):
        w("- none")
    w("")
    return "\n".join(out)


# ---------------------------------------------------------------- main

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark ocipy against runc and crun.")
    p.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--rss-rounds", type=int, default=5,
                   help="extra rounds run under GNU time for peak RSS (default 5)")
    p.add_argument("--parallel", type=int, default=50,
                   help="containers created+deleted at once (default 50; 0 to skip)")
    p.add_argument("--parallel-rounds", type=int, default=3,
                   help="rounds of the parallel test (default 3)")
    p.add_argument("--runtimes", default="ocipy,runc,crun",
                   help="comma-separated subset of ocipy,runc,crun")
    p.add_argument("--ocipy", default=str(REPO / ".venv" / "bin" / "ocipy"))
    p.add_argument("--runc", default="/usr/sbin/runc")
    p.add_argument("--crun", default="/usr/bin/crun")
    p.add_argument("--no-install", action="store_true",
                   help="do not apt-get install a missing runc or crun")
    p.add_argument("--no-imports", action="store_true",
                   help="skip the import-time profile of ocipy's operations")
    p.add_argument("--output", default=str(DEFAULT_OUTPUT), help="markdown report path")
    args = p.parse_args(argv)
    if min(args.rounds - 1, args.warmup, args.rss_rounds, args.parallel,
           args.parallel_rounds) < 0:
        p.error("counts must be positive")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: must run as root (containers need it)", file=sys.stderr)
        return 2
    wanted = [x.strip() for x in args.runtimes.split(",") if x.strip()]
    known = {"ocipy": (args.ocipy, None), "runc": (args.runc, "runc"),
             "crun": (args.crun, "crun")}
    if not wanted or any(x not in known for x in wanted):
        print(f"bench: --runtimes takes a subset of {','.join(known)}", file=sys.stderr)
        return 2
    try:
        ensure_rootfs()
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"bench: no busybox rootfs at {ROOTFS}: {e}", file=sys.stderr)
        return 2

    # Orphaned inits come back to us, as they do to a containerd shim, so that
    # they are reaped (pid 1 of this machine may not reap).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # SIGTERM/SIGHUP unwind through the finally below, like Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)

    runtimes = [locate(name, known[name][0], known[name][1], not args.no_install)
                for name in wanted]
    cgroup_note = "not changed (crun not benchmarked)"
    crun = next((rt for rt in runtimes if rt.name == "crun" and not rt.skipped), None)
    if crun is not None:
        try:
            cgroup_note = prepare_cgroups_for_crun()
        except OSError as e:
            crun.skipped = f"hybrid cgroups and hugetlb could not be moved to v1: {e}"
            cgroup_note = str(e)
        print(f"cgroups: {cgroup_note}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="ocipy-bench-"))
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    facts = machine_facts()
    t_start = time.monotonic()
    bench = None
    try:
        bench = Bench(work, runtimes)
        imports = measure(bench, args)
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            bench.cleanup()
            for rt in runtimes:
                if rt.root.is_dir():
                    left = [e.name for e in rt.root.iterdir() if e.is_dir()]
                    if left:
                        print(f"bench: {rt.name} still lists {left} in {rt.root}",
                              file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    if imports is False:
        print("bench: no runtime could run a container", file=sys.stderr)
        return 2

    text = report(bench, args, facts, cgroup_note, imports, started,
                  time.monotonic() - t_start)
    print(text)
    try:
        Path(args.output).write_text(text + "\n")
        print(f"\nwritten to {args.output}")
    except OSError as e:
        print(f"bench: could not write {args.output}: {e}", file=sys.stderr)
    return 0


def measure(bench: Bench, args: argparse.Namespace) -> dict | None | bool:
    """Smoke-test each runtime, then the rounds, the parallel test and the
    import profile. False when no runtime can run a container."""
    runtimes = bench.runtimes
    for rt in runtimes:
        rt.root = bench.work / f"root-{rt.name}"
        if rt.skipped:
            print(f"{rt.name}: skipped: {rt.skipped}", flush=True)
            continue
        rt.root.mkdir()
        smoke = bench.call(rt, "run", "--bundle", str(bench.true_bundle),
                           f"{bench.tag}-{rt.name}-smoke")
        if not smoke.ok:
            rt.skipped = f"`run` of /bin/true failed: exit {smoke.rc}: {smoke.stderr[-300:]}"
            bench.force_delete(rt, f"{bench.tag}-{rt.name}-smoke")
        print(f"{rt.name}: {'skipped: ' + rt.skipped if rt.skipped else rt.version}",
              flush=True)
    live = [rt for rt in runtimes if not rt.skipped]
    if not live:
        return False

    total = args.warmup + args.rounds
    for r in range(total):
        warm = r < args.warmup
        if not warm:
            bench.reference.append(bench.python_floor())
        for rt in rotate(live, r):
            calls = bench.lifecycle(rt, f"r{r}")
            if warm:
                rt.init_rss.clear()
                continue
            for op, call in calls.items():
                rt.record(op, call)
        print(f"\rround {r + 1}/{total}{' (warm-up)' if warm else ''}   ", end="", flush=True)
    print(flush=True)

    ocipy = next((rt for rt in live if rt.name == "ocipy"), None)
    if ocipy is not None:
        bench.bytecode = bytecode_note(ocipy.binary)

    wrapper = next((w for w in RSS_WRAPPERS if os.access(w[0], os.X_OK)), None)
    for r in range(args.rss_rounds if wrapper else 0):
        for rt in rotate(live, r):
            for op, call in bench.lifecycle(rt, f"m{r}", rss_wrapper=wrapper).items():
                rt.record(op, call)
        print(f"\rRSS round {r + 1}/{args.rss_rounds}   ", end="", flush=True)
    if wrapper and args.rss_rounds:
        print(flush=True)
    bench.rss_wrapper = wrapper

    for r in range(args.parallel_rounds if args.parallel else 0):
        for rt in rotate(live, r):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall, nfail, msgs = bench.parallel(rt, args.parallel, f"par{r}")
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            rt.parallel.append((wall, nfail, cpu))
            if msgs:
                rt.failures.setdefault(f"parallel {args.parallel}", []).extend(msgs)
        print(f"\rparallel round {r + 1}/{args.parallel_rounds}   ", end="", flush=True)
    if args.parallel:
        print(flush=True)

    if ocipy is None or args.no_imports:
        return None
    return import_profile(bench, ocipy)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
