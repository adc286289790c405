"""What the Python side imports on the hot path (issue 6).

Every `create`, `run` and `exec` pays for each module it imports, and one
careless import pulls in others: `array` imports `collections` (about 3 ms,
which every foreground `run` once paid).  These run real containers with the
interpreter's `-X importtime` report and allow, beyond the interpreter's own
start-up modules and ocipy's, only the small C modules the hot path needs.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ocipy_only

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
# builtin or tiny modules only (not even os: see ocipy/_os.py): stat's C
# module, errno names, fd flags, the signal forwarding and the socketpair of
# `run`, JSON in C, the switch of the cycle collector (__main__.py).  Not
# select: `start` polls its fifo through the spawn module, loaded anyway
ALLOWED = {"_stat", "__future__", "_json", "_signal", "_socket", "errno", "fcntl",
           "time", "gc"}


def _imported(report: str) -> set[str]:
    names = set()
    for line in report.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


def _interpreter_start_up(tmp: Path) -> set[str]:
    """What the interpreter imports before a script's first line, as for the
    launcher (a script, not -c: the two differ)."""
    script = tmp / "empty.py"
    script.write_text("")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-I", "-S", str(script)],
                          capture_output=True, text=True, timeout=20, check=True)
    return _imported(proc.stderr)


@pytest.fixture
def traced(tmp_path: Path, runtime):
    """The runtime run as `python -X importtime` on the launcher's code (the
    script form: .venv/bin/ocipy-py, the embedded form, runs the same code
    but takes no -X option), its report (stderr, where a created init's
    stderr goes too) appended to a file."""
    if not VENV_PYTHON.exists():
        pytest.fail("no virtualenv: run make setup")
    launcher = tmp_path / "ocipy-py"
    subprocess.run([str(VENV_PYTHON), "-m", "ocipy.launcher", "--script", str(launcher)],
                   check=True, timeout=60)
    report = tmp_path / "imports"
    wrapper = tmp_path / "ocipy-traced"
    wrapper.write_text(f"#!/bin/sh\nexec {VENV_PYTHON} -X importtime -I -S {launcher} "
                       f"\"$@\" 2>>{report}\n")
    wrapper.chmod(0o755)
    traced_rt = type(runtime)(str(wrapper), runtime.root, tmp_path / "traced-io")
    return traced_rt, report


def _unexpected(report: Path) -> set[str]:
    imported = _imported(report.read_text())
    ours = {m for m in imported if m == "ocipy" or m.startswith("ocipy.")}
    assert "ocipy.container" in ours, "the report names no ocipy module"
    return imported - ours - _interpreter_start_up(report.parent) - ALLOWED


def test_create_imports_only_what_it_needs(traced, runtime, bundle):
    traced_rt, report = traced
    bundle.args = ["sleep", "1000"]
    cid = runtime.new_id("imports")
    bundle.write()
    traced_rt.cmd("create", "--bundle", bundle.path, cid, check=True)
    assert _unexpected(report) == set()
    runtime.cmd("delete", "--force", cid, check=True)


def test_a_foreground_run_imports_only_what_it_needs(traced, runtime, bundle):
    traced_rt, report = traced
    bundle.args = ["true"]
    bundle.write()
    proc = traced_rt.cmd("run", "--bundle", bundle.path, runtime.new_id("imports"))
    assert proc.returncode == 0, proc.stderr
    assert _unexpected(report) == set()


def test_exec_imports_only_what_it_needs(traced, runtime, bundle):
    traced_rt, report = traced
    bundle.args = ["sleep", "1000"]
    bundle.write()
    cid = runtime.new_id("imports")
    runtime.cmd("run", "-d", "--bundle", bundle.path, cid, check=True)
    proc = traced_rt.cmd("exec", cid, "true")
    assert proc.returncode == 0, proc.stderr
    assert _unexpected(report) == set()
    runtime.cmd("delete", "--force", cid, check=True)
    assert not os.path.exists(runtime.root / cid)


# ---- the embedded launcher (ocipy/launcher.py), which takes no -X option -------
# Built with its own boot code, then asked at the CLI's exit which modules it
# has: the set allowed is the same, beyond what the embedded interpreter has
# before its boot code runs (its frozen modules included) and the launcher's
# frozen copy of ocipy/_pycfinder.py.

_DUMP_AT_EXIT = """import sys
import ocipy._os as _os
_real_exit = _os._exit
def _exit(code):
    spawn = sys.modules.get("ocipy._native.spawn")
    with open({report!r}, "a") as f:
        f.write(" ".join(sorted(sys.modules)) + "\\n")
        f.write(str(spawn and spawn.__spec__.origin) + "\\n")
    _real_exit(code)
_os._exit = _exit
del _os
from ocipy.__main__ import main
main()
"""


@pytest.fixture(scope="module")
def embedded_start_up(tmp_path_factory) -> set[str]:
    from ocipy import launcher

    probe = tmp_path_factory.mktemp("start-up") / "probe"
    launcher.build_embedded(str(probe), boot="import sys\nprint(' '.join(sys.modules))\n",
                            builtin_spawn=False)
    out = subprocess.run([str(probe)], capture_output=True, text=True, timeout=30, check=True)
    return set(out.stdout.split())


@pytest.fixture(scope="module")
def embedded_binary(tmp_path_factory) -> tuple[Path, Path]:
    """An embedded launcher built as make setup builds it, which writes
    sys.modules (and where the spawn module came from) to a file when the
    CLI exits."""
    from ocipy import launcher

    tmp = tmp_path_factory.mktemp("embedded")
    report = tmp / "modules"
    boot = launcher.launcher_source(embedded=True)
    assert boot.endswith("from ocipy.__main__ import main\nmain()\n")
    boot = boot[:-len("from ocipy.__main__ import main\nmain()\n")] + \
        _DUMP_AT_EXIT.format(report=str(report))
    binary = tmp / "ocipy-py"
    launcher.build_embedded(str(binary), boot=boot)
    return binary, report


@pytest.fixture
def embedded(tmp_path: Path, runtime, embedded_binary, embedded_start_up):
    binary, report = embedded_binary
    report.unlink(missing_ok=True)
    return type(runtime)(str(binary), runtime.root, tmp_path / "embedded-io"), report, \
        embedded_start_up


def _unexpected_embedded(report: Path, start_up: set[str]) -> set[str]:
    from ocipy import launcher

    modules = set(report.read_text().splitlines()[0].split())
    assert "ocipy.container" in modules, "the report names no ocipy module"
    assert "_ocipy_pycfinder" in modules and "ocipy._pycfinder" not in modules
    ours = {m for m in modules if m == "ocipy" or m.startswith("ocipy.")}
    # the launcher copies in the static code of these at start, and leaves
    # the rest to fault in: a module missing there is paid page by page
    assert ours - {"ocipy._native.spawn"} <= set(launcher.HOT_MODULES)
    # Cython's module init registers its runtime (cython_runtime and the
    # shared function type's _cython_<version>): no import, no file
    cython = {m for m in modules if m == "cython_runtime" or m.startswith("_cython_")}
    return modules - ours - cython - start_up - ALLOWED - {"_ocipy_pycfinder"}


@pytest.mark.parametrize("command", ["create", "run", "exec"])
def test_the_embedded_launcher_imports_only_what_it_needs(embedded, runtime, bundle, command):
    embedded_rt, report, start_up = embedded
    bundle.args = ["true"] if command == "run" else ["sleep", "1000"]
    bundle.write()
    cid = runtime.new_id("imports")
    if command == "create":
        embedded_rt.cmd("create", "--bundle", bundle.path, cid, check=True)
    elif command == "run":
        proc = embedded_rt.cmd("run", "--bundle", bundle.path, cid)
        assert proc.returncode == 0, proc.stderr
    else:
        runtime.cmd("run", "-d", "--bundle", bundle.path, cid, check=True)
        proc = embedded_rt.cmd("exec", cid, "true")
        assert proc.returncode == 0, proc.stderr
    assert _unexpected_embedded(report, start_up) == set()
    if command != "run":
        runtime.cmd("delete", "--force", cid, check=True)
    # the spawn extension came built in
    assert report.read_text().splitlines()[1] == "built-in"
