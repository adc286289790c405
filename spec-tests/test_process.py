"""The container process (config.md `process`, linux sysctl): what the exec'd
program sees of its args, env, cwd, credentials, limits, capabilities,
privileges, file descriptors and signal state."""
from __future__ import annotations

import re
import signal

import pytest

CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


def cap_mask(names: list[str]) -> str:
    """The 16-hex-digit mask /proc/<pid>/status shows for these capabilities."""
    mask = 0
    for name in names:
        mask |= 1 << CAP_NUMBERS[name]
    return f"{mask:016x}"


def _status(runtime, bundle, **kwargs) -> str:
    """/proc/self/status of the container's init itself (no shell in between)."""
    return runtime.run_ok(bundle, ["cat", "/proc/self/status"], **kwargs)


# ---- args, env, cwd ---------------------------------------------------------------

def test_args_and_cwd_are_honoured(runtime, bundle):
    bundle.process["cwd"] = "/home"
    bundle.args = ["sh", "-c", 'echo "$0|$1|$2|$(pwd)"', "zero", "one", "two words"]
    assert runtime.run_ok(bundle) == "zero|one|two words|/home\n"


def test_env_is_exactly_the_configured_env(runtime, bundle):
    env = ["PATH=/usr/bin:/bin", "HOME=/home", "FOO=bar baz", "EMPTY="]
    bundle.process["env"] = env
    out = runtime.run_ok(bundle, ["env"])
    assert sorted(out.splitlines()) == sorted(env)


# ---- credentials --------------------------------------------------------------------

def test_user_uid_gid_and_additional_gids(runtime, bundle, util):
    bundle.process["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [10, 20]}
    out = runtime.run_ok(bundle, "id -u; id -g; id -G; grep -E '^(Uid|Gid|Groups):' "
                                 "/proc/self/status")
    lines = out.splitlines()
    assert lines[0:2] == ["1000", "1001"]
    assert sorted(lines[2].split()) == ["10", "1001", "20"]
    assert lines[3].split()[1:] == ["1000"] * 4
    assert lines[4].split()[1:] == ["1001"] * 4
    assert sorted(lines[5].split()[1:]) == ["10", "20"]


def test_umask_is_applied(runtime, bundle):
    bundle.process["user"]["umask"] = 0o027
    assert runtime.run_ok(bundle, "umask") == "0027\n"


def test_rlimits_are_applied(runtime, bundle):
    bundle.process["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
        {"type": "RLIMIT_CORE", "soft": 4096, "hard": 8192},
    ]
    out = runtime.run_ok(bundle, "ulimit -n; ulimit -Hn; cat /proc/self/limits")
    lines = out.splitlines()
    assert lines[0:2] == ["123", "456"]
    limits = {re.split(r"\s{2,}", line)[0]: re.split(r"\s{2,}", line)[1:3]
              for line in lines[3:]}
    assert limits["Max open files"] == ["123", "456"]
    assert limits["Max core file size"] == ["4096", "8192"]


# ---- capabilities -------------------------------------------------------------------

CAPS_CASES = {
    # As root, execve makes permitted = effective = bounding | inheritable
    # (the file is treated as fully privileged), so the config is written
    # consistently with that: P = E = B.
    "root": dict(
        user={"uid": 0, "gid": 0},
        caps={"bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL",
                           "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
              "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL",
                            "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
              "effective": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL",
                            "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
              "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
              "ambient": ["CAP_NET_BIND_SERVICE"]},
        expect={"CapBnd": "bounding", "CapPrm": "permitted", "CapEff": "effective",
                "CapInh": "inheritable", "CapAmb": "ambient"}),
    # As another user, execve keeps only the ambient set in P and E: the
    # config has P = E = A so every set is checked against its own list.
    "non-root": dict(
        user={"uid": 1000, "gid": 1000},
        caps={"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE",
                           "CAP_SETUID", "CAP_AUDIT_WRITE"],
              "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
              "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
              "inheritable": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
              "ambient": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]},
        expect={"CapBnd": "bounding", "CapPrm": "permitted", "CapEff": "effective",
                "CapInh": "inheritable", "CapAmb": "ambient"}),
}


@pytest.mark.parametrize("case", sorted(CAPS_CASES))
def test_capability_sets_are_applied(runtime, bundle, util, case):
    spec = CAPS_CASES[case]
    bundle.process["user"] = spec["user"]
    bundle.process["capabilities"] = spec["caps"]
    status = _status(runtime, bundle)
    got = {field: util.status_field(status, field) for field in spec["expect"]}
    want = {field: cap_mask(spec["caps"][name]) for field, name in spec["expect"].items()}
    assert got == want


@pytest.mark.parametrize("flag, expected", [(True, "1"), (False, "0")])
def test_no_new_privileges(runtime, bundle, util, flag, expected):
    bundle.process["noNewPrivileges"] = flag
    assert util.status_field(_status(runtime, bundle), "NoNewPrivs") == expected


def test_oom_score_adj(runtime, bundle):
    bundle.process["oomScoreAdj"] = 123
    assert runtime.run_ok(bundle, ["cat", "/proc/self/oom_score_adj"]) == "123\n"


def test_sysctls_are_set_inside(runtime, bundle):
    bundle.linux["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}
    host = {p: open(p).read() for p in ("/proc/sys/net/ipv4/ip_forward",
                                        "/proc/sys/kernel/shm_rmid_forced")}
    out = runtime.run_ok(bundle, "cat /proc/sys/net/ipv4/ip_forward "
                                 "/proc/sys/kernel/shm_rmid_forced")
    assert out == "1\n1\n"
    # The host's values are untouched (the container has its own net and ipc ns).
    assert {p: open(p).read() for p in host} == host


def test_sysctls_are_set_before_proc_sys_becomes_read_only(runtime, bundle):
    # docker's config: a sysctl for the container's netns, and /proc/sys in
    # readonlyPaths; the runtime writes the sysctl first (runc's order)
    bundle.linux["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "0"}
    bundle.linux["readonlyPaths"] = ["/proc/sys"]
    out = runtime.run_ok(bundle, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
                                 "echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null "
                                 "&& echo writable || echo read-only")
    assert out == "0\nread-only\n"


# ---- file descriptors -----------------------------------------------------------------

def _open_fds(listing: str) -> dict[int, str]:
    """fd -> target from `ls -l /proc/self/fd`, minus ls's own directory fd."""
    fds = {}
    for line in listing.splitlines():
        m = re.search(r" (\d+) -> (.*)$", line)
        if m and not re.fullmatch(r"/proc/\d+/fd", m.group(2)):
            fds[int(m.group(1))] = m.group(2)
    return fds


def test_only_stdio_fds_are_open(runtime, bundle, tmp_path):
    marker = tmp_path / "inherited-fd"
    marker.write_text("x")
    out = runtime.run_ok(bundle, ["ls", "-l", "/proc/self/fd"], fd3=marker)
    assert sorted(_open_fds(out)) == [0, 1, 2], out


def test_preserve_fds_passes_extra_fds(runtime, bundle, tmp_path):
    marker = tmp_path / "inherited-fd"
    marker.write_text("x")
    out = runtime.run_ok(bundle, ["ls", "-l", "/proc/self/fd"], "--preserve-fds", "1",
                         fd3=marker)
    fds = _open_fds(out)
    assert sorted(fds) == [0, 1, 2, 3], out
    assert fds[3] == str(marker)


# ---- signals ------------------------------------------------------------------------

def _caller_ignores() -> None:
    # Runs in the runtime's process before exec: ignored dispositions and the
    # signal mask are inherited over execve, so the runtime starts with them.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _caller_blocks() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGALRM})


def test_signal_dispositions_are_reset(runtime, bundle, util):
    # Python (like ocipy itself) ignores SIGPIPE; subprocess restores it in
    # children unless told not to: here the runtime inherits the ignores.
    status = _status(runtime, bundle, restore_signals=False, preexec_fn=_caller_ignores)
    assert util.status_field(status, "SigIgn") == "0000000000000000"
    assert util.status_field(status, "SigBlk") == "0000000000000000"
    assert util.status_field(status, "SigCgt") == "0000000000000000"


@pytest.mark.ocipy_only  # runc 1.1 passes the caller's blocked mask on to the container
def test_signal_mask_is_reset(runtime, bundle, util):
    status = _status(runtime, bundle, preexec_fn=_caller_blocks)
    assert util.status_field(status, "SigBlk") == "0000000000000000"
