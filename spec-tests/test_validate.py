"""`ocipy validate` through the CLI on real bundles: every problem listed,
exit status, text and JSON, and nothing created (issue #7).  ocipy only:
runc has no validate."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.ocipy_only


def test_a_valid_bundle_passes(runtime, bundle):
    proc = runtime.cmd("validate", "--bundle", bundle.write())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.endswith(": valid\n") and proc.stderr == ""


def test_every_problem_is_listed_with_its_path_and_a_suggestion(runtime, bundle, util):
    bundle.config["mounts"][0].setdefault("options", []).append("readonly")
    bundle.process["capabilities"]["bounding"].append("NET_ADMIN")
    bundle.process["args"] = ["no-such-program"]
    bundle.linux["namespaces"].append({"type": "uts"})
    bundle.linux["namespaces"].append({"type": "uts"})
    before = util.host_mounts()
    proc = runtime.cmd("validate", "--bundle", bundle.write())
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    n = len(bundle.config["mounts"][0]["options"]) - 1
    assert f'mounts[0].options[{n}]: "readonly" is not a mount option; did you mean "ro"?' in lines
    assert any(line.startswith("process.capabilities.bounding[") and '"CAP_NET_ADMIN"' in line
               for line in lines), lines
    assert any(line.startswith('process.args[0]: "no-such-program"') for line in lines), lines
    assert any("already given by linux.namespaces" in line for line in lines), lines
    assert lines[-1].startswith(f"{len(lines) - 1} problems in ")
    # one error line for the failure, as every command
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("ocipy: validate ")
    assert runtime.ids() == [] and util.host_mounts() == before


def test_json_output_for_machines(runtime, bundle, tmp_path):
    bundle.process["cwd"] = "relative"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(bundle.config))
    bundle.write()
    proc = runtime.cmd("validate", "--format", "json", "--bundle", str(bundle.path), str(other))
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["valid"] is False and doc["config"] == str(other)
    assert {"path": "process.cwd", "message": '"relative" is not an absolute path',
            "suggestion": '"/relative"'} in doc["problems"]
