"""The device cgroup: linux.resources.devices as v1 rules or a v2 eBPF program.

Semantics (config-linux.md "Allowed Device List": entries apply in the
listed order): a request for some access bits on a device is allowed when,
for every requested bit, the *last* rule that matches the device and names
that bit allows it; a bit no rule names is denied.  ocipy appends runc's
default allowed devices *after* the user's rules, so they stay usable (as
in runc) and the user's rules keep their order.

cgroup v1 gets the same list as lines: ``a`` to devices.deny, then each
rule to devices.allow or devices.deny.  The kernel's v1 exception list
approximates the semantics above; where it cannot (a deny cannot punch a
hole into a wildcard allow in its allow-list mode), the kernel's v1
behaviour applies.

cgroup v2 has no device files: a BPF_PROG_TYPE_CGROUP_DEVICE program
decides each access.  The generator below is pure Python (the layout of
runc's devicefilter and crun's ebpf.c: load type/access/major/minor, one
block per rule), except that it walks the rules from the last to the first
and tracks the still-undecided access bits in R6, which gives exactly the
per-bit "last match wins" rule above.
"""
from __future__ import annotations

import errno

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy._record import record
from ocipy.errors import ConfigError, OcipyError


# allow: bool; type: "a", "c" or "b"; major, minor: int, or None for any;
# access: a non-empty subset of "rwm"  (namedtuple: typing costs ~9 ms)
Rule = record("Rule", "allow type major minor access")


# runc's specconv.AllowedDevices (crun has the same list), appended after the
# user's rules: mknod of anything, then the devices every container gets.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(True, "c", None, None, "m"),
    Rule(True, "b", None, None, "m"),
    Rule(True, "c", 1, 3, "rwm"),  # /dev/null
    Rule(True, "c", 1, 8, "rwm"),  # /dev/random
    Rule(True, "c", 1, 7, "rwm"),  # /dev/full
    Rule(True, "c", 5, 0, "rwm"),  # /dev/tty
    Rule(True, "c", 1, 5, "rwm"),  # /dev/zero
    Rule(True, "c", 1, 9, "rwm"),  # /dev/urandom
    Rule(True, "c", 136, None, "rwm"),  # /dev/pts/*
    Rule(True, "c", 5, 2, "rwm"),  # /dev/ptmx
    Rule(True, "c", 10, 200, "rwm"),  # /dev/net/tun
)


def parse_rules(entries: list[dict] | None, json_path: str = "linux.resources.devices"
                ) -> list[Rule]:
    """linux.resources.devices -> Rules, checking what the schema cannot."""
    rules = []
    for index, entry in enumerate(entries or ()):
        where = f"{json_path}[{index}]"
        kind = entry.get("type") or "a"
        if kind not in ("a", "c", "b"):
            raise ConfigError(f"{where}.type", f'invalid cgroup device type "{kind}"')
        access = entry.get("access")
        if not access:
            # runc: "device access at N field cannot be empty"
            raise ConfigError(f"{where}.access", "cannot be empty")
        if set(access) - set("rwm"):
            raise ConfigError(f"{where}.access", f'"{access}" is not a combination of r, w and m')
        numbers = []
        for field in ("major", "minor"):
            value = entry.get(field)
            if value is not None and value < 0:
                value = None  # -1 is the Go runtime's "wildcard"
            if value is not None and value > 0xFFFFFFFF:
                raise ConfigError(f"{where}.{field}", f"{value} is out of range")
            numbers.append(value)
        canonical = "".join(bit for bit in "rwm" if bit in access)
        rules.append(Rule(bool(entry.get("allow")), kind, numbers[0], numbers[1], canonical))
    return rules


def container_rules(entries: list[dict] | None) -> list[Rule]:
    """The rules a container gets: the user's, in order, then the defaults."""
    return parse_rules(entries) + list(DEFAULT_RULES)


def _matches_all(rule: Rule) -> bool:
    return rule.type == "a" and rule.major is None and rule.minor is None


def is_allowed(rules: list[Rule], kind: str, major: int, minor: int, access: str) -> bool:
    """The reference semantics: per requested bit, the last matching rule decides."""
    for bit in access:
        decision = False
        for rule in rules:
            if (rule.type in ("a", kind) and rule.major in (None, major)
                    and rule.minor in (None, minor) and bit in rule.access):
                decision = rule.allow
        if not decision:
            return False
    return True


# ---- cgroup v1 -----------------------------------------------------------

def v1_lines(rules: list[Rule]) -> list[tuple[str, str]]:
    """(file, line) writes for a v1 devices cgroup, in order.

    ``a`` resets the whole list on v1, so only a rule matching every device
    with every access becomes ``a``; a narrower ``type: a`` rule is written
    once for char and once for block devices.
    """
    writes = [("devices.deny", "a")]
    for rule in rules:
        target = "devices.allow" if rule.allow else "devices.deny"
        if _matches_all(rule) and rule.access == "rwm":
            writes.append((target, "a"))
            continue
        major = "*" if rule.major is None else str(rule.major)
        minor = "*" if rule.minor is None else str(rule.minor)
        for kind in (("c", "b") if rule.type == "a" else (rule.type,)):
            writes.append((target, f"{kind} {major}:{minor} {rule.access}"))
    return writes


# ---- cgroup v2: the eBPF program ----------------------------------------

# linux/bpf.h: struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
# where access_type = (access << 16) | type
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
ACCESS_BITS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
ALL_ACCESS = ACC_MKNOD | ACC_READ | ACC_WRITE
DEV_TYPES = {"c": DEV_CHAR, "b": DEV_BLOCK}

# opcodes (linux/bpf_common.h + linux/bpf.h)
LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
ALU32_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
ALU32_RSH_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
ALU64_AND_K = 0x57  # BPF_ALU64 | BPF_AND | BPF_K
ALU64_MOV_K = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
ALU64_MOV_X = 0xBF  # BPF_ALU64 | BPF_MOV | BPF_X
JMP_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
JMP_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
JMP_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
JMP_EXIT = 0x95  # BPF_JMP | BPF_EXIT

R0, R1, R2, R3, R4, R5, R6 = range(7)


# one eBPF instruction
Insn = record("Insn", "code dst src off imm", defaults=(0, 0, 0, 0))


_DENY, _ALLOW = "deny", "allow"


def device_program(rules: list[Rule]) -> list[Insn]:
    """A BPF_PROG_TYPE_CGROUP_DEVICE program that enforces ``rules`` (see the module doc).

    R2 = device type, R3 = requested access, R4 = major, R5 = minor,
    R6 = access bits no rule has decided yet.  Rules are visited from the
    last to the first: a matching deny that names a pending bit rejects, a
    matching allow clears its bits and accepts once none is pending.
    Whatever is still pending after the first rule is denied.
    """
    body: list[tuple[Insn, str | None]] = [
        (Insn(LDX_MEM_W, R2, R1, 0), None),
        (Insn(ALU32_AND_K, R2, imm=0xFFFF), None),
        (Insn(LDX_MEM_W, R3, R1, 0), None),
        (Insn(ALU32_RSH_K, R3, imm=16), None),
        (Insn(LDX_MEM_W, R4, R1, 4), None),
        (Insn(LDX_MEM_W, R5, R1, 8), None),
        (Insn(ALU64_MOV_X, R6, R3), None),
    ]
    for rule in reversed(rules):
        if any(n is not None and n > 0x7FFFFFFF for n in (rule.major, rule.minor)):
            # No device has such a number (majors have 12 bits, minors 20), and
            # a 64-bit compare with a sign-extended immediate could not name it.
            continue
        bits = sum(ACCESS_BITS[c] for c in rule.access)
        block: list[tuple[Insn, str | None]] = []
        if rule.type != "a":
            block.append((Insn(JMP_JNE_K, R2, imm=DEV_TYPES[rule.type]), "next"))
        if rule.major is not None:
            block.append((Insn(JMP_JNE_K, R4, imm=_s32(rule.major)), "next"))
        if rule.minor is not None:
            block.append((Insn(JMP_JNE_K, R5, imm=_s32(rule.minor)), "next"))
        if rule.allow:
            block.append((Insn(ALU64_AND_K, R6, imm=_s32(~bits & 0xFFFFFFFF)), None))
            block.append((Insn(JMP_JEQ_K, R6, imm=0), _ALLOW))
        else:
            block.append((Insn(JMP_JSET_K, R6, imm=bits), _DENY))
        # resolve this block's "next" to the first instruction after it
        end = len(body) + len(block)
        body.extend((insn, end if target == "next" else target) for insn, target in block)
        if _matches_all(rule) and bits == ALL_ACCESS:
            break  # every earlier rule is unreachable
    deny_at = len(body)
    body.append((Insn(ALU64_MOV_K, R0, imm=0), None))
    body.append((Insn(JMP_EXIT), None))
    allow_at = len(body)
    body.append((Insn(ALU64_MOV_K, R0, imm=1), None))
    body.append((Insn(JMP_EXIT), None))

    program = []
    for pc, (insn, target) in enumerate(body):
        if target is not None:
            where = {_DENY: deny_at, _ALLOW: allow_at}.get(target, target)
            insn = insn._replace(off=where - pc - 1)
        program.append(insn)
    return program


def _s32(value: int) -> int:
    """An unsigned 32-bit immediate as the signed field the instruction stores."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def encode(program: list[Insn]) -> bytes:
    """struct bpf_insn[] in host byte order (dst_reg is the low nibble on little-endian)."""
    import struct  # only v2 hosts load a program

    little = struct.pack("=H", 1) == b"\x01\x00"
    out = bytearray()
    for insn in program:
        regs = (insn.src << 4 | insn.dst) if little else (insn.dst << 4 | insn.src)
        out += struct.pack("=BBhi", insn.code, regs, insn.off, insn.imm)
    return bytes(out)


def attach_program(dir_fd: int, rules: list[Rule], *, cgroup: str = "") -> None:
    """Load the program for ``rules`` and make it the only device program of the cgroup.

    As crun does: with exactly one program attached already it is replaced
    atomically (BPF_F_REPLACE); otherwise the new one is attached with
    BPF_F_ALLOW_MULTI and the old ones are detached after, so the cgroup is
    never left without a filter.
    """
    from ocipy._native import bpf

    what = f"device cgroup program for {cgroup or 'the container'}"
    try:
        prog_fd = bpf.prog_load(encode(device_program(rules)), "GPL")
    except OSError as exc:
        raise OcipyError(f"load {what}", exc.strerror or str(exc), errno=exc.errno) from None
    can_replace = True
    try:
        for _attempt in range(20):
            try:
                old, _flags = bpf.prog_query(dir_fd, bpf.CGROUP_DEVICE)
            except OSError as exc:
                raise OcipyError(f"query {what}", os.strerror(exc.errno or 0).lower(),
                                 errno=exc.errno) from None
            replace_fd = -1
            if len(old) == 1 and can_replace:
                try:
                    replace_fd = bpf.prog_get_fd_by_id(old[0])
                except OSError:
                    continue  # detached meanwhile: look again
            try:
                flags = bpf.F_ALLOW_MULTI | (bpf.F_REPLACE if replace_fd >= 0 else 0)
                bpf.prog_attach(prog_fd, dir_fd, bpf.CGROUP_DEVICE, flags, replace_fd)
            except OSError as exc:
                if replace_fd >= 0 and exc.errno == errno.EINVAL:
                    can_replace = False  # no BPF_F_REPLACE before Linux 5.6
                    continue
                if replace_fd >= 0 and exc.errno == errno.ENOENT:
                    continue  # another update replaced it first: look again
                raise OcipyError(f"attach {what}", os.strerror(exc.errno or 0).lower(),
                                 errno=exc.errno) from None
            finally:
                if replace_fd >= 0:
                    os.close(replace_fd)
            if replace_fd < 0:
                _detach(bpf, dir_fd, old, what)
            return
        raise OcipyError(f"attach {what}", "the cgroup's programs kept changing")
    finally:
        os.close(prog_fd)


def _detach(bpf, dir_fd: int, prog_ids: list[int], what: str) -> None:
    for prog_id in prog_ids:
        try:
            fd = bpf.prog_get_fd_by_id(prog_id)
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # gone already
                continue
            raise OcipyError(f"detach the old {what}", os.strerror(exc.errno or 0).lower(),
                             errno=exc.errno) from None
        try:
            bpf.prog_detach(fd, dir_fd, bpf.CGROUP_DEVICE)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise OcipyError(f"detach the old {what}", os.strerror(exc.errno or 0).lower(),
                                 errno=exc.errno) from None
        finally:
            os.close(fd)
