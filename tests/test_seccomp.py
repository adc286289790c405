"""ocipy.seccomp: linux.seccomp compiled with libseccomp, proven by loading it.

Every behaviour test compiles a profile, forks, and in the child sets
no_new_privs and loads the program with seccomp(2) exactly as the container's
init does, then makes the syscall in question and reports through its exit
status.  No root is needed: no_new_privs makes filter loading unprivileged.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import select
import signal
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ocipy import seccomp as sc
from ocipy.errors import ConfigError

native = pytest.importorskip("ocipy._native.seccomp")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)
NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, data {nr, arch, ip, args[6]}
NOTIF_RESP = struct.Struct("=QqiI")  # id, val, error, flags

LOAD_FAILED = 111  # the child's exit code when seccomp(2) refused the program
PROBE_RAISED = 112


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def nr(name: str) -> int:
    number = native.resolve_syscall(name)
    assert number is not None and number >= 0, name
    return number


def call(name: str, *args: int) -> int:
    """syscall(name, args): 0 when it succeeded, else its errno (fits an exit code)."""
    rc = libc.syscall(ctypes.c_long(nr(name)), *(ctypes.c_ulong(a) for a in args))
    return ctypes.get_errno() if rc == -1 else 0


def call_nr(number: int) -> int:
    rc = libc.syscall(ctypes.c_long(number))
    return ctypes.get_errno() if rc == -1 else 0


def spawn_filtered(plan: dict, probe) -> int:
    """Fork a child that loads ``plan`` and exits with ``probe(listener_fd)``."""
    program = plan["filter"]
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    flags = ctypes.c_ulong(plan["flags"])
    sys_seccomp = ctypes.c_long(nr("seccomp"))
    pid = os.fork()
    if pid:
        return pid
    code = PROBE_RAISED
    try:
        # SIGSYS dumps core by default: not from a test
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0),
                   ctypes.c_ulong(0))
        if libc.prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0),
                      ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
            os._exit(LOAD_FAILED)
        listener = libc.syscall(sys_seccomp, ctypes.c_ulong(SECCOMP_SET_MODE_FILTER), flags,
                                ctypes.byref(fprog))
        if listener < 0:
            os._exit(LOAD_FAILED)
        code = probe(listener)
    finally:
        os._exit(code)


def wait_outcome(pid: int, timeout: float = 20.0) -> tuple[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"filtered child {pid} still running after {timeout}s")
        time.sleep(0.001)
    if os.WIFSIGNALED(status):
        return ("signal", os.WTERMSIG(status))
    return ("exit", os.WEXITSTATUS(status))


def _seccomp_mode(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return 0


def loads(plan: dict, timeout: float = 20.0) -> bool:
    """Whether the kernel takes the program: seen from outside, in /proc.

    The child spins after loading: under a random filter even its exit may be
    refused, and only the parent is free to end it.
    """

    def spin(_listener: int) -> int:
        while True:
            pass

    pid = spawn_filtered(plan, spin)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = 0
                return False  # only a refused load exits (LOAD_FAILED)
            if _seccomp_mode(pid) == 2:  # SECCOMP_MODE_FILTER
                return True
            time.sleep(0.001)
        raise AssertionError("the child neither loaded the filter nor exited")
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def run_filtered(profile: dict, probe) -> tuple[str, int]:
    plan = sc.plan_seccomp(profile)
    return wait_outcome(spawn_filtered(plan, probe))


def returns(errno_value: int) -> tuple[str, int]:
    return ("exit", errno_value)


OK = returns(0)

# What the forked Python child itself needs after the filter is loaded.
BASE = ["exit", "exit_group", "brk", "mmap", "munmap", "mremap", "madvise", "rt_sigreturn",
        "rt_sigprocmask", "rt_sigaction", "futex"]


def _shares_the_native_byte_order(arch: str) -> bool:
    try:
        sc.plan_seccomp({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch]})
    except ConfigError:
        return False
    return True


# libseccomp puts only archs of one byte order in a filter
SAME_ORDER_ARCHS = [a for a in sc.supported()["archs"] if _shares_the_native_byte_order(a)]


def deny_by_default(*rules: dict, **extra) -> dict:
    return {"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": BASE, "action": "SCMP_ACT_ALLOW"}, *rules], **extra}


def allow_by_default(*rules: dict, **extra) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules), **extra}


# ---------------------------------------------------------------------------
# actions, proven in a filtered child


def test_errno_ret_is_what_the_syscall_returns():
    profile = allow_by_default({"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42})
    assert run_filtered(profile, lambda _: call("getcwd", 0, 0)) == returns(42)
    assert run_filtered(profile, lambda _: call("getpid")) == OK


def test_errno_without_errno_ret_is_eperm():
    profile = allow_by_default({"names": ["getppid"], "action": "SCMP_ACT_ERRNO"})
    assert run_filtered(profile, lambda _: call("getppid")) == returns(errno.EPERM)


def test_default_errno_blocks_every_syscall_not_allowed():
    profile = deny_by_default({"names": ["getpid"], "action": "SCMP_ACT_ALLOW"})
    assert run_filtered(profile, lambda _: call("getpid")) == OK
    assert run_filtered(profile, lambda _: call("getppid")) == returns(errno.EPERM)
    assert run_filtered(profile, lambda _: call("getcwd", 0, 0)) == returns(errno.EPERM)


def test_default_errno_ret_applies_to_the_default_action():
    profile = deny_by_default(defaultErrnoRet=errno.EACCES)
    assert run_filtered(profile, lambda _: call("getppid")) == returns(errno.EACCES)


def test_kill_process_kills_with_sigsys():
    profile = allow_by_default({"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"})
    assert run_filtered(profile, lambda _: call("getppid")) == ("signal", signal.SIGSYS)


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"])
def test_kill_thread_of_the_only_thread_ends_the_process_with_sigsys(action):
    profile = allow_by_default({"names": ["getppid"], "action": action})
    assert run_filtered(profile, lambda _: call("getppid")) == ("signal", signal.SIGSYS)


def test_trap_delivers_sigsys():
    profile = allow_by_default({"names": ["getppid"], "action": "SCMP_ACT_TRAP"})
    assert run_filtered(profile, lambda _: call("getppid")) == ("signal", signal.SIGSYS)


def test_log_lets_the_syscall_through():
    profile = deny_by_default({"names": ["getcwd"], "action": "SCMP_ACT_LOG"})
    buf = ctypes.create_string_buffer(4096)
    assert run_filtered(profile, lambda _: call("getcwd", ctypes.addressof(buf), 4096)) == OK


def test_trace_without_a_tracer_fails_with_enosys():
    # seccomp(2): "If there is no tracer present, the system call is not
    # executed and returns a failure status with errno set to ENOSYS."
    profile = allow_by_default({"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 5})
    assert run_filtered(profile, lambda _: call("getppid")) == returns(errno.ENOSYS)


def test_allow_rule_under_a_killing_default():
    profile = {"defaultAction": "SCMP_ACT_KILL_PROCESS",
               "syscalls": [{"names": [*BASE, "getpid"], "action": "SCMP_ACT_ALLOW"}]}
    assert run_filtered(profile, lambda _: call("getpid")) == OK
    assert run_filtered(profile, lambda _: call("getppid")) == ("signal", signal.SIGSYS)


def test_notify_hands_the_syscall_to_the_listener():
    plan = sc.plan_seccomp(allow_by_default(
        {"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"},
        listenerPath="/run/agent.sock", listenerMetadata="hello"))
    assert plan["flags"] & sc.FILTER_FLAG_NEW_LISTENER
    assert (plan["listener_path"], plan["listener_metadata"]) == ("/run/agent.sock", "hello")

    agent, child_end = socket.socketpair()
    getppid = nr("getppid")

    def probe(listener: int) -> int:
        socket.send_fds(child_end, [b"L"], [listener])
        os.close(listener)  # the container must not keep its own listener
        rc = libc.syscall(ctypes.c_long(getppid), ctypes.c_ulong(7))
        return rc if 0 <= rc < 256 else 255

    pid = spawn_filtered(plan, probe)
    try:
        _, fds, _, _ = socket.recv_fds(agent, 1, 1)
        listener = fds[0]
        assert select.select([listener], [], [], 10)[0], "no notification within 10s"
        req = bytearray(NOTIF.size)
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req, True)
        notif_id, notif_pid, _, syscall_nr, _, _, arg0, *_ = NOTIF.unpack(req)
        assert (notif_pid, syscall_nr, arg0) == (pid, getppid, 7)
        resp = bytearray(NOTIF_RESP.pack(notif_id, 77, 0, 0))
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp, True)
        os.close(listener)
        assert wait_outcome(pid) == returns(77)
        pid = 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        agent.close()
        child_end.close()


# ---------------------------------------------------------------------------
# argument conditions


def test_personality_query_allowed_but_other_personas_denied():
    profile = deny_by_default({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                               "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]})
    assert run_filtered(profile, lambda _: call("personality", 0xFFFFFFFF)) == OK
    assert run_filtered(profile, lambda _: call("personality", 8)) == returns(errno.EPERM)


def test_socket_family_condition_allows_unix_and_denies_inet():
    profile = deny_by_default({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                               "args": [{"index": 0, "value": socket.AF_UNIX,
                                         "op": "SCMP_CMP_EQ"}]})
    assert run_filtered(profile, lambda _: call("socket", socket.AF_UNIX,
                                                socket.SOCK_STREAM, 0)) == OK
    assert run_filtered(profile, lambda _: call("socket", socket.AF_INET, socket.SOCK_STREAM,
                                                0)) == returns(errno.EPERM)


def test_masked_eq_compares_the_masked_argument_with_value_two():
    # (type & 0xf) == SOCK_STREAM, whatever SOCK_CLOEXEC says
    profile = deny_by_default({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                               "args": [{"index": 1, "value": 0xF, "valueTwo": socket.SOCK_STREAM,
                                         "op": "SCMP_CMP_MASKED_EQ"}]})
    stream = socket.SOCK_STREAM | socket.SOCK_CLOEXEC
    dgram = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
    assert run_filtered(profile, lambda _: call("socket", socket.AF_UNIX, stream, 0)) == OK
    assert run_filtered(profile, lambda _: call("socket", socket.AF_UNIX, dgram,
                                                0)) == returns(errno.EPERM)


def test_conditions_on_different_arguments_must_all_hold():
    profile = deny_by_default({"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": socket.AF_UNIX, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": socket.SOCK_STREAM, "op": "SCMP_CMP_EQ"},
    ]})
    unix, inet = socket.AF_UNIX, socket.AF_INET
    stream, dgram = socket.SOCK_STREAM, socket.SOCK_DGRAM
    assert run_filtered(profile, lambda _: call("socket", unix, stream, 0)) == OK
    assert run_filtered(profile, lambda _: call("socket", unix, dgram, 0)) == returns(errno.EPERM)
    assert run_filtered(profile, lambda _: call("socket", inet, stream, 0)) == returns(errno.EPERM)


def test_conditions_on_the_same_argument_become_separate_rules():
    # runc matchCall: libseccomp refuses two conditions on one argument, so
    # each becomes a rule of its own: they are ORed
    profile = deny_by_default({"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 5, "op": "SCMP_CMP_EQ"},
    ]})
    assert run_filtered(profile, lambda _: call("getppid", 1, 0)) == OK
    assert run_filtered(profile, lambda _: call("getppid", 8, 0)) == OK
    assert run_filtered(profile, lambda _: call("getppid", 2, 5)) == OK
    assert run_filtered(profile, lambda _: call("getppid", 2, 0)) == returns(errno.EPERM)


_OPS = {
    "SCMP_CMP_NE": lambda x, a, b: x != a,
    "SCMP_CMP_LT": lambda x, a, b: x < a,
    "SCMP_CMP_LE": lambda x, a, b: x <= a,
    "SCMP_CMP_EQ": lambda x, a, b: x == a,
    "SCMP_CMP_GE": lambda x, a, b: x >= a,
    "SCMP_CMP_GT": lambda x, a, b: x > a,
    "SCMP_CMP_MASKED_EQ": lambda x, a, b: (x & a) == b,
}
_EDGES = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**63, 2**64 - 2, 2**64 - 1]
_U64 = st.one_of(st.sampled_from(_EDGES), st.integers(0, 2**64 - 1))


@pytest.mark.parametrize("op", sorted(_OPS))
def test_every_operator_compares_all_64_bits(op):
    value, value_two = 2**32 + 5, 5
    profile = deny_by_default({"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 2, "value": value, "valueTwo": value_two, "op": op}]})
    for x in (5, 2**32 + 4, 2**32 + 5, 2**32 + 6, 2**33 + 5):
        want = OK if _OPS[op](x, value, value_two) else returns(errno.EPERM)
        assert run_filtered(profile, lambda _, x=x: call("getppid", 0, 0, x)) == want, (op, x)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(op=st.sampled_from(sorted(_OPS)), value=_U64, value_two=_U64, data=st.data())
def test_operators_agree_with_the_spec_for_random_values(op, value, value_two, data):
    near = st.integers(-2, 2).map(lambda d: min(max(value + d, 0), 2**64 - 1))
    x = data.draw(st.one_of(near, _U64, st.just(value_two)), label="x")
    if op == "SCMP_CMP_MASKED_EQ":
        value_two &= value  # unreachable otherwise: libseccomp may fold it away
    profile = deny_by_default({"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": value, "valueTwo": value_two, "op": op}]})
    want = OK if _OPS[op](x, value, value_two) else returns(errno.EPERM)
    assert run_filtered(profile, lambda _: call("getppid", x)) == want


# ---------------------------------------------------------------------------
# runc's compilation rules


def test_unknown_syscall_names_are_skipped():
    profile = allow_by_default({"names": ["getcwd", "no_such_syscall_ever"],
                                "action": "SCMP_ACT_ERRNO", "errnoRet": 42})
    plan = sc.plan_seccomp(profile)
    assert plan["unknown_syscalls"] == ["no_such_syscall_ever"]
    assert run_filtered(profile, lambda _: call("getcwd", 0, 0)) == returns(42)


def test_a_syscall_of_another_arch_is_not_unknown():
    # socketcall exists on x86 only: kept for the x86 part of the filter
    plan = sc.plan_seccomp(allow_by_default(
        {"names": ["socketcall"], "action": "SCMP_ACT_ERRNO"},
        architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]))
    assert plan["unknown_syscalls"] == []


def test_rule_with_the_default_action_is_skipped():
    # libseccomp refuses it (EACCES); runc drops it silently
    profile = deny_by_default({"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
                              {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42})
    assert run_filtered(profile, lambda _: call("getppid")) == returns(errno.EPERM)
    assert run_filtered(profile, lambda _: call("getcwd", 0, 0)) == returns(42)


def test_syscalls_above_the_profile_get_enosys_not_the_default():
    # patchbpf: a libc falls back from a syscall newer than the profile only
    # on ENOSYS
    profile = deny_by_default()
    highest = max(nr(name) for name in BASE)
    assert run_filtered(profile, lambda _: call_nr(highest + 100)) == returns(errno.ENOSYS)
    assert run_filtered(profile, lambda _: call("getppid")) == returns(errno.EPERM)


def test_allowing_default_gets_no_enosys_stub():
    allowing = sc.plan_seccomp(allow_by_default({"names": ["getppid"], "action": "SCMP_ACT_LOG"}))
    raw = native.compile_filter({"default_action": native.action_value("SCMP_ACT_ALLOW"),
                                 "rules": [{"syscall": "getppid",
                                            "action": native.action_value("SCMP_ACT_LOG")}],
                                 "ssb": True})
    assert allowing["filter"] == raw


def test_multi_arch_filter_with_x32_loads_and_filters_natively():
    profile = deny_by_default({"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                              architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                             "SCMP_ARCH_X32"])
    highest = max(nr(name) for name in BASE)
    assert run_filtered(profile, lambda _: call("getpid")) == OK
    assert run_filtered(profile, lambda _: call("getppid")) == returns(errno.EPERM)
    assert run_filtered(profile, lambda _: call_nr(highest + 100)) == returns(errno.ENOSYS)


def test_every_same_byte_order_arch_in_one_filter_loads():
    archs = list(SAME_ORDER_ARCHS)
    profile = deny_by_default({"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                              architectures=archs)
    assert run_filtered(profile, lambda _: call("getpid")) == OK
    assert run_filtered(profile, lambda _: call("getppid")) == returns(errno.EPERM)


def run_bpf(program: bytes, number: int, arch: int) -> int | str:
    """Interpret the stub's few cBPF opcodes; "filter" when it falls through."""
    insns = [struct.unpack_from("=HBBI", program, off) for off in range(0, len(program), 8)]
    acc, pc = 0, 0
    while pc < len(insns):
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            acc = {0: number & 0xFFFFFFFF, 4: arch}[k]
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x25, 0x45):  # jeq, jgt, jset
            taken = {0x15: acc == k, 0x25: acc > k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:  # ret
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    return "filter"


def test_enosys_stub_semantics_with_long_jumps():
    # 100 sections push the distances past the 8-bit conditional jumps
    x86_64, x32 = native.arch_token("SCMP_ARCH_X86_64"), native.arch_token("SCMP_ARCH_X32")
    audit_x86_64 = x86_64
    s390x = native.arch_token("SCMP_ARCH_S390X")
    last = {0x1000 + i: {0x1000 + i: 10 + i} for i in range(100)}
    last[audit_x86_64] = {x86_64: 300, x32: (1 << 30) | 350}
    last[s390x] = {s390x: 400}
    stub = sc._enosys_stub(last)
    enosys = 0x00050000 | errno.ENOSYS
    for i in (0, 50, 99):
        assert run_bpf(stub, 10 + i, 0x1000 + i) == "filter"
        assert run_bpf(stub, 11 + i, 0x1000 + i) == enosys
    assert run_bpf(stub, 300, audit_x86_64) == "filter"
    assert run_bpf(stub, 301, audit_x86_64) == enosys
    assert run_bpf(stub, (1 << 30) | 350, audit_x86_64) == "filter"
    assert run_bpf(stub, (1 << 30) | 351, audit_x86_64) == enosys
    assert run_bpf(stub, 0, s390x) == enosys  # setup(2): s390's multiplexer
    assert run_bpf(stub, 5, s390x) == "filter"
    assert run_bpf(stub, 10**6, 0xDEAD) == "filter"  # not in the filter: its badarch


def test_enosys_stub_sends_the_other_x86_64_abi_to_the_filter():
    x86_64, x32 = native.arch_token("SCMP_ARCH_X86_64"), native.arch_token("SCMP_ARCH_X32")
    only_64 = sc._enosys_stub({x86_64: {x86_64: 300}})
    assert run_bpf(only_64, 301, x86_64) == 0x00050000 | errno.ENOSYS
    assert run_bpf(only_64, (1 << 30) | 999, x86_64) == "filter"
    only_x32 = sc._enosys_stub({x86_64: {x32: (1 << 30) | 300}})
    assert run_bpf(only_x32, (1 << 30) | 301, x86_64) == 0x00050000 | errno.ENOSYS
    assert run_bpf(only_x32, 999, x86_64) == "filter"


# ---------------------------------------------------------------------------
# flags


def test_flags_map_to_seccomp_filter_flags():
    def flags(**extra):
        return sc.plan_seccomp(allow_by_default({"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
                                                **extra))["flags"]
    supported = sc.supported()["supportedFlags"]
    if "SECCOMP_FILTER_FLAG_SPEC_ALLOW" in supported:
        assert flags() == sc.FILTER_FLAG_SPEC_ALLOW  # runc's default when "flags" is absent
    assert flags(flags=[]) == 0
    assert flags(flags=["SECCOMP_FILTER_FLAG_TSYNC"]) == 0  # single-threaded: ignored
    assert flags(flags=["SECCOMP_FILTER_FLAG_LOG"]) == sc.FILTER_FLAG_LOG
    # WAIT_KILLABLE_RECV only means something to a listener
    if "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" in supported:
        assert flags(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]) == 0


def test_wait_killable_recv_goes_with_new_listener():
    if "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" not in sc.supported()["supportedFlags"]:
        pytest.skip("kernel older than 5.19")
    plan = sc.plan_seccomp(allow_by_default(
        {"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}, listenerPath="/x",
        flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]))
    assert plan["flags"] == sc.FILTER_FLAG_NEW_LISTENER | sc.FILTER_FLAG_WAIT_KILLABLE_RECV

    def probe(listener: int) -> int:
        os.close(listener)
        return call("getpid")

    assert wait_outcome(spawn_filtered(plan, probe)) == OK


def test_filter_loads_with_log_and_spec_allow():
    flags = [f for f in ("SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
             if f in sc.supported()["supportedFlags"]]
    profile = allow_by_default({"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}, flags=flags)
    assert run_filtered(profile, lambda _: call("getppid")) == returns(errno.EPERM)


def test_no_listener_is_reported_without_notify():
    plan = sc.plan_seccomp(allow_by_default({"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
                                            listenerPath="/run/agent.sock"))
    assert plan["listener_path"] is None
    assert not plan["flags"] & sc.FILTER_FLAG_NEW_LISTENER


def test_no_profile_means_no_filter():
    assert sc.plan_seccomp(None) is None
    assert sc.plan_seccomp({"defaultAction": "", "syscalls": []}) is None


# ---------------------------------------------------------------------------
# a docker-like default profile

DOCKER_ALLOWED = [
    "accept", "accept4", "access", "alarm", "bind", "brk", "capget", "capset", "chdir", "chmod",
    "chown", "clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range",
    "connect", "copy_file_range", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_pwait", "epoll_wait", "eventfd2", "execve", "execveat", "exit",
    "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate", "fchdir", "fchmod",
    "fchmodat", "fchown", "fchownat", "fcntl", "fdatasync", "flock", "fstat", "fstatfs", "fsync",
    "ftruncate", "futex", "getcwd", "getdents64", "getegid", "geteuid", "getgid", "getgroups",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getrlimit",
    "getrusage", "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid", "ioctl",
    "kill", "lchown", "link", "linkat", "listen", "lseek", "lstat", "madvise", "memfd_create",
    "mkdir", "mkdirat", "mmap", "mprotect", "mremap", "munmap", "nanosleep", "newfstatat",
    "open", "openat", "openat2", "pipe", "pipe2", "poll", "ppoll", "prctl", "pread64",
    "preadv", "prlimit64", "pselect6", "pwrite64", "read", "readlink", "readlinkat", "readv",
    "recvfrom", "recvmsg", "rename", "renameat", "renameat2", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "sched_getaffinity",
    "sched_yield", "select", "sendfile", "sendmsg", "sendto", "set_robust_list",
    "set_tid_address", "setgid", "setgroups", "setitimer", "setpgid", "setsid", "setsockopt",
    "setuid", "shutdown", "sigaltstack", "socketpair", "stat", "statfs", "statx", "symlink",
    "symlinkat", "sysinfo", "tgkill", "umask", "uname", "unlink", "unlinkat", "utimensat",
    "wait4", "waitid", "write", "writev",
]


def docker_like_profile() -> dict:
    personas = [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": DOCKER_ALLOWED, "action": "SCMP_ACT_ALLOW"},
            *({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]} for p in personas),
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},  # not AF_VSOCK
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},  # no namespace flags
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
            {"names": ["arch_prctl", "modify_ldt"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socketcall", "ipc"], "action": "SCMP_ACT_ALLOW"},  # x86 only
        ],
    }


def test_docker_like_profile_compiles_within_the_kernel_limit():
    plan = sc.plan_seccomp(docker_like_profile())
    assert len(plan["filter"]) % 8 == 0
    assert len(plan["filter"]) // 8 <= sc.BPF_MAXINSNS
    assert plan["unknown_syscalls"] == []


def test_docker_like_profile_filters_a_process():
    profile = docker_like_profile()
    buf = ctypes.create_string_buffer(4096)
    assert run_filtered(profile, lambda _: call("getcwd", ctypes.addressof(buf), 4096)) == OK
    assert run_filtered(profile, lambda _: call("personality", 0xFFFFFFFF)) == OK
    assert run_filtered(profile, lambda _: call("personality", 4)) == returns(errno.EPERM)
    assert run_filtered(profile, lambda _: call("unshare", 0)) == returns(errno.EPERM)
    assert run_filtered(profile, lambda _: call("mount", 0, 0, 0, 0, 0)) == returns(errno.EPERM)
    assert run_filtered(profile, lambda _: call("clone3", 0, 0)) == returns(errno.ENOSYS)
    assert run_filtered(profile, lambda _: call("socket", 40, 1, 0)) == returns(errno.EPERM)
    assert run_filtered(profile, lambda _: call_nr(1000)) == returns(errno.ENOSYS)


# ---------------------------------------------------------------------------
# validation: a ConfigError naming the JSON path

P = "linux.seccomp"
VALID_RULE = {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"}


def rules(*extra: dict) -> list[dict]:
    return [VALID_RULE, VALID_RULE, VALID_RULE, *extra]


@pytest.mark.parametrize("profile, path, reason", [
    ({"defaultAction": "SCMP_ACT_FOO"}, f"{P}.defaultAction", 'unknown action "SCMP_ACT_FOO"'),
    ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}, f"{P}.defaultAction",
     "cannot be the default action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, f"{P}.defaultErrnoRet",
     "SCMP_ACT_ALLOW does not take an errno"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, f"{P}.defaultErrnoRet",
     "is not an errno"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_Z80"]},
     f"{P}.architectures[1]", 'unknown architecture "SCMP_ARCH_Z80"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]},
     f"{P}.flags[0]", 'unknown flag "SECCOMP_FILTER_FLAG_BOGUS"'),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": rules({"names": ["getpid"], "action": "SCMP_ACT_FOO"})},
     f"{P}.syscalls[3].action", 'unknown action "SCMP_ACT_FOO"'),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_KILL", "errnoRet": 3}]},
     f"{P}.syscalls[0].errnoRet", "SCMP_ACT_KILL does not take an errno"),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]},
     f"{P}.syscalls[0].errnoRet", "is not an errno between 0 and 4094"),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536}]},
     f"{P}.syscalls[0].errnoRet", "is not an errno between 0 and 65535"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4095},
     f"{P}.defaultErrnoRet", "is not an errno between 0 and 4094"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_LOG"}]},
     f"{P}.syscalls[0].names", "must list at least one syscall"),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["getpid", ""], "action": "SCMP_ACT_LOG"}]},
     f"{P}.syscalls[0].names[1]", "is not a syscall name"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
        "names": ["getpid"], "action": "SCMP_ACT_LOG",
        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                 {"index": 1, "value": 1, "op": "SCMP_CMP_XOR"}]}]},
     f"{P}.syscalls[0].args[1].op", 'unknown operator "SCMP_CMP_XOR"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
        "names": ["getpid"], "action": "SCMP_ACT_LOG",
        "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     f"{P}.syscalls[0].args[0].index", "is not a syscall argument"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
        "names": ["getpid"], "action": "SCMP_ACT_LOG",
        "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
     f"{P}.syscalls[0].args[0].value", "is not a 64-bit unsigned integer"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
        "names": ["getpid"], "action": "SCMP_ACT_LOG",
        "args": [{"index": 0, "value": 0, "valueTwo": 2**64, "op": "SCMP_CMP_MASKED_EQ"}]}]},
     f"{P}.syscalls[0].args[0].valueTwo", "is not a 64-bit unsigned integer"),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]},
     f"{P}.syscalls[0].action", f"SCMP_ACT_NOTIFY needs {P}.listenerPath"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
      "syscalls": [{"names": ["getpid", "write"], "action": "SCMP_ACT_NOTIFY"}]},
     f"{P}.syscalls[0].names[1]", "SCMP_ACT_NOTIFY cannot be used for write"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
      "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]},
     f"{P}.syscalls[0].names[0]", "SCMP_ACT_NOTIFY cannot be used for sendmsg"),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["getpid\0x"], "action": "SCMP_ACT_LOG"}]},
     f"{P}.syscalls[0].names[0]", "is not a syscall name"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": [["SECCOMP_FILTER_FLAG_LOG"]]},
     f"{P}.flags[0]", "unknown flag"),
    ({"defaultAction": [], "syscalls": []}, f"{P}.defaultAction", "unknown action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"},
     f"{P}.listenerMetadata", "is set without listenerPath"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getpid"], "action": "SCMP_ACT_LOG",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     f"{P}.syscalls[1].names[0]", "same conditions and another action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {"names": ["getpid"]}},
     f"{P}.syscalls", "must be an array"),
    ("SCMP_ACT_ALLOW", P, "must be an object"),
])
def test_invalid_profile_names_the_json_path(profile, path, reason):
    with pytest.raises(ConfigError) as info:
        sc.plan_seccomp(profile)
    assert info.value.path == path
    assert reason in info.value.reason


def test_error_reads_like_the_rest_of_the_config_errors():
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": rules({"names": ["getpid"], "action": "SCMP_ACT_FOO"})}
    with pytest.raises(ConfigError) as info:
        sc.plan_seccomp(profile)
    assert str(info.value) == ('invalid config.json: linux.seccomp.syscalls[3].action: '
                               'unknown action "SCMP_ACT_FOO"')


def test_path_prefix_is_the_callers():
    with pytest.raises(ConfigError) as info:
        sc.plan_seccomp({"defaultAction": "SCMP_ACT_BAD"}, path="process.seccomp")
    assert info.value.path == "process.seccomp.defaultAction"


def test_arch_of_the_other_byte_order_is_refused():
    other = [a for a in sc.supported()["archs"] if a not in SAME_ORDER_ARCHS]
    if not other:
        pytest.skip("every arch shares the native byte order")
    with pytest.raises(ConfigError) as info:
        sc.plan_seccomp({"defaultAction": "SCMP_ACT_ALLOW",
                         "architectures": ["SCMP_ARCH_X86_64", other[0]]})
    assert info.value.path == f"{P}.architectures[1]"
    assert "byte orders differ" in info.value.reason


def test_arch_unknown_to_the_linked_libseccomp_is_refused():
    missing = [a for a in sc.ARCH_NAMES if native.arch_token(a) is None]
    if not missing:
        pytest.skip("libseccomp knows every spec arch")
    with pytest.raises(ConfigError) as info:
        sc.plan_seccomp({"defaultAction": "SCMP_ACT_ALLOW", "architectures": missing[:1]})
    assert info.value.path == f"{P}.architectures[0]"
    assert "not supported by libseccomp" in info.value.reason


# ---------------------------------------------------------------------------
# the native module


def test_libseccomp_version_is_dotted():
    parts = [int(part) for part in native.libseccomp_version().split(".")]
    assert len(parts) == 3 and parts[:2] >= [2, 5]


def test_resolve_syscall_per_arch():
    assert native.resolve_syscall("read", "SCMP_ARCH_X86_64") == 0
    assert native.resolve_syscall("read", "SCMP_ARCH_X86") == 3
    assert native.resolve_syscall("read", "SCMP_ARCH_AARCH64") == 63
    assert native.resolve_syscall("read", "SCMP_ARCH_X32") == 1 << 30  # __X32_SYSCALL_BIT
    assert native.resolve_syscall("socketcall", "SCMP_ARCH_X86") == 102
    assert native.resolve_syscall("socketcall", "SCMP_ARCH_X86_64") < 0  # not on that arch
    assert native.resolve_syscall("no_such_syscall_ever") is None
    with pytest.raises(ValueError):
        native.resolve_syscall("read", "SCMP_ARCH_Z80")


def test_supported_lists_what_this_build_and_kernel_do():
    doc = sc.supported()
    assert doc["enabled"] is True
    assert set(doc["actions"]) <= set(sc.ACTION_NAMES)
    assert {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL"} <= set(doc["actions"])
    assert doc["operators"] == sorted(sc.OPERATOR_NAMES)
    assert "SCMP_ARCH_X86_64" in doc["archs"] and doc["archs"] == sorted(doc["archs"])
    assert doc["knownFlags"] == ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                 "SECCOMP_FILTER_FLAG_LOG",
                                 "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    assert set(doc["supportedFlags"]) <= set(doc["knownFlags"])
    assert "SECCOMP_FILTER_FLAG_TSYNC" in doc["supportedFlags"]


# ---------------------------------------------------------------------------
# properties

_NAMES = ["read", "write", "getpid", "getppid", "getcwd", "personality", "socket", "openat",
          "close", "mmap", "clone", "clone3", "ioctl", "prctl", "kill", "mount", "unshare",
          "setns", "bpf", "ptrace", "socketcall", "ipc", "uname", "statx", "futex",
          "no_such_call", "another_unknown_call"]
_SUPPORTED = sc.supported()
_ACTIONS = [a for a in _SUPPORTED["actions"] if a != "SCMP_ACT_NOTIFY"]
_ARCHS = SAME_ORDER_ARCHS


@st.composite
def _action_with_errno(draw, actions):
    action = draw(st.sampled_from(actions))
    fields = {"action": action}
    if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE") and draw(st.booleans()):
        top = 4094 if action == "SCMP_ACT_ERRNO" else 0xFFFF
        fields["errnoRet"] = draw(st.integers(0, top))
    return fields


_ARG = st.fixed_dictionaries(
    {"index": st.integers(0, 5), "value": _U64, "op": st.sampled_from(sc.OPERATOR_NAMES)},
    optional={"valueTwo": _U64})


@st.composite
def profiles(draw, actions=tuple(_ACTIONS)):
    default = draw(_action_with_errno([a for a in actions if a != "SCMP_ACT_NOTIFY"]))
    profile = {"defaultAction": default["action"]}
    if "errnoRet" in default:
        profile["defaultErrnoRet"] = default["errnoRet"]
    if draw(st.booleans()):
        profile["architectures"] = draw(st.lists(st.sampled_from(_ARCHS), max_size=3))
    if draw(st.booleans()):
        profile["flags"] = draw(st.lists(st.sampled_from(_SUPPORTED["supportedFlags"]),
                                         max_size=3))
    # disjoint names: libseccomp refuses the same conditions with two actions
    names = draw(st.lists(st.sampled_from(_NAMES), unique=True))
    syscalls = []
    while names:
        take = draw(st.integers(1, len(names)))
        rule = {"names": names[:take], **draw(_action_with_errno(actions))}
        names = names[take:]
        if draw(st.booleans()):
            rule["args"] = draw(st.lists(_ARG, max_size=3))
        syscalls.append(rule)
    profile["syscalls"] = syscalls
    if any(r["action"] == "SCMP_ACT_NOTIFY" for r in syscalls):
        profile["listenerPath"] = "/run/agent.sock"
    return profile


@settings(max_examples=200, deadline=None)
@given(profiles(actions=tuple(_SUPPORTED["actions"])))
def test_random_valid_profiles_always_compile(profile):
    # refused on purpose (see the validation tests)
    assume(not any(r["action"] == "SCMP_ACT_NOTIFY" and sc.NOTIFY_FORBIDDEN & set(r["names"])
                   for r in profile["syscalls"]))
    plan = sc.plan_seccomp(profile)
    assert plan is not None
    assert len(plan["filter"]) % 8 == 0
    assert 0 < len(plan["filter"]) // 8 <= sc.BPF_MAXINSNS
    assert plan == sc.plan_seccomp(profile)  # deterministic


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles())
def test_the_kernel_accepts_every_compiled_filter(profile):
    assert loads(sc.plan_seccomp(profile))


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**65, 2**65), st.text(max_size=8),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                       st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(profiles(), st.data())
def test_mutated_profiles_plan_or_raise_config_error(profile, data):
    # replace one field somewhere in the profile with junk
    target = profile
    if profile["syscalls"] and data.draw(st.booleans()):
        target = data.draw(st.sampled_from(profile["syscalls"]))
        if target.get("args") and data.draw(st.booleans()):
            target = data.draw(st.sampled_from(target["args"]))
    key = data.draw(st.sampled_from(sorted(target) + ["errnoRet", "defaultErrnoRet"]))
    target[key] = data.draw(_JUNK)
    try:
        plan = sc.plan_seccomp(profile)
    except ConfigError as exc:
        assert exc.path.startswith("linux.seccomp")
    else:
        assert plan is None or len(plan["filter"]) % 8 == 0
