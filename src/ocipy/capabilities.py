"""Linux capability names and the bitmasks capset(2) and prctl(2) take.

Pure: the only thing read from the host is /proc/sys/kernel/cap_last_cap.
The names are those of capabilities(7) and runtime-spec config.md
``process.capabilities``; the numbers are the kernel's
(include/uapi/linux/capability.h).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own costs an import; the name is what linters look for
if TYPE_CHECKING:
    from collections.abc import Iterable

from ocipy.errors import ConfigError


# In kernel order, so that the index is the capability number.
_NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

CAPABILITIES: dict[str, int] = {name: number for number, name in enumerate(_NAMES)}

#: The highest capability this module knows (CAP_CHECKPOINT_RESTORE, Linux 5.9).
MAX_KNOWN_CAP = len(_NAMES) - 1

_CAP_LAST_CAP = "/proc/sys/kernel/cap_last_cap"
_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number the running kernel supports.

    Falls back to the highest one known here when /proc is unreadable (for
    example before /proc is mounted), which is also what runc's gocapability
    assumes.
    """
    global _last_cap
    if _last_cap is None:  # read once: a create asks for each of the five sets
        try:
            from ocipy._os import read_file

            _last_cap = int(read_file(_CAP_LAST_CAP).strip())
        except (OSError, ValueError):
            return MAX_KNOWN_CAP
    return _last_cap


def caps_to_mask(names: Iterable[str], path: str) -> int:
    """Turn capability names into a bitmask (bit N = capability number N).

    ``path`` is the JSON path of the list (e.g. ``process.capabilities.bounding``)
    and names the offending element in the error for an unknown name.

    A name this module knows but the running kernel does not (its number is
    above cap_last_cap) is skipped with a warning, as runc 1.1 does
    (libcontainer/capabilities: "ignoring unknown or unavailable
    capabilities") and as runtime-spec config.md asks ("MUST be logged as a
    warning ... SHOULD NOT fail").  A name no kernel has is a typo in
    config.json and is rejected; runc 1.1 would warn and ignore that too.
    """
    limit = last_cap()
    mask = 0
    unavailable: list[str] = []
    for i, name in enumerate(names):
        number = CAPABILITIES.get(name)
        if number is None:
            raise ConfigError(path + f"[{i}]", f'unknown capability "{name}"')
        if number > limit:
            if name not in unavailable:
                unavailable.append(name)
            continue
        mask |= 1 << number
    if unavailable:
        from ocipy.log import current

        current().warning(f"ignoring capabilities this kernel lacks: {unavailable}")
    return mask


def mask_to_caps(mask: int) -> list[str]:
    """The names of the capabilities set in ``mask``, in number order.

    Bits above the highest known capability have no name and are dropped.
    """
    return [name for number, name in enumerate(_NAMES) if mask >> number & 1]
