"""--systemd-cgroup against a real systemd.

This machine does not boot with systemd, so every test starts its own:
/lib/systemd/systemd as PID 1 of new pid, mount, cgroup, network, uts and
ipc namespaces, placed first in a test-owned cgroup (/ocipy-systemd-<hex>
in every hierarchy), which its cgroup namespace shows it as the root.  In
its mount namespace it gets a private /run (its /run/systemd/private is not
the host's), a read-only /proc/sys and /sys, /dev/console bound to a log
file, and the cgroup hierarchies mounted again from inside its cgroup
namespace: the host's layout (v1 + hybrid cgroup2 here), or cgroup2 alone
(the ``unified`` view: a pure v2 host, without controllers on this one).
Its unit search path holds one empty target and nothing else, and no
generators run: it starts no service of the host.  After the test the
containers are deleted, systemd is SIGKILLed (the namespace's init: every
process in it dies) and the cgroup tree is removed.

The runtime runs inside those namespaces (nsenter), as it would on a
systemd host: systemd reads the pids it is given in its own pid namespace.
The suite's ``runtime`` wrapper is reused with a binary that enters them.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

SYSTEMD = "/lib/systemd/systemd"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(SYSTEMD, os.X_OK)
    or not (shutil.which("nsenter") and shutil.which("unshare")
            and shutil.which("systemctl")),
    reason="needs root, systemd, nsenter and unshare")

# systemd sees these only: one target to reach, nothing to start
TARGET = """[Unit]
Description=ocipy systemd driver tests
DefaultDependencies=no
"""

# run by unshare, as PID 1-to-be of the new namespaces: the mounts, then systemd
INNER = """#!/bin/sh
set -e
mount -t proc proc /proc
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -t tmpfs -o mode=755 tmpfs /run
mount -t sysfs -o ro sysfs /sys
{cgroup_mounts}
mount --bind {console} /dev/console
exec env -i container=ocipy-test SYSTEMD_UNIT_PATH={units} \\
    SYSTEMD_GENERATOR_PATH={empty} SYSTEMD_ENVIRONMENT_GENERATOR_PATH={empty} \\
    {systemd} --unit=ocipy-test.target --log-level=info
"""

# commands in systemd's namespaces, from the test cgroup's runner cgroup
ENTER = """#!/bin/sh
for procs in {procs}; do echo $$ > "$procs"; done
exec nsenter --target {pid} --mount --pid --cgroup -- "$@"
"""

_V1_OPTIONS = {"rw", "ro", "clone_children", "noprefix", "xattr", "cpuset_v2_mode",
               "nsdelegate", "favordynmods", "memory_recursiveprot", "memory_localevents"}


class SystemdEnv:
    """A private systemd; ``run`` executes a command in its namespaces."""

    def __init__(self, tmp_path: Path, layout: str, util) -> None:
        self.dir = tmp_path / "systemd"
        self.dir.mkdir()
        self.layout = layout
        self.name = f"ocipy-systemd-{uuid.uuid4().hex[:10]}"
        # the host's cgroup mounts: (mount point, type, v1 controllers)
        self.mounts = []
        for m in util.host_mounts():
            if m["fstype"] == "cgroup":
                options = [o for o in m["super_options"]
                           if o not in _V1_OPTIONS and not o.startswith("release_agent=")]
                self.mounts.append((m["mount_point"], "cgroup", options))
            elif m["fstype"] == "cgroup2":
                self.mounts.append((m["mount_point"], "cgroup2", []))
        self.proc = None
        self.pid = 0  # systemd's pid on the host

    # ---- where things are ---------------------------------------------------

    def host_dir(self, mountpoint: str, path: str = "/") -> str:
        """A cgroup of systemd's tree (path as systemd names it) as a host directory."""
        return os.path.join(mountpoint, self.name, path.lstrip("/")).rstrip("/")

    def inner_dir(self, controller: str) -> str | None:
        """The host mount point of the hierarchy ``controller`` is in, as systemd sees it."""
        for mountpoint, fstype, options in self.mounts:
            if (self.layout == "unified" or controller == "") and fstype == "cgroup2":
                return mountpoint
            if self.layout == "host" and controller in options:
                return mountpoint
        return None

    def read(self, controller: str, path: str, name: str) -> str:
        with open(os.path.join(self.host_dir(self.inner_dir(controller), path), name)) as f:
            return f.read()

    # ---- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        units = self.dir / "units"
        units.mkdir()
        (units / "ocipy-test.target").write_text(TARGET)
        (self.dir / "empty").mkdir()
        self.console = self.dir / "console.log"
        self.console.touch()
        cgroup_mounts = []
        if self.layout == "unified":
            cgroup_mounts.append("mount -t cgroup2 cgroup2 /sys/fs/cgroup")
        else:
            if any(mp == "/sys/fs/cgroup" for mp, _, _ in self.mounts):
                cgroup_mounts.append("mount -t cgroup2 cgroup2 /sys/fs/cgroup")
            else:
                cgroup_mounts.append("mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup")
            for mountpoint, fstype, options in self.mounts:
                if mountpoint == "/sys/fs/cgroup" or not mountpoint.startswith("/sys/fs/cgroup/"):
                    continue
                if fstype == "cgroup2":
                    how = "-t cgroup2 cgroup2"
                elif any(o.startswith("name=") for o in options):
                    how = f"-t cgroup -o none,{','.join(options)} cgroup"
                else:
                    how = f"-t cgroup -o {','.join(options)} cgroup"
                cgroup_mounts.append(f"mkdir -p {mountpoint} && mount {how} {mountpoint}")
        inner = self.dir / "inner.sh"
        inner.write_text(INNER.format(cgroup_mounts="\n".join(cgroup_mounts),
                                      console=self.console, units=units,
                                      empty=self.dir / "empty", systemd=SYSTEMD))
        inner.chmod(0o755)
        # the test cgroup in every hierarchy, and a runner cgroup below it for
        # the commands run inside (a v2 cgroup with children and controllers
        # takes no process of its own)
        procs = []
        for mountpoint, _fstype, options in self.mounts:
            for path in ("/", "/ocipy-runner"):
                directory = self.host_dir(mountpoint, path)
                os.mkdir(directory)
                if "cpuset" in options:
                    for name in ("cpuset.cpus", "cpuset.mems"):
                        parent = Path(os.path.dirname(directory), name).read_text()
                        Path(directory, name).write_text(parent)
            procs.append(os.path.join(self.host_dir(mountpoint), "cgroup.procs"))
        argv = ["unshare", "--pid", "--fork", "--mount", "--cgroup", "--net", "--uts", "--ipc",
                "--propagation", "private", str(inner)]
        # systemd starts in the test cgroup: its cgroup namespace is rooted there
        place = "".join(f'echo $$ > "{p}"; ' for p in procs)
        self.proc = subprocess.Popen(["sh", "-c", place + 'exec "$@"', "sh", *argv],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "unshare.err", "wb"))
        deadline = time.monotonic() + 30
        while not self.pid:
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                f"systemd did not start: {self.log()}"
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            found = children.read_text().split() if children.exists() else []
            if found:
                self.pid = int(found[0])
            else:
                time.sleep(0.01)
        runner = [os.path.join(self.host_dir(mp, "/ocipy-runner"), "cgroup.procs")
                  for mp, _, _ in self.mounts]
        enter = self.dir / "enter"
        enter.write_text(ENTER.format(procs=" ".join(f'"{p}"' for p in runner), pid=self.pid))
        enter.chmod(0o755)
        self.enter = str(enter)
        while True:
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            assert time.monotonic() < deadline, f"systemd is {state!r}: {self.log()}"
            time.sleep(0.05)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.enter, *argv], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=30)
        if check:
            assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        return proc

    def show(self, unit: str, *names: str) -> dict[str, str]:
        """``systemctl show -p ...`` as a dict."""
        out = self.run("systemctl", "show", "-p", ",".join(names), unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def log(self) -> str:
        text = self.console.read_text(errors="replace") if hasattr(self, "console") else ""
        return text[-3000:]

    def scope_dirs(self) -> list[str]:
        """Every unit cgroup below the test cgroup but systemd's own init.scope."""
        found = []
        for mountpoint, _, _ in self.mounts:
            for top, dirs, _files in os.walk(self.host_dir(mountpoint)):
                found += [os.path.join(top, d) for d in dirs
                          if d.endswith(".scope") and d != "init.scope"]
        return found

    def stop(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)  # the namespace's init: all in it die
        if self.proc is not None:
            self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        for mountpoint, _, _ in self.mounts:
            top = self.host_dir(mountpoint)
            if not os.path.isdir(top):
                continue
            for directory, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
                while True:
                    try:
                        os.rmdir(directory)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:  # its processes are still exiting
                        assert time.monotonic() < deadline, f"{directory} stays busy"
                        time.sleep(0.01)


def _running_systemd(tmp_path, layout: str, util):
    env = SystemdEnv(tmp_path, layout, util)
    try:
        env.start()
        yield env
    finally:
        env.stop()


@pytest.fixture(params=["host", "unified"])
def sd(request, tmp_path, util):
    """A private systemd with the host's cgroup layout or the unified one alone."""
    yield from _running_systemd(tmp_path, request.param, util)


@pytest.fixture
def sd_host(tmp_path, util):
    """A private systemd with the host's cgroup layout only."""
    yield from _running_systemd(tmp_path, "host", util)


@pytest.fixture
def sd_runtime(request, runtime, tmp_path, util):
    """The suite's runtime wrapper, its commands run in systemd's namespaces."""
    env = request.getfixturevalue("sd") if "sd" in request.fixturenames else \
        request.getfixturevalue("sd_host")
    binary = tmp_path / "runtime-in-systemd"
    # --systemd-cgroup is a global flag (runc's): every command gets it
    binary.write_text(f'#!/bin/sh\nexec {env.enter} {util.RUNTIME} --systemd-cgroup "$@"\n')
    binary.chmod(0o755)
    rt = type(runtime)(str(binary), runtime.root, runtime.workdir)
    yield rt
    # before systemd goes: the containers' units are stopped through it
    for cid in rt.ids():
        rt.delete(cid, "--force", check=False)


def _proc_cgroup(sd, pid: int) -> list[str]:
    """The pid's lines of /proc/<pid>/cgroup for the hierarchies systemd has.

    In the unified view only cgroup2 is mounted: the v1 hierarchies still
    exist in the kernel (the pid stays where the test's runner put it there),
    but neither systemd nor a runtime on a pure v2 host would see them."""
    lines = sd.run("cat", f"/proc/{pid}/cgroup").stdout.splitlines()
    if sd.layout == "unified":
        lines = [line for line in lines if line.startswith("0::")]
    return lines


# ---- the tests -------------------------------------------------------------------------

def test_a_container_is_a_transient_scope_in_its_slice(sd, sd_runtime, bundle):
    """StartTransientUnit with the init's pid in a nested slice; ps, pause,
    resume and kill --all work on the unit's cgroup; delete stops the unit."""
    rt = sd_runtime
    cid = rt.new_id("sd")
    unit = f"ocipy-{cid}.scope"
    path = f"/ocipytest.slice/ocipytest-a.slice/{unit}"
    bundle.sh("echo ready; exec sleep 1000")
    bundle.linux["cgroupsPath"] = f"ocipytest-a.slice:ocipy:{cid}"
    rt.run(cid, bundle, "-d", check=True)
    rt.wait_output(cid, "ready")
    pid = rt.state(cid)["pid"]
    props = sd.show(unit, "ActiveState", "ControlGroup", "Slice", "Delegate",
                    "DefaultDependencies", "MemoryAccounting", "CPUAccounting",
                    "TasksAccounting")
    assert props == {"ActiveState": "active", "ControlGroup": path,
                     "Slice": "ocipytest-a.slice", "Delegate": "yes",
                     "DefaultDependencies": "no", "MemoryAccounting": "yes",
                     "CPUAccounting": "yes", "TasksAccounting": "yes"}
    # the init is in the unit's cgroup in every hierarchy
    lines = _proc_cgroup(sd, pid)
    assert lines and all(line.endswith(":" + path) for line in lines), lines
    procs = rt.cmd("ps", "--format", "json", cid, check=True)
    assert json.loads(procs.stdout) == [pid]
    rt.cmd("pause", cid, check=True)
    assert rt.status(cid) == "paused"
    if sd.layout == "unified":
        assert "frozen 1" in sd.read("", path, "cgroup.events")
    else:
        assert sd.read("freezer", path, "freezer.state").strip() == "FROZEN"
    rt.cmd("resume", cid, check=True)
    assert rt.status(cid) == "running"
    rt.kill(cid, "--all", "KILL")
    sd.run("sh", "-c", f"while [ -e /proc/{pid}/status ] && "
                       f"! grep -q '^State:.*Z' /proc/{pid}/status; do sleep 0.01; done")
    rt.delete(cid)
    assert sd.show(unit, "LoadState")["LoadState"] == "not-found"
    assert sd.scope_dirs() == []
    assert rt.ids() == []


def test_limits_are_unit_properties_and_cgroup_files(sd_host, sd_runtime, bundle):
    """What systemd has a property for is set through it (systemctl show
    says so); the rest is written to the unit's files, as runc does."""
    sd, rt = sd_host, sd_runtime
    cid = rt.new_id("sd")
    unit = f"ocipy-{cid}.scope"
    path = f"/system.slice/{unit}"
    bundle.args = ["sleep", "1000"]
    bundle.linux["cgroupsPath"] = f":ocipy:{cid}"
    bundle.linux["resources"] = {
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swappiness": 20},
        "cpu": {"shares": 512, "quota": 33333, "period": 100000},
        "pids": {"limit": 33},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
    }
    rt.create(cid, bundle)
    props = sd.show(unit, "MemoryLimit", "CPUShares", "CPUQuotaPerSecUSec", "TasksMax",
                    "BlockIOAccounting")
    assert props == {"MemoryLimit": str(64 << 20), "CPUShares": "512",
                     "CPUQuotaPerSecUSec": "340ms",  # 33.333% rounded up to 34%
                     "TasksMax": "33", "BlockIOAccounting": "yes"}
    assert int(sd.read("memory", path, "memory.limit_in_bytes")) == 64 << 20
    assert int(sd.read("memory", path, "memory.soft_limit_in_bytes")) == 32 << 20
    assert int(sd.read("memory", path, "memory.swappiness")) == 20
    assert int(sd.read("cpu", path, "cpu.shares")) == 512
    # the file agrees with systemd's rounded quota
    assert int(sd.read("cpu", path, "cpu.cfs_quota_us")) == 34000
    assert int(sd.read("pids", path, "pids.max")) == 33
    # devices: systemd leaves that hierarchy alone, the runtime writes the rules
    rules = sd.read("devices", path, "devices.list").split("\n")
    assert "a *:* rwm" not in rules and "c 1:3 rwm" in rules

    # update: SetUnitProperties and the files
    new = rt.workdir / "resources.json"
    new.write_text(json.dumps({"memory": {"limit": 96 << 20}, "pids": {"limit": 50},
                               "cpu": {"quota": 20000}}))
    rt.cmd("update", "--resources", str(new), cid, check=True)
    assert sd.show(unit, "MemoryLimit", "TasksMax", "CPUQuotaPerSecUSec") == {
        "MemoryLimit": str(96 << 20), "TasksMax": "50", "CPUQuotaPerSecUSec": "200ms"}
    assert int(sd.read("memory", path, "memory.limit_in_bytes")) == 96 << 20
    assert int(sd.read("pids", path, "pids.max")) == 50
    assert int(sd.read("cpu", path, "cpu.cfs_quota_us")) == 20000
    rt.delete(cid, "--force")
    assert sd.show(unit, "LoadState")["LoadState"] == "not-found"
    assert sd.scope_dirs() == []


def test_exec_joins_the_units_cgroups(sd, sd_runtime, bundle):
    rt = sd_runtime
    cid = rt.new_id("sd")
    path = f"/system.slice/ocipy-{cid}.scope"
    bundle.args = ["sleep", "1000"]
    bundle.linux["cgroupsPath"] = f"system.slice:ocipy:{cid}"
    rt.run(cid, bundle, "-d", check=True)
    proc = rt.exec(cid, "cat", "/proc/self/cgroup", check=True)
    # with a cgroup namespace absent, the container sees the host's paths
    lines = proc.stdout.splitlines()
    if sd.layout == "unified":
        lines = [line for line in lines if line.startswith("0::")]
    assert lines and all(line.endswith(":" + path) for line in lines), proc.stdout
    rt.delete(cid, "--force")
    assert sd.scope_dirs() == []


def test_a_failed_create_stops_its_unit(sd_host, sd_runtime, bundle):
    """The unit exists before the limits are written: a limit the kernel
    refuses fails the create, and the unit and its cgroups go with it."""
    sd, rt = sd_host, sd_runtime
    cid = rt.new_id("sd")
    unit = f"ocipy-{cid}.scope"
    bundle.linux["cgroupsPath"] = f"system.slice:ocipy:{cid}"
    # more real-time runtime than the parent has: the kernel refuses it
    bundle.linux["resources"] = {"cpu": {"realtimeRuntime": 900000, "realtimePeriod": 1000000}}
    proc = rt.create(cid, bundle, check=False)
    assert proc.returncode != 0
    assert sd.show(unit, "LoadState")["LoadState"] == "not-found"
    assert sd.scope_dirs() == []
    assert rt.ids() == []


@pytest.mark.ocipy_only
def test_the_default_unit_is_ocipy_id_in_system_slice(sd_host, sd_runtime, bundle):
    """No cgroupsPath: ":ocipy:<id>" (runc's default is ":runc:<id>")."""
    sd, rt = sd_host, sd_runtime
    cid = rt.new_id("sd")
    bundle.args = ["sleep", "1000"]
    rt.create(cid, bundle)
    props = sd.show(f"ocipy-{cid}.scope", "ControlGroup", "Description")
    assert props == {"ControlGroup": f"/system.slice/ocipy-{cid}.scope",
                     "Description": f"ocipy container {cid}"}
    rt.delete(cid, "--force")
    assert sd.scope_dirs() == []


@pytest.mark.ocipy_only
def test_a_unit_name_in_use_fails_the_second_create_and_spares_the_first(
        sd_host, sd_runtime, bundle):
    """Two containers asking for one unit: the second create fails with
    systemd's UnitExists and must not stop the first one's unit (runc 1.1
    stops it on its clean-up path)."""
    sd, rt = sd_host, sd_runtime
    first, second = rt.new_id("sd"), rt.new_id("sd")
    unit = f"ocipy-shared-{first}.scope"
    bundle.args = ["sleep", "1000"]
    bundle.linux["cgroupsPath"] = f"system.slice:ocipy:shared-{first}"
    rt.create(first, bundle)
    proc = rt.create(second, bundle, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"ocipy: create systemd unit {unit}: org.freedesktop.systemd1.UnitExists: "
        f"Unit {unit} was already loaded or has a fragment file.")
    assert sd.show(unit, "ActiveState")["ActiveState"] == "active"
    assert rt.status(first) == "created"
    assert rt.ids() == [first]
    rt.delete(first, "--force")
    assert sd.scope_dirs() == []


@pytest.mark.ocipy_only
def test_without_systemd_the_error_is_one_line(runtime, bundle):
    """On this host (no systemd as PID 1) --systemd-cgroup fails cleanly."""
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs on this host")
    cid = runtime.new_id("sd")
    bundle.linux["cgroupsPath"] = f"system.slice:ocipy:{cid}"
    proc = runtime.cmd("--systemd-cgroup", "create", "--bundle", bundle.write(), cid)
    assert proc.returncode == 1
    assert proc.stderr == "ocipy: systemd cgroup driver: systemd is not running on this host\n"
    assert runtime.ids() == []
