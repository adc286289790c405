"""ocipy._os: the hot path's `os` without importing `os` must behave as
`os` and `posixpath` do for everything the hot path asks of it."""
from __future__ import annotations

import os
import posixpath
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocipy import _os

# path-like text: slashes, dots and a few names, so that the corner cases
# (leading //, .. past the root, trailing /) come up often
segment = st.sampled_from(["", ".", "..", "a", "b", "ab", "...", " x"])
paths = st.lists(segment, max_size=6).map("/".join) | st.text(alphabet="/.ab", max_size=12)


@given(paths)
def test_normpath_dirname_basename_isabs_are_posixpaths(p):
    assert _os.path.normpath(p) == posixpath.normpath(p)
    assert _os.path.dirname(p) == posixpath.dirname(p)
    assert _os.path.basename(p) == posixpath.basename(p)
    assert _os.path.isabs(p) == posixpath.isabs(p)


@given(paths, st.lists(paths, max_size=3))
def test_join_is_posixpaths(first, rest):
    assert _os.path.join(first, *rest) == posixpath.join(first, *rest)


@given(paths.filter(bool), paths.filter(bool))
def test_abspath_and_relpath_are_posixpaths(p, start):
    assert _os.path.abspath(p) == posixpath.abspath(p)
    assert _os.path.relpath(p, start) == posixpath.relpath(p, start)


def test_path_like_arguments_are_accepted(tmp_path):
    assert _os.path.join(tmp_path, Path("x")) == os.path.join(tmp_path, Path("x"))
    assert _os.path.exists(tmp_path) and _os.path.isdir(tmp_path)


def test_exists_and_isdir_say_no_instead_of_raising(tmp_path):
    (tmp_path / "file").write_text("")
    for p in (tmp_path / "missing", tmp_path / "file" / "below", "bad\0path"):
        assert not _os.path.exists(p) and not _os.path.isdir(p)
    assert _os.path.exists(tmp_path / "file") and not _os.path.isdir(tmp_path / "file")


def test_realpath_resolves_links_as_posixpath_does(tmp_path):
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "loop").symlink_to("loop")
    for p in (tmp_path / "link" / "deep", tmp_path / "link" / ".." / "link", tmp_path / "missing",
              tmp_path / "link" / "missing" / "x", tmp_path / "loop", "relative/x", "/proc/self"):
        assert _os.path.realpath(p) == posixpath.realpath(p), p


def test_makedirs_makes_parents_and_tolerates_an_existing_dir(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    _os.makedirs(target, mode=0o711, exist_ok=True)
    assert (target.stat().st_mode & 0o777) == 0o711
    _os.makedirs(target, mode=0o711, exist_ok=True)
    (tmp_path / "file").write_text("")
    try:
        _os.makedirs(tmp_path / "file", exist_ok=True)
    except FileExistsError:
        pass
    else:
        raise AssertionError("a file where the dir should be must fail")


def test_walk_is_os_walks_top_down_and_does_not_follow_links(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "f").write_text("")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "up").symlink_to(tmp_path)
    assert list(_os.walk(tmp_path)) == list(os.walk(tmp_path))
    assert list(_os.walk(tmp_path / "missing")) == []


def test_read_file_reads_to_the_end_past_short_reads(tmp_path):
    # a file of several 64 KiB chunks, and mountinfo, a seq_file whose reads
    # come back short before its end once it outgrows one chunk
    big = tmp_path / "big"
    big.write_bytes(bytes(range(256)) * 1000 + b"end")
    assert _os.read_file(big) == big.read_bytes()
    with open("/proc/self/mountinfo", "rb") as f:
        assert _os.read_file("/proc/self/mountinfo") == f.read()
    with pytest.raises(FileNotFoundError):
        _os.read_file(tmp_path / "missing")


def test_environ_pop_reaches_the_children():
    code = ("import os, subprocess, sys; from ocipy import _os; "
            "assert 'OCIPY_SHIM' in _os.environ and _os.environ.get('OCIPY_SHIM') == 'v'; "
            "assert _os.environ.pop('OCIPY_SHIM') == 'v' and 'OCIPY_SHIM' not in _os.environ; "
            "assert _os.environ.pop('OCIPY_SHIM', 'gone') == 'gone'; "
            "print(subprocess.run(['sh', '-c', 'echo ${OCIPY_SHIM-unset}'], "
            "capture_output=True, text=True).stdout.strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, OCIPY_SHIM="v"), check=True).stdout
    assert out.strip() == "unset"


def test_it_does_not_import_os():
    code = "import sys; from ocipy import _os; print('os' in sys.modules)"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys; sys.path[:0] = "
                          f"[{str(Path(_os.__file__).parent.parent)!r}]; " + code],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
