"""`--debug`: every step of create, start, exec and delete is logged with its
duration, so a slow or failing container can be diagnosed from the log
alone (issue #7).  ocipy only: runc's --debug logs other things."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.ocipy_only

CREATE_STEPS = ["load and validate config.json", "plan", "state dir",
                "create cgroups and write linux.resources", "clone",
                "child ready (namespaces, rootfs, ocipy-init)", "state: created"]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_json_debug_log_times_every_step_of_a_lifecycle(runtime, bundle, tmp_path):
    log = tmp_path / "debug.json"
    flags = ["--debug", "--log", str(log), "--log-format", "json"]
    bundle.args = ["sleep", "100"]
    cid = runtime.new_id("dbg")
    runtime.cmd(*flags, "create", "--bundle", bundle.write(), cid, check=True)
    created = _lines(log)
    msgs = [e["msg"] for e in created]
    # the parent's steps, in order, each with a duration
    steps = [m for m in msgs if m in CREATE_STEPS]
    assert steps == CREATE_STEPS, msgs
    for entry in created[1:]:
        assert entry["level"] == "debug"
        assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0, entry
    # the child's own steps: every mount of the config, in order, by index
    mounts = [m for m in msgs if m.startswith("child: mount [")]
    expected = [f'child: mount [{i}] "{m["destination"]}"'
                for i, m in enumerate(bundle.config["mounts"])]
    assert mounts == expected, msgs
    assert any(m.startswith("child: pivot") for m in msgs), msgs
    # the child entered its cgroups itself, first (child.c join_cgroups)
    child_steps = [m for m in msgs if m.startswith("child: ")]
    assert child_steps[0] == 'child: cgroup "enter the cgroups"', msgs

    log.write_text("")
    runtime.cmd(*flags, "start", cid, check=True)
    assert [e["msg"] for e in _lines(log)][1:] == [
        "exec fifo: released the init, waited for its execve"]

    log.write_text("")
    runtime.cmd(*flags, "exec", cid, "true", check=True)
    msgs = [e["msg"] for e in _lines(log)]
    for step in ("plan the process", "clone", "execve"):
        assert step in msgs, msgs

    log.write_text("")
    runtime.cmd(*flags, "delete", "--force", cid, check=True)
    msgs = [e["msg"] for e in _lines(log)]
    assert msgs[1:] == ["kill the container and wait for it", "remove cgroups",
                        "remove the state dir"], msgs


def test_text_debug_log_has_durations_and_no_debug_means_no_lines(runtime, bundle, tmp_path):
    log = tmp_path / "debug.log"
    bundle.args = ["true"]
    proc = runtime.cmd("--debug", "--log", str(log), "run", "--bundle", bundle.write(),
                       runtime.new_id("dbg"))
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert 'level=debug msg="plan" duration_ms=' in text, text
    assert 'msg="child: mount [0] ' in text, text

    quiet = tmp_path / "quiet.log"
    proc = runtime.cmd("--log", str(quiet), "run", "--bundle", bundle.write(),
                       runtime.new_id("dbg"))
    assert proc.returncode == 0, proc.stderr
    assert not quiet.exists() or quiet.read_text() == ""


def test_a_failing_create_logs_its_steps_then_the_error(runtime, bundle, tmp_path):
    log = tmp_path / "debug.json"
    bundle.args = ["/no/such/program"]
    proc = runtime.cmd("--debug", "--log", str(log), "--log-format", "json", "create",
                       "--bundle", bundle.write(), runtime.new_id("dbg"))
    assert proc.returncode == 1
    entries = _lines(log)
    assert "clone" in [e["msg"] for e in entries]
    assert entries[-1]["level"] == "error"
    assert entries[-1]["msg"] == proc.stderr.strip().removeprefix("ocipy: ")


def test_debug_log_of_a_container_with_hundreds_of_mounts(runtime, bundle, tmp_path):
    # one trace record per mount, all sent while the child sets itself up:
    # more than a socket's buffer holds, so the parent must be reading them
    # (a child sharing the parent's memory until its execve would wait for
    # a reader that waits for it)
    log = tmp_path / "debug.json"
    count = 400
    # their mount points made in a tmpfs of the container's, not in the rootfs
    bundle.add_mount("/tmp", "tmpfs", "tmpfs", ["nosuid", "size=64k"])
    for i in range(count):
        bundle.add_mount(f"/tmp/many/{i}", "tmpfs", "tmpfs", ["nosuid", "size=64k"])
    bundle.args = ["sh", "-c", "grep -c ' /tmp/many/' /proc/self/mountinfo"]
    proc = runtime.cmd("--debug", "--log", str(log), "--log-format", "json", "run",
                       "--bundle", bundle.write(), runtime.new_id("dbg"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(count)
    mounts = [e["msg"] for e in _lines(log) if e["msg"].startswith("child: mount [")]
    assert len(mounts) == len(bundle.config["mounts"]), mounts[-3:]
