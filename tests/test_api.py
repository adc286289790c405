"""The Python API without containers: typed configs, ConfigError's path and
reason, State, and that `import ocipy` stays light for the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ocipy
from ocipy.spec import default_spec


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    config = default_spec()
    config["process"]["args"] = ["sh"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path, config


def test_load_config_returns_typed_objects(bundle):
    path, config = bundle
    cfg = ocipy.load_config(str(path))
    assert isinstance(cfg, ocipy.Config)
    assert isinstance(cfg.process, ocipy.Process) and cfg.process.args == ["sh"]
    assert cfg.process.user.uid == 0
    assert cfg.process.no_new_privileges is config["process"].get("noNewPrivileges")
    assert all(isinstance(ns, ocipy.Namespace) for ns in cfg.linux.namespaces)
    assert [ns.type for ns in cfg.linux.namespaces] == \
        [ns["type"] for ns in config["linux"]["namespaces"]]
    assert [m.destination for m in cfg.mounts] == [m["destination"] for m in config["mounts"]]
    with pytest.raises(AttributeError):
        cfg.hostname = "x"  # frozen
    # the file itself, not only a bundle
    assert ocipy.load_config(str(path / "config.json")) == cfg


def test_unknown_keys_are_kept_and_the_document_comes_back(bundle):
    path, config = bundle
    config["windows"] = {"layerFolders": ["C:\\\\x"]}
    config["process"]["x-extension"] = {"a": 1}
    (path / "config.json").write_text(json.dumps(config))
    cfg = ocipy.load_config(str(path))
    assert cfg.extra == {"windows": {"layerFolders": ["C:\\\\x"]}}
    assert cfg.process.extra == {"x-extension": {"a": 1}}
    assert cfg.to_dict() == config


@pytest.mark.parametrize("mutate, path, word", [
    (lambda c: c["process"]["user"].update(uid=-1), "process.user.uid", "minimum"),
    (lambda c: c["mounts"].append({"destination": 5}), "mounts[7].destination", "not a string"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "linux.namespaces[5].type",
     "already given"),
    (lambda c: c.pop("ociVersion"), "", "ociVersion"),
])
def test_a_bad_config_raises_one_config_error_with_path_and_reason(bundle, mutate, path, word):
    bundle_path, config = bundle
    mutate(config)
    (bundle_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ocipy.ConfigError) as raised:
        ocipy.load_config(str(bundle_path))
    error = raised.value
    assert isinstance(error, ocipy.OcipyError)
    assert error.path == path, (error.path, error.reason)
    assert word in error.reason


def test_state_round_trips_the_state_document():
    doc = {"ociVersion": "1.2.0", "id": "c", "status": "running", "pid": 42,
           "bundle": "/b", "annotations": {"a": "b"}, "created": "2026-01-01T00:00:00Z",
           "owner": "root"}
    state = ocipy.State.from_dict(doc)
    assert state.status == "running" and state.pid == 42
    assert state.to_dict() == doc


@settings(max_examples=30, deadline=None)
@given(hostname=st.text(min_size=1, max_size=20), args=st.lists(st.text(max_size=5), min_size=1))
def test_any_valid_config_survives_the_round_trip(hostname, args):
    config = default_spec()
    config["hostname"] = hostname
    config["process"]["args"] = args
    assert ocipy.Config.from_dict(config).to_dict() == config


def test_import_ocipy_imports_no_api_module():
    # every CLI call imports the package: attrs and the API load on use only
    code = ("import sys, ocipy; print(sorted(m for m in sys.modules "
            "if m == 'attrs' or m.startswith('ocipy.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    code = "import sys, ocipy; ocipy.Runtime; print('attrs' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "True"


def test_the_cli_hot_path_never_imports_attrs(tmp_path):
    code = ("import sys; from ocipy import cli, container, state, launch, plan; "
            "print('attrs' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
