"""``linux.seccomp`` → the BPF program the child loads before execve.

runtime-spec config-linux.md "Seccomp".  The parent compiles the profile with
libseccomp (``ocipy._native.seccomp``) before clone; the child only passes the
bytes and ``flags`` to seccomp(2).  The semantics are runc's
(libcontainer/specconv SetupSeccomp, libcontainer/seccomp/seccomp_linux.go,
libcontainer/seccomp/patchbpf):

* a syscall name libseccomp does not know is skipped, not an error;
* a rule whose action equals the default action is skipped;
* conditions of one rule are ANDed, except when two of them test the same
  argument: then every condition becomes a rule of its own (ORed), as libseccomp
  refuses two conditions on one argument;
* MASKED_EQ is ``(arg & value) == valueTwo``;
* ERRNO and TRACE return EPERM unless errnoRet says otherwise;
* SCMP_ACT_KILL is KILL_THREAD; SECCOMP_FILTER_FLAG_TSYNC is accepted and
  ignored (the child is single-threaded);
* no ``flags`` at all means SECCOMP_FILTER_FLAG_SPEC_ALLOW where the kernel has
  it, ``flags: []`` means none;
* unless the default action lets syscalls through, syscalls numbered above the
  highest one the profile names get ENOSYS instead of the default action, so
  that a libc falls back from a syscall newer than the profile (patchbpf's
  -ENOSYS stub, ported below);
* SCMP_ACT_NOTIFY is refused as the default action and for the syscalls that
  hand the listener over (NOTIFY_FORBIDDEN);
* WAIT_KILLABLE_RECV is dropped when no rule notifies (the kernel refuses it
  without NEW_LISTENER).

Beyond runc: an errnoRet on an action that takes none, a flag the running
kernel lacks (probed with a NULL program, nothing is loaded) and a filter
longer than the kernel's 4096 instructions are ConfigErrors here, not a
failure inside the child.

The extension is imported on first use: only configs with a seccomp section
need it.
"""
from __future__ import annotations

import errno as _errno
import functools
import struct
from typing import Any

from ocipy.errors import ConfigError, OcipyError

# <linux/seccomp.h> SECCOMP_FILTER_FLAG_*
FILTER_FLAG_TSYNC = 1 << 0
FILTER_FLAG_LOG = 1 << 1
FILTER_FLAG_SPEC_ALLOW = 1 << 2
FILTER_FLAG_NEW_LISTENER = 1 << 3
FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5

# config-linux.md seccomp "flags" → seccomp(2) flag, in runc's order
# (seccomp/config.go); TSYNC maps to 0: recognised, nothing to do.
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 0,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": FILTER_FLAG_SPEC_ALLOW,
    "SECCOMP_FILTER_FLAG_LOG": FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": FILTER_FLAG_WAIT_KILLABLE_RECV,
}

ACTION_NAMES = (
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
)

OPERATOR_NAMES = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)

# The architecture names of the spec (libseccomp 2.6); the ones the linked
# libseccomp does not know are refused, and not listed by supported().
ARCH_NAMES = (
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
)

# Syscalls that hand the listener fd from the child to the runtime.  Under a
# notifying rule they would wait for an agent that does not have the fd yet,
# and create would hang.  runc refuses "write", the syscall its init uses
# (seccomp_linux.go); ocipy's child sends on its sync socket.
NOTIFY_FORBIDDEN = frozenset({"write", "sendto", "sendmsg"})

MAX_ARGS = 6  # a syscall has six arguments: index 0..5
BPF_MAXINSNS = 4096  # the kernel's limit on a classic BPF program
_UINT64_MAX = (1 << 64) - 1
_RET_DATA_MAX = 0xFFFF  # SECCOMP_RET_DATA: 16 bits (TRACE hands them to the tracer)
_ERRNO_MAX = 4094  # libseccomp takes ERRNO data below the kernel's MAX_ERRNO (4095)
# runc enables libseccomp's binary tree above this many rules (seccomp_linux.go).
_OPTIMIZE_ABOVE = 32

_ALLOWING = frozenset({"SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"})
_WITH_ERRNO = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})


def _native() -> Any:
    try:
        from ocipy._native import seccomp as native
    except ImportError as exc:  # built without libseccomp
        raise OcipyError("seccomp", f"not available in this build: {exc}") from exc
    return native


# ---------------------------------------------------------------------------
# validation helpers


def _is_uint(value: Any, top: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top


def _action(native: Any, name: Any, errno_ret: Any, path: str, errno_path: str) -> int:
    if name not in ACTION_NAMES:
        raise ConfigError(path, f"unknown action {_quote(name)}")
    if errno_ret is None:
        # runc: EPERM for ERRNO and TRACE when errnoRet is absent
        return native.action_value(name, _errno.EPERM)
    if name not in _WITH_ERRNO:
        # config-linux.md: "When the action doesn't support an errno, the
        # runtime MUST print and error and fail."
        raise ConfigError(errno_path, f"{name} does not take an errno")
    top = _ERRNO_MAX if name == "SCMP_ACT_ERRNO" else _RET_DATA_MAX
    if not _is_uint(errno_ret, top):
        raise ConfigError(errno_path, f"{errno_ret!r} is not an errno between 0 and {top}")
    return native.action_value(name, errno_ret)


def _quote(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _list(value: Any, path: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(path, "must be an array")
    return value


@functools.cache
def _kernel_flags_supported(flags: int) -> bool:
    return _native().filter_flags_supported(flags)


def _flag_supported(name: str) -> bool:
    bit = FLAGS[name]
    if bit == 0:
        return True
    if bit == FILTER_FLAG_WAIT_KILLABLE_RECV:
        # the kernel refuses it without NEW_LISTENER: probe the pair
        bit |= FILTER_FLAG_NEW_LISTENER
    return _kernel_flags_supported(bit)


def _conditions(args: list, path: str) -> list[tuple[int, int, int, int]]:
    native = _native()
    conds = []
    for k, arg in enumerate(args):
        where = f"{path}[{k}]"
        if not isinstance(arg, dict):
            raise ConfigError(where, "must be an object")
        index = arg.get("index")
        if not _is_uint(index, MAX_ARGS - 1):
            raise ConfigError(f"{where}.index", f"{index!r} is not a syscall argument (0 to 5)")
        op = arg.get("op")
        if op not in OPERATOR_NAMES:
            raise ConfigError(f"{where}.op", f"unknown operator {_quote(op)}")
        value = arg.get("value")
        if not _is_uint(value, _UINT64_MAX):
            raise ConfigError(f"{where}.value", f"{value!r} is not a 64-bit unsigned integer")
        value_two = arg.get("valueTwo", 0)
        if not _is_uint(value_two, _UINT64_MAX):
            raise ConfigError(f"{where}.valueTwo",
                              f"{value_two!r} is not a 64-bit unsigned integer")
        conds.append((index, native.OPERATORS[op], value, value_two))
    return conds


def _split_conditions(conds: list[tuple[int, int, int, int]]) -> list[list[tuple]]:
    """One rule's conditions as the list of libseccomp rules to add (runc matchCall)."""
    if not conds:
        return [[]]
    indexes = [c[0] for c in conds]
    if len(set(indexes)) < len(indexes):
        # two conditions on one argument: each becomes a rule (OR), as runc
        return [[c] for c in conds]
    return [conds]


# ---------------------------------------------------------------------------
# the planner


def plan_seccomp(seccomp: dict | None, *, path: str = "linux.seccomp") -> dict | None:
    """Validate and compile ``linux.seccomp``.

    Returns None when there is nothing to load, else::

        {"filter": bytes,            # struct sock_filter[], 8 bytes each
         "flags": int,               # SECCOMP_FILTER_FLAG_* for seccomp(2)
         "listener_path": str|None,  # set iff flags has NEW_LISTENER
         "listener_metadata": str|None,
         "unknown_syscalls": [str]}  # names skipped: unknown to libseccomp

    Raises ConfigError naming the JSON path of the first invalid field.
    """
    if seccomp is None:
        return None
    if not isinstance(seccomp, dict):
        raise ConfigError(path, "must be an object")
    syscalls = _list(seccomp.get("syscalls"), f"{path}.syscalls")
    default_name = seccomp.get("defaultAction")
    if default_name in (None, "") and not syscalls:
        return None  # runc: no default action and no rules: seccomp disabled
    native = _native()

    default_action = _action(native, default_name, seccomp.get("defaultErrnoRet"),
                             f"{path}.defaultAction", f"{path}.defaultErrnoRet")
    if default_name == "SCMP_ACT_NOTIFY":
        # every syscall would wait for an agent that cannot have the fd yet
        raise ConfigError(f"{path}.defaultAction",
                          "SCMP_ACT_NOTIFY cannot be the default action")

    arch_tokens = []
    for i, arch in enumerate(_list(seccomp.get("architectures"), f"{path}.architectures")):
        where = f"{path}.architectures[{i}]"
        if arch not in ARCH_NAMES:
            raise ConfigError(where, f"unknown architecture {_quote(arch)}")
        token = native.arch_token(arch)
        if token is None:
            raise ConfigError(where, f"{arch} is not supported by libseccomp "
                                     f"{native.libseccomp_version()}")
        arch_tokens.append(token)

    listener_path = seccomp.get("listenerPath")
    listener_metadata = seccomp.get("listenerMetadata")
    if listener_path is not None and (not isinstance(listener_path, str) or not listener_path):
        raise ConfigError(f"{path}.listenerPath", "must be a socket path")
    if listener_metadata is not None:
        if not isinstance(listener_metadata, str):
            raise ConfigError(f"{path}.listenerMetadata", "must be a string")
        if listener_path is None:
            raise ConfigError(f"{path}.listenerMetadata", "is set without listenerPath")

    rules: list[dict] = []
    rule_paths: list[str] = []
    all_names: list[str] = []
    unknown: list[str] = []
    notify = False
    for i, call in enumerate(syscalls):
        where = f"{path}.syscalls[{i}]"
        if not isinstance(call, dict):
            raise ConfigError(where, "must be an object")
        names = call.get("names")
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{where}.names", "must list at least one syscall")
        action_name = call.get("action")
        action = _action(native, action_name, call.get("errnoRet"),
                         f"{where}.action", f"{where}.errnoRet")
        if action_name == "SCMP_ACT_NOTIFY":
            if listener_path is None:
                raise ConfigError(f"{where}.action",
                                  f"SCMP_ACT_NOTIFY needs {path}.listenerPath")
            notify = True
        split = _split_conditions(_conditions(_list(call.get("args"), f"{where}.args"),
                                              f"{where}.args"))
        for j, name in enumerate(names):
            if not isinstance(name, str) or not name or "\0" in name:
                raise ConfigError(f"{where}.names[{j}]", "is not a syscall name")
            if action_name == "SCMP_ACT_NOTIFY" and name in NOTIFY_FORBIDDEN:
                raise ConfigError(f"{where}.names[{j}]",
                                  f"SCMP_ACT_NOTIFY cannot be used for {name}: the runtime "
                                  "needs it to hand the listener to the agent")
            all_names.append(name)
            if native.resolve_syscall(name) is None:
                unknown.append(name)  # runc: "unknown seccomp syscall ignored"
                continue
            if action == default_action:
                continue  # runc: redundant, and libseccomp refuses it (EACCES)
            for conds in split:
                rules.append({"syscall": name, "action": action, "args": conds})
                rule_paths.append(f"{where}.names[{j}]")

    flags = 0
    flag_names = seccomp.get("flags")
    if flag_names is None:
        # runc specconv: no "flags" key means SPEC_ALLOW where available
        flag_names = [n for n in ("SECCOMP_FILTER_FLAG_SPEC_ALLOW",) if _flag_supported(n)]
    for i, name in enumerate(_list(flag_names, f"{path}.flags")):
        where = f"{path}.flags[{i}]"
        if not isinstance(name, str) or name not in FLAGS:
            raise ConfigError(where, f"unknown flag {_quote(name)}")
        if not _flag_supported(name):
            raise ConfigError(where, f"{name} is not supported by the running kernel")
        flags |= FLAGS[name]
    if notify:
        flags |= FILTER_FLAG_NEW_LISTENER
    else:
        # only changes how a notifying syscall waits; the kernel refuses it
        # without a listener
        flags &= ~FILTER_FLAG_WAIT_KILLABLE_RECV

    profile = {
        "default_action": default_action,
        "architectures": arch_tokens,
        "rules": rules,
        "log": bool(flags & FILTER_FLAG_LOG),
        "ssb": bool(flags & FILTER_FLAG_SPEC_ALLOW),
        # libseccomp 2.5.4 misbuilds the binary tree for 0 rules: count the
        # rules really added, not the names
        "optimize": 2 if len(rules) > _OPTIMIZE_ABOVE else 1,
    }
    try:
        program = native.compile_filter(profile)
    except native.FilterError as exc:
        if exc.arch >= 0:
            reason = str(exc)
            if exc.errno == _errno.EDOM:
                # libseccomp: one filter, one byte order
                reason = (f"{seccomp['architectures'][exc.arch]} cannot share a filter with "
                          "the native architecture: their byte orders differ")
            raise ConfigError(f"{path}.architectures[{exc.arch}]", reason) from exc
        if not 0 <= exc.rule < len(rule_paths):
            raise ConfigError(path, str(exc)) from exc
        reason = str(exc)
        if exc.errno == _errno.EEXIST:
            name = rules[exc.rule]["syscall"]
            reason = (f"an earlier rule for {name} has the same conditions "
                      "and another action")
        raise ConfigError(rule_paths[exc.rule], reason) from exc

    if default_name not in _ALLOWING and not (
        default_name == "SCMP_ACT_ERRNO" and seccomp.get("defaultErrnoRet") == _errno.ENOSYS
    ):
        stub = _enosys_stub(_last_syscalls(native, arch_tokens, all_names))
        program = stub + program

    count = len(program) // _INSN.size
    if count > BPF_MAXINSNS:
        raise ConfigError(path, f"the filter has {count} BPF instructions, "
                                f"more than the kernel's {BPF_MAXINSNS}")
    return {
        "filter": program,
        "flags": flags,
        "listener_path": listener_path if notify else None,
        "listener_metadata": listener_metadata if notify else None,
        "unknown_syscalls": unknown,
    }


# ---------------------------------------------------------------------------
# the -ENOSYS stub: runc libcontainer/seccomp/patchbpf/enosys_linux.go
#
# Prepended to libseccomp's program.  For each architecture of the filter,
# a syscall numbered above the largest one the profile names returns ENOSYS;
# everything else falls through to the filter.  Jumps are computed from the
# end of the stub, which is why it is built back to front.

_INSN = struct.Struct("=HBBI")  # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
_LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JA = 0x05  # BPF_JMP | BPF_JA
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGT = 0x25  # BPF_JMP | BPF_JGT | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_RET_ENOSYS = 0x00050000 | _errno.ENOSYS  # SECCOMP_RET_ERRNO | ENOSYS
_OFF_NR, _OFF_ARCH = 0, 4  # struct seccomp_data
_X32_SYSCALL_BIT = 1 << 30

_AUDIT_ARCH_X86_64 = 0xC000003E
_AUDIT_ARCH_S390 = 0x00000016
_AUDIT_ARCH_S390X = 0x80000016

Insn = tuple[int, int, int, int]


def _ld(offset: int) -> Insn:
    return (_LD_ABS_W, 0, 0, offset)


def _ja(skip: int) -> Insn:
    return (_JA, 0, 0, skip)


def _jmp(code: int, k: int, jt: int = 0, jf: int = 0) -> Insn:
    return (code, jt, jf, k)


def _ret(k: int) -> Insn:
    return (_RET, 0, 0, k)


def _last_syscalls(native: Any, arch_tokens: list[int],
                   names: list[str]) -> dict[int, dict[int, int]]:
    """AUDIT_ARCH → {libseccomp arch token → the largest syscall number named}.

    x86_64 and x32 share one AUDIT_ARCH (x32 sets bit 30 of the number), hence
    the inner map.  The native arch is always included, as runc does.
    """
    x32 = native.arch_token("SCMP_ARCH_X32")
    last: dict[int, dict[int, int]] = {}
    for token in sorted({native.arch_token(), *arch_tokens}):
        audit = _AUDIT_ARCH_X86_64 if token == x32 else token
        numbers = [native.resolve_syscall(name, token) for name in names]
        largest = max((n for n in numbers if n is not None and n > 0), default=0)
        if largest:
            last.setdefault(audit, {})[token] = largest
    return last


def _enosys_stub(last: dict[int, dict[int, int]]) -> bytes:
    if not last:
        return b""
    native = _native()
    x86_64 = native.arch_token("SCMP_ARCH_X86_64")
    x32 = native.arch_token("SCMP_ARCH_X32")
    tail: list[Insn] = [_ja(1), _ret(_RET_ENOSYS)]  # fall through to the filter | ENOSYS
    starts: dict[int, int] = {}  # AUDIT_ARCH → its section's distance from the end
    for audit, largest in sorted(last.items()):
        to_enosys = len(tail) - 1
        to_filter = to_enosys + 1
        section = [_ld(_OFF_NR)]
        if len(largest) == 1:
            ((token, sysno),) = largest.items()
            if audit in (_AUDIT_ARCH_S390, _AUDIT_ARCH_S390X):
                # s390 multiplexes unknown large syscall numbers through
                # setup(2), number 0: give that ENOSYS too
                section += [_jmp(_JEQ, 0, jt=0, jf=1), _ret(_RET_ENOSYS)]
            if to_enosys + 1 <= 255:
                body = [_jmp(_JGT, sysno, jt=to_enosys + 1), _ja(to_filter)]
            else:  # too far for a conditional jump
                body = [_jmp(_JGT, sysno, jt=0, jf=1), _ret(_RET_ENOSYS), _ja(to_filter)]
            if audit == _AUDIT_ARCH_X86_64:
                # the other ABI of this AUDIT_ARCH goes straight to the filter
                if token == x86_64:
                    body.insert(0, _jmp(_JSET, _X32_SYSCALL_BIT, jt=len(body) - 1))
                else:
                    body.insert(0, _jmp(_JSET, _X32_SYSCALL_BIT, jf=len(body) - 1))
            section += body
        else:  # x86_64 and x32 together
            x86_nr, x32_nr = largest[x86_64], largest[x32]
            if to_enosys + 2 <= 255:
                section += [
                    _jmp(_JSET, _X32_SYSCALL_BIT, jt=1),
                    _jmp(_JGT, x86_nr, jt=to_enosys + 2, jf=1),
                    _jmp(_JGT, x32_nr, jt=to_enosys + 1),
                    _ja(to_filter),
                ]
            else:
                section += [
                    _jmp(_JSET, _X32_SYSCALL_BIT, jt=1),
                    _jmp(_JGT, x86_nr, jt=1, jf=2),
                    _jmp(_JGT, x32_nr, jt=0, jf=1),
                    _ret(_RET_ENOSYS),
                    _ja(to_filter),
                ]
        tail = section + tail
        starts[audit] = len(tail)
    tail = [_ja(len(tail))] + tail  # an arch without a section: to the filter
    for audit in sorted(starts):
        jump = len(tail) - starts[audit]
        if jump <= 255:
            tail = [_jmp(_JEQ, audit, jt=jump)] + tail
        else:
            tail = [_jmp(_JEQ, audit, jt=0, jf=1), _ja(jump)] + tail
    tail = [_ld(_OFF_ARCH)] + tail
    return b"".join(_INSN.pack(*insn) for insn in tail)


# ---------------------------------------------------------------------------
# features


def supported() -> dict:
    """The seccomp part of ``ocipy features`` (features-linux.md), probed live.

    actions: the ones the running kernel implements; archs: the ones the
    linked libseccomp knows; supportedFlags: the ones the kernel accepts.
    """
    native = _native()
    actions = [name for name in ACTION_NAMES if native.action_available(native.ACTIONS[name])]
    return {
        "enabled": True,
        "actions": sorted(actions),
        "operators": sorted(OPERATOR_NAMES),
        "archs": sorted(a for a in ARCH_NAMES if native.arch_token(a) is not None),
        "knownFlags": list(FLAGS),
        "supportedFlags": [name for name in FLAGS if _flag_supported(name)],
    }
