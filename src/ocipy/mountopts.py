"""Split the ``options`` of a config.json mount into what mount(2) and friends take.

runtime-spec config.md "Mounts" leaves the meaning of ``options`` to the
runtime; this follows runc's tables (libcontainer/specconv/spec_linux.go,
``mountFlags``, ``mountPropagationMapping``, ``recAttrFlags``,
``extensionFlags``, ``complexFlags`` and ``parseMountOptions``):

* mount(2) flags ("ro", "nosuid", ...) go into ``flags``; their negations
  ("rw", "suid", ...) take the flag out of ``flags`` and put it into
  ``clear_flags``.  The last option naming a flag wins.
* propagation options ("rshared", ...) are collected in order, one
  mount(2) call each after the mount itself.
* recursive attributes ("rro", "rnosuid", ...) go to mount_setattr(2)
  ``attr_set``/``attr_clr``.
* "tmpcopyup", "idmap" and "ridmap" are runtime extensions.
* anything else is filesystem data ("mode=755", "size=65536k"), joined by
  commas in the given order.

Pure: no system calls, stdlib only.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own costs an import; the name is what linters look for
if TYPE_CHECKING:
    from collections.abc import Iterable

# mount(2) flags, include/uapi/linux/mount.h.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_POSIXACL = 0x10000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

# mount_setattr(2) attributes, include/uapi/linux/mount.h.
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# option -> (clears, flag).  "defaults" maps to no flag, and runc passes an
# option whose flag is 0 on as filesystem data; we do the same.  "acl"/"noacl"
# are not here: MS_POSIXACL is kernel-internal, runc dropped them
# (opencontainers/runc#3738), so they travel as data like any fs option.
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME),
    "loud": (True, MS_SILENT),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
    "symfollow": (True, MS_NOSYMFOLLOW),
}

_PROPAGATION: dict[str, int] = {
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

#: linux.rootfsPropagation values (config-linux.md "Rootfs Mount Propagation").
ROOTFS_PROPAGATION: dict[str, int] = dict(_PROPAGATION)

# option -> (clears, attribute), for mount_setattr(2) with AT_RECURSIVE.
_REC_ATTRS: dict[str, tuple[bool, int]] = {
    "rro": (False, MOUNT_ATTR_RDONLY),
    "rrw": (True, MOUNT_ATTR_RDONLY),
    "rnosuid": (False, MOUNT_ATTR_NOSUID),
    "rsuid": (True, MOUNT_ATTR_NOSUID),
    "rnodev": (False, MOUNT_ATTR_NODEV),
    "rdev": (True, MOUNT_ATTR_NODEV),
    "rnoexec": (False, MOUNT_ATTR_NOEXEC),
    "rexec": (True, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, MOUNT_ATTR_RELATIME),
    "rnorelatime": (True, MOUNT_ATTR_RELATIME),
    "rnoatime": (False, MOUNT_ATTR_NOATIME),
    "ratime": (True, MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, MOUNT_ATTR_NOSYMFOLLOW),
}

_TMPCOPYUP = "tmpcopyup"
_IDMAP_OPTIONS = {"idmap": False, "ridmap": True}  # option -> recursive


class MountOptions:
    """What one mount's ``options`` ask for.  Build it with parse_mount_options().

    A plain class, not a dataclass: dataclasses imports inspect, which costs
    milliseconds on every `ocipy create`.  Treat instances as read-only.
    """

    __slots__ = ("flags", "clear_flags", "propagation", "data", "attr_set", "attr_clr",
                 "tmpcopyup", "idmap", "ridmap")

    def __init__(self, flags: int = 0, clear_flags: int = 0,
                 propagation: list[int] | None = None, data: str = "", attr_set: int = 0,
                 attr_clr: int = 0, tmpcopyup: bool = False, idmap: bool = False,
                 ridmap: bool = False) -> None:
        self.flags = flags
        self.clear_flags = clear_flags
        self.propagation = list(propagation or ())
        self.data = data
        self.attr_set = attr_set
        self.attr_clr = attr_clr
        self.tmpcopyup = tmpcopyup
        #: "idmap" or "ridmap" was given: an id-mapped mount (MOUNT_ATTR_IDMAP).
        self.idmap = idmap
        #: the id mapping applies to the whole subtree; the later of
        #: "idmap"/"ridmap" decides, as in runc.
        self.ridmap = ridmap

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MountOptions):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.flags, self.clear_flags, tuple(self.propagation), self.data))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"MountOptions({inner})"

    @property
    def bind(self) -> bool:
        """A bind mount ("bind" or "rbind")."""
        return bool(self.flags & MS_BIND)

    @property
    def recursive_bind(self) -> bool:
        """A recursive bind mount ("rbind", or "bind" together with MS_REC)."""
        return self.flags & (MS_BIND | MS_REC) == MS_BIND | MS_REC

    @property
    def has_rec_attr(self) -> bool:
        """mount_setattr(2) is needed (runc sets RecAttr only then)."""
        return bool(self.attr_set or self.attr_clr)


def parse_mount_options(options: Iterable[str]) -> MountOptions:
    """Split config.json mount ``options`` the way runc's parseMountOptions does."""
    flags = clear_flags = attr_set = attr_clr = 0
    propagation: list[int] = []
    data: list[str] = []
    tmpcopyup = idmap = ridmap = False
    for option in options:
        clears, flag = _FLAGS.get(option, (False, 0))
        if flag:
            # The *atime flags are an enum in the kernel; like runc, setting
            # one does not clear the others.
            if clears:
                flags &= ~flag
                clear_flags |= flag
            else:
                flags |= flag
                clear_flags &= ~flag
        elif option in _PROPAGATION:
            propagation.append(_PROPAGATION[option])
        elif option in _REC_ATTRS:
            clears, attr = _REC_ATTRS[option]
            if clears:
                attr_clr |= attr
                attr_set &= ~attr
            else:
                attr_set |= attr
                attr_clr &= ~attr
            if attr & MOUNT_ATTR__ATIME == attr:
                # mount_setattr(2): an access-time setting in attr_set only
                # takes effect with MOUNT_ATTR__ATIME also in attr_clr.
                attr_clr |= MOUNT_ATTR__ATIME
        elif option == _TMPCOPYUP:
            tmpcopyup = True
        elif option in _IDMAP_OPTIONS:
            idmap = True
            ridmap = _IDMAP_OPTIONS[option]
        else:
            data.append(option)
    return MountOptions(
        flags=flags,
        clear_flags=clear_flags,
        propagation=propagation,
        data=",".join(data),
        attr_set=attr_set,
        attr_clr=attr_clr,
        tmpcopyup=tmpcopyup,
        idmap=idmap,
        ridmap=ridmap,
    )


def known_mount_options() -> list[str]:
    """The option names this parser recognises, sorted: the ``mountOptions`` of
    the features document.  Like runc's KnownMountOptions, "idmap"/"ridmap"
    are left out (they are reported under linux.mountExtensions instead).
    """
    return sorted({*_FLAGS, *_PROPAGATION, *_REC_ATTRS, _TMPCOPYUP})
