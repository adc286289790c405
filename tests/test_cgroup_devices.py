"""Device cgroup rules: the v1 lines and the v2 eBPF program.

The program is checked by running it in a small eBPF interpreter written
here, against the rules' semantics written here a second way; the real
kernel then loads it (verifier) and enforces it on a process in a cgroup2
directory, and the v1 devices controller gets the same rules.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocipy.cgroups import devices as dev
from ocipy.errors import ConfigError

# ---- a tiny eBPF interpreter (only what a device program may use) --------

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1


def _sext32(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


def run_program(code: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    """Execute a BPF_PROG_TYPE_CGROUP_DEVICE program on one request; returns R0."""
    assert len(code) % 8 == 0 and code
    insns = [struct.unpack("<BBhi", code[i:i + 8]) for i in range(0, len(code), 8)]
    ctx = struct.pack("<III", (access << 16) | dev_type, major, minor)
    regs: list[int | None] = [None] * 11
    regs[1] = "ctx"  # type: ignore[assignment]
    pc = steps = 0
    while True:
        steps += 1
        assert steps <= 10 * len(insns), "the program loops"
        assert 0 <= pc < len(insns), f"pc {pc} out of the program"
        op, regbyte, off, imm = insns[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1

        def val(r, op=op):
            assert regs[r] is not None, f"R{r} read before it is written"
            assert regs[r] != "ctx" or op == 0x61
            return regs[r]

        if op == 0x61:  # ldx w
            assert regs[src] == "ctx" and off in (0, 4, 8)
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op == 0x54:  # and32 imm
            regs[dst] = (val(dst) & imm) & MASK32
        elif op == 0x74:  # rsh32 imm
            regs[dst] = ((val(dst) & MASK32) >> imm) & MASK32
        elif op == 0x57:  # and64 imm (sign-extended)
            regs[dst] = val(dst) & (imm & MASK64)
        elif op == 0xB7:  # mov64 imm
            regs[dst] = imm & MASK64
        elif op == 0xBF:  # mov64 reg
            regs[dst] = val(src)
        elif op == 0xBC:  # mov32 reg
            regs[dst] = val(src) & MASK32
        elif op in (0x15, 0x55, 0x45, 0x5D):
            left = val(dst)
            right = val(src) if op == 0x5D else imm & MASK64
            taken = {0x15: left == right, 0x55: left != right, 0x5D: left != right,
                     0x45: bool(left & right)}[op]
            assert off >= 0, "backward jump"
            if taken:
                pc += off
        elif op == 0x05:
            pc += off
        elif op == 0x95:
            return val(0)
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


# ---- the semantics, written independently of devices.is_allowed -----------

def expected(rules: list[dev.Rule], kind: str, major: int, minor: int, access: str) -> bool:
    """Apply the rules in order to a per-access-bit table; unset bits are denied."""
    table = {"r": False, "w": False, "m": False}
    for rule in rules:
        if rule.type != "a" and rule.type != kind:
            continue
        if rule.major is not None and rule.major != major:
            continue
        if rule.minor is not None and rule.minor != minor:
            continue
        for bit in rule.access:
            table[bit] = rule.allow
    return all(table[bit] for bit in access)


accesses = st.sets(st.sampled_from("rwm"), min_size=1).map(lambda s: "".join(sorted(s)))
rules_strategy = st.lists(st.builds(
    dev.Rule,
    allow=st.booleans(),
    type=st.sampled_from("acb"),
    major=st.one_of(st.none(), st.sampled_from([1, 5, 7])),
    minor=st.one_of(st.none(), st.sampled_from([0, 3, 11])),
    access=accesses.map(lambda a: "".join(b for b in "rwm" if b in a)),
), max_size=8)
requests = st.tuples(st.sampled_from("cb"), st.sampled_from([1, 5, 7, 8]),
                     st.sampled_from([0, 3, 11, 12]), accesses)


def decide(rules, kind, major, minor, access) -> bool:
    code = dev.encode(dev.device_program(rules))
    bits = sum(dev.ACCESS_BITS[b] for b in access)
    return run_program(code, dev.DEV_TYPES[kind], bits, major, minor) == 1


@settings(max_examples=400, deadline=None)
@given(rules_strategy, requests)
def test_program_decides_like_the_rules_applied_in_order(rules, request):
    kind, major, minor, access = request
    want = expected(rules, kind, major, minor, access)
    assert dev.is_allowed(rules, kind, major, minor, access) == want
    assert decide(rules, kind, major, minor, access) == want


@settings(max_examples=100, deadline=None)
@given(rules_strategy, requests)
def test_the_defaults_come_after_the_users_rules(rules, request):
    kind, major, minor, access = request
    user = [{"allow": r.allow, "type": r.type, "major": r.major, "minor": r.minor,
             "access": r.access} for r in rules]
    full = dev.container_rules(user)
    assert full[:len(rules)] == rules
    assert full[len(rules):] == list(dev.DEFAULT_RULES)
    assert decide(full, kind, major, minor, access) == expected(full, kind, major, minor, access)


def test_a_later_rule_overrides_an_earlier_one_per_access_bit():
    rules = [dev.Rule(False, "a", None, None, "rwm"), dev.Rule(True, "c", 10, 237, "rw"),
             dev.Rule(False, "c", 10, 237, "w")]
    assert decide(rules, "c", 10, 237, "r")
    assert not decide(rules, "c", 10, 237, "w")
    assert not decide(rules, "c", 10, 237, "rw")  # one denied bit denies the request
    assert not decide(rules, "c", 10, 237, "m")
    assert not decide(rules, "b", 10, 237, "r")


def test_a_full_wildcard_makes_the_earlier_rules_unreachable():
    short = dev.device_program([dev.Rule(True, "a", None, None, "rwm")])
    longer = dev.device_program([dev.Rule(False, "c", 1, 3, "rwm"),
                                 dev.Rule(True, "a", None, None, "rwm")])
    assert len(short) == len(longer)
    assert decide([dev.Rule(False, "c", 1, 3, "rwm"), dev.Rule(True, "a", None, None, "rwm")],
                  "c", 1, 3, "rw")


def test_no_rule_denies_everything():
    assert not decide([], "c", 1, 3, "r")


def test_device_numbers_no_device_can_have_are_ignored():
    rules = [dev.Rule(True, "c", 2**31, None, "rwm")]
    assert not decide(rules, "c", 0, 0, "r")


def test_rules_are_parsed_with_their_json_paths():
    rules = dev.parse_rules([{"allow": True, "type": "c", "major": 1, "minor": -1,
                              "access": "mwr"}, {"allow": False, "access": "rwm"}])
    assert rules == [dev.Rule(True, "c", 1, None, "rwm"), dev.Rule(False, "a", None, None, "rwm")]
    with pytest.raises(ConfigError) as err:
        dev.parse_rules([{"allow": True, "access": "rwm"}, {"allow": False}])
    assert err.value.path == "linux.resources.devices[1].access"
    with pytest.raises(ConfigError) as err:
        dev.parse_rules([{"allow": True, "type": "p", "access": "r"}])
    assert err.value.path == "linux.resources.devices[0].type"


def test_v1_lines_keep_the_rule_order_after_a_deny_all():
    rules = [dev.Rule(True, "c", 1, None, "rw"), dev.Rule(False, "c", 1, 3, "w"),
             dev.Rule(True, "a", None, 5, "m"), dev.Rule(True, "a", None, None, "rwm")]
    assert dev.v1_lines(rules) == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:* rw"),
        ("devices.deny", "c 1:3 w"),
        ("devices.allow", "c *:5 m"),  # a narrow "a" rule is written for both types
        ("devices.allow", "b *:5 m"),
        ("devices.allow", "a"),
    ]


def test_encoding_is_struct_bpf_insn():
    insn = dev.Insn(dev.JMP_JNE_K, dst=dev.R4, src=0, off=3, imm=-2)
    assert dev.encode([insn]) == struct.pack("<BBhi", 0x55, 0x04, 3, -2)
    assert dev.encode([dev.Insn(dev.ALU64_MOV_X, dev.R6, dev.R3)])[1] == 0x36


# ---- the real kernel ---------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

UNIFIED = "/sys/fs/cgroup/unified" if os.path.exists(
    "/sys/fs/cgroup/unified/cgroup.controllers") else "/sys/fs/cgroup"
V1_DEVICES = "/sys/fs/cgroup/devices"


def _bpf():
    try:
        from ocipy._native import bpf
    except ImportError:
        pytest.skip("ocipy._native.bpf is not built")
    return bpf


@needs_root
@settings(max_examples=30, deadline=None)
@given(rules_strategy)
def test_the_kernel_verifier_accepts_every_generated_program(rules):
    bpf = _bpf()
    fd = bpf.prog_load(dev.encode(dev.device_program(dev.container_rules(
        [r._asdict() for r in rules]))))
    os.close(fd)


# rules a container could have, and what a process under them gets
RULES = [{"allow": False, "access": "rwm"},
         {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "rw"},
         {"allow": False, "type": "c", "major": 10, "minor": 237, "access": "w"},
         {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]
PROBES = [("/dev/loop-control", "O_RDONLY", True), ("/dev/loop-control", "O_WRONLY", False),
          ("/dev/loop-control", "O_RDWR", False), ("/dev/kmsg", "O_RDONLY", True),
          ("/dev/kmsg", "O_WRONLY", False), ("/dev/null", "O_RDWR", True),  # a default
          ("/dev/loop0", "O_RDONLY", False)]

PROBE = r"""
import json, os, sys
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
out = []
for path, flag in json.loads(sys.argv[2]):
    try:
        os.close(os.open(path, getattr(os, flag)))
        out.append(True)
    except PermissionError:
        out.append(False)
print(json.dumps(out))
"""


def _probe(procs_file: str) -> tuple[list[bool], list[bool]]:
    probes = [(path, flag) for path, flag, _ok in PROBES if os.path.exists(path)]
    if len(probes) < 5:
        pytest.skip("the probe devices are missing")
    done = subprocess.run([sys.executable, "-c", PROBE, procs_file, json.dumps(probes)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    want = [ok for path, _flag, ok in PROBES if os.path.exists(path)]
    return got, want


@needs_root
def test_the_v2_program_is_enforced_on_a_process_in_the_cgroup():
    bpf = _bpf()
    if not os.path.exists(os.path.join(UNIFIED, "cgroup.procs")):
        pytest.skip("no cgroup2 mount")
    path = os.path.join(UNIFIED, f"ocipy-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            dev.attach_program(fd, dev.container_rules(RULES))
            dev.attach_program(fd, dev.container_rules(RULES))  # again: replaces, no second one
            assert len(bpf.prog_query(fd)[0]) == 1
        finally:
            os.close(fd)
        got, want = _probe(os.path.join(path, "cgroup.procs"))
        assert got == want
    finally:
        os.rmdir(path)


@needs_root
def test_the_v1_rules_are_enforced_on_a_process_in_the_cgroup():
    if not os.path.exists(os.path.join(V1_DEVICES, "devices.list")):
        pytest.skip("no v1 devices controller")
    path = os.path.join(V1_DEVICES, f"ocipy-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)
    try:
        for name, line in dev.v1_lines(dev.container_rules(RULES)):
            with open(os.path.join(path, name), "w") as f:
                f.write(line)
        with open(os.path.join(path, "devices.list")) as f:
            listed = f.read().split("\n")
        assert listed[:2] == ["c 10:237 r", "c 1:11 r"]
        got, want = _probe(os.path.join(path, "cgroup.procs"))
        assert got == want
    finally:
        os.rmdir(path)
