"""ocipy.check: each probe agrees with what the test reads from the host
itself, and nothing is left behind."""
from __future__ import annotations

import os

import pytest

from ocipy import check as chk
from ocipy.capabilities import last_cap, mask_to_caps


@pytest.fixture(scope="module")
def items():
    return {i["name"]: i for i in chk.check()}


def _cap_bounding() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))


def test_every_item_has_a_status_what_was_found_and_what_it_means(items):
    for i in items.values():
        assert i["status"] in ("OK", "WARN", "FAIL"), i
        assert i["found"] and i["meaning"], i


def test_the_cgroup_layout_is_the_one_mountinfo_shows(items):
    with open("/proc/self/mountinfo") as f:
        fstypes = {line.split(" - ")[1].split()[0] for line in f}
    found = items["cgroups"]["found"]
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        assert found.startswith("cgroup v2")
    elif "cgroup2" in fstypes:
        assert found.startswith("hybrid")
    else:
        assert found.startswith("v1")


def test_missing_bounding_capabilities_are_named(items):
    missing = mask_to_caps(((1 << (last_cap() + 1)) - 1) & ~_cap_bounding())
    i = items["capabilities"]
    if not missing:
        assert i["status"] == "OK"
        return
    assert i["status"] in ("WARN", "FAIL")
    for cap in missing:
        assert cap in i["found"] and cap in i["meaning"]
    if "CAP_SYS_RESOURCE" in missing:  # this machine: say what it breaks
        assert "rlimits" in i["meaning"]


@pytest.mark.parametrize("kind, file", [("mount", "mnt"), ("pid", "pid"), ("network", "net"),
                                        ("user", "user"), ("time", "time")])
def test_namespaces_are_the_ones_proc_shows(items, kind, file):
    present = os.path.exists(f"/proc/self/ns/{file}")
    assert (items[f"namespace {kind}"]["status"] == "OK") == present


def test_system_call_probes_agree_with_the_kernel_version(items):
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    if os.uname().machine != "x86_64":
        pytest.skip("the probes know x86_64 numbers only")
    assert (items["openat2"]["status"] == "OK") == ((major, minor) >= (5, 6))
    assert (items["clone3"]["status"] == "OK") == ((major, minor) >= (5, 3))
    assert (items["mount_setattr"]["status"] == "OK") == ((major, minor) >= (5, 12))


def test_the_pidfd_probe_leaves_no_fd_open():
    before = set(os.listdir("/proc/self/fd"))
    chk._syscall_available("pidfd_open")
    assert set(os.listdir("/proc/self/fd")) == before


def test_render_summarises_failures_and_warnings():
    text = chk.render([chk.item("a", "OK", "x", "y"), chk.item("b", "WARN", "x", "y"),
                       chk.item("c", "FAIL", "x", "y")])
    assert text.endswith("not ready: 1 FAIL, 1 WARN\n")
