"""Hardening: each test replays the setup of an attack that worked against a
container runtime and checks the container gets nothing out of it.

- fds the caller leaks into the runtime (containerd hands runc its own
  socket) and CVE-2024-21626 (a cwd through a leaked directory fd);
- CVE-2019-5736: the runtime's own binary reached through /proc/<pid>/exe,
  while the runtime sets a process up or through ``#!/proc/self/exe``;
- CVE-2025-31133 and CVE-2019-19921: masked paths, mount destinations,
  readonlyPaths, /proc and /sys redirected by symlinks in the rootfs;
- CVE-2025-52565: /dev/console redirected by a symlink;
- capabilities and no_new_privs as the process sees them;
- the state directory: its permissions, atomic writes, and ids or bundles
  that try to point outside it.
"""
from __future__ import annotations

import array
import errno
import json
import os
import re
import resource
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

TIMEOUT = 20.0
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]  # the base config's
DEFAULT_CAPS_MASK = f"{(1 << 29) | (1 << 5) | (1 << 10):016x}"
NO_CAPS = "0" * 16

# Start argv with extra inherited fds: {fd: (path, is_dir)} opened read-only.
_WITH_FDS = (
    "import json, os, sys\n"
    "for fd, (path, is_dir) in json.loads(sys.argv[1]).items():\n"
    "    tmp = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if is_dir else 0))\n"
    "    if tmp == int(fd):\n"
    "        os.set_inheritable(tmp, True)\n"
    "    else:\n"
    "        os.dup2(tmp, int(fd))  # inheritable\n"
    "        os.close(tmp)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def with_fds(argv: list[str], fds: dict[int, Path]) -> list[str]:
    spec = {str(fd): (str(path), path.is_dir()) for fd, path in fds.items()}
    return [sys.executable, "-c", _WITH_FDS, json.dumps(spec), *argv]


def run_files(argv: list[str], out: Path, err: Path, timeout: float = TIMEOUT,
              **kwargs) -> subprocess.CompletedProcess:
    """argv to completion, stdout/stderr appended to files (a detached
    container keeps them open: never pipes)."""
    with open(out, "ab") as o, open(err, "ab") as e:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                              timeout=timeout, **kwargs)
    return subprocess.CompletedProcess(argv, proc.returncode, out.read_text(errors="replace"),
                                       err.read_text(errors="replace"))


def host_fds(pid: int) -> dict[int, str]:
    """fd -> target of a process, read on the host."""
    base = Path(f"/proc/{pid}/fd")
    return {int(name): os.readlink(base / name) for name in os.listdir(base)}


def _kill_exec(pid: int) -> None:
    """Kill and reap a detached exec'd process (our child: we are the
    subreaper).  Unreaped, it would keep the container's init from dying."""
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _sleeper(runtime, bundle, *flags) -> tuple[str, int]:
    bundle.args = ["sleep", "1000"]
    cid = runtime.new_id("hard")
    runtime.run(cid, bundle, "-d", *flags, check=True)
    return cid, runtime.pids[cid]


# ---- file descriptors -------------------------------------------------------------------

@pytest.fixture
def leaked(tmp_path) -> dict[int, Path]:
    """What a careless caller leaves open: two files, a host directory, and a
    high fd."""
    files = tmp_path / "leaked"
    files.mkdir()
    for name in ("three", "four", "two-hundred"):
        (files / name).write_text(name)
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    (hostdir / "marker").write_text("HOST-SECRET\n")
    return {3: files / "three", 4: files / "four", 5: hostdir, 200: files / "two-hundred"}


@pytest.mark.parametrize("preserve", [0, 2])
def test_init_sees_only_stdio_and_preserved_fds(runtime, bundle, leaked, preserve):
    cid = runtime.new_id("fds")
    bundle.args = ["sleep", "1000"]
    argv = with_fds(runtime.argv("run", "-d", "--preserve-fds", preserve, "--bundle",
                                 bundle.write(), cid), leaked)
    proc = run_files(argv, runtime.stdout_path(cid), runtime.stderr_path(cid))
    assert proc.returncode == 0, proc.stderr
    pid = runtime.state(cid)["pid"]
    runtime.pids[cid] = pid
    fds = host_fds(pid)
    assert sorted(fds) == [0, 1, 2, *range(3, 3 + preserve)], fds
    for fd in range(3, 3 + preserve):
        assert fds[fd] == str(leaked[fd])
    runtime.delete(cid, "--force")


@pytest.mark.parametrize("preserve", [0, 2])
def test_exec_process_sees_only_stdio_and_preserved_fds(runtime, bundle, leaked, tmp_path,
                                                        preserve):
    cid, _ = _sleeper(runtime, bundle)
    pid_file = tmp_path / "exec.pid"
    argv = with_fds(runtime.argv("exec", "-d", "--pid-file", pid_file, "--preserve-fds",
                                 preserve, cid, "sleep", "1000"), leaked)
    proc = run_files(argv, tmp_path / "exec.out", tmp_path / "exec.err")
    assert proc.returncode == 0, proc.stderr
    pid = int(pid_file.read_text())
    try:
        fds = host_fds(pid)
    finally:
        _kill_exec(pid)
    assert sorted(fds) == [0, 1, 2, *range(3, 3 + preserve)], fds
    for fd in range(3, 3 + preserve):
        assert fds[fd] == str(leaked[fd])
    runtime.delete(cid, "--force")


@pytest.mark.ocipy_only  # runc hands over its own cgroup dir fd, epoll and pipe
def test_preserve_fds_beyond_the_callers_open_fds_passes_no_runtime_fd(runtime, bundle,
                                                                        tmp_path):
    # --preserve-fds 3 from a caller with nothing open above stderr: fds 3-5
    # of the runtime are its own (sync socket, fifo, ...); the container must
    # not get them, and `run -d` must not wait on a fifo the container holds
    cid = runtime.new_id("fds")
    bundle.args = ["sleep", "1000"]
    close_all = ("import os, sys\n"
                 "os.closerange(3, 1024)\n"
                 "os.execv(sys.argv[1], sys.argv[1:])\n")
    argv = [sys.executable, "-c", close_all,
            *runtime.argv("run", "-d", "--preserve-fds", 3, "--bundle", bundle.write(), cid)]
    try:
        proc = run_files(argv, runtime.stdout_path(cid), runtime.stderr_path(cid), timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("run -d hung: the container holds one of the runtime's own fds")
    if proc.returncode != 0:  # refusing is fine
        assert proc.returncode == 1 and proc.stderr.startswith("ocipy: "), proc
        return
    pid = runtime.state(cid)["pid"]
    runtime.pids[cid] = pid
    fds = host_fds(pid)
    assert sorted(fds) == [0, 1, 2], f"runtime fds handed to the container: {fds}"
    runtime.delete(cid, "--force")


def test_cwd_through_a_leaked_directory_fd_does_not_reach_the_host(runtime, bundle, leaked):
    # CVE-2024-21626: cwd /proc/self/fd/5 names the host directory the
    # runtime inherited as fd 5, unless the runtime closes it or checks the
    # cwd is inside the root.
    cid = runtime.new_id("cwd")
    bundle.process["cwd"] = "/proc/self/fd/5"
    bundle.sh("pwd; cat marker ../marker 2>/dev/null; ls -a")
    argv = with_fds(runtime.argv("run", "--bundle", bundle.write(), cid), leaked)
    proc = run_files(argv, runtime.stdout_path(cid), runtime.stderr_path(cid))
    assert "HOST-SECRET" not in proc.stdout, proc.stdout
    assert "marker" not in proc.stdout, proc.stdout
    assert sorted(os.listdir(leaked[5])) == ["marker"]


def test_exec_cwd_through_a_leaked_directory_fd_does_not_reach_the_host(runtime, bundle, leaked,
                                                                         tmp_path):
    cid, _ = _sleeper(runtime, bundle)
    argv = with_fds(runtime.argv("exec", "--cwd", "/proc/self/fd/5", cid, "sh", "-c",
                                 "pwd; cat marker 2>/dev/null; ls -a"), leaked)
    proc = run_files(argv, tmp_path / "exec.out", tmp_path / "exec.err")
    assert "HOST-SECRET" not in proc.stdout and "marker" not in proc.stdout, proc.stdout
    runtime.delete(cid, "--force")


@pytest.mark.ocipy_only
def test_exec_cwd_outside_the_root_error_is_worded_once(runtime, bundle, leaked, tmp_path):
    cid, _ = _sleeper(runtime, bundle)
    argv = with_fds(runtime.argv("exec", "--cwd", "/proc/self/fd/5", cid, "true"), leaked)
    proc = run_files(argv, tmp_path / "exec.out", tmp_path / "exec.err")
    assert proc.returncode == 255, proc
    assert proc.stderr.count("\n") == 1, proc.stderr
    # names the configured cwd, and says why once
    assert "/proc/self/fd/5" in proc.stderr, proc.stderr
    assert proc.stderr.count("outside the container") == 1, proc.stderr
    runtime.delete(cid, "--force")


# ---- /proc/<pid>/exe: the runtime must stay out of reach (CVE-2019-5736) -----------------

# From inside the container, try every way into another process: its exe
# (readlink, open for reading, open for writing without writing: O_APPEND
# changes nothing), its root, cwd, environment, memory and fds.
PROBE = r"""
p=$1
probe() {
    name=$1; shift
    if out=$("$@" 2>&1); then echo "$name:open"; else echo "$name:denied:$out"; fi
}
probe exe-readlink readlink -v /proc/$p/exe
probe exe-read sh -c "exec 3</proc/$p/exe"
probe exe-write sh -c "exec 3>>/proc/$p/exe"
probe root ls /proc/$p/root/
probe cwd ls /proc/$p/cwd/
probe environ cat /proc/$p/environ
probe mem sh -c "exec 3</proc/$p/mem"
for fd in $(ls /proc/$p/fd 2>/dev/null); do probe fd$fd readlink -v /proc/$p/fd/$fd; done
echo PROBED
"""


def _parse_probe(out: str) -> dict[str, str]:
    results = {}
    for line in out.splitlines():
        name, _, rest = line.partition(":")
        if rest:
            results[name] = rest
    assert "PROBED" in out, out
    return results


def _assert_all_denied(results: dict[str, str]) -> None:
    opened = {name: how for name, how in results.items() if not how.startswith("denied")}
    assert not opened, f"reachable from the container: {opened}"
    for name, how in results.items():
        assert "Permission denied" in how or "Operation not permitted" in how, (name, how)


@pytest.mark.ocipy_only  # runc 1.1's waiting init is dumpable (its exe is a memfd copy)
def test_waiting_init_is_out_of_reach_of_the_container(runtime, bundle):
    # Between create and start the init is the runtime's own code, holding
    # host resources: a process exec'd into the container must not get at
    # its exe, root, cwd, memory or fds.
    bundle.args = ["true"]
    cid = runtime.new_id("probe")
    runtime.create(cid, bundle)
    init = runtime.state(cid)["pid"]
    proc = runtime.exec(cid, "sh", "-c", PROBE, "probe", "1")
    assert proc.returncode == 0, proc.stderr
    results = _parse_probe(proc.stdout)
    assert {"exe-readlink", "exe-read", "exe-write", "root", "cwd", "mem"} <= set(results)
    _assert_all_denied(results)
    assert runtime.status(cid) == "created"
    assert init == runtime.state(cid)["pid"]
    runtime.delete(cid, "--force")


EXECVE_NR = {"x86_64": (59, 322), "aarch64": (221, 281)}.get(os.uname().machine, ())


@pytest.mark.skipif(not EXECVE_NR, reason="no execve number for this architecture")
def test_exec_in_progress_is_out_of_reach_of_the_container(runtime, bundle, seccomp_agent, util):
    # The window of CVE-2019-5736: `exec` has joined the container and is
    # about to execve.  A seccomp agent holds that execve (SCMP_ACT_NOTIFY)
    # while the container's init probes the waiting process: it is still the
    # runtime, and must be non-dumpable.
    held = threading.Event()
    release = threading.Event()
    target: list[int] = []

    def handler(conn, notif):
        if conn is not conn.agent.connections[0] and not target:
            target.append(notif.pid)  # exec's first execve: its process
            held.set()
            release.wait(TIMEOUT)
        return (0, 0, 1)  # SECCOMP_USER_NOTIF_FLAG_CONTINUE

    agent = seccomp_agent(handler)
    bundle.linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["execve", "execveat"], "action": "SCMP_ACT_NOTIFY"}],
        "listenerPath": str(agent.path),
    }
    bundle.sh("while [ ! -s /dev/shm/target ]; do usleep 20000; done; "
              "read p < /dev/shm/target; sh -c \"$0\" probe $p; sleep 1000")
    bundle.args.append(PROBE)
    cid = runtime.new_id("probe")
    runtime.run(cid, bundle, "-d", check=True)
    init = runtime.pids[cid]
    agent.wait_connections(1)

    execer, _, exec_err = runtime.spawn("exec", "-d", cid, "true")
    try:
        assert held.wait(TIMEOUT), f"exec never reached execve: {exec_err.read_text()!r}"
        host_pid = target[0]
        # the held process is the runtime, in the container's pid namespace
        nspid = Path(f"/proc/{host_pid}/status").read_text().split("NSpid:")[1].split("\n")[0]
        inner = int(nspid.split()[-1])
        Path(f"/proc/{init}/root/dev/shm/target").write_text(f"{inner}\n")
        out = runtime.wait_output(cid, "PROBED")
    finally:
        release.set()
        execer.wait(TIMEOUT)
        if target:
            util.wait_pid(target[0])  # the exec'd `true`, ours to reap
    assert execer.returncode == 0, exec_err.read_text()
    _assert_all_denied(_parse_probe(out))
    runtime.delete(cid, "--force")


def _runtime_image(runtime, bundle) -> str:
    """The file /proc/self/exe names in the runtime's process that will
    execve the container's program: read from a created container's
    waiting init (for ocipy, the python its front-end runs; for runc 1.1 a
    memfd copy, which is no path on the host)."""
    args = bundle.args
    bundle.args = ["true"]
    cid = runtime.new_id("image")
    runtime.create(cid, bundle)
    try:
        return os.readlink(f"/proc/{runtime.state(cid)['pid']}/exe")
    finally:
        runtime.delete(cid, "--force")
        bundle.args = args


def _library_mounts(image: str) -> list[dict]:
    """Read-only binds that let the image run inside a busybox rootfs: the
    directories of its shared libraries, and a python's prefix (an attacker
    ships the same in the image)."""
    dirs = set()
    ldd = subprocess.run(["ldd", image], capture_output=True, text=True, timeout=TIMEOUT)
    for word in ldd.stdout.split():
        if word.startswith("/"):
            dirs.add(os.path.dirname(word))
    if os.path.basename(image).startswith("python"):
        prefix = subprocess.run([image, "-c", "import sys; print(sys.base_prefix)"],
                                capture_output=True, text=True, timeout=TIMEOUT).stdout.strip()
        if prefix:
            dirs.add(prefix)
    return [{"destination": d, "type": "bind", "source": os.path.realpath(d),
             "options": ["rbind", "ro"]} for d in sorted(dirs)]


# Run by whatever /proc/self/exe is when the runtime execve's it: if that is
# a python, this reports what the container got hold of.
EVIL_PY = """
import os
st = os.stat("/proc/self/exe")
fd = os.open("/proc/self/exe", os.O_RDONLY)
readonly = os.fstatvfs(fd).f_flag & os.ST_RDONLY
print("EXE", st.st_dev, st.st_ino, st.st_uid, oct(st.st_mode), readonly, os.geteuid(), flush=True)
"""


@pytest.mark.parametrize("via", ["run", "exec"])
def test_process_cannot_get_the_runtime_binary_through_proc_self_exe(runtime, bundle,
                                                                     private_rootfs, util, via):
    # CVE-2019-5736: the container's entrypoint is a script whose
    # interpreter is /proc/self/exe.  execve resolves it in the process
    # doing the execve, the runtime: the container then runs, and holds, the
    # runtime's binary (for a Python runtime, the host's python).  With a
    # writable handle it can overwrite it once no runtime runs (ETXTBSY is
    # gone), and the host runs the attacker's code the next time it starts a
    # container.  runc answers with a sealed memfd copy of itself (1.1) or a
    # read-only bind (1.2), ocipy by doing the last stage in ocipy-init, a
    # static program in a sealed memfd: whatever the container gets must not
    # be the host's file on a writable mount.
    bundle.use_rootfs(private_rootfs)
    image = _runtime_image(runtime, bundle)
    on_host = os.path.isfile(image)
    is_python = on_host and os.path.basename(image).startswith("python")
    if on_host:
        bundle.config["mounts"] += _library_mounts(image)
    evil = private_rootfs / "evil"
    evil.write_text("#!/proc/self/exe\n" + EVIL_PY)
    evil.chmod(0o755)

    if is_python:
        # control: the same script with the host's python bound in does run,
        # so the libraries are in place and a silent attack means a safe one
        bundle.add_mount("/hostpython", "bind", image, ["bind", "ro"])
        control = private_rootfs / "control"
        control.write_text("#!/hostpython\n" + EVIL_PY)
        control.chmod(0o755)
        bundle.args = ["/control"]
        proc = runtime.run(runtime.new_id("exe"), bundle)
        assert proc.returncode == 0 and "EXE" in proc.stdout, (
            f"the control did not run: {proc.stdout!r} {proc.stderr!r}")

    if via == "run":
        bundle.args = ["/evil"]
        proc = runtime.run(runtime.new_id("exe"), bundle)
        status, stderr = proc.returncode, proc.stderr
    else:
        cid, _ = _sleeper(runtime, bundle)
        proc = runtime.exec(cid, "/evil")
        status, stderr = proc.returncode, proc.stderr
        runtime.delete(cid, "--force")
    if util.IS_OCIPY:
        # what ran was ocipy-init, which refuses to be anything but the
        # last stage of a container process
        assert status == 127 and "ocipy-init: " in stderr, (status, stderr, proc.stdout)
    found = re.search(r"^EXE (\d+) (\d+) (\d+) (\S+) (\d+) (\d+)$", proc.stdout, re.M)
    if found is None:
        # /proc/self/exe was no python (then the control was skipped too), or
        # it could not run here: either way nothing was reported
        assert not is_python or "Python" not in proc.stderr, (
            f"the host's {image} ran in the container: {proc.stderr[-500:]!r}")
        return
    assert on_host, f"a python ran from {image}: {proc.stdout!r}"
    host = os.stat(image)
    dev, ino, uid, mode, readonly, euid = (found.group(i) for i in range(1, 7))
    same_file = (int(dev), int(ino)) == (host.st_dev, host.st_ino)
    writable = (not int(readonly) and int(uid) == int(euid) and int(mode, 8) & 0o200)
    assert not (same_file and writable), (
        f"the container ran and holds an fd to the host's {image} (dev {dev} ino {ino}, "
        f"owner {uid}, mode {mode}) on a writable mount: CVE-2019-5736")


F_GET_SEALS = 1034
F_SEAL_WRITE = 0x0008


@pytest.mark.ocipy_only
def test_waiting_init_runs_from_a_sealed_memfd_not_the_interpreter(runtime, bundle):
    # The init that waits for `start` is ocipy-init, not a copy of the
    # runtime: /proc/<init>/exe is a memfd whose contents nobody can change
    # and no interpreter page stays mapped in it.
    bundle.args = ["true"]
    cid = runtime.new_id("sealed")
    runtime.create(cid, bundle)
    pid = runtime.state(cid)["pid"]
    assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:ocipy-init")
    with open(f"/proc/{pid}/comm") as f:
        assert f.read().strip() == "ocipy-init"
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    assert "python" not in maps and "libpython" not in maps, maps
    fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY)
    try:
        import fcntl
        assert fcntl.fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE
    finally:
        os.close(fd)
    with pytest.raises(OSError) as raised:
        os.open(f"/proc/{pid}/exe", os.O_WRONLY)
    assert raised.value.errno in (errno.EPERM, errno.ETXTBSY), raised.value
    runtime.start(cid)
    assert runtime.wait(cid) == 0


# ---- masked paths, mount destinations, readonlyPaths through symlinks --------------------

def _bind_dev(bundle, tmp_path: Path, links: dict[str, str],
              nodes: dict[str, tuple[int, int]] | None = None) -> Path:
    """/dev is a bind mount of a host directory holding ``links`` (and
    character device ``nodes``): the runtime makes no devices there (runc's
    needsSetupDev), so the rootfs's own /dev/null is what masking finds."""
    fakedev = tmp_path / "fakedev"
    fakedev.mkdir()
    for name, target in links.items():
        os.symlink(target, fakedev / name)
    for name, (major, minor) in (nodes or {}).items():
        os.mknod(fakedev / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    bundle.config["mounts"] = [m for m in bundle.config["mounts"]
                               if not m["destination"].startswith("/dev")]
    bundle.add_mount("/dev", "bind", str(fakedev), ["rbind"])
    return fakedev


def _hook_script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\nset -e\n" + body)
    path.chmod(0o755)
    return str(path)


def _check_masked_hostname(runtime, bundle, util):
    """/etc/hostname is masked: create fails (ocipy: naming /dev/null), or
    the file reads empty."""
    bundle.linux["maskedPaths"] = ["/etc/hostname"]
    bundle.args = ["cat", "/etc/hostname"]
    cid = runtime.new_id("mask")
    proc = runtime.create(cid, bundle, check=False)
    if proc.returncode != 0:
        assert proc.returncode == 1, proc
        assert runtime.ids() == []
        if util.IS_OCIPY:  # refused for the right reason
            assert "/dev/null" in proc.stderr, proc.stderr
        return proc
    runtime.start(cid)
    runtime.wait(cid)
    out = runtime.stdout(cid)
    assert "root:" not in out, f"the mask showed the file /dev/null points to: {out!r}"
    assert out == "", out
    runtime.delete(cid)
    return proc


@pytest.mark.ocipy_only  # runc 1.1 binds whatever /dev/null resolves to (CVE-2025-31133)
def test_masking_with_a_dev_null_symlink_in_the_rootfs(runtime, bundle, util, tmp_path):
    _bind_dev(bundle, tmp_path, {"null": "/etc/passwd"})
    proc = _check_masked_hostname(runtime, bundle, util)
    if util.IS_OCIPY:
        assert proc.returncode == 1 and "/dev/null" in proc.stderr, proc.stderr


@pytest.mark.ocipy_only  # runc 1.1: CVE-2025-31133
def test_masking_after_a_hook_swapped_dev_null_for_a_symlink(runtime, bundle, util, tmp_path,
                                                             private_rootfs):
    # createContainer hooks run in the container's mount namespace before
    # pivot_root: the moment a racing process would swap /dev/null (a
    # writable root: runc 1.1 cannot remount / read-only after such a hook)
    bundle.use_rootfs(private_rootfs)
    rootfs = bundle.config["root"]["path"]
    hook = _hook_script(tmp_path, "swap-null",
                        f"/bin/rm -f {rootfs}/dev/null\n"
                        f"/bin/ln -s /etc/passwd {rootfs}/dev/null\n")
    bundle.config["hooks"] = {"createContainer": [{"path": hook}]}
    _check_masked_hostname(runtime, bundle, util)


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_bind_destination_symlink_to_a_host_directory_stays_in_the_rootfs(
        runtime, bundle, util, private_rootfs, tmp_path, link):
    host_dir = tmp_path / "host-dir"  # exists on the host: the tempting target
    host_dir.mkdir()
    (host_dir / "host-file").write_text("host\n")
    source = tmp_path / "source"
    source.mkdir()
    (source / "from-source").write_text("mounted\n")
    target = str(host_dir) if link == "absolute" else "../" * 20 + str(host_dir).lstrip("/")
    os.symlink(target, private_rootfs / "evil")
    bundle.use_rootfs(private_rootfs)
    bundle.add_mount("/evil", "bind", str(source), ["bind"])
    bundle.sh("cat /evil/from-source; ls /evil")
    proc = runtime.run(runtime.new_id("link"), bundle)
    assert sorted(os.listdir(host_dir)) == ["host-file"], "the mount landed on the host"
    assert util.mounts_under(host_dir) == []
    if proc.returncode == 0:
        assert proc.stdout == "mounted\nfrom-source\n", proc.stdout
        # resolved as the container resolves it: inside the rootfs
        assert (private_rootfs / str(host_dir).lstrip("/")).is_dir()
    else:
        assert proc.returncode == 1, proc


def test_readonly_and_masked_paths_through_symlinks_stay_in_the_rootfs(
        runtime, bundle, util, private_rootfs, tmp_path):
    host_dir = tmp_path / "host-rw"
    host_dir.mkdir()
    host_file = tmp_path / "host-secret"
    host_file.write_text("HOST-SECRET\n")
    # the same paths exist inside the rootfs: that is where they must apply
    inside_dir = private_rootfs / str(host_dir).lstrip("/")
    inside_dir.mkdir(parents=True)
    inside_file = private_rootfs / str(host_file).lstrip("/")
    inside_file.write_text("inside\n")
    os.symlink(str(host_dir), private_rootfs / "rolink")
    os.symlink(str(host_file), private_rootfs / "masklink")
    bundle.use_rootfs(private_rootfs)
    bundle.linux["readonlyPaths"] = ["/rolink"]
    bundle.linux["maskedPaths"] = ["/masklink"]
    bundle.sh("touch /rolink/x 2>&1; cat /masklink; echo end")
    proc = runtime.run(runtime.new_id("link"), bundle)
    assert proc.returncode == 0, proc.stderr
    assert "Read-only file system" in proc.stdout, proc.stdout
    assert proc.stdout.endswith("\nend\n") and "inside" not in proc.stdout, proc.stdout
    # the host's directory and file are untouched and unmounted
    (host_dir / "still-writable").write_text("x")
    assert host_file.read_text() == "HOST-SECRET\n"
    assert util.mounts_under(tmp_path / "host-rw") == []
    assert util.mounts_under(host_file) == []


@pytest.mark.parametrize("name", ["proc", "sys"])
@pytest.mark.parametrize("target", ["etc", "/etc"])
def test_proc_or_sys_as_a_symlink_is_refused(runtime, bundle, util, private_rootfs, name,
                                             target):
    # CVE-2019-19921: procfs mounted through a symlink lands wherever it
    # points (and /proc/self/attr writes go astray)
    os.rmdir(private_rootfs / name)
    os.symlink(target, private_rootfs / name)
    bundle.use_rootfs(private_rootfs)
    bundle.args = ["cat", "/etc/hostname"]
    before = set(util.descendants())
    cid = runtime.new_id("link")
    proc = runtime.create(cid, bundle, check=False)
    if name == "sys" and not util.IS_OCIPY and proc.returncode == 0:
        pytest.skip("runc 1.1 only checks /proc")
    assert proc.returncode == 1, proc
    assert runtime.ids() == []
    assert util.live_descendants(exclude=before) == set()
    assert util.mounts_under(private_rootfs) == []
    assert (private_rootfs / "etc" / "hostname").read_text() == "ocipy\n"
    if util.IS_OCIPY:
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert f"/{name}" in proc.stderr and "symlink" in proc.stderr, proc.stderr


# ---- /dev/console (CVE-2025-52565) ----------------------------------------------------

TIOCGPTN = 0x80045430


class _ConsoleReceiver:
    """Accept one connection on the console socket, keep the one fd sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.server.settimeout(TIMEOUT)
        self.fds: list[int] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(TIMEOUT)
            while True:
                data, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
                for level, kind, payload in anc:
                    if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                        fds = array.array("i")
                        fds.frombytes(payload[:len(payload) - len(payload) % 4])
                        self.fds.extend(fds)
                if not data and not anc:
                    return

    def master(self) -> int:
        self.thread.join(TIMEOUT)
        assert len(self.fds) == 1, self.fds
        return self.fds[0]

    def close(self) -> None:
        self.thread.join(TIMEOUT)
        self.server.close()
        for fd in self.fds:
            os.close(fd)


def _drain(master: int, timeout: float = 10.0) -> str:
    """What the container writes to the pty until it hangs up (or timeout:
    a process reading its terminal waits for input)."""
    import select

    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the last slave closed
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace").replace("\r\n", "\n")


def _console_case(runtime, bundle, tmp_path):
    import fcntl
    import struct

    bundle.process["terminal"] = True
    bundle.sh("stat -c '%F %t:%T' /dev/console; cat /etc/hostname; stat -c %F /etc/hostname")
    receiver = _ConsoleReceiver(tmp_path / "console.sock")
    cid = runtime.new_id("tty")
    try:
        runtime.create(cid, bundle, "--console-socket", receiver.path)
        master = receiver.master()
        number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        runtime.start(cid)
        out = _drain(master)
        runtime.wait(cid)
    finally:
        receiver.close()
    runtime.delete(cid, "--force", check=False)
    return number, out


@pytest.mark.ocipy_only  # runc 1.1 follows the link (CVE-2025-52565)
def test_dev_console_symlink_in_a_bound_dev_is_not_followed(runtime, bundle, tmp_path):
    _bind_dev(bundle, tmp_path, {"console": "/etc/hostname", "ptmx": "pts/ptmx"},
              nodes={"null": (1, 3)})
    bundle.add_mount("/dev/pts", "devpts", "devpts",
                     ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"])
    number, out = _console_case(runtime, bundle, tmp_path)
    lines = out.splitlines()
    assert lines[0] == f"character special file 88:{number:x}", out
    assert lines[1:] == ["ocipy", "regular file"], out


@pytest.mark.ocipy_only  # runc 1.1: CVE-2025-52565
def test_dev_console_swapped_for_a_symlink_by_a_hook_is_not_followed(runtime, bundle, tmp_path):
    rootfs = bundle.config["root"]["path"]
    hook = _hook_script(tmp_path, "swap-console",
                        f"/bin/rm -f {rootfs}/dev/console\n"
                        f"/bin/ln -s /etc/hostname {rootfs}/dev/console\n")
    bundle.config["hooks"] = {"createContainer": [{"path": hook}]}
    number, out = _console_case(runtime, bundle, tmp_path)
    lines = out.splitlines()
    assert lines[0] == f"character special file 88:{number:x}", out
    assert lines[1:] == ["ocipy", "regular file"], out


# ---- capabilities and no_new_privs, from inside ------------------------------------------

def _caps_of(status: str) -> dict[str, str]:
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"):
            fields[key] = value.strip()
    return fields


EXPECTED_CAPS = {"CapInh": NO_CAPS, "CapPrm": DEFAULT_CAPS_MASK, "CapEff": DEFAULT_CAPS_MASK,
                 "CapBnd": DEFAULT_CAPS_MASK, "CapAmb": NO_CAPS, "NoNewPrivs": "1"}


def test_init_capabilities_and_no_new_privs_are_exact(runtime, bundle):
    bundle.process["noNewPrivileges"] = True
    out = runtime.run_ok(bundle, ["cat", "/proc/self/status"])
    assert _caps_of(out) == EXPECTED_CAPS


def test_exec_capabilities_and_no_new_privs_are_exact(runtime, bundle):
    bundle.process["noNewPrivileges"] = True
    cid, _ = _sleeper(runtime, bundle)
    proc = runtime.exec(cid, "cat", "/proc/self/status")
    assert proc.returncode == 0, proc.stderr
    assert _caps_of(proc.stdout) == EXPECTED_CAPS
    runtime.delete(cid, "--force")


def test_non_root_process_has_no_capabilities_left(runtime, bundle):
    bundle.process["noNewPrivileges"] = True
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    out = runtime.run_ok(bundle, ["cat", "/proc/self/status"])
    assert _caps_of(out) == dict(EXPECTED_CAPS, CapPrm=NO_CAPS, CapEff=NO_CAPS)


# ---- the state directory ----------------------------------------------------------------------

def test_state_dir_is_private(runtime, bundle, util):
    bundle.args = ["true"]
    cid = runtime.new_id("state")
    runtime.create(cid, bundle)
    root_mode = stat.S_IMODE(os.stat(runtime.root).st_mode)
    assert root_mode & 0o022 == 0, oct(root_mode)
    path = runtime.root / cid
    st = os.stat(path)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o066 == 0, oct(st.st_mode)
    if util.IS_OCIPY:  # runc's is 0711
        assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    files = {}
    for name in os.listdir(path):
        st = os.lstat(path / name)
        files[name] = st
        if stat.S_ISREG(st.st_mode):
            assert stat.S_IMODE(st.st_mode) == 0o600, (name, oct(st.st_mode))
        else:
            assert not stat.S_ISLNK(st.st_mode), name
            assert stat.S_IMODE(st.st_mode) & 0o044 == 0, (name, oct(st.st_mode))
    assert "state.json" in files
    runtime.delete(cid, "--force")


def test_state_is_never_torn_while_containers_come_and_go(runtime, bundle):
    ids = [runtime.new_id("torn") for _ in range(6)]
    stop = threading.Event()
    torn: list[str] = []
    reads = {"file": 0, "cli": 0}

    def read_files() -> None:
        while not stop.is_set():
            for cid in ids:
                try:
                    data = (runtime.root / cid / "state.json").read_bytes()
                except (FileNotFoundError, NotADirectoryError):
                    continue
                reads["file"] += 1
                try:
                    json.loads(data)
                except ValueError:
                    torn.append(f"state.json of {cid}: {data[:200]!r}")

    def read_cli() -> None:
        reader = type(runtime)(runtime.binary, runtime.root, runtime.workdir / "reader")
        while not stop.is_set():
            for cid in ids:
                proc = reader.cmd("state", cid)
                reads["cli"] += 1
                if proc.returncode == 0:
                    try:
                        doc = json.loads(proc.stdout)
                    except ValueError:
                        torn.append(f"state {cid}: {proc.stdout!r}")
                        continue
                    if doc.get("id") != cid:
                        torn.append(f"state {cid}: {doc}")
                elif "does not exist" not in proc.stderr and "not exist" not in proc.stderr:
                    torn.append(f"state {cid} exited {proc.returncode}: {proc.stderr!r}")

    threads = [threading.Thread(target=read_files), threading.Thread(target=read_cli)]
    for t in threads:
        t.start()
    try:
        bundle.args = ["true"]
        for cid in ids:
            runtime.create(cid, bundle)
            runtime.start(cid)
            runtime.wait(cid)
            runtime.delete(cid)
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
    assert not torn, torn[:5]
    assert reads["file"] > 0 and reads["cli"] > len(ids), reads


BAD_IDS = ["a/b", "../escape", "..", ".", "a/../b", "/abs", "x/..", "with space", "", "new\nline"]


@pytest.mark.parametrize("cid", BAD_IDS, ids=repr)
def test_bad_container_id_is_refused_and_creates_nothing(runtime, bundle, util, tmp_path, cid):
    # (an id with a NUL cannot be passed in argv at all)
    bundle.args = ["true"]
    bundle.write()
    before = sorted(os.listdir(tmp_path))
    procs = set(util.descendants())
    proc = runtime.cmd("create", "--bundle", bundle.path, cid)
    assert proc.returncode == 1, proc
    assert runtime.ids() == []  # (runc makes the empty root first)
    assert sorted(set(os.listdir(tmp_path)) - {"root"}) == before
    assert util.live_descendants(exclude=procs) == set()
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [["delete", "--force"], ["delete"], ["kill"], ["start"],
                                     ["state"], ["exec", "--"]])
def test_bad_id_in_other_commands_touches_nothing_outside_the_root(runtime, bundle, tmp_path,
                                                                   command):
    # a dir next to the root that looks like a container: `delete ../victim`
    # must not remove it, `kill`/`start` must not act on its pid
    runtime.root.mkdir(parents=True, exist_ok=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "state.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "id": "victim", "status": "created", "pid": os.getpid(),
        "bundle": str(bundle.path), "rootfs": "/"}))
    (victim / "keep").write_text("keep")
    extra = ["true"] if command[0] == "exec" else []
    proc = runtime.cmd(*command, "../victim", *extra)
    assert proc.returncode != 0, proc
    assert sorted(os.listdir(victim)) == ["keep", "state.json"]


# ---- the bundle --------------------------------------------------------------------------

def test_config_json_symlink_is_read_like_runc(runtime, bundle, tmp_path):
    # bundle.md only says config.json resides in the bundle's root: runc
    # follows a symlink there, and so may we
    bundle.args = ["echo", "from-the-link-target"]
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(bundle.config))
    link_bundle = tmp_path / "link-bundle"
    link_bundle.mkdir()
    os.symlink(elsewhere, link_bundle / "config.json")
    proc = runtime.run(runtime.new_id("cfg"), link_bundle)
    assert (proc.returncode, proc.stdout) == (0, "from-the-link-target\n"), proc.stderr


def test_root_path_relative_with_dotdot_is_the_bundles_relative_path(runtime, bundle_factory,
                                                                     private_rootfs, tmp_path):
    # config.md: root.path is absolute or relative to the bundle; nothing
    # keeps it inside the bundle (podman's root is never in its bundle)
    b = bundle_factory("nested/bundle")
    b.config["root"] = {"path": "../../rootfs", "readonly": True}
    b.args = ["cat", "/etc/hostname"]
    cid = runtime.new_id("cfg")
    runtime.create(cid, b)
    assert os.path.realpath(runtime.state(cid)["rootfs"]) == str(private_rootfs)
    runtime.start(cid)
    runtime.wait(cid)
    assert runtime.stdout(cid) == "ocipy\n"
    runtime.delete(cid)


def _limit_memory() -> None:
    # a runtime reading /dev/zero to the end must not take the machine down
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.ocipy_only  # runc's JSON decoder fails on the first NUL byte
def test_config_json_that_is_a_device_is_refused(runtime, bundle, util, tmp_path):
    path = tmp_path / "dev-bundle"
    path.mkdir()
    os.symlink("/dev/zero", path / "config.json")
    started = time.monotonic()
    proc = runtime.cmd("create", "--bundle", path, runtime.new_id("cfg"), timeout=TIMEOUT,
                       preexec_fn=_limit_memory)
    assert time.monotonic() - started < 10, "create read the device for seconds"
    assert proc.returncode == 1, proc
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("ocipy: "), proc.stderr
    assert "config.json" in proc.stderr, proc.stderr
    assert runtime.ids() == []


@pytest.mark.ocipy_only  # runc blocks in open(2) forever
def test_config_json_that_is_a_fifo_is_refused(runtime, tmp_path):
    path = tmp_path / "fifo-bundle"
    path.mkdir()
    os.mkfifo(path / "config.json")
    try:
        proc = runtime.cmd("create", "--bundle", path, runtime.new_id("cfg"), timeout=10)
    except AssertionError as exc:  # killed after the timeout: it waited for a writer
        pytest.fail(f"create blocked on a FIFO config.json: {exc}")
    assert proc.returncode == 1, proc
    assert proc.stderr.startswith("ocipy: ") and "config.json" in proc.stderr, proc.stderr
    assert runtime.ids() == []
