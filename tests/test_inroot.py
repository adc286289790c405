"""ocipy.inroot.resolve: paths inside a rootfs never lead out of it."""
from __future__ import annotations

import os

from ocipy.inroot import resolve


def test_absolute_and_dotdot_symlinks_stay_inside(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_text("")
    (root / "etc").mkdir()
    os.symlink("/bin/busybox", root / "bin" / "sh")          # absolute: re-rooted
    os.symlink("../../../../etc", root / "bin" / "escape")   # .. stops at the root
    os.symlink("/etc/passwd", root / "passwd")               # the host's file is not it
    assert resolve(str(root), "/bin/sh") == str(root / "bin" / "busybox")
    assert resolve(str(root), "/bin/escape") == str(root / "etc")
    assert resolve(str(root), "/passwd") is None
    assert resolve(str(root), "/../../bin/busybox") == str(root / "bin" / "busybox")


def test_a_symlink_loop_is_not_followed_forever(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/b", root / "a")
    os.symlink("/a", root / "b")
    assert resolve(str(root), "/a") is None
