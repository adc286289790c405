"""ocipy.mountopts: config.json mount options -> mount(2)/mount_setattr(2) arguments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocipy import mountopts as mo
from ocipy.mountopts import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_UNBINDABLE,
    ROOTFS_PROPAGATION,
    MountOptions,
    known_mount_options,
    parse_mount_options,
)

RUNC = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)


def test_constants_match_the_kernel_uapi():
    assert (mo.MS_RDONLY, mo.MS_NOSUID, mo.MS_NODEV, mo.MS_NOEXEC) == (1, 2, 4, 8)
    assert (mo.MS_SYNCHRONOUS, mo.MS_REMOUNT, mo.MS_MANDLOCK, mo.MS_DIRSYNC) == (16, 32, 64, 128)
    assert (mo.MS_NOATIME, mo.MS_NODIRATIME, mo.MS_BIND, mo.MS_REC) == (1024, 2048, 4096, 16384)
    assert (mo.MS_SILENT, mo.MS_UNBINDABLE, mo.MS_PRIVATE) == (1 << 15, 1 << 17, 1 << 18)
    assert (mo.MS_SLAVE, mo.MS_SHARED, mo.MS_RELATIME) == (1 << 19, 1 << 20, 1 << 21)
    assert (mo.MS_I_VERSION, mo.MS_STRICTATIME, mo.MS_LAZYTIME) == (1 << 23, 1 << 24, 1 << 25)
    assert mo.MOUNT_ATTR_IDMAP == 0x100000 and mo.MOUNT_ATTR_NOSYMFOLLOW == 0x200000
    assert mo.MOUNT_ATTR__ATIME == mo.MOUNT_ATTR_NOATIME | mo.MOUNT_ATTR_STRICTATIME | 0x40


def test_runc_default_dev_mount_splits_flags_from_data():
    opts = parse_mount_options(["nosuid", "strictatime", "mode=755", "size=65536k"])
    assert opts.flags == MS_NOSUID | MS_STRICTATIME
    assert opts.data == "mode=755,size=65536k"
    assert opts.clear_flags == 0
    assert opts.propagation == []
    assert not opts.bind and not opts.has_rec_attr


def test_cgroup_mount_flags():
    opts = parse_mount_options(["nosuid", "noexec", "nodev", "relatime", "ro"])
    assert opts.flags == MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY
    assert opts.data == ""


def test_no_options_is_the_empty_result():
    assert parse_mount_options([]) == MountOptions()


def test_negating_option_clears_and_records_the_flag():
    opts = parse_mount_options(["ro", "nosuid", "rw", "suid", "exec"])
    assert opts.flags == 0
    assert opts.clear_flags == MS_RDONLY | MS_NOSUID | MS_NOEXEC


def test_last_of_a_flag_and_its_negation_wins():
    assert parse_mount_options(["rw", "ro"]).flags == MS_RDONLY
    assert parse_mount_options(["rw", "ro"]).clear_flags == 0
    assert parse_mount_options(["ro", "rw"]).flags == 0
    assert parse_mount_options(["ro", "rw"]).clear_flags == MS_RDONLY


def test_bind_and_rbind():
    bind = parse_mount_options(["bind", "ro"])
    assert bind.bind and not bind.recursive_bind
    assert bind.flags == MS_BIND | MS_RDONLY
    rbind = parse_mount_options(["rbind"])
    assert rbind.bind and rbind.recursive_bind
    assert rbind.flags == MS_BIND | MS_REC


def test_propagation_keeps_the_given_order():
    opts = parse_mount_options(
        ["shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable"]
    )
    assert opts.propagation == [
        MS_SHARED,
        MS_SHARED | MS_REC,
        MS_SLAVE,
        MS_SLAVE | MS_REC,
        MS_PRIVATE,
        MS_PRIVATE | MS_REC,
        MS_UNBINDABLE,
        MS_UNBINDABLE | MS_REC,
    ]
    assert opts.flags == 0 and opts.data == ""


def test_rootfs_propagation_values():
    assert ROOTFS_PROPAGATION == {
        "shared": MS_SHARED,
        "slave": MS_SLAVE,
        "private": MS_PRIVATE,
        "unbindable": MS_UNBINDABLE,
        "rshared": MS_SHARED | MS_REC,
        "rslave": MS_SLAVE | MS_REC,
        "rprivate": MS_PRIVATE | MS_REC,
        "runbindable": MS_UNBINDABLE | MS_REC,
    }


def test_recursive_attributes_go_to_mount_setattr():
    opts = parse_mount_options(["rbind", "rro", "rnosuid", "rnodev", "rnoexec"])
    assert opts.attr_set == (
        mo.MOUNT_ATTR_RDONLY | mo.MOUNT_ATTR_NOSUID | mo.MOUNT_ATTR_NODEV | mo.MOUNT_ATTR_NOEXEC
    )
    assert opts.attr_clr == 0
    assert opts.flags == MS_BIND | MS_REC
    assert opts.has_rec_attr


def test_recursive_negation_moves_the_attribute_to_clr():
    opts = parse_mount_options(["rro", "rrw", "rsuid", "rdev", "rexec"])
    assert opts.attr_set == 0
    assert opts.attr_clr == (
        mo.MOUNT_ATTR_RDONLY | mo.MOUNT_ATTR_NOSUID | mo.MOUNT_ATTR_NODEV | mo.MOUNT_ATTR_NOEXEC
    )


def test_recursive_atime_setting_also_clears_the_atime_field():
    # mount_setattr(2): an atime mode in attr_set needs MOUNT_ATTR__ATIME in attr_clr.
    opts = parse_mount_options(["rnoatime"])
    assert opts.attr_set == mo.MOUNT_ATTR_NOATIME
    assert opts.attr_clr == mo.MOUNT_ATTR__ATIME
    relatime = parse_mount_options(["rrelatime"])
    assert relatime.attr_set == mo.MOUNT_ATTR_RELATIME == 0
    assert relatime.attr_clr == mo.MOUNT_ATTR__ATIME
    assert relatime.has_rec_attr
    nodiratime = parse_mount_options(["rnodiratime"])
    assert nodiratime.attr_clr == 0


def test_extensions():
    opts = parse_mount_options(["tmpcopyup", "mode=755"])
    assert opts.tmpcopyup and opts.data == "mode=755"
    assert parse_mount_options(["idmap"]).idmap
    assert not parse_mount_options(["idmap"]).ridmap
    assert parse_mount_options(["ridmap"]).ridmap
    assert parse_mount_options(["ridmap"]).idmap
    assert not parse_mount_options(["ridmap", "idmap"]).ridmap
    assert parse_mount_options(["idmap", "ridmap"]).ridmap


def test_unknown_options_and_defaults_are_filesystem_data_like_runc():
    # runc passes options whose flag is 0 ("defaults") and everything it does
    # not know (including "acl") through as data, in order.
    opts = parse_mount_options(["newinstance", "defaults", "ptmxmode=0666", "acl", "gid=5"])
    assert opts.data == "newinstance,defaults,ptmxmode=0666,acl,gid=5"
    assert opts.flags == 0


def test_known_mount_options_is_sorted_and_recognised():
    known = known_mount_options()
    assert known == sorted(set(known))
    for option in known:
        if option != "defaults":
            assert parse_mount_options([option]) != MountOptions(data=option), option
    assert "idmap" not in known and "ridmap" not in known


@pytest.mark.skipif(RUNC is None, reason="runc not installed")
def test_known_mount_options_match_runc_features():
    out = subprocess.run([RUNC, "features"], capture_output=True, check=True, text=True).stdout
    runc = set(json.loads(out)["mountOptions"])
    # runc 1.1 still maps acl/noacl to MS_POSIXACL; newer runc dropped them.
    assert set(known_mount_options()) == runc - {"acl", "noacl"}


FLAG_OPTIONS = [
    o for o in known_mount_options() if o in mo._FLAGS and mo._FLAGS[o][1] and not mo._FLAGS[o][0]
]
DATA_OPTIONS = st.from_regex(r"[a-z]{1,8}=[0-9]{1,5}", fullmatch=True)


@given(st.lists(st.sampled_from(FLAG_OPTIONS), unique=True), st.randoms())
def test_any_permutation_of_flag_options_gives_the_same_flags(options, rnd):
    shuffled = list(options)
    rnd.shuffle(shuffled)
    assert parse_mount_options(options).flags == parse_mount_options(shuffled).flags


@given(st.lists(st.sampled_from(known_mount_options()) | DATA_OPTIONS))
def test_flags_and_clear_flags_never_overlap(options):
    opts = parse_mount_options(options)
    assert opts.flags & opts.clear_flags == 0
    assert opts.attr_set & opts.attr_clr & ~mo.MOUNT_ATTR__ATIME == 0


@given(st.lists(st.sampled_from(known_mount_options()) | DATA_OPTIONS))
def test_data_keeps_exactly_the_unrecognised_options_in_order(options):
    expected = [o for o in options if o == "defaults" or o not in known_mount_options()]
    assert parse_mount_options(options).data == ",".join(expected)
