"""ocipy.spec: the example config.json, checked against the installed runc."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from ocipy import OCI_VERSION, spec
from ocipy.errors import OcipyError
from ocipy.spec import default_spec, dump_spec, write_spec

RUNC = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
needs_runc = pytest.mark.skipif(RUNC is None, reason="runc not installed")


def _runc_spec(tmp_path, *args: str) -> bytes:
    subprocess.run([RUNC, "spec", *args], cwd=tmp_path, check=True, capture_output=True)
    return (tmp_path / "config.json").read_bytes()


def _with_our_version(runc_bytes: bytes) -> bytes:
    runc_version = json.loads(runc_bytes)["ociVersion"]
    return runc_bytes.replace(
        f'"ociVersion": "{runc_version}"'.encode(), f'"ociVersion": "{OCI_VERSION}"'.encode(), 1
    )


@needs_runc
@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_is_byte_for_byte_runc_spec(tmp_path, rootless):
    expected = _with_our_version(_runc_spec(tmp_path, *(["--rootless"] if rootless else [])))
    assert dump_spec(default_spec(rootless)).encode() == expected


@needs_runc
@pytest.mark.parametrize("rootless", [False, True])
def test_write_spec_writes_what_runc_writes(tmp_path, rootless):
    (tmp_path / "runc").mkdir()
    (tmp_path / "ocipy").mkdir()
    expected = _with_our_version(
        _runc_spec(tmp_path / "runc", *(["--rootless"] if rootless else []))
    )
    write_spec(str(tmp_path / "ocipy"), rootless)
    assert (tmp_path / "ocipy" / "config.json").read_bytes() == expected


@needs_runc
def test_refuses_to_overwrite_with_runcs_message(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    runc = subprocess.run([RUNC, "spec"], cwd=tmp_path, capture_output=True, text=True, check=False)
    runc_msg = re.search(r'msg="([^"]*)"', runc.stderr)[1]
    with pytest.raises(OcipyError) as info:
        write_spec(str(tmp_path), False)
    assert str(info.value) == runc_msg == "File config.json exists. Remove it first"
    assert (tmp_path / "config.json").read_text() == "{}"


def test_refuses_to_overwrite_a_symlink(tmp_path):
    (tmp_path / "config.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(OcipyError, match=r"exists\. Remove it first"):
        write_spec(str(tmp_path), False)
    assert not (tmp_path / "elsewhere.json").exists()


def test_missing_bundle_is_an_error_with_errno(tmp_path):
    with pytest.raises(OcipyError) as info:
        write_spec(str(tmp_path / "nope"), False)
    assert info.value.errno == 2
    assert str(info.value).endswith("no such file or directory")


def test_empty_bundle_means_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_spec("", False)
    assert json.loads((tmp_path / "config.json").read_text()) == default_spec(False)


def test_file_has_tab_indent_and_no_trailing_newline(tmp_path):
    write_spec(str(tmp_path), False)
    text = (tmp_path / "config.json").read_text()
    assert text.startswith('{\n\t"ociVersion": "1.2.0",\n\t"process": {\n\t\t"terminal": true,')
    assert text.endswith("\n}")


def test_default_spec_is_json_and_uses_our_oci_version():
    data = default_spec()
    assert json.loads(json.dumps(data)) == data
    assert data["ociVersion"] == OCI_VERSION == "1.2.0"


def test_each_call_returns_a_fresh_dict():
    a = default_spec()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["mounts"][1]["options"].append("ro")
    assert default_spec() == default_spec()
    assert "CAP_SYS_ADMIN" not in default_spec()["process"]["capabilities"]["bounding"]
    assert "ro" not in default_spec()["mounts"][1]["options"]


def test_rootless_spec_maps_the_caller_and_drops_network_and_resources():
    data = default_spec(rootless=True, cgroupns=False)
    linux = data["linux"]
    assert [ns["type"] for ns in linux["namespaces"]] == ["pid", "ipc", "uts", "mount", "user"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    sys_mount = next(m for m in data["mounts"] if m["destination"] == "/sys")
    assert sys_mount == {
        "destination": "/sys",
        "type": "none",
        "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    }
    for mount in data["mounts"]:
        assert not any(o.startswith(("uid=", "gid=")) for o in mount.get("options", []))


@pytest.mark.parametrize("rootless, last", [(False, "cgroup"), (True, "user")])
def test_cgroup_namespace_is_added_on_cgroup2_hosts(rootless, last):
    types = [ns["type"] for ns in default_spec(rootless, cgroupns=True)["linux"]["namespaces"]]
    assert "cgroup" in types and types[-1] == last
    types = [ns["type"] for ns in default_spec(rootless, cgroupns=False)["linux"]["namespaces"]]
    assert "cgroup" not in types


@pytest.mark.parametrize(
    "fstype, expected", [("cgroup2", True), ("tmpfs", False), ("cgroup", False)]
)
def test_cgroup2_detection_reads_the_last_mount_on_sys_fs_cgroup(
    tmp_path, monkeypatch, fstype, expected
):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:20 / /sys rw,nosuid - sysfs sysfs rw\n"
        "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw\n"
        f"31 22 0:27 / /sys/fs/cgroup ro,nosuid - {fstype} {fstype} ro\n"
        "32 31 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    )
    monkeypatch.setattr(spec, "_MOUNTINFO", str(mountinfo))
    assert spec._cgroup2_unified() is expected
    types = [ns["type"] for ns in default_spec()["linux"]["namespaces"]]
    assert ("cgroup" in types) is expected


def test_cgroup2_detection_agrees_with_the_host():
    statfs_type = subprocess.run(
        ["stat", "-f", "-c", "%T", "/sys/fs/cgroup"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not statfs_type:
        pytest.skip("stat -f unavailable")
    assert spec._cgroup2_unified() is (statfs_type == "cgroup2fs")
