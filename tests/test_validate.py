"""ocipy.validate: every problem of a bundle, each at its JSON path, with a
suggestion where one fits; a valid bundle has none.  Pure: nothing is
created (the rootfs is a small tree made here)."""
from __future__ import annotations

import copy
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocipy.spec import default_spec
from ocipy.validate import validate


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    (root / "bin" / "busybox").write_text("#!/bin/true\n")
    (root / "bin" / "busybox").chmod(0o755)
    os.symlink("/bin/busybox", root / "bin" / "sh")  # absolute: inside the rootfs
    return root


def base(rootfs) -> dict:
    config = default_spec()
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["process"]["args"] = ["sh"]
    config["process"]["env"] = ["PATH=/bin"]
    return config


def check(tmp_path, config) -> list[tuple[str, str, str | None]]:
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(config))
    _, problems = validate(str(bundle))
    return [(p.path, p.message, p.suggestion) for p in problems]


def _hook(path):
    return lambda c: c.setdefault("hooks", {}).setdefault("prestart", []).append({"path": path})


# mistake -> (how to make it, the path it must be reported at, a word of the
# message, the suggestion or None)
MISTAKES = {
    "namespace twice": (lambda c: c["linux"]["namespaces"].append({"type": "pid"}),
                        "linux.namespaces[{n}].type", "already given", None),
    "overlapping uid ranges": (
        lambda c: (c["linux"]["namespaces"].append({"type": "user"}),
                   c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 10},
                                                  {"containerID": 5, "hostID": 5000, "size": 2}],
                                     gidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}])),
        "linux.uidMappings[1]", "overlaps", None),
    "relative destination": (lambda c: c["mounts"].append({"destination": "data", "type": "tmpfs",
                                                           "source": "tmpfs"}),
                             "mounts[{m}].destination", "not an absolute path", '"/data"'),
    "readonly option": (lambda c: c["mounts"].append({"destination": "/d", "type": "tmpfs",
                                                      "source": "tmpfs",
                                                      "options": ["nosuid", "readonly"]}),
                        "mounts[{m}].options[1]", "not a mount option", '"ro"'),
    "capability without CAP_": (lambda c: c["process"]["capabilities"]["bounding"].append(
        "NET_ADMIN"), "process.capabilities.bounding[{b}]", "not a capability",
        '"CAP_NET_ADMIN"'),
    "misspelt capability": (lambda c: c["process"]["capabilities"]["permitted"].append(
        "CAP_SYSADMIN"), "process.capabilities.permitted[{p}]", "not a capability",
        '"CAP_SYS_ADMIN"'),
    "device outside /dev": (lambda c: c["linux"].update(devices=[{"path": "/tmp/null",
                                                                 "type": "c", "major": 1,
                                                                 "minor": 3}]),
                            "linux.devices[0].path", "not under /dev", None),
    "program not on PATH": (lambda c: c["process"].update(args=["bash"]),
                            "process.args[0]", "not an executable", None),
    "hook not absolute": (_hook("hooks/x"), "hooks.prestart[0].path", "not an absolute path",
                          None),
    "hook missing": (_hook("/no/such/hook"), "hooks.prestart[0].path", "does not exist", None),
    "hook not executable": (_hook(os.path.abspath(__file__)), "hooks.prestart[0].path",
                            "not an executable file", None),
    "soft above hard": (lambda c: c["process"].setdefault("rlimits", []).append(
        {"type": "RLIMIT_CORE", "soft": 9, "hard": 1}), "process.rlimits[{r}]",
        "above the hard limit", None),
}


def _expected_path(template: str, config: dict) -> str:
    return template.format(n=len(config["linux"]["namespaces"]) - 1,
                           m=len(config["mounts"]) - 1,
                           b=len(config["process"]["capabilities"]["bounding"]) - 1,
                           p=len(config["process"]["capabilities"]["permitted"]) - 1,
                           r=len(config["process"].get("rlimits") or [1]) - 1)


def test_the_default_spec_with_a_rootfs_is_valid(tmp_path, rootfs):
    assert check(tmp_path, base(rootfs)) == []


@pytest.mark.parametrize("name", MISTAKES)
def test_each_mistake_is_reported_at_its_path(tmp_path, rootfs, name):
    make, template, word, suggestion = MISTAKES[name]
    config = base(rootfs)
    make(config)
    found = check(tmp_path, config)
    path = _expected_path(template, config)
    at_path = [p for p in found if p[0] == path]
    assert at_path, found
    assert any(word in message for _, message, _ in at_path), found
    if suggestion:
        assert suggestion in [s for _, _, s in at_path], found


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.sampled_from(sorted(MISTAKES)), min_size=1, max_size=5, unique=True))
def test_every_mistake_is_reported_not_just_the_first(tmp_path, rootfs, names):
    config = base(rootfs)
    expected = []
    for name in names:
        make, template, word, _ = MISTAKES[name]
        before = copy.deepcopy(config)
        make(config)
        expected.append((_expected_path(template, config), word, before))
    found = check(tmp_path, config)
    for path, word, _ in expected:
        if path.startswith("hooks.prestart"):
            continue  # several hook mistakes share prestart[0]: the index moves
        assert any(p == path and word in m for p, m, _ in found), (path, word, found)


def test_an_unreadable_or_broken_file_is_one_problem(tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    assert [p.message for p in validate(str(bundle))[1]] == ["no such file"]
    (bundle / "config.json").write_text("{not json")
    (problem,) = validate(str(bundle))[1]
    assert problem.message.startswith("invalid JSON at line 1 column 2")


def test_schema_problems_are_all_listed(tmp_path, rootfs):
    config = base(rootfs)
    config["process"]["user"]["uid"] = -1
    config["hostname"] = 5
    paths = [p for p, _, _ in check(tmp_path, config)]
    assert "process.user.uid" in paths and "hostname" in paths
