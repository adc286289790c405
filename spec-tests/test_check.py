"""`ocipy check` through the CLI (issue #7).  ocipy only."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.ocipy_only


def test_check_reports_each_item_and_exits_by_failures(runtime):
    text = runtime.cmd("check")
    doc = runtime.cmd("check", "--format", "json")
    items = json.loads(doc.stdout)
    assert {i["status"] for i in items} <= {"OK", "WARN", "FAIL"}
    failed = [i["name"] for i in items if i["status"] == "FAIL"]
    # this suite runs containers, so the host it runs on has no FAIL
    assert failed == [] and text.returncode == doc.returncode == 0, text.stdout
    for i in items:
        assert f"{i['status']:<4}  {i['name']}" in text.stdout
    assert text.stdout.splitlines()[-1].startswith("ready: 0 FAIL")
    names = [i["name"] for i in items]
    for wanted in ("kernel", "cgroups", "seccomp", "openat2", "pidfd_open", "clone3",
                   "mount_setattr", "namespace time", "AppArmor", "SELinux", "capabilities"):
        assert wanted in names


def test_check_refuses_an_unknown_format(runtime):
    proc = runtime.cmd("check", "--format", "yaml")
    assert proc.returncode == 1 and proc.stderr.startswith("ocipy: ")
