"""The part of `os` that create, run and exec use, without importing `os`.

The interpreter runs ocipy with -I -S, which starts without `os` loaded, and
importing it costs about 1.1 ms here: its `environ` mapping pulls in
`_collections_abc` (dozens of ABC classes), and `os.path` is `posixpath`.
Every create, run and exec paid that.  This module is the builtin `posix`
module (everything `os` re-exports from it on Linux) plus the few path and
tree helpers the hot path calls, written for str and PathLike paths as
`posixpath` behaves for them.  The hot-path modules import it as `os`;
spec-tests/test_hot_path_imports.py checks that `os` stays out.
"""
import _stat
from posix import *  # open, read, stat, O_*, W*, kill, getcwd, mkdir, unsetenv, ...
from posix import O_CLOEXEC as _O_CLOEXEC
from posix import O_PATH as _O_PATH
from posix import (
    _exit,  # noqa: F401 (re-exported: os._exit; * skips _names)
    fspath,
    lstat,
    readlink,
    scandir,
    stat,
)
from posix import close as _close
from posix import environ as _environ_bytes
from posix import open as _open

sep = "/"
error = OSError


# --------------------------------------------------------------------- path

class path:
    """os.path's functions that the hot path uses (posixpath's behaviour for
    str paths)."""

    @staticmethod
    def join(a, *parts) -> str:
        result = fspath(a)
        for part in parts:
            part = fspath(part)
            if part.startswith("/"):
                result = part
            elif not result or result.endswith("/"):
                result += part
            else:
                result += "/" + part
        return result

    @staticmethod
    def dirname(p) -> str:
        p = fspath(p)
        head = p[:p.rfind("/") + 1]
        if head and head != "/" * len(head):
            head = head.rstrip("/")
        return head

    @staticmethod
    def basename(p) -> str:
        p = fspath(p)
        return p[p.rfind("/") + 1:]

    @staticmethod
    def isabs(p) -> bool:
        return fspath(p).startswith("/")

    @staticmethod
    def normpath(p) -> str:
        p = fspath(p)
        if not p:
            return "."
        # POSIX keeps exactly two leading slashes, and folds three or more
        initial = 2 if p.startswith("//") and not p.startswith("///") else (
            1 if p.startswith("/") else 0)
        parts: list[str] = []
        for comp in p.split("/"):
            if comp in ("", "."):
                continue
            if comp != ".." or (not initial and not parts) or (parts and parts[-1] == ".."):
                parts.append(comp)
            elif parts:
                parts.pop()
        return "/" * initial + "/".join(parts) or "."

    @staticmethod
    def abspath(p) -> str:
        p = fspath(p)
        if not p.startswith("/"):
            p = path.join(getcwd(), p)
        return path.normpath(p)

    @staticmethod
    def exists(p) -> bool:
        try:
            stat(p)
        except (OSError, ValueError):
            return False
        return True

    @staticmethod
    def isdir(p) -> bool:
        try:
            return _stat.S_ISDIR(stat(p).st_mode)
        except (OSError, ValueError):
            return False

    @staticmethod
    def relpath(p, start) -> str:
        """Both made absolute and normal first, as posixpath.relpath does."""
        if not fspath(p):
            raise ValueError("no path specified")
        target = [c for c in path.abspath(p).split("/") if c]
        base = [c for c in path.abspath(start).split("/") if c]
        common = 0
        while common < min(len(target), len(base)) and target[common] == base[common]:
            common += 1
        rest = [".."] * (len(base) - common) + target[common:]
        return "/".join(rest) or "."

    @staticmethod
    def realpath(p) -> str:
        """The canonical path of an existing path, as the kernel resolved it
        (an O_PATH open and its /proc/self/fd link: one lookup instead of an
        lstat per component).  Anything else (a missing path, a path the
        kernel names oddly, such as one deleted meanwhile) is posixpath's."""
        p = fspath(p)
        try:
            fd = _open(p, _O_PATH | _O_CLOEXEC)
        except (OSError, ValueError):
            return _posixpath().realpath(p)
        try:
            resolved = readlink(f"/proc/self/fd/{fd}")
        except OSError:
            resolved = ""
        finally:
            _close(fd)
        if not resolved.startswith("/") or resolved.endswith(" (deleted)"):
            return _posixpath().realpath(p)
        return resolved


def _posixpath():
    import posixpath  # imports os: only on the rare paths above

    return posixpath


# -------------------------------------------------------------------- files

def fsdecode(data: bytes) -> str:
    """os.fsdecode for bytes: the file system's encoding and error handler."""
    import sys

    return data.decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def fsencode(text: str) -> bytes:
    """os.fsencode for str."""
    import sys

    return text.encode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def read_file(name) -> bytes:
    """The whole of a file, read with open/read/close: no io object and its
    fstat, ioctl and lseek calls (what /proc and cgroup files cost through
    open() on every create).  Read until end of file: a short read of a
    seq_file such as mountinfo is not its end."""
    fd = _open(name, O_RDONLY | _O_CLOEXEC)
    try:
        chunks = []
        while chunk := read(fd, 65536):
            chunks.append(chunk)
    finally:
        _close(fd)
    return b"".join(chunks)


# -------------------------------------------------------------------- trees

def makedirs(name, mode: int = 0o777, exist_ok: bool = False) -> None:
    """Make ``name`` and its missing parents (those with the default mode,
    as os.makedirs does since Python 3.7)."""
    name = fspath(name)
    parent = path.dirname(name.rstrip("/") or "/")
    if parent and parent != name and not path.exists(parent):
        try:
            makedirs(parent, exist_ok=True)
        except FileExistsError:
            pass  # made meanwhile
    try:
        mkdir(name, mode)
    except OSError:
        if not exist_ok or not path.isdir(name):
            raise


def walk(top, topdown: bool = True):
    """(dir, subdirs, files) for ``top`` and every directory below it, not
    following symlinks; unreadable directories are skipped, as os.walk does
    without onerror.  Top-down only (what callers here need)."""
    if not topdown:
        raise NotImplementedError("bottom-up walk")
    top = fspath(top)
    try:
        entries = list(scandir(top))
    except OSError:
        return
    dirs, files = [], []
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        (dirs if is_dir else files).append(entry.name)
    yield top, dirs, files
    for name in dirs:
        below = path.join(top, name)
        try:
            if _stat.S_ISLNK(lstat(below).st_mode):
                continue
        except OSError:
            continue
        yield from walk(below)


# ------------------------------------------------------------- environment

class _Environ:
    """The process environment by str keys and values, as os.environ
    (UTF-8 with surrogateescape, the file system encoding here); changes
    reach the C environment, so children inherit them."""

    @staticmethod
    def _key(key: str) -> bytes:
        return key.encode("utf-8", "surrogateescape")

    def __contains__(self, key: str) -> bool:
        return self._key(key) in _environ_bytes

    def get(self, key: str, default=None):
        value = _environ_bytes.get(self._key(key))
        return default if value is None else value.decode("utf-8", "surrogateescape")

    def pop(self, key: str, default=None):
        raw = self._key(key)
        value = _environ_bytes.pop(raw, None)
        if value is None:
            return default
        unsetenv(raw)
        return value.decode("utf-8", "surrogateescape")


environ = _Environ()
