"""Resolve a path inside a container's root filesystem from the host, the
way the kernel would after pivot_root: absolute symlinks and ".." stay
inside the root (what openat2's RESOLVE_IN_ROOT does for the child).  For
looking at a rootfs (validate, explain), never for making anything in it."""
from __future__ import annotations

import os

MAX_SYMLINKS = 40  # the kernel's limit


def resolve(root: str, path: str) -> str | None:
    """The host path of ``path`` inside ``root``, symlinks followed within
    the root; None when a component is missing or the links loop."""
    root = os.path.realpath(root)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(host)
        except FileNotFoundError:
            return None
        except OSError:  # not a symlink
            resolved.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            return None
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *resolved)
