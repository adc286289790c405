"""Invalid configs are refused at create, cleanly: exit 1, one line on stderr,
and nothing left behind (no state, no process, no mount)."""
from __future__ import annotations

import re

import pytest


def _refused(runtime, bundle, util):
    """Create must fail with exit 1 and leave nothing behind; return the result."""
    before = set(util.descendants())
    cid = runtime.new_id()
    proc = runtime.create(cid, bundle, check=False)
    assert proc.returncode == 1, proc
    assert runtime.ids() == [], "a state dir was left in the root"
    assert runtime.cmd("state", cid).returncode == 1
    assert util.live_descendants(exclude=before) == set(), "a process was left behind"
    assert util.mounts_under(bundle.path.parent) == []
    return proc


def _one_line(proc) -> str:
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr.rstrip("\n")


# ---- invalid values ------------------------------------------------------------

def test_invalid_config_is_refused_and_leaves_nothing_behind(runtime, bundle, util):
    bundle.process["user"]["uid"] = -1
    _refused(runtime, bundle, util)


@pytest.mark.ocipy_only
def test_invalid_config_error_names_the_field(runtime, bundle, util):
    bundle.process["user"]["uid"] = -1
    line = _one_line(_refused(runtime, bundle, util))
    assert line.startswith("ocipy: invalid config.json: process.user.uid: "), line


@pytest.mark.ocipy_only
def test_unknown_capability_is_an_error(runtime, bundle, util):
    bundle.process["capabilities"]["bounding"] = ["CAP_KILL", "CAP_NO_SUCH_THING"]
    line = _one_line(_refused(runtime, bundle, util))
    assert line.startswith("ocipy: ") and "CAP_NO_SUCH_THING" in line, line


def test_duplicate_namespace_is_an_error(runtime, bundle, util):
    bundle.linux["namespaces"].append({"type": "ipc"})
    _refused(runtime, bundle, util)


def test_namespace_path_of_the_wrong_type_is_an_error(runtime, bundle, util, netns):
    bundle.add_namespace("uts", str(netns()))
    _refused(runtime, bundle, util)


def test_hostname_without_uts_namespace_is_an_error(runtime, bundle, util):
    bundle.config["hostname"] = "spec"
    bundle.remove_namespace("uts")
    _refused(runtime, bundle, util)


def _uid_minus_one(bundle, netns):
    bundle.process["user"]["uid"] = -1


def _unknown_capability(bundle, netns):
    bundle.process["capabilities"]["bounding"] = ["CAP_KILL", "CAP_NO_SUCH_THING"]


def _duplicate_namespace(bundle, netns):
    bundle.linux["namespaces"].append({"type": "ipc"})


def _namespace_path_of_wrong_type(bundle, netns):
    bundle.add_namespace("uts", str(netns()))


def _hostname_without_uts(bundle, netns):
    bundle.config["hostname"] = "spec"
    bundle.remove_namespace("uts")


def _missing_executable(bundle, netns):
    bundle.args = ["nonexistent"]


@pytest.mark.ocipy_only
@pytest.mark.parametrize("break_config", [
    _uid_minus_one, _unknown_capability, _duplicate_namespace, _namespace_path_of_wrong_type,
    _hostname_without_uts, _missing_executable,
], ids=lambda f: f.__name__.lstrip("_"))
def test_create_errors_are_one_line_without_traceback(runtime, bundle, util, netns,
                                                      break_config):
    break_config(bundle, netns)
    line = _one_line(_refused(runtime, bundle, util))
    assert line.startswith("ocipy: "), line


# ---- process ---------------------------------------------------------------------

def test_missing_executable_fails_at_create(runtime, bundle, util):
    bundle.args = ["nonexistent"]
    proc = _refused(runtime, bundle, util)
    # runc's text log format escapes the quotes: compare the message itself.
    message = proc.stderr.replace('\\"', '"')
    assert 'exec: "nonexistent": executable file not found in $PATH' in message, proc.stderr


@pytest.mark.ocipy_only
def test_config_without_process_can_be_created_but_not_started(runtime, bundle, util):
    # runtime-spec config.md: process is OPTIONAL, REQUIRED only when start is called.
    del bundle.config["process"]
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    assert runtime.status(cid) == "created"
    proc = runtime.start(cid, check=False)
    assert proc.returncode == 1
    assert re.match(r"ocipy: .*process", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
