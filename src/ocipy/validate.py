"""`ocipy validate`: every problem of a bundle, without creating anything.

First the schema (all violations, worded as `create` words the first one),
then what the schema cannot say: repeated namespace or rlimit types,
overlapping id mappings, relative mount destinations, words that are no
mount option, unknown capabilities, devices outside /dev, a missing rootfs,
a program not found on the process's PATH inside the rootfs, hooks that are
not absolute, missing or not executable, soft rlimits above hard ones; and
last whatever `create`'s own planner (plan.py, cgroups/resources.py)
refuses.  Each problem has its JSON path and, where one fits, a suggestion.
"""
from __future__ import annotations

import difflib
import os

from ocipy.errors import ConfigError, OcipyError

# what people write for a mount option, and what they mean
_OPTION_TYPOS = {"readonly": "ro", "read-only": "ro", "read_only": "ro", "readwrite": "rw",
                 "read-write": "rw", "rbinds": "rbind", "binds": "bind", "recursive": "rbind",
                 "no-exec": "noexec", "no-suid": "nosuid", "no-dev": "nodev",
                 "nosetuid": "nosuid", "private-rec": "rprivate"}

# options a filesystem takes as data, without "=": not suspicious there
_FS_WORDS = {
    "devpts": {"newinstance"},
    "tmpfs": {"noswap"},
    "proc": set(),
    "cgroup": {"all", "none", "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer",
               "net_cls", "net_prio", "blkio", "perf_event", "hugetlb", "pids", "rdma",
               "misc", "noprefix", "xattr", "nsdelegate", "memory_recursiveprot",
               "memory_localevents", "favordynmods"},
    "cgroup2": {"nsdelegate", "memory_recursiveprot", "memory_localevents", "favordynmods"},
    "overlay": {"userxattr", "volatile"},
}


class Problem:
    __slots__ = ("path", "message", "suggestion")

    def __init__(self, path: str, message: str, suggestion: str | None = None) -> None:
        self.path = path
        self.message = message
        self.suggestion = suggestion

    def line(self) -> str:
        where = self.path or "config.json"
        tail = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"{where}: {self.message}{tail}"

    def to_dict(self) -> dict:
        return {"path": self.path, "message": self.message, "suggestion": self.suggestion}


def validate(bundle: str, config_file: str | None = None) -> tuple[str, list[Problem]]:
    """(the config file checked, its problems): an empty list means valid."""
    from ocipy import config as cfg

    bundle = os.path.abspath(bundle)
    path = os.path.abspath(config_file) if config_file else os.path.join(bundle, "config.json")
    try:
        raw = cfg._read_regular_file(path)
    except OSError as exc:
        why = "no such file" if exc.errno == 2 else os.strerror(exc.errno or 0).lower()
        return path, [Problem("", why)]
    try:
        doc = cfg.parse_json(raw)
    except ConfigError as exc:
        return path, [Problem(exc.path, exc.reason)]
    if not isinstance(doc, dict):
        return path, [Problem("", "the document is not a JSON object")]

    problems: list[Problem] = []
    seen: dict[tuple[str, str], Problem] = {}

    def add(problem: Problem) -> None:
        key = (problem.path, problem.message)
        if key not in seen:
            seen[key] = problem
            problems.append(problem)
        elif seen[key].suggestion is None:
            seen[key].suggestion = problem.suggestion  # a rule knows what the schema meant

    schema_ok = True
    if not cfg._passes_generated_check(doc):
        for error in cfg.schema_problems(doc):
            schema_ok = False
            add(Problem(error.path, error.reason))
    # the other rules read a config that may be half wrong: a rule that
    # trips over a wrong type leaves it to the schema's problem there
    for rule in (_unique_types, *_RULES, _planner):
        try:
            for problem in rule(doc, bundle):
                add(problem)
        except (TypeError, KeyError, AttributeError, ValueError, IndexError):
            if schema_ok:
                raise  # a valid config must never trip a rule: that is a bug
    return path, problems


# ---- the rules the schema cannot express ------------------------------------------

def _rootfs(doc: dict, bundle: str) -> str:
    return os.path.normpath(os.path.join(bundle, (doc.get("root") or {}).get("path", "rootfs")))


def _unique_types(doc: dict, bundle: str):
    from ocipy.config import unique_type_problems

    for error in unique_type_problems(doc):
        yield Problem(error.path, error.reason)


def _root(doc: dict, bundle: str):
    if not doc.get("root"):
        return
    rootfs = _rootfs(doc, bundle)
    if not os.path.exists(rootfs):
        yield Problem("root.path", f'"{rootfs}" does not exist')
    elif not os.path.isdir(rootfs):
        yield Problem("root.path", f'"{rootfs}" is not a directory')


def _mappings(doc: dict, bundle: str):
    linux = doc.get("linux") or {}
    has_user = any(ns.get("type") == "user" for ns in linux.get("namespaces") or [])
    for key in ("uidMappings", "gidMappings"):
        entries = linux.get(key) or []
        if entries and not has_user:
            yield Problem(f"linux.{key}", "id mappings need a user namespace",
                          '{"type": "user"} in linux.namespaces')
        for side in ("containerID", "hostID"):
            for i, a in enumerate(entries):
                for j in range(i):
                    b = entries[j]
                    if a[side] < b[side] + b["size"] and b[side] < a[side] + a["size"]:
                        yield Problem(f"linux.{key}[{i}]",
                                      f"its {side} range {a[side]}-{a[side] + a['size'] - 1} "
                                      f"overlaps linux.{key}[{j}]")


def _mounts(doc: dict, bundle: str):
    from ocipy.mountopts import known_mount_options

    known = set(known_mount_options())
    for i, m in enumerate(doc.get("mounts") or []):
        dest = m.get("destination", "")
        if not dest.startswith("/"):
            yield Problem(f"mounts[{i}].destination", f'"{dest}" is not an absolute path',
                          f'"/{dest}"')
        fstype = m.get("type") or ""
        is_bind = fstype == "bind" or any(o in ("bind", "rbind") for o in m.get("options") or [])
        for j, option in enumerate(m.get("options") or []):
            if option in known:
                continue
            key = option.split("=", 1)[0]
            if "=" in option and not is_bind:
                continue  # filesystem data: the filesystem decides
            if not is_bind and key in _FS_WORDS.get(fstype, set()):
                continue
            if not is_bind and fstype not in _FS_WORDS and fstype not in ("", "tmpfs", "proc",
                                                                            "sysfs", "mqueue"):
                continue  # a filesystem we know nothing about may take it
            yield Problem(f"mounts[{i}].options[{j}]", f'"{option}" is not a mount option',
                          _suggest(option, known, _OPTION_TYPOS))
        if is_bind:
            source = m.get("source")
            if not source:
                yield Problem(f"mounts[{i}].source", "a bind mount needs a source")
            elif not os.path.exists(os.path.join(bundle, source)):
                yield Problem(f"mounts[{i}].source",
                              f'"{os.path.join(bundle, source)}" does not exist on the host')


def _capabilities(doc: dict, bundle: str):
    from ocipy.capabilities import _NAMES

    known = {n for n in _NAMES if n}
    caps = (doc.get("process") or {}).get("capabilities") or {}
    for kind, names in caps.items():
        for i, name in enumerate(names or []):
            if name not in known:
                typos = {name: f"CAP_{name}"} if f"CAP_{name}" in known else {}
                yield Problem(f"process.capabilities.{kind}[{i}]",
                              f'"{name}" is not a capability', _suggest(name, known, typos))


def _devices(doc: dict, bundle: str):
    for i, d in enumerate((doc.get("linux") or {}).get("devices") or []):
        path = d.get("path", "")
        if not path.startswith("/dev/"):
            yield Problem(f"linux.devices[{i}].path", f'"{path}" is not under /dev')


def _process(doc: dict, bundle: str):
    process = doc.get("process")
    if not process:
        return
    args = process.get("args") or []
    cwd = process.get("cwd", "/")
    if not cwd.startswith("/"):
        yield Problem("process.cwd", f'"{cwd}" is not an absolute path', f'"/{cwd}"')
    if not args:
        yield Problem("process.args", "must name the program to run")
        return
    rootfs = _rootfs(doc, bundle)
    if not os.path.isdir(rootfs):
        return
    from ocipy.explain import resolve_executable

    env = process.get("env") or []
    path_env = next((e[5:] for e in env if e.startswith("PATH=")), None)
    if resolve_executable(rootfs, args[0], path_env, cwd if cwd.startswith("/") else "/") is None:
        where = "in the rootfs" if "/" in args[0] else \
            f"on the PATH {path_env if path_env is not None else '(unset)'} in the rootfs"
        yield Problem("process.args[0]", f'"{args[0]}" is not an executable {where}')
    for i, r in enumerate(process.get("rlimits") or []):
        if r["soft"] > r["hard"]:
            yield Problem(f"process.rlimits[{i}]",
                          f"soft limit {r['soft']} is above the hard limit {r['hard']}")


def _hooks(doc: dict, bundle: str):
    for kind, hooks in (doc.get("hooks") or {}).items():
        for i, hook in enumerate(hooks or []):
            path = hook.get("path", "")
            where = f"hooks.{kind}[{i}].path"
            if not path.startswith("/"):
                yield Problem(where, f'"{path}" is not an absolute path')
            elif not os.path.exists(path):
                yield Problem(where, f'"{path}" does not exist on the host')
            elif not os.path.isfile(path) or not os.access(path, os.X_OK):
                yield Problem(where, f'"{path}" is not an executable file')


_RULES = (_root, _mappings, _mounts, _capabilities, _devices, _process, _hooks)


def _planner(doc: dict, bundle: str):
    """What create's own planning refuses (the first problem of each part)."""
    from ocipy.plan import Host, plan_container

    try:
        plan_container(doc, bundle, container_id="validate", host=Host())
    except ConfigError as exc:
        yield Problem(exc.path, exc.reason)
    except OcipyError as exc:
        yield Problem("", str(exc))
    from ocipy import cgroups
    from ocipy.cgroups import resources

    try:
        resources.plan((doc.get("linux") or {}).get("resources") or {}, cgroups.layout())
    except ConfigError as exc:
        yield Problem(exc.path, exc.reason)


def _suggest(word: str, known, typos: dict[str, str]) -> str | None:
    if word in typos:
        return f'"{typos[word]}"'
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.75)
    return f'"{close[0]}"' if close else None


def render(config_file: str, problems: list[Problem]) -> str:
    if not problems:
        return f"{config_file}: valid\n"
    lines = [p.line() for p in problems]
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return "\n".join(lines) + f"\n{count} in {config_file}\n"
