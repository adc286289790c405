"""Seccomp in real containers (config-linux.md "Seccomp"): the profile the
config gives is the one the container's processes run under, every action
does what it says, the filter never gets in the way of the runtime's own
setup, a bad profile is refused cleanly, and SCMP_ACT_NOTIFY hands the
listener fd to the agent at listenerPath with the container process state.

Syscalls are observed through what busybox does: ``mkdir`` (mkdir/mkdirat),
``linux32``/``linux64`` (personality), ``cat /proc/self/status`` (Seccomp:).
"""
from __future__ import annotations

import errno
import platform
import re
from typing import Any

import pytest

RECV_TIMEOUT = 20.0
SIGSYS_EXIT = 128 + 31  # a process killed by SIGSYS, as runc reports it: 159

# The rules that block directory creation: glibc's mkdir() is mkdir(2) on
# x86_64, mkdirat(2) elsewhere; naming both covers every architecture.
MKDIR = ["mkdir", "mkdirat"]

# Syscall numbers the seccomp agent sees in seccomp_data.nr.
SYSCALL_NR = {
    "x86_64": {"mkdir": 83, "mkdirat": 258, "chmod": 90, "fchmodat": 268, "execve": 59,
               "execveat": 322},
    "aarch64": {"mkdirat": 34, "fchmodat": 53, "execve": 221, "execveat": 281},
}.get(platform.machine(), {})

# Core dumps of the SIGSYS tests would land in the container's cwd.
NO_CORE = [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]

# docker's default profile (moby profiles/seccomp/default.json), the
# unconditional allow list, minus mkdir and mkdirat: enough for busybox sh,
# for runc's own init when it loads the filter early, and it names syscalls
# libseccomp 2.5 does not know (cachestat, fchmodat2, map_shadow_stack,
# futex_wake...), which a runtime must skip.
DOCKER_ALLOW = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage
getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mknod
mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read
readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask
sigreturn socket socketcall socketpair splice stat stat64 statfs statfs64 statx symlink
symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate
truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes
vfork vmsplice wait4 waitid waitpid write writev arch_prctl
""".split()

# docker's conditional rules: personality only with the values glibc and
# linux32/linux64 use, clone without namespace flags, clone3 as ENOSYS so
# libcs fall back to clone.
DOCKER_CONDITIONAL = [
    *({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
       "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]}
      for value in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)),
    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
]


def profile(default: str = "SCMP_ACT_ALLOW", *rules: dict, **extra: Any) -> dict:
    """A linux.seccomp section for the native architecture."""
    doc: dict[str, Any] = {"defaultAction": default, "syscalls": list(rules)}
    doc.update(extra)
    return doc


def rule(names: list[str], action: str, errno_ret: int | None = None,
         args: list[dict] | None = None) -> dict:
    doc: dict[str, Any] = {"names": list(names), "action": action}
    if errno_ret is not None:
        doc["errnoRet"] = errno_ret
    if args is not None:
        doc["args"] = args
    return doc


def _use(bundle, seccomp: dict, nnp: bool | None = None):
    bundle.linux["seccomp"] = seccomp
    if nnp is not None:
        bundle.process["noNewPrivileges"] = nnp
    return bundle


def _run(runtime, bundle, script: str | list[str]):
    """Run in the foreground; (exit status, stdout, stderr) of the run."""
    if isinstance(script, str):
        bundle.sh(script)
    else:
        bundle.args = script
    proc = runtime.run(runtime.new_id("sc"), bundle)
    return proc.returncode, proc.stdout, proc.stderr


def _seccomp_status(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("Seccomp", "Seccomp_filters", "NoNewPrivs", "CapEff", "CapPrm", "CapBnd",
                   "CapAmb", "CapInh", "Uid"):
            fields[key] = value.strip()
    return fields


def _refused(runtime, bundle, util):
    """create must exit 1 and leave nothing behind; return the result."""
    before = set(util.descendants())
    cid = runtime.new_id("bad")
    proc = runtime.create(cid, bundle, check=False)
    assert proc.returncode == 1, proc
    assert runtime.ids() == [], "a state dir was left in the root"
    assert util.live_descendants(exclude=before) == set(), "a process was left behind"
    assert util.mounts_under(bundle.path.parent) == []
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# ---- ERRNO ---------------------------------------------------------------------------

@pytest.mark.parametrize("errno_ret, message", [
    (errno.EPERM, "Operation not permitted"),
    (errno.EXDEV, "Invalid cross-device link"),  # an errno nothing else gives mkdir here
])
def test_errno_action_returns_errno_ret(runtime, bundle, errno_ret, message):
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_ERRNO", errno_ret)))
    status, out, _ = _run(runtime, bundle,
                          "mkdir /dev/shm/x 2>&1; echo rc=$?; touch /dev/shm/y && echo touched")
    assert status == 0
    assert message in out, out
    assert "rc=1" in out and "touched" in out, out


def test_without_the_profile_the_same_mkdir_succeeds(runtime, bundle):
    # the control of the test above: /dev/shm is writable, mkdir works there
    status, out, _ = _run(runtime, bundle, "mkdir /dev/shm/x && echo made")
    assert (status, out) == (0, "made\n")


def test_errno_action_without_errno_ret_is_eperm(runtime, bundle):
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_ERRNO")))
    _, out, _ = _run(runtime, bundle, "mkdir /dev/shm/x 2>&1; echo rc=$?")
    assert "Operation not permitted" in out and "rc=1" in out, out


def test_chmod_is_blocked_with_its_errno_ret(runtime, bundle):
    _use(bundle, profile("SCMP_ACT_ALLOW",
                         rule(["chmod", "fchmod", "fchmodat"], "SCMP_ACT_ERRNO", errno.EROFS)))
    _, out, _ = _run(runtime, bundle,
                     "touch /dev/shm/f && chmod 600 /dev/shm/f 2>&1; stat -c %a /dev/shm/f")
    assert "Read-only file system" in out, out
    assert out.rstrip().endswith("644"), out


def test_default_errno_with_a_docker_like_allow_list_runs_busybox(runtime, bundle):
    rules = [rule(DOCKER_ALLOW, "SCMP_ACT_ALLOW"), *DOCKER_CONDITIONAL]
    _use(bundle, profile("SCMP_ACT_ERRNO", *rules, defaultErrnoRet=errno.EACCES))
    status, out, err = _run(
        runtime, bundle,
        "echo hello; ls / >/dev/null && echo listed; cat /etc/hostname; "
        "linux32 true && echo linux32; "
        "(sleep 0; echo subshell); "
        "mkdir /dev/shm/x 2>&1; grep -E '^Seccomp:' /proc/self/status")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:5] == ["hello", "listed", "ocipy", "linux32", "subshell"], out
    # mkdir is not on the list: the default action answers, with defaultErrnoRet
    assert "Permission denied" in lines[5], out
    assert lines[6].split() == ["Seccomp:", "2"], out


# ---- the filter is loaded, once, and stays for the process's life -------------------

@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_filter_is_active_in_the_container_process(runtime, bundle, nnp):
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_ERRNO")), nnp=nnp)
    status, out, err = _run(runtime, bundle, ["cat", "/proc/self/status"])
    assert status == 0, err
    fields = _seccomp_status(out)
    assert fields["Seccomp"] == "2", out  # SECCOMP_MODE_FILTER
    assert fields["Seccomp_filters"] == "1", out
    assert fields["NoNewPrivs"] == ("1" if nnp else "0"), out


def test_without_seccomp_there_is_no_filter(runtime, bundle):
    status, out, _ = _run(runtime, bundle, ["cat", "/proc/self/status"])
    assert _seccomp_status(out)["Seccomp"] == "0", out


@pytest.mark.parametrize("user", [{"uid": 0, "gid": 0}, {"uid": 1000, "gid": 1000}],
                         ids=["root", "uid1000"])
def test_no_new_privileges_false_keeps_the_configured_capabilities(runtime, bundle, user):
    # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the
    # configured sets lack: the runtime may hold it for that one call but the
    # process must not keep it.
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_ERRNO")), nnp=False)
    bundle.process["user"] = user
    status, out, err = _run(runtime, bundle, ["cat", "/proc/self/status"])
    assert status == 0, err
    fields = _seccomp_status(out)
    default_caps = f"{(1 << 5) | (1 << 10) | (1 << 29):016x}"  # KILL, NET_BIND_SERVICE, AUDIT_WRITE
    assert fields["Seccomp"] == "2"
    assert fields["NoNewPrivs"] == "0"
    assert fields["Uid"].split() == [str(user["uid"])] * 4
    assert fields["CapBnd"] == default_caps
    # root: execve gives P = E = bounding; another uid: P = E = ambient (none)
    expected = default_caps if user["uid"] == 0 else "0" * 16
    assert (fields["CapEff"], fields["CapPrm"], fields["CapAmb"]) == (expected, expected,
                                                                       "0" * 16), out


# ---- the runtime's own setup is never blocked by the user's profile ------------------

# What a runtime does between creating the namespaces and execve: build the
# rootfs, pivot, mask, set the hostname, join the keyring, limits, ids.
# busybox `cat` needs none of these.
SETUP_SYSCALLS = [
    "getcwd", "mkdir", "mkdirat", "mount", "umount2", "pivot_root", "chroot", "chdir",
    "fchdir", "sethostname", "setdomainname", "symlink", "symlinkat", "mknod", "mknodat",
    "fchownat", "unlinkat", "keyctl", "prlimit64", "setgroups", "setresuid", "setresgid",
    "setuid", "setgid", "close_range", "openat2", "unshare", "setns", "umask",
]


@pytest.mark.parametrize("nnp", [
    True,
    # runc 1.1 loads the filter before its own setup when no_new_privs is off
    # and fails here (runtime-tools' linux_seccomp test): ocipy must not
    pytest.param(False, marks=pytest.mark.ocipy_only),
], ids=["nnp", "no-nnp"])
def test_profile_blocking_setup_syscalls_does_not_break_create(runtime, bundle, nnp):
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(SETUP_SYSCALLS, "SCMP_ACT_ERRNO")), nnp=nnp)
    bundle.config["hostname"] = "sc-host"
    bundle.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}]
    bundle.process["cwd"] = "/tmp"
    bundle.process["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    bundle.args = ["cat", "/proc/self/status", "/etc/hostname", "/proc/sys/kernel/hostname"]
    cid = runtime.new_id("sc")
    runtime.create(cid, bundle)
    runtime.start(cid)
    assert runtime.wait(cid) == 0, runtime.stderr(cid)
    out = runtime.stdout(cid)
    fields = _seccomp_status(out)
    assert fields["Seccomp"] == "2" and fields["Uid"].split()[0] == "1000", out
    assert out.rstrip().endswith("sc-host"), out
    runtime.delete(cid)


@pytest.mark.parametrize("nnp", [
    True,
    pytest.param(False, marks=pytest.mark.ocipy_only),  # runc 1.1: as above
], ids=["nnp", "no-nnp"])
def test_profile_blocking_setup_syscalls_does_not_break_exec(runtime, bundle, nnp):
    # exec joins the namespaces (setns), switches ids and limits: all before
    # the filter, which it shares with the container
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(SETUP_SYSCALLS, "SCMP_ACT_ERRNO")), nnp=nnp)
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.args = ["sleep", "1000"]
    cid = runtime.new_id("sc")
    runtime.run(cid, bundle, "-d", check=True)
    proc = runtime.exec(cid, "cat", "/proc/self/status", flags=["--cwd", "/tmp"])
    assert proc.returncode == 0, proc.stderr
    fields = _seccomp_status(proc.stdout)
    assert fields["Seccomp"] == "2" and fields["Uid"].split()[0] == "1000", proc.stdout
    runtime.delete(cid, "--force")


def test_profile_blocking_getcwd_affects_only_the_process(runtime, bundle):
    # the classic: runtime-tools' linux_seccomp blocks getcwd; the container
    # process sees the errno, the runtime does not care
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(["getcwd"], "SCMP_ACT_ERRNO", errno.EACCES)),
         nnp=True)
    bundle.process["cwd"] = "/etc"
    status, out, err = _run(runtime, bundle, ["pwd", "-P"])
    assert status != 0
    assert "Permission denied" in err or "Permission denied" in out, (out, err)


@pytest.mark.ocipy_only
@pytest.mark.parametrize("blocked", [["capset"], ["prctl"], ["capset", "prctl"]],
                         ids="+".join)
def test_profile_blocking_capset_or_prctl_without_no_new_privs(runtime, bundle, blocked):
    # Without no_new_privs the filter needs CAP_SYS_ADMIN to load; a runtime
    # that borrows it for the load and drops it afterwards with capset/prctl
    # runs into the user's profile.  The process's capabilities after execve
    # do not depend on what it held before (root: the bounding set; others:
    # the ambient set), so the setup can be finished before the filter.
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(blocked, "SCMP_ACT_ERRNO")), nnp=False)
    status, out, err = _run(runtime, bundle, ["cat", "/proc/self/status"])
    assert status == 0, f"the runtime tripped over the profile: {err!r}"
    assert _seccomp_status(out)["Seccomp"] == "2"


# ---- KILL, TRAP, LOG ----------------------------------------------------------------

@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL",
                                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"])
def test_killing_actions_end_the_process_with_sigsys(runtime, bundle, action):
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, action)))
    bundle.process["rlimits"] = NO_CORE
    status, out, _ = _run(runtime, bundle, ["mkdir", "/dev/shm/x"])
    assert status == SIGSYS_EXIT, (status, out)


def test_kill_process_is_reported_by_wait_as_sigsys(runtime, bundle):
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_KILL_PROCESS")))
    bundle.process["rlimits"] = NO_CORE
    bundle.args = ["mkdir", "/dev/shm/x"]
    cid = runtime.new_id("sc")
    runtime.create(cid, bundle)
    runtime.start(cid)
    assert runtime.wait(cid) == -31  # killed by SIGSYS
    runtime.delete(cid)


def test_log_action_lets_the_syscall_through(runtime, bundle):
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_LOG")))
    status, out, _ = _run(runtime, bundle, "mkdir /dev/shm/x && echo made")
    assert (status, out) == (0, "made\n")


# ---- args conditions ------------------------------------------------------------------

PER_LINUX, PER_LINUX32 = 0x0, 0x8


# (op, value, valueTwo) -> which of linux64 (personality 0) and linux32 (8) fail
ARG_CASES = {
    "EQ-8": ("SCMP_CMP_EQ", 8, None, {"linux32"}),
    "NE-0": ("SCMP_CMP_NE", 0, None, {"linux32"}),
    "GT-7": ("SCMP_CMP_GT", 7, None, {"linux32"}),
    "GE-8": ("SCMP_CMP_GE", 8, None, {"linux32"}),
    "LT-8": ("SCMP_CMP_LT", 8, None, {"linux64"}),
    "LE-7": ("SCMP_CMP_LE", 7, None, {"linux64"}),
    "MASKED_EQ-8": ("SCMP_CMP_MASKED_EQ", 0xFF, 8, {"linux32"}),
    "MASKED_EQ-0": ("SCMP_CMP_MASKED_EQ", 0x8, 0, {"linux64"}),
}


def _personality_rule(op: str, value: int, value_two: int | None) -> dict:
    arg = {"index": 0, "value": value, "op": op}
    if value_two is not None:
        arg["valueTwo"] = value_two
    return rule(["personality"], "SCMP_ACT_ERRNO", errno.EPERM, args=[arg])


@pytest.mark.parametrize("case", sorted(ARG_CASES))
def test_args_conditions_select_the_calls(runtime, bundle, case):
    op, value, value_two, blocked = ARG_CASES[case]
    _use(bundle, profile("SCMP_ACT_ALLOW", _personality_rule(op, value, value_two)))
    status, out, err = _run(
        runtime, bundle, "linux64 true && echo linux64-ok; linux32 true && echo linux32-ok; true")
    assert status == 0, err
    ran = {line.removesuffix("-ok") for line in out.split()}
    assert ran == {"linux64", "linux32"} - blocked, (out, err)


def test_two_conditions_on_one_argument_are_ored(runtime, bundle):
    # runc's rule (libseccomp refuses two conditions on one argument): each
    # condition becomes a rule of its own
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(
        ["personality"], "SCMP_ACT_ERRNO", errno.EPERM,
        args=[{"index": 0, "value": PER_LINUX, "op": "SCMP_CMP_EQ"},
              {"index": 0, "value": PER_LINUX32, "op": "SCMP_CMP_EQ"}])))
    _, out, _ = _run(runtime, bundle,
                     "linux64 true && echo linux64-ok; linux32 true && echo linux32-ok; echo end")
    assert out == "end\n", out


def test_conditions_on_two_arguments_are_anded(runtime, bundle):
    # kill(pid, sig): only SIGUSR1 to pid 1 (the shell itself, which as the
    # pid namespace's init ignores it) is blocked
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(
        ["kill"], "SCMP_ACT_ERRNO", errno.EXDEV,
        args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
              {"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}])))  # SIGUSR1
    status, out, err = _run(runtime, bundle,
                            "kill -USR2 1 && echo usr2-to-1; kill -USR1 1 2>&1; "
                            "sleep 10 & kill -USR1 $! && echo usr1-to-child; wait; true")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "usr2-to-1" and "Invalid cross-device link" in lines[1], out
    assert lines[2:] == ["usr1-to-child"], out


# ---- unknown names, bad profiles ---------------------------------------------------------

def test_unknown_syscall_names_are_skipped(runtime, bundle, util):
    _use(bundle, profile("SCMP_ACT_ALLOW",
                         rule(["no_such_syscall_ocipy", *MKDIR, "another_bogus_call"],
                              "SCMP_ACT_ERRNO", errno.EXDEV)))
    status, out, err = _run(runtime, bundle, "mkdir /dev/shm/x 2>&1; echo done")
    assert status == 0, err
    assert "Invalid cross-device link" in out and "done" in out, out


BAD_PROFILES = {
    "unknown-action": (
        lambda: profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_BOGUS")),
        "linux.seccomp.syscalls[0].action"),
    "unknown-default-action": (
        lambda: profile("SCMP_ACT_NOPE", rule(MKDIR, "SCMP_ACT_ERRNO")),
        "linux.seccomp.defaultAction"),
    "unknown-arch": (
        lambda: profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_ERRNO"),
                        architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_PDP11"]),
        "linux.seccomp.architectures[1]"),
    "unknown-operator": (
        lambda: profile("SCMP_ACT_ALLOW", rule(["personality"], "SCMP_ACT_ERRNO", args=[
            {"index": 0, "value": 8, "op": "SCMP_CMP_ALMOST"}])),
        "linux.seccomp.syscalls[0].args[0].op"),
    "unknown-flag": (
        lambda: profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_ERRNO"),
                        flags=["SECCOMP_FILTER_FLAG_BOGUS"]),
        "linux.seccomp.flags[0]"),
    "arg-index-out-of-range": (
        lambda: profile("SCMP_ACT_ALLOW", rule(["personality"], "SCMP_ACT_ERRNO", args=[
            {"index": 6, "value": 8, "op": "SCMP_CMP_EQ"}])),
        "linux.seccomp.syscalls[0].args[0].index"),
    "notify-without-listener": (
        lambda: profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_NOTIFY")),
        "linux.seccomp"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_profile_is_refused_and_leaves_nothing(runtime, bundle, util, case):
    make, _ = BAD_PROFILES[case]
    _use(bundle, make())
    _refused(runtime, bundle, util)


@pytest.mark.ocipy_only
@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_profile_error_names_the_json_path(runtime, bundle, util, case):
    make, path = BAD_PROFILES[case]
    _use(bundle, make())
    proc = _refused(runtime, bundle, util)
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"ocipy: invalid config.json: {path}"), proc.stderr


@pytest.mark.ocipy_only
def test_errno_ret_on_an_action_without_errno_is_refused(runtime, bundle, util):
    # config-linux.md: "When the action doesn't support an errno, the runtime
    # MUST print and error and fail."
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_KILL_PROCESS", errno.EPERM)))
    proc = _refused(runtime, bundle, util)
    assert proc.stderr.startswith(
        "ocipy: invalid config.json: linux.seccomp.syscalls[0].errnoRet"), proc.stderr


# ---- exec -----------------------------------------------------------------------------

def test_exec_process_gets_the_containers_profile(runtime, bundle):
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_ERRNO", errno.EXDEV)))
    bundle.args = ["sleep", "1000"]
    cid = runtime.new_id("sc")
    runtime.run(cid, bundle, "-d", check=True)
    proc = runtime.exec(cid, "sh", "-c",
                        "mkdir /dev/shm/x 2>&1; grep -E '^Seccomp(_filters)?:' /proc/self/status")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "Invalid cross-device link" in lines[0], proc.stdout
    assert [line.split() for line in lines[1:]] == [["Seccomp:", "2"],
                                                    ["Seccomp_filters:", "1"]], proc.stdout
    runtime.delete(cid, "--force")


# ---- SCMP_ACT_NOTIFY -----------------------------------------------------------------------

CONTINUE = (0, 0, 1)  # SECCOMP_USER_NOTIF_FLAG_CONTINUE: let the call run


def _notify_profile(agent, names: list[str], metadata: str = "spec-meta") -> dict:
    return profile("SCMP_ACT_ALLOW", rule(names, "SCMP_ACT_NOTIFY"),
                   listenerPath=str(agent.path), listenerMetadata=metadata)


def _is_mkdir(notif) -> bool:
    return notif.nr in (SYSCALL_NR.get("mkdir"), SYSCALL_NR.get("mkdirat"))


needs_syscall_numbers = pytest.mark.skipif(not SYSCALL_NR,
                                           reason=f"no syscall table for {platform.machine()}")


def _notify_container(runtime, bundle, agent, script: str, nnp: bool = False,
                      names: list[str] = MKDIR):
    """create + start a container whose ``names`` notify the agent; wait for it.
    Returns (container id, init pid, exit status, stdout)."""
    _use(bundle, _notify_profile(agent, names), nnp=nnp)
    bundle.sh(script)
    cid = runtime.new_id("notify")
    runtime.create(cid, bundle)
    pid = runtime.state(cid)["pid"]
    runtime.start(cid)
    status = runtime.wait(cid)
    return cid, pid, status, runtime.stdout(cid)


@needs_syscall_numbers
@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_notify_sends_the_container_process_state_and_one_fd(runtime, bundle, seccomp_agent,
                                                             nnp):
    agent = seccomp_agent(lambda conn, n: (0, -errno.EACCES, 0))
    cid, pid, status, out = _notify_container(runtime, bundle, agent,
                                              "mkdir /dev/shm/x 2>&1; echo rc=$?", nnp=nnp)
    assert status == 0, runtime.stderr(cid)
    (conn,) = agent.wait_connections(1)
    assert conn.eof.wait(RECV_TIMEOUT), "the runtime kept the listener socket open"
    assert not conn.truncated
    assert len(conn.fds) == 1, f"{len(conn.fds)} fds received"
    assert conn.messages == 1, f"{conn.messages} messages on the socket"
    state = conn.payload()
    # config-linux.md "containerProcessState"
    # the version of the spec the state complies with: the runtime's (runc
    # sends its own, "1.0.2-dev"), not necessarily the config's
    assert re.match(r"^1\.\d+\.\d+", state["ociVersion"]), state
    assert state["fds"] == ["seccompFd"]
    assert state["pid"] == pid  # the container process, in the agent's pid namespace
    assert state["metadata"] == "spec-meta"
    assert state["state"]["id"] == cid
    assert state["state"]["bundle"] == str(bundle.path)
    assert state["state"]["status"] in ("creating", "created", "running")
    assert "ociVersion" in state["state"]
    # the agent answered the mkdir: EACCES
    assert "Permission denied" in out and "rc=1" in out, out
    # the mkdir came from the shell's child, in the container
    (notif,) = [n for n in conn.notifications if _is_mkdir(n)]
    assert conn.ppids[notif.id] == pid
    runtime.delete(cid)


@needs_syscall_numbers
def test_notify_agent_can_fake_success(runtime, bundle, seccomp_agent):
    agent = seccomp_agent(lambda conn, n: (0, 0, 0))  # "done", without doing it
    cid, _, status, out = _notify_container(
        runtime, bundle, agent, "mkdir /dev/shm/x && echo made; [ -d /dev/shm/x ] || echo absent")
    assert (status, out) == (0, "made\nabsent\n"), runtime.stderr(cid)
    runtime.delete(cid)


@needs_syscall_numbers
def test_notify_agent_can_let_the_call_continue(runtime, bundle, seccomp_agent):
    agent = seccomp_agent(lambda conn, n: CONTINUE)
    cid, _, status, out = _notify_container(
        runtime, bundle, agent, "mkdir /dev/shm/x && echo made; [ -d /dev/shm/x ] && echo present")
    assert (status, out) == (0, "made\npresent\n"), runtime.stderr(cid)
    assert any(_is_mkdir(n) for n in agent.connections[0].notifications)
    runtime.delete(cid)


@needs_syscall_numbers
def test_notify_argument_values_reach_the_agent(runtime, bundle, seccomp_agent):
    def handler(conn, notif):
        # chmod(path, mode) / fchmodat(dirfd, path, mode): answer by the mode
        mode = notif.args[1] if notif.nr == SYSCALL_NR.get("chmod") else notif.args[2]
        return (0, -errno.EXDEV if mode == 0o711 else -errno.EACCES, 0)

    agent = seccomp_agent(handler)
    cid, _, status, out = _notify_container(
        runtime, bundle, agent,
        "touch /dev/shm/f; chmod 711 /dev/shm/f 2>&1; chmod 700 /dev/shm/f 2>&1; true",
        names=["chmod", "fchmodat"])
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 2, lines
    assert "Invalid cross-device link" in lines[0] and "Permission denied" in lines[1], lines
    runtime.delete(cid)


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_missing_listener_socket_fails_create(runtime, bundle, util, tmp_path, nnp):
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_NOTIFY"),
                         listenerPath=str(tmp_path / "nobody-listens.sock")), nnp=nnp)
    proc = _refused(runtime, bundle, util)
    if util.IS_OCIPY:
        assert proc.stderr.startswith("ocipy: ") and "nobody-listens.sock" in proc.stderr, \
            proc.stderr


@needs_syscall_numbers
def test_exec_process_sends_its_own_listener(runtime, bundle, seccomp_agent):
    agent = seccomp_agent(lambda conn, n: (0, -errno.EACCES, 0))
    _use(bundle, _notify_profile(agent, MKDIR))
    bundle.args = ["sleep", "1000"]
    cid = runtime.new_id("notify")
    runtime.run(cid, bundle, "-d", check=True)
    agent.wait_connections(1)
    proc = runtime.exec(cid, "sh", "-c", "mkdir /dev/shm/x 2>&1; echo rc=$?")
    assert proc.returncode == 0, proc.stderr
    assert "Permission denied" in proc.stdout and "rc=1" in proc.stdout, proc.stdout
    conns = agent.wait_connections(2)
    payload = conns[1].payload()
    assert payload["fds"] == ["seccompFd"] and payload["state"]["id"] == cid
    assert len(conns[1].fds) == 1
    assert any(_is_mkdir(n) for n in conns[1].notifications)
    runtime.delete(cid, "--force")


# ---- what `features` promises works ------------------------------------------------------

def _features_seccomp(runtime) -> dict:
    import json

    proc = runtime.cmd("features", check=True)
    return json.loads(proc.stdout)["linux"]["seccomp"]


def test_every_action_features_reports_loads(runtime, bundle, seccomp_agent):
    seccomp = _features_seccomp(runtime)
    assert seccomp["enabled"] is True
    agent = seccomp_agent(lambda conn, n: CONTINUE)
    for action in seccomp["actions"]:
        extra = {"listenerPath": str(agent.path)} if action == "SCMP_ACT_NOTIFY" else {}
        _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, action), **extra))
        status, out, err = _run(runtime, bundle, ["grep", "^Seccomp:", "/proc/self/status"])
        assert (status, out.split()) == (0, ["Seccomp:", "2"]), (action, err)


def test_every_operator_features_reports_loads(runtime, bundle):
    for op in _features_seccomp(runtime)["operators"]:
        _use(bundle, profile("SCMP_ACT_ALLOW", rule(
            ["personality"], "SCMP_ACT_ERRNO",
            args=[{"index": 0, "value": 0x10, "valueTwo": 0x10, "op": op}])))
        status, _, err = _run(runtime, bundle, ["true"])
        assert status == 0, (op, err)


def test_every_flag_features_supports_loads(runtime, bundle, seccomp_agent):
    agent = seccomp_agent(lambda conn, n: CONTINUE)
    for flag in _features_seccomp(runtime).get("supportedFlags", []):
        if flag == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV":  # only with a listener
            seccomp = _notify_profile(agent, MKDIR)
        else:
            seccomp = profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_ERRNO"))
        seccomp["flags"] = [flag]
        _use(bundle, seccomp)
        status, _, err = _run(runtime, bundle, ["true"])
        assert status == 0, (flag, err)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="docker's amd64 arch list")
def test_multi_arch_filter_blocks_the_native_calls(runtime, bundle):
    _use(bundle, profile("SCMP_ACT_ALLOW", rule(MKDIR, "SCMP_ACT_ERRNO", errno.EXDEV),
                         architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]))
    status, out, _ = _run(runtime, bundle, "mkdir /dev/shm/x 2>&1; true")
    assert status == 0 and "Invalid cross-device link" in out, out
