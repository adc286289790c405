"""Where a container's cgroups are: linux.cgroupsPath -> directories (pure).

runc's rules (libcontainer/cgroups/fs/paths.go, fs2/defaultpath.go):

* an absolute cgroupsPath is taken from the root of each hierarchy;
* a relative one is under the caller's own cgroup, as /proc/self/cgroup
  names it (relative to the root of the mount, for nested containers);
* with no cgroupsPath ocipy uses ``/ocipy/<id>``.

The path is cleaned as runc's utils.CleanPath does: ``..`` never climbs
above the hierarchy root (or above the caller's cgroup, for a relative
path).  Everything here takes the text of /proc/self/cgroup and
/proc/self/mountinfo as arguments, so it is tested with fake ones.
"""
from __future__ import annotations

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy._record import record
from ocipy.errors import ConfigError

CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/ocipy"

# cgroup v1 super options that are not controllers
_V1_OPTIONS = {"rw", "ro", "clone_children", "noprefix", "xattr", "cpuset_v2_mode",
               "nsdelegate", "favordynmods"}


# (typing.NamedTuple would import typing: ~9 ms on every create)
# mountpoint; root: the directory of the hierarchy this mount shows (mountinfo
# field 4); fstype: "cgroup" or "cgroup2"; controllers: v1 "cpu", "cpuacct",
# ..., "name=systemd", v2 ()
Mount = record("Mount", "mountpoint root fstype controllers")


def mountinfo_fields(text: str):
    """Each mount of a /proc/<pid>/mountinfo text, in order: its fields
    before the " - " separator (id, parent, dev, root, mount point, ...) and
    after it (fs type, source, super options), paths still escaped
    (unescape).  One mount per "\n"-ended line, fields separated by single
    spaces: the kernel escapes only space, tab, newline and backslash in a
    path, which may hold any other whitespace."""
    for line in text.split("\n"):
        left, sep, right = line.partition(" - ")
        if sep:
            yield left.split(" "), right.split(" ")


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts of a /proc/<pid>/mountinfo text, in order."""
    mounts = []
    for fields, extra in mountinfo_fields(text):
        if len(fields) < 5 or len(extra) < 3 or extra[0] not in ("cgroup", "cgroup2"):
            continue
        controllers: tuple[str, ...] = ()
        if extra[0] == "cgroup":
            controllers = tuple(o for o in extra[2].split(",")
                                if o not in _V1_OPTIONS and not o.startswith("release_agent="))
        mounts.append(Mount(unescape(fields[4]), unescape(fields[3]), extra[0], controllers))
    return mounts


def unescape(field: str) -> str:
    """A mountinfo path with its octal escapes (\\040 for a space, \\134 for
    a backslash, ...) made bytes again: on the path's own bytes, so that a
    name in UTF-8 or in no encoding at all comes back as it is (read_proc
    decoded them as os.fsdecode does)."""
    if "\\" not in field:
        return field
    first, *rest = os.fsencode(field).split(b"\\")
    out = bytearray(first)
    for part in rest:
        code = part[:3]
        if len(code) == 3 and all(48 <= c <= 55 for c in code):  # 0-7
            out.append(int(code, 8) & 0xFF)
            out += part[3:]
        else:
            out += b"\\" + part
    return os.fsdecode(bytes(out))


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup -> {controller: path}; the v2 entry ("0::/...") is under ""."""
    found = {}
    for line in text.split("\n"):
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _id, controllers, path = parts
        if not controllers:
            found[""] = path
            continue
        for controller in controllers.split(","):
            found[controller] = path
    return found


def clean(path: str) -> str:
    """runc's CleanPath for cgroups: absolute, normalized, ``..`` stops at ``/``."""
    # POSIX lets normpath keep a leading "//": strip to one
    return "/" + os.path.normpath("/" + path).lstrip("/")


def container_path(cgroups_path: str | None, container_id: str) -> tuple[str, bool]:
    """(cleaned path, is it absolute) for linux.cgroupsPath; absent: /ocipy/<id>."""
    if not cgroups_path:
        return clean(f"{DEFAULT_PARENT}/{container_id}"), True
    if "\0" in cgroups_path:
        raise ConfigError("linux.cgroupsPath", "contains a NUL byte")
    inner = clean(cgroups_path)
    if inner == "/":
        raise ConfigError("linux.cgroupsPath", f'"{cgroups_path}" names the root cgroup')
    return inner, cgroups_path.startswith("/")


def systemd_unit(cgroups_path: str | None, container_id: str) -> tuple[str, str]:
    """(slice, unit) of ``slice:prefix:name`` for the systemd cgroup driver (runc's rules).

    "system.slice:docker:abc" -> ("system.slice", "docker-abc.scope").  An
    empty slice is system.slice, an empty name the container id, and no
    cgroupsPath at all means ":ocipy:<id>" (runc: ":runc:<id>").  A name
    ending in .slice is the unit itself (the prefix is ignored).
    """
    if not cgroups_path:
        cgroups_path = f":ocipy:{container_id}"
    parts = cgroups_path.split(":")
    if len(parts) != 3:
        raise ConfigError("linux.cgroupsPath",
                          f'expected "slice:prefix:name" for the systemd cgroup driver, '
                          f'got "{cgroups_path}"')
    slice_name, prefix, name = parts
    slice_name = slice_name or "system.slice"
    expand_slice(slice_name)  # refuse a bad slice name now
    name = name or container_id
    if name.endswith(".slice"):
        expand_slice(name)
        return slice_name, name
    unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    if "/" in unit or "\0" in unit:
        raise ConfigError("linux.cgroupsPath", f'invalid systemd unit name "{unit}"')
    return slice_name, unit


def systemd_unit_path(cgroups_path: str | None, container_id: str) -> str:
    """The cgroup path systemd gives the unit of ``slice:prefix:name``.

    "system.slice:docker:abc" -> /system.slice/docker-abc.scope; a nested
    slice "a-b.slice" expands to /a.slice/a-b.slice.  A slice unit's place
    comes from its own name, whatever the slice part says (systemd derives a
    slice's parent from its name: "x.slice" is under -.slice).
    """
    slice_name, unit = systemd_unit(cgroups_path, container_id)
    if unit.endswith(".slice"):
        return expand_slice(unit) or "/"
    return expand_slice(slice_name) + "/" + unit


def expand_slice(slice_name: str) -> str:
    """"a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice"; "-.slice" is the root."""
    if not slice_name.endswith(".slice") or "/" in slice_name:
        raise ConfigError("linux.cgroupsPath", f'invalid systemd slice name "{slice_name}"')
    if slice_name == "-.slice":
        return ""
    stem = slice_name[: -len(".slice")]
    if not stem or stem.startswith("-") or stem.endswith("-") or "--" in stem:
        raise ConfigError("linux.cgroupsPath", f'invalid systemd slice name "{slice_name}"')
    path, prefix = "", ""
    for component in stem.split("-"):
        prefix = f"{prefix}-{component}" if prefix else component
        path += f"/{prefix}.slice"
    return path


def _under_caller(mount: Mount, own: str | None, key: str) -> str:
    """The caller's cgroup as a path under ``mount``'s mount point."""
    if own is None:
        raise ConfigError("linux.cgroupsPath",
                          f"a relative path needs the caller's cgroup, but /proc/self/cgroup "
                          f"has no {'cgroup v2' if key == '' else key} entry")
    rel = os.path.relpath(clean(own), clean(mount.root))
    if rel == "." or rel.startswith(".."):
        # the caller's cgroup is the mount's root or outside what the mount shows
        return mount.mountpoint
    return os.path.join(mount.mountpoint, rel)


def v1_dirs(mounts: list[Mount], own: dict[str, str], inner: str, absolute: bool
            ) -> dict[str, str]:
    """{controller: directory} for every v1 hierarchy, plus "" for the hybrid cgroup2 mount.

    A controller mounted twice (bind mounts) is taken from its first mount,
    preferring mounts under /sys/fs/cgroup as runc does.
    """
    ordered = sorted(mounts, key=lambda m: not m.mountpoint.startswith(CGROUP_ROOT + "/"))
    dirs: dict[str, str] = {}
    for mount in ordered:
        if mount.fstype == "cgroup2":
            if mount.mountpoint == CGROUP_ROOT or "" in dirs:
                continue  # a pure v2 host has no v1 manager; one hybrid mount is enough
            keys: tuple[str, ...] = ("",)
        else:
            keys = tuple(c for c in mount.controllers if c not in dirs)
            if not keys:
                continue
        base = mount.mountpoint if absolute else _under_caller(mount, own.get(keys[0]), keys[0])
        for key in keys:
            dirs[key] = os.path.join(base, inner.lstrip("/"))
    return dirs


def v2_dir(mountpoint: str, mount_root: str, own: dict[str, str], inner: str, absolute: bool
           ) -> str:
    mount = Mount(mountpoint, mount_root, "cgroup2", ())
    base = mountpoint if absolute else _under_caller(mount, own.get(""), "")
    return os.path.join(base, inner.lstrip("/"))


def read_proc(name: str) -> str:
    """/proc/self/<name>, paths in it decoded as the os module decodes them."""
    return os.fsdecode(os.read_file(os.path.join("/proc/self", name)))
