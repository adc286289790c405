"""What a whole test session (tests/, spec-tests/, e2e-tests/) leaves on
the host.

A container created without linux.cgroupsPath leaves ocipy's default cgroup
parent, /ocipy in each hierarchy, for the containers after it
(container._keep_default_parent).  The session removes the ones it made,
once empty: a parent that was there before the session is not ours, and
one still holding a cgroup is left to whoever made that.
"""
from __future__ import annotations

import os

import pytest

_KEY = pytest.StashKey[set]()


def default_cgroup_parents() -> set[str]:
    """Every <cgroup mount point>/ocipy of this mount namespace that exists."""
    from ocipy.host import cgroup_mounts

    return {p for p in (os.path.join(m, "ocipy") for m, _, _ in cgroup_mounts())
            if os.path.isdir(p)}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.stash[_KEY] = default_cgroup_parents()


def pytest_sessionfinish(session: pytest.Session) -> None:
    for path in default_cgroup_parents() - session.stash.get(_KEY, set()):
        try:
            os.rmdir(path)
        except OSError:
            pass
