"""ocipy's runtime-spec schema, checked three ways.

1. Against the spec's own schema as Debian ships it (a 1.0.2+ snapshot, close
   to 1.1): hypothesis builds configs from the fields both schemas define,
   breaks them one field at a time, and both schemas must agree on the verdict.
   Where ours follows v1.2 or the spec text more closely they may disagree,
   but only as one of the DIVERGENCES listed below, each with a pinned example.
2. ConfigError paths and reasons for specific broken configs.
3. The example bundle is valid.
"""
from __future__ import annotations

import copy
import json
import re
import string
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from ocipy.config import json_path, load_config, validate_config, validate_state
from ocipy.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
OUR_SCHEMA = REPO / "src" / "ocipy" / "schema"
UPSTREAM_SCHEMA = Path("/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema")
BUSYBOX = REPO / "bundles" / "busybox"


def schema_registry(folder: Path) -> Registry:
    """Both schemas refer between their files by bare file name; register them so."""
    return Registry().with_resources(
        (p.name, Resource.from_contents(json.loads(p.read_text()),
                                        default_specification=DRAFT4))
        for p in folder.glob("*.json")
    )


def schema_validator(folder: Path, entry: str) -> Draft4Validator:
    registry = schema_registry(folder)
    return Draft4Validator(registry.contents(entry), registry=registry)


OURS = schema_validator(OUR_SCHEMA, "config-schema.json")
needs_upstream = pytest.mark.skipif(
    not (UPSTREAM_SCHEMA / "config-schema.json").exists(),
    reason="golang-github-opencontainers-specs-dev is not installed (make setup installs it)",
)
UPSTREAM = schema_validator(UPSTREAM_SCHEMA, "config-schema.json") if (
    UPSTREAM_SCHEMA / "config-schema.json").exists() else None


# --------------------------------------------------------------------------
# JSON documents: where things are and how to change them.

def json_type(value: Any) -> str:
    """The JSON Schema type name of a decoded JSON value (bool before int: True is an int)."""
    for kind, python_type in (("boolean", bool), ("integer", int), ("number", float),
                              ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, python_type):
            return kind
    return "null"


def sites(doc: Any, path: tuple = ()) -> list[tuple]:
    """Every place below the top of doc: a key of an object or an index of an array."""
    out = [path] if path else []
    children = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    for key, value in children:
        out += sites(value, path + (key,))
    return out


def parent_of(doc: Any, path: tuple | list) -> tuple[Any, str | int]:
    *parents, last = path
    for part in parents:
        doc = doc[part]
    return doc, last


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        parent, last = parent_of(doc, _parse(path))
        parent[last] = value
    return mutate


def _del(path: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        parent, last = parent_of(doc, _parse(path))
        del parent[last]
    return mutate


def _parse(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]


# --------------------------------------------------------------------------
# Where ours and the Debian copy may disagree, and why.

@dataclass(frozen=True)
class Divergence:
    stricter: str                    # "ours" or "upstream": which one rejects
    path: str                        # regex for json_path() of the error
    keyword: str                     # the JSON Schema keyword that fails
    example: Callable[[dict], None]  # breaks a copy of BASE this way
    why: str

    def explains(self, error: Any) -> bool:
        return (error.validator == self.keyword
                and re.fullmatch(self.path, json_path(error.absolute_path)) is not None)


ABSOLUTE = r"process\.cwd|hooks\.\w+\[\d+\]\.path|linux\.(namespaces|devices)\[\d+\]\.path" \
           r"|linux\.(maskedPaths|readonlyPaths)\[\d+\]"
THROTTLES = r"throttle(Read|Write)(Bps|IOPS)Device"

DIVERGENCES = [
    Divergence("ours", "", "required", _del("root"),
               "config.md: root is REQUIRED on every platform but Windows/Hyper-V"),
    Divergence("ours", "process", "required", _del("process.args"),
               "config.md: args needs at least one entry on non-Windows platforms"),
    Divergence("ours", r"process\.args", "minItems", _set("process.args", []),
               "config.md: args needs at least one entry on non-Windows platforms"),
    Divergence("ours", r"process\.user", "required", _del("process.user.gid"),
               "config.md POSIX user: uid and gid are REQUIRED"),
    Divergence("ours", ABSOLUTE, "pattern", _set("process.cwd", "relative"),
               "config.md / config-linux.md: these paths MUST be absolute"),
    Divergence("ours", "ociVersion", "pattern", _set("ociVersion", "1.2"),
               "config.md: ociVersion MUST be SemVer 2.0.0"),
    Divergence("ours", r"process\.rlimits\[\d+\]\.type", "enum",
               _set("process.rlimits.0.type", "RLIMIT_BOGUS"),
               "config.md: types that getrlimit(2) cannot map MUST be an error"),
    Divergence("ours", r"linux\.devices\[\d+\]", "anyOf", _del("linux.devices.0.major"),
               "config-linux.md: major and minor are REQUIRED unless type is p"),
    Divergence("ours", r"linux\.resources\.devices\[\d+\]\.type", "enum",
               _set("linux.resources.devices.0.type", "u"),
               "config-linux.md allowed device list: type is a, c or b"),
    Divergence("ours", r"linux\.resources\.devices\[\d+\]\.access", "pattern",
               _set("linux.resources.devices.0.access", "rwx"),
               "config-linux.md allowed device list: access combines r, w and m"),
    Divergence("ours", r"linux\.resources\.blockIO\.weightDevice\[\d+\]", "anyOf",
               _set("linux.resources.blockIO.weightDevice", [{"major": 8, "minor": 0}]),
               "config-linux.md: weight or leafWeight MUST be given"),
    Divergence("ours", rf"linux\.resources\.blockIO\.{THROTTLES}\[\d+\]", "required",
               _del("linux.resources.blockIO.throttleReadBpsDevice.0.rate"),
               "config-linux.md: rate is REQUIRED"),
    Divergence("ours", r"linux\.resources\.rdma.*", "anyOf",
               _set("linux.resources.rdma", {"mlx5_1": {}}),
               "config-linux.md: hcaHandles or hcaObjects MUST be given"),
    Divergence("ours", r"linux\.resources\.memory\.swappiness", "maximum",
               _set("linux.resources.memory.swappiness", 101),
               "config-linux.md: swappiness values are from 0 to 100"),
    Divergence("ours", r"linux\.seccomp", "dependencies", _del("linux.seccomp.listenerPath"),
               "config-linux.md: listenerMetadata MUST NOT be set without listenerPath"),
    Divergence("ours", r"mounts\[\d+\]", "dependencies", _del("mounts.1.gidMappings"),
               "config.md: uidMappings and gidMappings MUST be given together"),
    Divergence("ours", r"linux\.personality", "required", _del("linux.personality.domain"),
               "config-linux.md: personality domain is REQUIRED"),
    Divergence("ours", "annotations", "additionalProperties", _set("annotations", {"": "x"}),
               "config.md: annotation keys MUST NOT be empty (upstream leaves them unchecked)"),
    Divergence("ours", r"linux\.(sysctl|resources\.unified)\[\"(\\n)*\"\]", "type",
               _set("linux.sysctl", {"\n": 1}),
               "upstream's key pattern .{1,} skips keys made only of newlines; ours checks all"),
    Divergence("ours", r"linux\.(intelRdt\.memBwSchema|resources\.hugepageLimits\[\d+\]\.pageSize)",
               "pattern", _set("linux.intelRdt.memBwSchema", "MB:0=20\n"),
               "$ matches before a trailing newline; ours anchors at the true end"),
    Divergence("upstream", r"linux\.devices\[\d+\]\.fileMode", "maximum",
               _set("linux.devices.0.fileMode", 0o4755),
               "config-linux.md: fileMode is a uint32; upstream caps it at 512"),
    Divergence("upstream", r"linux\.namespaces\[\d+\]\.type", "enum",
               _set("linux.namespaces.0.type", "time"),
               "v1.2 adds the time namespace"),
    Divergence("upstream", r"linux\.seccomp\.architectures\[\d+\]", "enum",
               _set("linux.seccomp.architectures.0", "SCMP_ARCH_LOONGARCH64"),
               "v1.2.1 lists libseccomp 2.6 architectures"),
]

# Valid under both schemas, one section of the config each, together touching
# every field both define.  Small documents keep the exhaustive sweep fast.
MINIMAL: dict[str, Any] = {"ociVersion": "1.0.2", "root": {"path": "rootfs"}}
SECTIONS: dict[str, dict[str, Any]] = {
    "top": {
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "box",
        "domainname": "example.test",
        "annotations": {"com.example.key": "value"},
    },
    "process": {"process": {
        "terminal": True,
        "consoleSize": {"height": 25, "width": 80},
        "cwd": "/",
        "args": ["sh", "-c", "true"],
        "env": ["PATH=/bin"],
        "user": {"uid": 1, "gid": 1, "umask": 0o22, "additionalGids": [5]},
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                         "inheritable": [], "permitted": ["CAP_KILL"], "ambient": []},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}],
        "apparmorProfile": "acme",
        "selinuxLabel": "system_u:system_r:svirt_lxc_net_t:s0",
        "oomScoreAdj": 100,
        "noNewPrivileges": True,
    }},
    "mounts": {"mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]},
        {"destination": "/data", "source": "/srv", "options": ["rbind", "idmap"],
         "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
         "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]},
    ]},
    "hooks": {"hooks": {
        "prestart": [{"path": "/bin/fix-mounts", "args": ["fix-mounts", "a"], "env": ["K=v"],
                      "timeout": 5}],
        **{kind: [{"path": "/bin/true"}] for kind in (
            "createRuntime", "createContainer", "startContainer", "poststart", "poststop")},
    }},
    "linux": {"linux": {
        "namespaces": [{"type": "mount"}, {"type": "network", "path": "/var/run/netns/a"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 32000}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 32000}],
        "devices": [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229,
                     "fileMode": 0o666, "uid": 0, "gid": 0},
                    {"type": "p", "path": "/dev/fifo"}],
        "cgroupsPath": "/ocipy/c1",
        "rootfsPropagation": "slave",
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "mountLabel": "system_u:object_r:svirt_sandbox_file_t:s0",
        "intelRdt": {"closID": "guaranteed_group", "l3CacheSchema": "L3:0=7f0",
                     "memBwSchema": "MB:0=20", "enableCMT": True, "enableMBM": False},
        "personality": {"domain": "LINUX", "flags": []},
    }},
    "cgroup-devices": {"linux": {"resources": {
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}],
    }}},
    "memory-cpu": {"linux": {"resources": {
        "memory": {"limit": 536870912, "reservation": 1, "swap": -1, "kernel": -1,
                   "kernelTCP": -1, "swappiness": 60, "disableOOMKiller": False,
                   "useHierarchy": True, "checkBeforeUpdate": True},
        "cpu": {"shares": 1024, "quota": 100000, "burst": 1000, "period": 500000,
                "realtimeRuntime": 950000, "realtimePeriod": 1000000, "cpus": "2-3",
                "mems": "0", "idle": 0},
    }}},
    "blockio": {"linux": {"resources": {
        "blockIO": {"weight": 10, "leafWeight": 10,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 60}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}]},
    }}},
    "other-resources": {"linux": {"resources": {
        "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
        "pids": {"limit": 32771},
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        "unified": {"io.max": "259:0 rbps=2097152"},
    }}},
    "seccomp": {"linux": {"seccomp": {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "MKNOD=/dev/null",
        "syscalls": [{"names": ["getcwd", "chmod"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1,
                      "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_EQ"}]}],
    }}},
}


def deep_merge(*docs: dict) -> dict:
    out: dict[str, Any] = {}
    for doc in docs:
        for key, value in copy.deepcopy(doc).items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = deep_merge(out[key], value) if both else value
    return out


SWEEP_DOCS = {name: deep_merge(MINIMAL, section) for name, section in SECTIONS.items()}
BASE = deep_merge(MINIMAL, *SECTIONS.values())


def explained(error: Any, rules: list[Divergence]) -> bool:
    """By a rule, or an anyOf (upstream wraps namespaces in one) with a branch that
    fails only by rules."""
    if any(d.explains(error) for d in rules):
        return True
    branches: dict[int, list[Any]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    return any(all(explained(sub, rules) for sub in subs) for subs in branches.values())


def unexplained(errors: list[Any], stricter: str) -> list[str]:
    rules = [d for d in DIVERGENCES if d.stricter == stricter]
    return [f"{json_path(e.absolute_path)}: {e.validator}: {e.message}"
            for e in errors if not explained(e, rules)]


def assert_same_verdict(doc: dict) -> None:
    if OURS.is_valid(doc) == UPSTREAM.is_valid(doc):
        return
    ours = list(OURS.iter_errors(doc))
    theirs = list(UPSTREAM.iter_errors(doc))
    if ours:
        assert not unexplained(ours, "ours"), "only ocipy's schema rejects this config"
    else:
        assert not unexplained(theirs, "upstream"), "only the upstream schema rejects this config"


# --------------------------------------------------------------------------
# Configs in the subset both schemas define, valid under both.

u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
texts = st.text(max_size=6)
names = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=8)
abs_paths = st.lists(names, max_size=3).map(lambda parts: "/" + "/".join(parts))
string_lists = st.lists(texts, max_size=3)


def obj(required: dict, **optional: st.SearchStrategy) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(required, optional=optional)


def merged(*parts: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    return st.tuples(*parts).map(lambda dicts: {k: v for d in dicts for k, v in d.items()})


def small_lists(items: st.SearchStrategy, **kw: Any) -> st.SearchStrategy[list]:
    return st.lists(items, max_size=3, **kw)


semvers = st.builds("{}.{}.{}{}".format, st.integers(0, 2), st.integers(0, 12),
                    st.integers(0, 9), st.sampled_from(["", "-dev", "-rc.1", "+git.5cfc4c3"]))
id_mappings = small_lists(st.fixed_dictionaries({"containerID": u32, "hostID": u32, "size": u32}))
hooks = obj({"path": abs_paths}, args=string_lists, env=string_lists,
            timeout=st.integers(1, 2**31))
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")
mounts = merged(
    obj({"destination": texts}, source=texts, options=string_lists, type=texts),
    st.one_of(st.just({}), st.fixed_dictionaries({"uidMappings": id_mappings,
                                                  "gidMappings": id_mappings})),
)
RLIMITS = ["RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_NPROC",
           "RLIMIT_STACK", "RLIMIT_RTTIME"]
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
capabilities = obj({}, **{k: small_lists(st.sampled_from(["CAP_KILL", "CAP_CHOWN"]))
                          for k in CAPABILITY_SETS})
processes = obj(
    {"cwd": abs_paths, "args": st.lists(texts, min_size=1, max_size=3)},
    terminal=st.booleans(),
    consoleSize=st.fixed_dictionaries({"height": u64, "width": u64}),
    env=string_lists,
    user=obj({"uid": u32, "gid": u32}, umask=u32, additionalGids=small_lists(u32)),
    capabilities=capabilities,
    rlimits=small_lists(st.fixed_dictionaries({"type": st.sampled_from(RLIMITS), "soft": u64,
                                               "hard": u64}), unique_by=lambda r: r["type"]),
    apparmorProfile=texts,
    selinuxLabel=texts,
    oomScoreAdj=st.integers(-1000, 1000),
    noNewPrivileges=st.booleans(),
)
devices = st.one_of(
    obj({"type": st.sampled_from("cbu"), "path": abs_paths, "major": i64, "minor": i64},
        fileMode=st.integers(0, 0o777), uid=u32, gid=u32),
    obj({"type": st.just("p"), "path": abs_paths}, fileMode=st.integers(0, 0o777)),
)
device_numbers = {"major": i64, "minor": i64}
resources = obj(
    {},
    devices=small_lists(obj({"allow": st.booleans()}, type=st.sampled_from("acb"),
                            major=i64, minor=i64, access=st.text("rwm", max_size=3))),
    memory=obj({}, limit=i64, reservation=i64, swap=i64, kernel=i64, kernelTCP=i64,
               swappiness=st.integers(0, 100), disableOOMKiller=st.booleans(),
               useHierarchy=st.booleans(), checkBeforeUpdate=st.booleans()),
    cpu=obj({}, shares=u64, quota=i64, burst=u64, period=u64, realtimeRuntime=i64,
            realtimePeriod=u64, cpus=texts, mems=texts, idle=i64),
    blockIO=obj(
        {}, weight=u16, leafWeight=u16,
        weightDevice=small_lists(st.one_of(
            obj({**device_numbers, "weight": u16}, leafWeight=u16),
            obj({**device_numbers, "leafWeight": u16}))),
        **{f"throttle{rw}{unit}Device": small_lists(obj({**device_numbers, "rate": u64}))
           for rw in ("Read", "Write") for unit in ("Bps", "IOPS")},
    ),
    hugepageLimits=small_lists(st.fixed_dictionaries({
        "pageSize": st.builds("{}{}B".format, st.integers(1, 2048), st.sampled_from("KMG")),
        "limit": u64})),
    network=obj({}, classID=u32, priorities=small_lists(
        st.fixed_dictionaries({"name": texts, "priority": u32}))),
    pids=st.fixed_dictionaries({"limit": i64}),
    rdma=st.dictionaries(names, st.one_of(obj({"hcaHandles": u32}, hcaObjects=u32),
                                          obj({"hcaObjects": u32})), max_size=2),
    unified=st.dictionaries(names, texts, max_size=2),
)
SECCOMP_ACTIONS = ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW",
                   "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"]
seccomps = merged(
    obj({"defaultAction": st.sampled_from(SECCOMP_ACTIONS)},
        defaultErrnoRet=u32,
        architectures=small_lists(st.sampled_from(["SCMP_ARCH_X86", "SCMP_ARCH_X86_64",
                                                   "SCMP_ARCH_AARCH64", "SCMP_ARCH_RISCV64"])),
        flags=small_lists(st.sampled_from(["SECCOMP_FILTER_FLAG_TSYNC",
                                           "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])),
        syscalls=small_lists(obj(
            {"names": st.lists(names, min_size=1, max_size=2),
             "action": st.sampled_from(SECCOMP_ACTIONS)},
            errnoRet=u32,
            args=small_lists(obj({"index": u32, "value": u64,
                                  "op": st.sampled_from(["SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ"])},
                                 valueTwo=u64))))),
    st.one_of(st.just({}), obj({"listenerPath": abs_paths}, listenerMetadata=texts)),
)
linuxes = obj(
    {},
    namespaces=small_lists(obj({"type": st.sampled_from(
        ["mount", "pid", "network", "uts", "ipc", "user", "cgroup"])}, path=abs_paths),
        unique_by=lambda ns: ns["type"]),
    uidMappings=id_mappings,
    gidMappings=id_mappings,
    devices=small_lists(devices),
    resources=resources,
    cgroupsPath=texts,
    rootfsPropagation=st.sampled_from(["shared", "slave", "private", "unbindable"]),
    seccomp=seccomps,
    sysctl=st.dictionaries(names, texts, max_size=2),
    maskedPaths=small_lists(abs_paths),
    readonlyPaths=small_lists(abs_paths),
    mountLabel=texts,
    intelRdt=obj({}, closID=names, l3CacheSchema=texts,
                 memBwSchema=st.text(st.characters(blacklist_characters="\n"), max_size=6)
                 .map("MB:".__add__),
                 enableCMT=st.booleans(), enableMBM=st.booleans()),
    personality=obj({"domain": st.sampled_from(["LINUX", "LINUX32"])}, flags=string_lists),
)
configs = obj(
    {"ociVersion": semvers, "root": obj({"path": texts}, readonly=st.booleans())},
    process=processes,
    hostname=texts,
    domainname=texts,
    mounts=small_lists(mounts),
    hooks=obj({}, **{kind: small_lists(hooks) for kind in HOOK_KINDS}),
    annotations=st.dictionaries(names, texts, max_size=2),
    linux=linuxes,
)


# --------------------------------------------------------------------------
# Breaking one field.

OTHER_TYPES = ["text", 7, 1.5, True, None, [], {}]
# Just outside (and a few just inside) the bounds and enums both schemas use.
EDGE_INTS = [-1, 0, 101, 513, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64,
             -(2**63) - 1]
EDGE_STRINGS = ["", "bogus", "relative/path", "1.2", "RLIMIT_BOGUS", "SCMP_ACT_BOGUS",
                "SCMP_ARCH_SH", "time", "u", "rwx", "2XB", "MB:1\n", "rprivate"]


def other_types(value: Any) -> list[Any]:
    return [v for v in OTHER_TYPES if json_type(v) != json_type(value)]


@st.composite
def broken(draw: st.DrawFn, doc: dict) -> dict:
    """doc with one site removed, retyped, or set to an edge integer or string."""
    doc = copy.deepcopy(doc)
    by_kind = {"remove": sites(doc), "retype": sites(doc)}
    for kind, wanted in (("int", "integer"), ("string", "string")):
        by_kind[kind] = [p for p in by_kind["remove"]
                         if json_type(parent_of(doc, p)[0][p[-1]]) == wanted]
    kind = draw(st.sampled_from([k for k, paths in by_kind.items() if paths]))
    path = draw(st.sampled_from(by_kind[kind]))
    parent, last = parent_of(doc, path)
    old = parent[last]
    if kind == "remove":
        del parent[last]
    else:
        pool = {"retype": other_types(old), "int": EDGE_INTS, "string": EDGE_STRINGS}[kind]
        parent[last] = draw(st.sampled_from(pool))
    note(f"{kind} {json_path(path)}: {old!r} -> {parent[last]!r}" if kind != "remove"
         else f"remove {json_path(path)}")
    return doc


# No shrinking: the note() names the broken site, and shrinking nested configs
# through two validators takes minutes.
CROSS_CHECK = settings(max_examples=100, deadline=None,
                       phases=[Phase.explicit, Phase.reuse, Phase.generate],
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@needs_upstream
@CROSS_CHECK
@given(configs)
def test_generated_configs_are_valid_under_both_schemas(config: dict) -> None:
    assert not [e.message for e in OURS.iter_errors(config)]
    assert not [e.message for e in UPSTREAM.iter_errors(config)]


@needs_upstream
@CROSS_CHECK
@given(configs.flatmap(lambda config: st.lists(broken(config), min_size=4, max_size=4)))
def test_broken_configs_get_the_upstream_verdict(variants: list[dict]) -> None:
    """Four single breaks of each generated config, each checked on its own."""
    for config in variants:
        assert_same_verdict(config)


def every_mutation(doc: dict) -> Iterator[tuple[str, dict]]:
    """Each site of doc broken each way `broken` can, one at a time (and then restored)."""
    doc = copy.deepcopy(doc)
    for path in sites(doc):
        parent, last = parent_of(doc, path)
        old = parent[last]
        pool = other_types(old)
        pool += EDGE_INTS if json_type(old) == "integer" else []
        pool += EDGE_STRINGS if json_type(old) == "string" else []
        for new in pool:
            parent[last] = new
            yield f"{json_path(path)} = {new!r}", doc
        del parent[last]
        yield f"remove {json_path(path)}", doc
        if isinstance(parent, list):
            parent.insert(last, old)
        else:
            parent[last] = old


@needs_upstream
@pytest.mark.parametrize("section", SWEEP_DOCS)
def test_every_single_break_gets_the_upstream_verdict(section: str) -> None:
    """The deterministic twin of the hypothesis test: every site, every mutation."""
    for what, doc in every_mutation(SWEEP_DOCS[section]):
        try:
            assert_same_verdict(doc)
        except AssertionError as exc:
            raise AssertionError(f"{section}: {what}: {exc}") from None


@needs_upstream
@pytest.mark.parametrize("section", SWEEP_DOCS)
def test_sweep_documents_are_valid_under_both_schemas(section: str) -> None:
    assert not [e.message for e in OURS.iter_errors(SWEEP_DOCS[section])]
    assert not [e.message for e in UPSTREAM.iter_errors(SWEEP_DOCS[section])]


@needs_upstream
def test_base_config_is_valid_under_both_schemas() -> None:
    assert not [e.message for e in OURS.iter_errors(BASE)]
    assert not [e.message for e in UPSTREAM.iter_errors(BASE)]


@needs_upstream
@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda d: f"{d.stricter}:{d.path[:30]}")
def test_each_divergence_is_real_and_only_itself(divergence: Divergence) -> None:
    doc = copy.deepcopy(BASE)
    divergence.example(doc)
    strict, lax = (OURS, UPSTREAM) if divergence.stricter == "ours" else (UPSTREAM, OURS)
    errors = list(strict.iter_errors(doc))
    assert errors, f"{divergence.stricter} should reject: {divergence.why}"
    assert all(explained(e, [divergence]) for e in errors), [e.message for e in errors]
    assert lax.is_valid(doc)


# --------------------------------------------------------------------------
# The schema files themselves.

@pytest.mark.parametrize("name", sorted(p.name for p in OUR_SCHEMA.glob("*.json")))
def test_schema_file_is_draft4_and_every_ref_resolves(name: str) -> None:
    schema = json.loads((OUR_SCHEMA / name).read_text())
    Draft4Validator.check_schema(schema)
    resolver = schema_registry(OUR_SCHEMA).resolver(base_uri=name)
    for ref in _refs(schema):
        resolver.lookup(ref)  # raises Unresolvable for a typo


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [
            r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_importing_config_does_not_import_jsonschema() -> None:
    code = "import sys, ocipy.config; sys.exit('jsonschema' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], check=False,
                            env={"PYTHONPATH": str(REPO / "src")})
    assert result.returncode == 0


# --------------------------------------------------------------------------
# ConfigError path and reason.

def busybox() -> dict:
    return json.loads((BUSYBOX / "config.json").read_text())


def test_busybox_bundle_config_is_valid() -> None:
    assert load_config(str(BUSYBOX))["process"]["args"][0] == "sh"


def test_config_without_process_is_valid() -> None:
    doc = busybox()
    del doc["process"]
    validate_config(doc)


def test_spec_v1_2_fields_are_accepted() -> None:
    doc = busybox()
    doc["domainname"] = "example.test"
    doc["process"]["user"]["umask"] = 0o22
    doc["process"]["scheduler"] = {"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 20,
                                   "period": 30, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}
    doc["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 4}
    doc["process"]["execCPUAffinity"] = {"initial": "7", "final": "0-3,7"}
    doc["hooks"] = {kind: [{"path": "/bin/true", "timeout": 5}] for kind in HOOK_KINDS}
    doc["mounts"][0].update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
                            gidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}])
    doc["linux"].update(
        namespaces=doc["linux"]["namespaces"] + [{"type": "time"}],
        timeOffsets={"monotonic": {"secs": 172800, "nanosecs": 0}, "boottime": {"secs": -1}},
        intelRdt={"closID": "guaranteed_group", "l3CacheSchema": "L3:0=7f0;1=1f",
                  "memBwSchema": "MB:0=20;1=70", "enableCMT": True, "enableMBM": False},
        personality={"domain": "LINUX32", "flags": []},
        netDevices={"eth0": {"name": "container_eth0"}, "eth1": {}},
        seccomp={"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                 "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                 "listenerPath": "/run/agent.sock", "listenerMetadata": "MKNOD=/dev/null",
                 "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_SHEB"],
                 "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]},
        resources={"memory": {"limit": -1, "checkBeforeUpdate": True},
                   "cpu": {"quota": 20000, "burst": 10000, "period": 100000, "idle": 1},
                   "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
                   "unified": {"io.max": "259:0 rbps=2097152"}},
    )
    validate_config(doc)


ERRORS = [
    ("negative uid", _set("process.user.uid", -1),
     "process.user.uid", "-1 is less than the minimum of 0"),
    ("uid too big", _set("process.user.uid", 2**32),
     "process.user.uid", "4294967296 is greater than the maximum of 4294967295"),
    ("uid as text", _set("process.user.uid", "0"),
     "process.user.uid", '"0" is not an integer'),
    ("missing cwd", _del("process.cwd"),
     "process", "'cwd' is a required property"),
    ("missing args", _del("process.args"),
     "process", "'args' is a required property"),
    ("empty args", _set("process.args", []), "process.args", "must not be empty"),
    ("relative cwd", _set("process.cwd", "tmp"), "process.cwd", '"tmp" is not an absolute path'),
    ("options not a list", _set("mounts.2.options", "nosuid"),
     "mounts[2].options", '"nosuid" is not an array'),
    ("mount without destination", _del("mounts.0.destination"),
     "mounts[0]", "'destination' is a required property"),
    ("unknown namespace", _set("linux.namespaces.1.type", "net"),
     "linux.namespaces[1].type",
     '"net" is not one of "mount", "pid", "network", "uts", "ipc", "user", "cgroup", "time"'),
    ("duplicate namespace", lambda d: d["linux"]["namespaces"].append({"type": "ipc"}),
     "linux.namespaces[6].type", '"ipc" is already given by linux.namespaces[2]'),
    ("duplicate rlimit", lambda d: d["process"]["rlimits"].append(
        {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}),
     "process.rlimits[1].type", '"RLIMIT_NOFILE" is already given by process.rlimits[0]'),
    ("unknown rlimit", _set("process.rlimits.0.type", "RLIMIT_FILES"),
     "process.rlimits[0].type", '"RLIMIT_FILES" is not one of "RLIMIT_AS", "RLIMIT_CORE", ...'),
    ("missing ociVersion", _del("ociVersion"),
     "", "'ociVersion' is a required property"),
    ("missing root", _del("root"), "", "'root' is a required property"),
    ("bad ociVersion", _set("ociVersion", "v1"),
     "ociVersion", '"v1" is not a SemVer 2.0.0 version such as "1.2.0"'),
    ("process not an object", _set("process", ["sh"]), "process", '["sh"] is not an object'),
    ("sysctl value not a string", _set("linux.sysctl", {"net.ipv4.ip_forward": 1}),
     'linux.sysctl["net.ipv4.ip_forward"]', "1 is not a string"),
    ("char device without numbers", _set("linux.devices", [{"type": "c", "path": "/dev/x"}]),
     "linux.devices[0]", "'major' is a required property"),
    ("unknown device type", _set("linux.devices", [{"type": "x", "path": "/dev/x"}]),
     "linux.devices[0].type", '"x" is not one of "c", "b", "u", "p"'),
    ("weight device without weights",
     _set("linux.resources", {"blockIO": {"weightDevice": [{"major": 8, "minor": 0}]}}),
     "linux.resources.blockIO.weightDevice[0]",
     "at least one of 'weight', 'leafWeight' is required"),
    ("pids without limit", _set("linux.resources", {"pids": {}}),
     "linux.resources.pids", "'limit' is a required property"),
    ("seccomp metadata without listener",
     _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}),
     "linux.seccomp", "'listenerPath' is a dependency of 'listenerMetadata'"),
    ("seccomp unknown action", _set("linux.seccomp", {"defaultAction": "SCMP_ACT_DENY"}),
     "linux.seccomp.defaultAction", '"SCMP_ACT_DENY" is not one of "SCMP_ACT_KILL", ...'),
    ("empty syscall names", _set("linux.seccomp", {
        "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_LOG"}]}),
     "linux.seccomp.syscalls[0].names", "must not be empty"),
    ("unknown clock", _set("linux.timeOffsets", {"realtime": {"secs": 1}}),
     "linux.timeOffsets", 'unknown key "realtime", expected "monotonic" or "boottime"'),
    ("io priority out of range", _set("process.ioPriority",
                                       {"class": "IOPRIO_CLASS_BE", "priority": 8}),
     "process.ioPriority.priority", "8 is greater than the maximum of 7"),
    ("scheduler without policy", _set("process.scheduler", {"nice": 1}),
     "process.scheduler", "'policy' is a required property"),
    ("hook timeout zero", _set("hooks", {"poststop": [{"path": "/bin/true", "timeout": 0}]}),
     "hooks.poststop[0].timeout", "0 is less than the minimum of 1"),
    ("empty annotation key", _set("annotations", {"": "x"}),
     "annotations", "keys must not be empty"),
    ("annotation key with dots", _set("annotations", {"com.example.gpu": 2}),
     'annotations["com.example.gpu"]', "2 is not a string"),
    ("shallowest error wins", lambda d: (d.__setitem__("hostname", 1),
                                         d["process"]["user"].__setitem__("uid", -1)),
     "hostname", "1 is not a string"),
]


@pytest.mark.parametrize("mutate,path,reason", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_config_error_names_path_and_reason(mutate: Callable, path: str, reason: str) -> None:
    """A reason ending in "..." is matched by its start (long enum lists)."""
    doc = busybox()
    mutate(doc)
    with pytest.raises(ConfigError) as caught:
        validate_config(doc)
    assert caught.value.path == path
    if reason.endswith("..."):
        assert caught.value.reason.startswith(reason[:-3])
    else:
        assert caught.value.reason == reason
    prefix = f"{path}: " if path else ""
    assert str(caught.value) == f"invalid config.json: {prefix}{caught.value.reason}"


def test_missing_config_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path))
    assert (caught.value.path, caught.value.reason) == (
        "", f'config.json: no such file in the bundle "{tmp_path}": '
            "is --bundle the bundle directory?")


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{\n  "ociVersion": "1.2.0",\n  "root": }\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path))
    assert caught.value.reason == "invalid JSON at line 3 column 11: expecting value"


def test_config_json_that_is_not_an_object(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path))
    assert (caught.value.path, caught.value.reason) == ("", "[] is not an object")


def test_state_needs_pid_while_running() -> None:
    state = {"ociVersion": "1.2.0", "id": "c1", "status": "running", "bundle": "/b"}
    with pytest.raises(ConfigError) as caught:
        validate_state(state)
    assert (caught.value.path, caught.value.reason) == ("", "'pid' is a required property")
    validate_state({**state, "pid": 42})
    validate_state({**state, "status": "stopped"})
