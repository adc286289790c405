"""ocipy.features: the runtime-spec Features structure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

import ocipy
from ocipy import features as feat
from ocipy.capabilities import CAPABILITIES
from ocipy.mountopts import known_mount_options, parse_mount_options

RUNC = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)


def _runc_features() -> dict:
    out = subprocess.run([RUNC, "features"], capture_output=True, check=True, text=True).stdout
    return json.loads(out)


def test_document_is_json_with_required_versions():
    doc = feat.features()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["ociVersionMin"] == "1.0.0"
    assert doc["ociVersionMax"] == ocipy.OCI_VERSION


def test_keys_follow_runtime_spec_1_2():
    doc = feat.features()
    assert list(doc) == [
        "ociVersionMin",
        "ociVersionMax",
        "hooks",
        "mountOptions",
        "linux",
        "annotations",
    ]
    assert set(doc["linux"]) <= {
        "namespaces",
        "capabilities",
        "cgroup",
        "seccomp",
        "apparmor",
        "selinux",
        "intelRdt",
        "mountExtensions",
    }


def test_hooks_are_all_six_in_lifecycle_order():
    assert feat.features()["hooks"] == [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ]


def test_mount_options_are_the_ones_the_parser_recognises():
    options = feat.features()["mountOptions"]
    assert options == known_mount_options()
    assert "rro" in options and "tmpcopyup" in options and "rbind" in options
    assert "mode=755" not in options
    assert parse_mount_options(["acl"]).data == "acl" and "acl" not in options


def test_capabilities_are_every_name_the_config_may_use():
    caps = feat.features()["linux"]["capabilities"]
    assert caps == list(CAPABILITIES)
    assert caps[0] == "CAP_CHOWN" and caps[-1] == "CAP_CHECKPOINT_RESTORE"


def test_namespaces_are_sorted_and_recognised():
    namespaces = feat.features()["linux"]["namespaces"]
    assert namespaces == sorted(namespaces)
    assert {"pid", "network", "mount", "ipc", "uts", "user", "cgroup"} <= set(namespaces)


def test_cgroup_flags_come_from_the_module_constants(monkeypatch):
    assert feat.features()["linux"]["cgroup"] == {
        "v1": True,
        "v2": True,
        "systemd": True,  # cgroups/systemd.py
        "systemdUser": False,
        "rdma": False,
    }
    monkeypatch.setattr(feat, "CGROUP_SYSTEMD", False)
    assert feat.features()["linux"]["cgroup"]["systemd"] is False


def test_seccomp_reports_what_the_kernel_and_libseccomp_support():
    from ocipy.seccomp import supported

    seccomp = feat.features()["linux"]["seccomp"]
    assert seccomp == supported()
    assert seccomp["enabled"] is True
    assert "SCMP_ACT_ERRNO" in seccomp["actions"]
    assert "SCMP_CMP_MASKED_EQ" in seccomp["operators"]
    assert "SCMP_ARCH_X86_64" in seccomp["archs"]
    assert "SECCOMP_FILTER_FLAG_LOG" in seccomp["knownFlags"]
    assert set(seccomp["supportedFlags"]) <= set(seccomp["knownFlags"])


def test_lsms_are_enabled_only_where_the_host_has_them(monkeypatch):
    # the same probes `ocipy check` reports
    from ocipy import host

    linux = feat.features()["linux"]
    assert linux["apparmor"]["enabled"] is host.apparmor_enabled()
    assert linux["selinux"]["enabled"] is host.selinux_enabled()
    monkeypatch.setattr(host, "apparmor_enabled", lambda: True)
    monkeypatch.setattr(host, "selinux_enabled", lambda: False)
    linux = feat.features()["linux"]
    assert linux["apparmor"] == {"enabled": True}
    assert linux["selinux"] == {"enabled": False}


def test_annotations_carry_the_ocipy_version():
    assert feat.features()["annotations"] == {"io.github.ocipy.version": ocipy.__version__}


@pytest.mark.skipif(RUNC is None, reason="runc not installed")
def test_lists_agree_with_runc_features():
    ours, runc = feat.features(), _runc_features()
    assert ours["hooks"] == runc["hooks"]
    # runc 1.1 predates time namespaces (runtime-spec 1.2); we have them
    assert ours["linux"]["namespaces"] == sorted([*runc["linux"]["namespaces"], "time"])
    assert ours["linux"]["capabilities"] == runc["linux"]["capabilities"]
    # same libseccomp, same kernel: the same actions and operators; our
    # archs are those this libseccomp knows
    ours_seccomp, runc_seccomp = ours["linux"]["seccomp"], runc["linux"]["seccomp"]
    assert ours_seccomp["actions"] == runc_seccomp["actions"]
    assert ours_seccomp["operators"] == runc_seccomp["operators"]
    assert set(runc_seccomp["archs"]) <= set(ours_seccomp["archs"])
