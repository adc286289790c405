"""The Python launcher, .venv/bin/ocipy-py (ocipy/launcher.py): the embedded
program (src/ocipy/_native/launcher.c) must behave as the script launcher,
`python -I -S` on the same code, does."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ocipy import launcher

REPO = Path(__file__).resolve().parent.parent
INSTALLED = REPO / ".venv" / "bin" / "ocipy-py"

# what a probe reports: the interpreter's set-up as the boot code sees it
FACTS = """\
import codecs, encodings, json, sys, __future__
flags = sys.flags
print(json.dumps({
    "argv": sys.argv[1:], "executable": sys.executable, "path": sys.path,
    "flags": [flags.isolated, flags.no_site, flags.safe_path, flags.ignore_environment,
              flags.no_user_site, flags.utf8_mode, flags.dont_write_bytecode,
              flags.optimize, flags.dev_mode],
    "fs": [sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()],
    "stdio": [sys.stdin.encoding, sys.stdout.encoding, sys.stdout.errors],
    "encodings_path": list(encodings.__path__), "future_file": __future__.__file__,
    "codecs": [codecs.lookup(n).name for n in ("cp1252", "utf-16", "idna", "latin-1")],
}))
"""


def _script(tmp_path: Path, boot: str) -> list[str]:
    """The script launcher's way to run boot: python -I -S on a file."""
    path = tmp_path / "probe.py"
    path.write_text(boot)
    return [sys.executable, "-I", "-S", str(path)]


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("launcher") / "probe"
    launcher.build_embedded(str(out), boot=FACTS, builtin_spawn=False)
    return out


@pytest.mark.parametrize("env", [
    {},  # what the bench and containerd's shim give: PATH at most
    {"PATH": "/usr/bin:/bin", "LANG": "C"},
    {"LC_ALL": "C.UTF-8"},
    {"PYTHONPATH": "/nowhere", "PYTHONUTF8": "0", "PYTHONDONTWRITEBYTECODE": "1",
     "PYTHONOPTIMIZE": "2", "PYTHONHOME": "/nowhere"},  # -I: none of these count
])
def test_the_embedded_launcher_sets_python_up_as_python_dash_i_s(probe, tmp_path, env):
    # an argument that is no UTF-8 (paths are bytes): decoded the same way
    args = [b"create", b"x y", b"caf\xe9"]
    embedded = subprocess.run([bytes(probe), *args], env=env, capture_output=True,
                              timeout=30, check=True)
    script = subprocess.run([*map(os.fsencode, _script(tmp_path, FACTS)), *args], env=env,
                            capture_output=True, timeout=30, check=True)
    ours, theirs = json.loads(embedded.stdout), json.loads(script.stdout)
    # sys.executable: the script's is the interpreter running it, the
    # embedded one's the virtualenv's python, as with the installed script
    assert ours.pop("executable") == sys.executable
    theirs.pop("executable")
    assert ours == theirs
    assert ours["argv"][:2] == ["create", "x y"]
    assert ours["argv"][2] in ("caf\udce9", "caf\xe9")  # UTF-8 mode, or a latin-1 locale
    assert ours["future_file"].endswith("/__future__.py")
    assert ours["codecs"] == ["cp1252", "utf-16", "idna", "iso8859-1"]


@pytest.mark.parametrize("boot", [
    "import sys; sys.exit(3)",
    "raise RuntimeError('boom')",
    "import sys; sys.stdout.write('out'); sys.stderr.write('err')",
    "raise KeyboardInterrupt",
])
def test_exit_status_and_output_are_pythons(tmp_path, boot):
    binary = tmp_path / "boot"
    launcher.build_embedded(str(binary), boot=boot + "\n", builtin_spawn=False)
    # check=False: the failing statuses are what is compared
    embedded = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30,
                              check=False)
    script = subprocess.run(_script(tmp_path, boot + "\n"), capture_output=True, text=True,
                            timeout=30, check=False)
    assert embedded.returncode == script.returncode
    assert embedded.stdout == script.stdout
    # a traceback names the file: the script's path, the embedded "<string>"
    assert embedded.stderr.splitlines()[-1:] == script.stderr.splitlines()[-1:]
    if "KeyboardInterrupt" in boot:
        assert embedded.returncode == -signal.SIGINT  # re-raised, as python3 does


def test_make_setup_installs_the_embedded_launcher():
    # Debian 12 has everything it needs (python3-dev's static libpython, gcc)
    with open(INSTALLED, "rb") as f:
        assert f.read(4) == b"\x7fELF", "the script launcher was installed"


def test_the_installed_launcher_runs_ocipys_modules_from_its_static_code(tmp_path):
    # no .pyc of ocipy is read: every module comes from the code built in
    # (ocipy/_freeze.py), which `make` rebuilds whenever a source changes
    trace = tmp_path / "trace"
    subprocess.run(["strace", "-f", "-e", "trace=openat", "-o", str(trace), str(INSTALLED),
                    "--root", str(tmp_path / "root"), "list"],
                   capture_output=True, timeout=30, check=True)
    opened = trace.read_text()
    package = str(REPO / "src" / "ocipy")
    assert f'"{package}/cli.py"' not in opened
    assert [line for line in opened.splitlines() if package in line and ".pyc" in line] == []
    assert f"{launcher.PACKAGE_CODE_PREFIX}ocipy.cli".encode() in INSTALLED.read_bytes()


@pytest.mark.parametrize("args", [["--version"], ["state", "no-such-container"], ["spec", "-h"]])
def test_the_installed_launcher_answers_as_the_script_does(tmp_path, args):
    script = tmp_path / "ocipy-py"
    assert launcher.install(str(script), script=True) == "script"
    root = ["--root", str(tmp_path / "root")]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    ours = subprocess.run([str(INSTALLED), *root, *args], capture_output=True, timeout=30,
                          env=env, check=False)
    theirs = subprocess.run([str(script), *root, *args], capture_output=True, timeout=30,
                            env=env, check=False)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        theirs.returncode, theirs.stdout, theirs.stderr)


def test_without_a_static_libpython_the_script_is_installed(tmp_path, monkeypatch, capsys):
    import sysconfig

    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var",
                        lambda name: "libnone.a" if name == "LIBRARY" else real(name))
    path = tmp_path / "ocipy-py"
    assert launcher.install(str(path)) == "script"
    assert path.read_text() == launcher.launcher_source()
    assert os.access(path, os.X_OK)
    assert "the embedded launcher was not built" in capsys.readouterr().err


def test_the_frozen_modules_are_this_interpreters():
    header, code = launcher.embedded_sources("pass\n")
    for name in launcher.FROZEN:  # as static code (ocipy/_freeze.py)
        assert f'{{"{name}", ocipy_code_marker, 6, {int(name == "encodings")}, ' in header
    assert f"PY_VERSION_HEX != {sys.hexversion:#x}" in code
    # the boot code and sys.executable as wide strings (code points)
    assert ", ".join(str(ord(c)) for c in sys.executable) in header


def test_the_boot_code_is_frozen_and_run_by_a_one_line_command(tmp_path):
    # start-up compiles `import _ocipy_boot`, not the boot code itself
    header, _ = launcher.embedded_sources("pass\n")
    command = "import " + launcher.BOOT_MODULE
    assert f"OCIPY_BOOT[] = {launcher._c_wide(command)};" in header
    assert f'{{"{launcher.BOOT_MODULE}", ocipy_code_marker, 6, 0, ' in header
    binary = tmp_path / "boot"
    launcher.build_embedded(str(binary), builtin_spawn=False, boot=(
        "import sys\n"
        "print(__name__, __spec__.origin, sys.argv, '__main__' in sys.modules)\n"))
    out = subprocess.run([str(binary), "a b"], capture_output=True, text=True, timeout=30,
                         check=True)
    assert out.stdout == f"{launcher.BOOT_MODULE} frozen {[str(binary), 'a b']} True\n"


def test_the_boot_code_puts_the_extension_modules_first_and_ocipy_before_all(tmp_path):
    # the script launcher's sys.path, as the embedded one runs the same code
    script = tmp_path / "ocipy-py"
    launcher.install(str(script), script=True)
    code = script.read_text().replace("from ocipy._pycfinder import install\n", "").replace(
        "install()\nfrom ocipy.__main__ import main\nmain()\n",
        "import json\nprint(json.dumps(sys.path))\n")
    path = json.loads(subprocess.run(_script(tmp_path, code), capture_output=True, text=True,
                                     timeout=30, check=True).stdout)
    assert path[0] == str(REPO / "src")
    assert path[1].endswith("/lib-dynload")
    assert path.index(path[1]) == path.index(path[1], 1)  # listed once
    assert any(p.endswith("/site-packages") for p in path[-1:])


@pytest.mark.parametrize("so_unchanged", [True, False])
def test_the_spawn_extension_is_built_in_and_the_same(tmp_path, so_unchanged):
    # make setup links spawn into the launcher (launcher._builtin_spawn): it
    # must be what ocipy._pycfinder imports there, and hand out the same
    # ocipy-init image as the extension module the tests import; once the
    # .so is rebuilt (here: another mtime in the boot code), the .so it is
    import hashlib

    from ocipy._native import spawn

    assert launcher._builtin_spawn(), "spawn.c or ocipy-init missing after make setup"
    fd = spawn.init_image_fd()
    try:
        expected = hashlib.sha256(os.pread(fd, 1 << 22, 0)).hexdigest()
    finally:
        os.close(fd)
    boot = launcher.launcher_source(embedded=True).replace(
        "from ocipy.__main__ import main\nmain()\n",
        "import hashlib, os\nimport ocipy._native.spawn as s\n"
        "fd = s.init_image_fd()\n"
        "print(s.__spec__.origin, hashlib.sha256(os.pread(fd, 1 << 22, 0)).hexdigest())\n")
    so = launcher._spawn_extension()
    if not so_unchanged:
        mtime = str(os.stat(so).st_mtime_ns)
        assert boot.count(mtime) == 1
        boot = boot.replace(mtime, mtime + "1")
    binary = tmp_path / "probe"
    launcher.build_embedded(str(binary), boot=boot)
    out = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.split() == ["built-in" if so_unchanged else so, expected]


def test_without_spawns_generated_c_the_launcher_imports_the_extension(tmp_path, monkeypatch):
    real = os.path.isfile
    monkeypatch.setattr(os.path, "isfile", lambda p: not p.endswith("/spawn.c") and real(p))
    assert launcher._builtin_spawn() == []
    boot = launcher.launcher_source().replace(
        "from ocipy.__main__ import main\nmain()\n",
        "import ocipy._native.spawn as s\nprint(s.__spec__.origin)\n")
    binary = tmp_path / "probe"
    launcher.build_embedded(str(binary), boot=boot)
    out = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip().endswith(".so")


@pytest.mark.parametrize("fresh", [True, False])
def test_the_embedded_launcher_runs_its_frozen_finder_while_the_source_is_unchanged(
        tmp_path, fresh):
    # its copy of ocipy/_pycfinder.py loads the package and its modules;
    # with the source changed since the build (here: another mtime in the
    # boot code) it imports the finder from the source instead
    probe = ("import sys, ocipy.state\n"
             "print('_ocipy_pycfinder' in sys.modules, 'ocipy._pycfinder' in sys.modules,"
             " type(ocipy.__loader__).__name__, type(ocipy.state.__loader__).__name__)\n")
    boot = launcher.launcher_source(embedded=True).replace(
        "from ocipy.__main__ import main\nmain()\n", probe)
    if not fresh:
        mtime = os.stat(launcher._pycfinder_source()).st_mtime_ns
        assert str(mtime) in boot
        boot = boot.replace(str(mtime), str(mtime + 1))
    binary = tmp_path / "probe"
    launcher.build_embedded(str(binary), boot=boot, builtin_spawn=False)
    out = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30, check=True)
    if fresh:
        assert out.stdout.split() == ["True", "False", "_Loader", "_Loader"]
    else:
        # the package then comes the standard way; its modules through the finder
        assert out.stdout.split() == ["False", "True", "SourceFileLoader", "_Loader"]
