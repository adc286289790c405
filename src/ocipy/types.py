"""Typed config.json: ``ocipy.load_config(path)`` returns a ``Config``.

The attrs classes follow the runtime-spec's config.md and config-linux.md
with Python names (``process.noNewPrivileges`` is ``process.no_new_privileges``).
Parts that are large and free-form stay plain dicts: ``linux.resources``,
``linux.seccomp``, ``linux.sysctl``, ``annotations``.  Keys this version does
not model (other platforms' sections, extensions) are kept in each object's
``extra`` dict, never dropped; ``to_dict()`` gives the JSON document back.

The config is checked first with the same validator `ocipy create` uses, so
a ``Config`` always comes from a valid document; a bad one raises
``ocipy.ConfigError`` with ``.path`` (the JSON path) and ``.reason``.
"""
from __future__ import annotations

import os
from typing import Any

import attrs

from ocipy.errors import ConfigError


def _fields(cls) -> dict[str, tuple[str, Any]]:
    """json key -> (attribute, converter) for one class, from its field metadata."""
    return {f.metadata.get("json", f.name): (f.name, f.metadata.get("convert"))
            for f in attrs.fields(cls) if f.name != "extra"}


def _build(cls, doc: dict):
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    table = _fields(cls)
    for key, value in doc.items():
        if key in table:
            name, convert = table[key]
            kwargs[name] = convert(value) if convert and value is not None else value
        else:
            extra[key] = value
    if "extra" in attrs.fields_dict(cls):
        kwargs["extra"] = extra
    return cls(**kwargs)


def _dump(obj) -> Any:
    if attrs.has(type(obj)):
        out: dict[str, Any] = {}
        for key, (name, _) in _fields(type(obj)).items():
            value = getattr(obj, name)
            if value is None or value == [] and key not in _ALWAYS:
                continue
            out[key] = _dump(value)
        out.update(getattr(obj, "extra", {}) or {})
        return out
    if isinstance(obj, list):
        return [_dump(v) for v in obj]
    return obj


_ALWAYS = {"args"}  # required lists stay even when empty


def _field(json: str | None = None, *, convert=None, default=None, factory=None):
    metadata = {"convert": convert}
    if json:
        metadata["json"] = json
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


def _list_of(cls):
    return lambda items: [_build(cls, item) for item in items]


def _one(cls):
    return lambda doc: _build(cls, doc)


@attrs.frozen
class IDMapping:
    container_id: int = _field("containerID", default=0)
    host_id: int = _field("hostID", default=0)
    size: int = _field(default=0)


@attrs.frozen
class Mount:
    destination: str = _field(default="")
    type: str | None = _field()
    source: str | None = _field()
    options: list[str] = _field(factory=list)
    uid_mappings: list[IDMapping] = _field("uidMappings", convert=_list_of(IDMapping),
                                           factory=list)
    gid_mappings: list[IDMapping] = _field("gidMappings", convert=_list_of(IDMapping),
                                           factory=list)
    extra: dict = attrs.field(factory=dict)


@attrs.frozen
class Root:
    path: str = _field(default="")
    readonly: bool | None = _field()
    extra: dict = attrs.field(factory=dict)


@attrs.frozen
class User:
    uid: int = _field(default=0)
    gid: int = _field(default=0)
    umask: int | None = _field()
    additional_gids: list[int] = _field("additionalGids", factory=list)
    username: str | None = _field()
    extra: dict = attrs.field(factory=dict)


@attrs.frozen
class Capabilities:
    bounding: list[str] = _field(factory=list)
    effective: list[str] = _field(factory=list)
    inheritable: list[str] = _field(factory=list)
    permitted: list[str] = _field(factory=list)
    ambient: list[str] = _field(factory=list)


@attrs.frozen
class Rlimit:
    type: str = _field(default="")
    soft: int = _field(default=0)
    hard: int = _field(default=0)


@attrs.frozen
class Process:
    args: list[str] = _field(factory=list)
    cwd: str = _field(default="/")
    env: list[str] = _field(factory=list)
    terminal: bool | None = _field()
    console_size: dict | None = _field("consoleSize")
    user: User = _field(convert=_one(User), factory=User)
    capabilities: Capabilities | None = _field(convert=_one(Capabilities))
    rlimits: list[Rlimit] = _field(convert=_list_of(Rlimit), factory=list)
    no_new_privileges: bool | None = _field("noNewPrivileges")
    apparmor_profile: str | None = _field("apparmorProfile")
    selinux_label: str | None = _field("selinuxLabel")
    oom_score_adj: int | None = _field("oomScoreAdj")
    extra: dict = attrs.field(factory=dict)


@attrs.frozen
class Hook:
    path: str = _field(default="")
    args: list[str] = _field(factory=list)
    env: list[str] = _field(factory=list)
    timeout: int | None = _field()


@attrs.frozen
class Hooks:
    prestart: list[Hook] = _field(convert=_list_of(Hook), factory=list)
    create_runtime: list[Hook] = _field("createRuntime", convert=_list_of(Hook), factory=list)
    create_container: list[Hook] = _field("createContainer", convert=_list_of(Hook),
                                          factory=list)
    start_container: list[Hook] = _field("startContainer", convert=_list_of(Hook),
                                         factory=list)
    poststart: list[Hook] = _field(convert=_list_of(Hook), factory=list)
    poststop: list[Hook] = _field(convert=_list_of(Hook), factory=list)
    extra: dict = attrs.field(factory=dict)


@attrs.frozen
class Namespace:
    type: str = _field(default="")
    path: str | None = _field()


@attrs.frozen
class Device:
    path: str = _field(default="")
    type: str = _field(default="c")
    major: int | None = _field()
    minor: int | None = _field()
    file_mode: int | None = _field("fileMode")
    uid: int | None = _field()
    gid: int | None = _field()


@attrs.frozen
class Linux:
    namespaces: list[Namespace] = _field(convert=_list_of(Namespace), factory=list)
    uid_mappings: list[IDMapping] = _field("uidMappings", convert=_list_of(IDMapping),
                                           factory=list)
    gid_mappings: list[IDMapping] = _field("gidMappings", convert=_list_of(IDMapping),
                                           factory=list)
    devices: list[Device] = _field(convert=_list_of(Device), factory=list)
    cgroups_path: str | None = _field("cgroupsPath")
    resources: dict | None = _field()
    sysctl: dict | None = _field()
    seccomp: dict | None = _field()
    rootfs_propagation: str | None = _field("rootfsPropagation")
    masked_paths: list[str] = _field("maskedPaths", factory=list)
    readonly_paths: list[str] = _field("readonlyPaths", factory=list)
    mount_label: str | None = _field("mountLabel")
    time_offsets: dict | None = _field("timeOffsets")
    extra: dict = attrs.field(factory=dict)


@attrs.frozen
class Config:
    """A whole config.json."""

    oci_version: str = _field("ociVersion", default="")
    root: Root | None = _field(convert=_one(Root))
    mounts: list[Mount] = _field(convert=_list_of(Mount), factory=list)
    process: Process | None = _field(convert=_one(Process))
    hostname: str | None = _field()
    domainname: str | None = _field()
    hooks: Hooks | None = _field(convert=_one(Hooks))
    annotations: dict | None = _field()
    linux: Linux | None = _field(convert=_one(Linux))
    extra: dict = attrs.field(factory=dict)

    @classmethod
    def from_dict(cls, doc: dict) -> Config:
        """From a document that passed validation (load_config does both)."""
        return _build(cls, doc)

    def to_dict(self) -> dict:
        """The JSON document again (unknown keys included)."""
        return _dump(self)


def load_config(path: str) -> Config:
    """Read and validate a config.json (or the one in a bundle directory).

    Raises ConfigError (``.path``, ``.reason``) for a config `ocipy create`
    would refuse for its content."""
    from ocipy import config as cfg

    if os.path.isdir(path):
        bundle = path
    else:
        bundle, name = os.path.split(os.path.abspath(path))
        if name != "config.json":
            try:
                raw = cfg._read_regular_file(path)
            except OSError as exc:
                raise ConfigError("", f"{path}: {os.strerror(exc.errno or 0).lower()}") \
                    from None
            doc = cfg.parse_json(raw)
            cfg.validate_config(doc)
            return Config.from_dict(doc)
    return Config.from_dict(cfg.load_config(bundle))
