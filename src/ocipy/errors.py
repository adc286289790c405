"""One error type from the bottom to the CLI.

Every failure carries *what* failed (the step and the object it acted on) and
*why* (the cause, usually an errno text).  The CLI prints it as
``ocipy: <what>: <why>`` and, with ``--log-format json``, logs the same text as
the ``msg`` the containerd shim reports.
"""
from __future__ import annotations

import errno as _errno

from ocipy import _os as os  # os without importing os (see _os.py)


class OcipyError(Exception):
    """A failure the user can act on: ``<what>: <why>``."""

    def __init__(self, what: str, why: str | None = None, *, errno: int | None = None) -> None:
        self.what = what
        self.why = why
        self.errno = errno
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.what}: {self.why}" if self.why else self.what

    @classmethod
    def from_os(cls, what: str, exc: OSError) -> "OcipyError":
        """Wrap an OSError, keeping its errno and its plain strerror text."""
        code = exc.errno or 0
        why = os.strerror(code).lower() if code else str(exc)
        return cls(what, why, errno=code)


class ConfigError(OcipyError):
    """config.json is invalid: ``path`` is the JSON path, ``reason`` the rule broken."""

    def __init__(self, path: str, reason: str, *, file: str = "config.json") -> None:
        self.path = path
        self.reason = reason
        where = f"{path}: {reason}" if path else reason
        super().__init__(f"invalid {file}", where)


class ContainerNotFound(OcipyError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f'container "{container_id}" does not exist', errno=_errno.ENOENT)


class ContainerNotRunning(OcipyError):
    def __init__(self) -> None:
        super().__init__("container not running", errno=_errno.ESRCH)
