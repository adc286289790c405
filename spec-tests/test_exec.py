"""`exec` (runc's CLI; runtime-spec leaves it to the runtime): a new process
in a running container joins the init's namespaces and rootfs, gets the
process attributes the flags (or a process.json) ask for, and reports its
exit status; exec into a stopped container runs nothing."""
from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid

import pytest

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]  # the base config's
CAP_NUMBERS = {"CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10, "CAP_SYS_ADMIN": 21,
               "CAP_AUDIT_WRITE": 29}
SHARED_NAMESPACES = ["pid", "net", "uts", "ipc", "mnt"]


def _start_sleeper(runtime, bundle) -> tuple[str, int]:
    """Run ``sleep 1000`` detached: (container id, init pid on the host)."""
    bundle.args = ["sleep", "1000"]
    cid = runtime.new_id("exec")
    runtime.run(cid, bundle, "-d", check=True)
    assert runtime.status(cid) == "running"
    return cid, runtime.pids[cid]


@pytest.fixture
def sleeper(runtime, bundle) -> tuple[str, int]:
    """A running container on the base bundle: (id, init pid)."""
    return _start_sleeper(runtime, bundle)


def _exec_ok(runtime, cid: str, *args, **kwargs) -> str:
    """Foreground exec that must exit 0; its stdout."""
    proc = runtime.exec(cid, *args, **kwargs)
    assert proc.returncode == 0, f"exec exited {proc.returncode}; stderr {proc.stderr!r}"
    return proc.stdout


def _cap_mask(names: list[str]) -> str:
    """The 16-hex-digit mask /proc/<pid>/status shows for these capabilities."""
    return f"{sum(1 << CAP_NUMBERS[name] for name in set(names)):016x}"


def _open_fds(listing: str) -> dict[int, str]:
    """fd -> target from `ls -l /proc/self/fd`, minus ls's own directory fd."""
    fds = {}
    for line in listing.splitlines():
        m = re.search(r" (\d+) -> (.*)$", line)
        if m and not re.fullmatch(r"/proc/\d+/fd", m.group(2)):
            fds[int(m.group(1))] = m.group(2)
    return fds


# ---- where the process runs -------------------------------------------------------

def test_exec_joins_the_init_namespaces(runtime, sleeper, util):
    cid, pid = sleeper
    script = f"for ns in {' '.join(SHARED_NAMESPACES)}; do readlink /proc/self/ns/$ns; done"
    out = _exec_ok(runtime, cid, "sh", "-c", script)
    inside = {}
    for line in out.splitlines():
        m = re.fullmatch(r"(\w+):\[(\d+)\]", line)
        assert m, out
        inside[m.group(1)] = int(m.group(2))
    init = {ns: util.ns_inode(f"/proc/{pid}/ns/{ns}") for ns in SHARED_NAMESPACES}
    assert inside == init
    # The init's namespaces are not the host's, so the equality above means something.
    host = {ns: util.ns_inode(f"/proc/self/ns/{ns}") for ns in SHARED_NAMESPACES}
    assert all(init[ns] != host[ns] for ns in SHARED_NAMESPACES), (init, host)


def test_exec_sees_the_container_rootfs(runtime, bundle, private_rootfs):
    token = uuid.uuid4().hex
    (private_rootfs / "spec-marker").write_text(token)
    bundle.use_rootfs(private_rootfs)
    cid, _ = _start_sleeper(runtime, bundle)
    assert _exec_ok(runtime, cid, "cat", "/spec-marker") == token


def test_exec_in_a_user_namespace_sees_the_mapping(runtime, bundle, util):
    bundle.add_namespace("user")
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    cid, pid = _start_sleeper(runtime, bundle)
    out = _exec_ok(runtime, cid, "sh", "-c",
                   "cat /proc/self/uid_map /proc/self/gid_map; readlink /proc/self/ns/user")
    lines = out.splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "200000", "65536"]
    assert lines[2] == f"user:[{util.ns_inode(f'/proc/{pid}/ns/user')}]"


# ---- exit status, detaching -------------------------------------------------------

def test_foreground_exec_returns_the_exit_status(runtime, sleeper):
    cid, _ = sleeper
    proc = runtime.exec(cid, "sh", "-c", "echo out; exit 42")
    assert proc.returncode == 42
    assert proc.stdout == "out\n"
    assert runtime.status(cid) == "running"


def test_detached_exec_writes_pid_file_and_returns(runtime, sleeper, tmp_path, util):
    cid, init_pid = sleeper
    pid_file = tmp_path / "exec.pid"
    started = time.monotonic()
    proc = runtime.exec(cid, "sleep", "1000", flags=["--detach", "--pid-file", pid_file])
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 10  # did not wait for `sleep 1000`
    content = pid_file.read_bytes()
    assert re.fullmatch(rb"[0-9]+", content), content
    pid = int(content)
    assert util.pid_alive(pid)
    assert open(f"/proc/{pid}/cmdline", "rb").read() == b"sleep\x001000\x00"
    assert util.ns_inode(f"/proc/{pid}/ns/pid") == util.ns_inode(f"/proc/{init_pid}/ns/pid")
    # NSpid: the host pid, then its pid inside the container's namespace.
    nspid = util.proc_status(pid)["NSpid"].split()
    assert len(nspid) == 2 and nspid[0] == str(pid) and nspid[1] != "1", nspid
    # End it here: it is our child (we are the subreaper), and until it is
    # reaped the dying init cannot finish exiting, so delete --force would wait.
    os.kill(pid, signal.SIGKILL)
    assert util.wait_pid(pid) == -signal.SIGKILL


# ---- process attributes from the flags -------------------------------------------

def test_exec_env_adds_to_the_config_env(runtime, sleeper):
    cid, _ = sleeper
    out = _exec_ok(runtime, cid, "sh", "-c", 'echo "$FOO|$HOME|$PATH"',
                   flags=["--env", "FOO=bar baz", "--env", "HOME=/tmp"])
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert out == f"bar baz|/tmp|{path}\n"


def test_exec_cwd(runtime, sleeper):
    cid, _ = sleeper
    assert _exec_ok(runtime, cid, "pwd", flags=["--cwd", "/etc"]) == "/etc\n"


def test_exec_user(runtime, sleeper):
    cid, _ = sleeper
    # No additional gids: the supplementary groups are empty, which busybox
    # `id` shows by printing no groups= at all.
    assert _exec_ok(runtime, cid, "id", flags=["--user", "1000:1000"]) == \
        "uid=1000 gid=1000\n"


def test_exec_additional_gids(runtime, sleeper, util):
    cid, _ = sleeper
    out = _exec_ok(runtime, cid, "sh", "-c", "id -G; grep '^Groups:' /proc/self/status",
                   flags=["--user", "1000:1000", "--additional-gids", "10",
                          "--additional-gids", "20"])
    lines = out.splitlines()
    assert sorted(lines[0].split()) == ["10", "1000", "20"]
    assert sorted(lines[1].split()[1:]) == ["10", "20"]


def test_exec_cap_adds_a_capability(runtime, sleeper, util):
    cid, _ = sleeper
    plain = _exec_ok(runtime, cid, "cat", "/proc/self/status")
    assert util.status_field(plain, "CapEff") == _cap_mask(DEFAULT_CAPS)
    status = _exec_ok(runtime, cid, "cat", "/proc/self/status", flags=["--cap", "CAP_SYS_ADMIN"])
    assert util.status_field(status, "CapEff") == _cap_mask(DEFAULT_CAPS + ["CAP_SYS_ADMIN"])
    assert util.status_field(status, "CapBnd") == _cap_mask(DEFAULT_CAPS + ["CAP_SYS_ADMIN"])


def test_exec_no_new_privs(runtime, sleeper, util):
    cid, _ = sleeper
    plain = _exec_ok(runtime, cid, "cat", "/proc/self/status")
    assert util.status_field(plain, "NoNewPrivs") == "0"
    status = _exec_ok(runtime, cid, "cat", "/proc/self/status", flags=["--no-new-privs"])
    assert util.status_field(status, "NoNewPrivs") == "1"


def test_exec_process_json(runtime, sleeper, tmp_path):
    cid, _ = sleeper
    # HOME is given: runc adds one from /etc/passwd when it is missing.
    env = ["PATH=/usr/bin:/bin", "HOME=/home", "FOO=from process.json"]
    process = {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        # The shell's own environ as execve gave it (its exported variables
        # may differ); cat runs while the shell is alive.
        "args": ["sh", "-c", "echo \"$0|$(pwd)\"; cat /proc/$$/environ | tr '\\0' '\\n'",
                 "zero"],
        "env": env,
        "cwd": "/tmp",
    }
    process_json = tmp_path / "process.json"
    process_json.write_text(json.dumps(process))
    out = _exec_ok(runtime, cid, flags=["--process", process_json])
    lines = out.splitlines()
    assert lines[0] == "zero|/tmp"
    assert sorted(lines[1:]) == sorted(env)


# ---- failures ----------------------------------------------------------------------

def test_exec_of_missing_executable_fails_with_255(runtime, sleeper):
    cid, _ = sleeper
    proc = runtime.exec(cid, "no-such-program")
    assert proc.returncode == 255
    # runc logs the message as a quoted logfmt value, escaping its quotes.
    assert '"no-such-program": executable file not found in $PATH' in \
        proc.stderr.replace('\\"', '"'), proc.stderr
    assert runtime.status(cid) == "running"


def test_exec_into_stopped_container_fails(runtime, bundle, tmp_path):
    bundle.args = ["true"]
    cid = runtime.new_id("exec")
    runtime.create(cid, bundle)
    runtime.start(cid)
    assert runtime.wait(cid) == 0
    assert runtime.status(cid) == "stopped"
    ran = tmp_path / "ran"  # a host path: would appear if the process ran outside
    proc = runtime.exec(cid, "sh", "-c", f"echo ran; touch {ran}")
    assert proc.returncode != 0
    assert "ran" not in proc.stdout
    assert not ran.exists()


# ---- file descriptors ---------------------------------------------------------------

def test_exec_process_has_only_stdio_fds(runtime, sleeper, tmp_path):
    cid, _ = sleeper
    marker = tmp_path / "inherited-fd"
    marker.write_text("x")
    out = _exec_ok(runtime, cid, "ls", "-l", "/proc/self/fd", fd3=marker)
    assert sorted(_open_fds(out)) == [0, 1, 2], out


def test_exec_preserve_fds_passes_extra_fds(runtime, sleeper, tmp_path):
    cid, _ = sleeper
    marker = tmp_path / "inherited-fd"
    marker.write_text("x")
    out = _exec_ok(runtime, cid, "ls", "-l", "/proc/self/fd", flags=["--preserve-fds", "1"],
                   fd3=marker)
    fds = _open_fds(out)
    assert sorted(fds) == [0, 1, 2, 3], out
    assert fds[3] == str(marker)
