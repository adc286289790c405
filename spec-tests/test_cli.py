"""The runc-compatible command line: errors, logging, list, spec, features,
--version, --help and container-id rules."""
from __future__ import annotations

import json
import os
import re
from datetime import datetime

import pytest

COMMANDS = ["create", "start", "run", "state", "kill", "delete", "list", "spec", "features"]
VERSION_RE = re.compile(r"\d+\.\d+\.\d+")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- unknown containers --------------------------------------------------------

@pytest.mark.parametrize("command", ["state", "start", "kill", "delete"])
def test_commands_on_a_missing_container_fail(runtime, command):
    proc = runtime.cmd(command, "spec-no-such-container")
    assert proc.returncode == 1, proc
    assert runtime.ids() == []


@pytest.mark.ocipy_only
@pytest.mark.parametrize("command", ["state", "start", "kill", "delete"])
def test_missing_container_error_is_one_line(runtime, command):
    proc = runtime.cmd(command, "spec-no-such-container")
    assert proc.returncode == 1
    assert proc.stderr == 'ocipy: container "spec-no-such-container" does not exist\n'
    assert proc.stdout == ""


# ---- logging -------------------------------------------------------------------

def test_a_newline_in_a_config_value_keeps_the_error_on_one_line(runtime, bundle, tmp_path):
    # control characters are written as escapes, as runc's %q does
    bundle.args = ["no\nsuch\tprogram"]
    log = tmp_path / "log.json"
    proc = runtime.cmd("--log", log, "--log-format", "json", "run", "--bundle", bundle.write(),
                       runtime.new_id("nl"))
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert 'no\\nsuch\\tprogram' in proc.stderr, proc.stderr
    assert len(log.read_text().splitlines()) == 1


def test_log_json_appends_an_error_line(runtime, tmp_path):
    log = tmp_path / "runtime.log"
    log.write_text('{"level":"info","msg":"earlier line","time":"2020-01-01T00:00:00Z"}\n')
    proc = runtime.cmd("--log", log, "--log-format", "json", "kill", "spec-no-such-container")
    assert proc.returncode == 1
    lines = log.read_text().splitlines()
    assert lines[0] == '{"level":"info","msg":"earlier line","time":"2020-01-01T00:00:00Z"}'
    entry = json.loads(lines[-1])
    assert entry["level"] == "error"
    assert isinstance(entry["msg"], str) and entry["msg"]
    assert abs((_parse_time(entry["time"]) - datetime.now().astimezone()).total_seconds()) < 60


@pytest.mark.ocipy_only
def test_log_json_line_carries_the_error_message(runtime, tmp_path):
    log = tmp_path / "runtime.log"
    proc = runtime.cmd("--log", log, "--log-format", "json", "state", "spec-no-such-container")
    assert proc.returncode == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert list(entry) == ["level", "msg", "time"]
    assert entry["level"] == "error"
    assert entry["msg"] == 'container "spec-no-such-container" does not exist'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", entry["time"])


# ---- list --------------------------------------------------------------------------

@pytest.fixture
def created(runtime, bundle):
    bundle.sh("exec sleep 1000")
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    return cid


def test_list_prints_a_table(runtime, bundle, created):
    lines = runtime.list().stdout.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == 1
    row = rows[0]
    assert row[:4] == [created, str(runtime.pids[created]), "created", str(bundle.path)]
    _parse_time(row[4])
    assert row[5] == "root"


def test_list_format_json(runtime, bundle, created):
    entries = json.loads(runtime.list("--format", "json").stdout)
    assert isinstance(entries, list) and len(entries) == 1
    entry = entries[0]
    assert entry["id"] == created
    assert entry["pid"] == runtime.pids[created]
    assert entry["status"] == "created"
    assert entry["bundle"] == str(bundle.path)


def test_list_quiet_prints_ids_only(runtime, created):
    assert runtime.list("-q").stdout == f"{created}\n"


# ---- spec / features / version / help -----------------------------------------------

def test_spec_writes_a_config_create_accepts(runtime, bundle_factory, util):
    b = bundle_factory("from-spec")
    runtime.cmd("spec", "--bundle", b.path, check=True)
    config = json.loads(b.config_path.read_text())
    assert config["process"]["terminal"] is True
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "echo from-spec"]
    config["root"] = {"path": str(util.ROOTFS), "readonly": True}
    b.config = config
    cid = runtime.new_id()
    runtime.create(cid, b)
    runtime.start(cid)
    assert runtime.wait(cid) == 0
    assert runtime.stdout(cid) == "from-spec\n"


def test_spec_rootless_adds_a_user_namespace(runtime, tmp_path):
    (tmp_path / "rootless").mkdir()
    runtime.cmd("spec", "--rootless", "--bundle", tmp_path / "rootless", check=True)
    config = json.loads((tmp_path / "rootless" / "config.json").read_text())
    linux = config["linux"]
    types = [ns["type"] for ns in linux["namespaces"]]
    assert "user" in types
    assert "network" not in types
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getgid(), "size": 1}]


def test_features_prints_oci_version_range(runtime):
    proc = runtime.cmd("features", check=True)
    features = json.loads(proc.stdout)
    assert VERSION_RE.match(features["ociVersionMin"])
    assert VERSION_RE.match(features["ociVersionMax"])


def test_version(runtime):
    proc = runtime.cmd("--version", check=True)
    lines = proc.stdout.splitlines()
    assert re.match(r"\S+ version \S+", lines[0]), proc.stdout
    assert any(re.fullmatch(r"spec: \d+\.\d+\.\d+\S*", line) for line in lines), proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_accepts_help(runtime, command):
    proc = runtime.cmd(command, "--help")
    assert proc.returncode == 0, proc
    assert command in proc.stdout
    assert runtime.ids() == []


# ---- container ids ------------------------------------------------------------------

def test_duplicate_container_id_is_refused(runtime, bundle, created):
    first_pid = runtime.pids[created]
    proc = runtime.create(created, bundle, check=False)
    assert proc.returncode == 1
    state = runtime.state(created)
    assert state["status"] == "created"
    assert state["pid"] == first_pid
