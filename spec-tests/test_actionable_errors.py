"""The mistakes people make most with a bundle, each answered by one line
that names the step, the object (with its JSON path) and the cause, and says
what to fix (issue #7; the table is docs/errors.md).  Every case runs a real
`ocipy run` on a broken bundle; conftest's cleanup asserts nothing is left.
ocipy only: the hints are ocipy's (runc's own wording is kept where clients
match on it)."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.ocipy_only


def _bounding_has(cap_bit: int) -> bool:
    with open("/proc/self/status") as f:
        return bool(next(int(line.split()[1], 16) for line in f
                         if line.startswith("CapBnd:")) >> cap_bit & 1)


CAP_SYS_RESOURCE = 24


def _drop_ns(kind):
    return lambda b: b.remove_namespace(kind)


def _mount(dest, type_, source, options=None):
    return lambda b: b.add_mount(dest, type_, source, options)


def _user_ns(b, uid=0):
    b.add_namespace("user")
    b.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 1000}]
    b.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 1000}]
    b.process["user"]["uid"] = uid


# name -> (break the bundle, words the one line must hold)
MISTAKES = {
    "invalid JSON": (lambda b: b.config_path.write_text('{"ociVersion": "1.2.0",\n  "root": }'),
                     ["invalid config.json", "invalid JSON at line 2"]),
    "rootfs missing": (lambda b: b.config["root"].update(path="no-such-rootfs"),
                       ["root.path", "no-such-rootfs", "does not exist"]),
    "relative cwd": (lambda b: b.process.update(cwd="work"),
                     ["process.cwd", '"work" is not an absolute path']),
    "program not found": (lambda b: b.process.update(args=["no-such-program"]),
                          ['exec: "no-such-program": executable file not found in $PATH']),
    "program is a directory": (lambda b: b.process.update(args=["/bin"]),
                               ['exec: "/bin"', "is a directory"]),
    # (on a directory the rootfs has: the suite's rootfs is shared, nothing is made in it)
    "filesystem type misspelt": (_mount("/home", "tmpfss", "tmpfs"),
                                 ['on "/home" (mounts[', "no such device", '"tmpfss" right?',
                                  "/proc/filesystems"]),
    "bind source missing": (_mount("/data", "bind", "/no/such/dir", ["rbind"]),
                            ["mounts[", "].source", "/no/such/dir", "no such file"]),
    "destination through a file": (_mount("/bin/busybox/sub", "tmpfs", "tmpfs"),
                                   ['"/bin/busybox/sub" (mounts[', "not a directory",
                                    "is a file in the rootfs"]),
    "user namespace without mappings": (lambda b: b.add_namespace("user"),
                                        ["linux.uidMappings", "needs id mappings"]),
    "mappings without a user namespace": (
        lambda b: b.linux.update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
        ["linux.uidMappings", "need a new user namespace"]),
    "uid not mapped": (lambda b: _user_ns(b, uid=5000),
                       ["switch to the user", "process.user.uid 5000 is not mapped by "
                        "linux.uidMappings"]),
    "namespace path missing": (lambda b: (b.remove_namespace("network"),
                                          b.add_namespace("network", "/run/netns/none-here")),
                               ["linux.namespaces[", "].path", "/run/netns/none-here",
                                "no such file"]),
    "namespace path of another type": (lambda b: (b.remove_namespace("network"),
                                                  b.add_namespace("network", "/proc/self/ns/uts")),
                                       ["/proc/self/ns/uts is a uts namespace, not a network"]),
    "hostname without a UTS namespace": (lambda b: (b.remove_namespace("uts"),
                                                    b.config.update(hostname="h")),
                                         ["hostname", "without a UTS namespace"]),
    "network sysctl without a network namespace": (
        lambda b: (b.remove_namespace("network"),
                   b.linux.update(sysctl={"net.ipv4.ip_forward": "1"})),
        ['linux.sysctl["net.ipv4.ip_forward"]', "needs a network namespace"]),
    "rlimit above the runtime's": (
        lambda b: b.process.update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1 << 24,
                                             "hard": 1 << 24}]),
        ["set RLIMIT_NOFILE (process.rlimits[0])", "CAP_SYS_RESOURCE"]),
    "oom_score_adj below the runtime's": (
        lambda b: b.process.update(oomScoreAdj=-1000),
        ["(process.oomScoreAdj)", "CAP_SYS_RESOURCE"]),
    "unknown capability": (lambda b: b.process["capabilities"]["bounding"].append("CAP_FOO"),
                           ["process.capabilities.bounding[", 'unknown capability "CAP_FOO"']),
    "cpuset the host lacks": (lambda b: b.linux.update(resources={"cpu": {"cpus": "63"}}),
                              ["linux.resources.cpu.cpus", "cpuset.cpus", "this host has CPUs"]),
    "memory limit too low to start": (
        lambda b: b.linux.update(resources={"memory": {"limit": 4096}}),
        ["it exited before it was ready", "out of memory?", "memory.limit is 4096 bytes"]),
    "hook missing": (lambda b: b.config.update(hooks={"prestart": [{"path": "/no/hook"}]}),
                     ['run prestart hook "/no/hook" (hooks.prestart[0])', "no such file"]),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_the_error_names_the_object_and_says_what_to_fix(runtime, bundle, name):
    breaks, words = MISTAKES[name]
    bundle.write()
    breaks(bundle)
    if name != "invalid JSON":
        bundle.write()
    if "CAP_SYS_RESOURCE" in words and _bounding_has(CAP_SYS_RESOURCE):
        # not a mistake where the runtime may raise its own limits
        proc = runtime.cmd("run", "--bundle", bundle.path, runtime.new_id("err"))
        assert proc.returncode == 0, proc.stderr
        return
    proc = runtime.cmd("run", "--bundle", bundle.path, runtime.new_id("err"))
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("ocipy: ") and proc.stderr.count("\n") == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)
    assert runtime.ids() == []


def test_a_bundle_without_config_json_says_which_directory(runtime, tmp_path):
    empty = tmp_path / "not-a-bundle"
    empty.mkdir()
    proc = runtime.cmd("create", "--bundle", empty, runtime.new_id("err"))
    assert proc.returncode == 1
    assert proc.stderr == (f'ocipy: invalid config.json: config.json: no such file in the '
                           f'bundle "{empty}": is --bundle the bundle directory?\n')


def test_a_terminal_without_a_console_socket_keeps_runcs_words(runtime, bundle):
    bundle.process["terminal"] = True
    proc = runtime.cmd("create", "--bundle", bundle.write(), runtime.new_id("err"))
    assert proc.returncode == 1
    assert "process.terminal is true but no --console-socket was given" in proc.stderr


def test_an_id_in_use_keeps_runcs_words(runtime, bundle):
    bundle.args = ["sleep", "100"]
    cid = runtime.new_id("err")
    runtime.create(cid, bundle)
    proc = runtime.cmd("create", "--bundle", bundle.write(), cid)
    assert proc.returncode == 1 and "container with id exists" in proc.stderr


def test_the_errors_document_lists_every_mistake_tested_here():
    import os

    doc = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "docs", "errors.md")).read()
    for name in MISTAKES:
        assert f"| {name} |" in doc, name
    json.dumps(sorted(MISTAKES))  # the names are plain text
