"""ocipy._pycfinder: the launcher's finder for ocipy's own modules.

It must give a module exactly what the standard path gives (same spec,
file, cache path, resources) and step aside whenever the standard loader
would not use the .pyc as it is.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

import ocipy
from ocipy import _pycfinder, launcher
from ocipy.launcher import launcher_source


def _compile(source: Path, **kwargs) -> Path:
    cached = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(source), cfile=str(cached), doraise=True, **kwargs)
    return cached


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A directory with one module and one package, both compiled."""
    (tmp_path / "plain.py").write_text("VALUE = 42\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "__init__.py").write_text("NAME = __name__\n")
    (tmp_path / "sub" / "data.txt").write_text("payload")
    _compile(tmp_path / "plain.py")
    _compile(tmp_path / "sub" / "__init__.py")
    return tmp_path


def _load(spec):
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_up_to_date_pyc_is_loaded_as_the_standard_path_would(package):
    spec = _pycfinder.PycFinder().find_spec("ocipy.plain", [str(package)])
    standard = importlib.machinery.PathFinder.find_spec("plain", [str(package)])
    assert isinstance(spec.loader, _pycfinder._Loader)
    assert (spec.origin, spec.cached, spec.parent, spec.has_location) == \
        (standard.origin, standard.cached, "ocipy", True)
    module = _load(spec)
    assert module.VALUE == 42
    assert module.__file__ == str(package / "plain.py")
    assert module.__cached__ == standard.cached
    assert module.__spec__.submodule_search_locations is None


def test_a_package_gets_its_directory_as_path_and_its_resources(package):
    spec = _pycfinder.PycFinder().find_spec("ocipy.sub", [str(package)])
    assert spec.submodule_search_locations == [str(package / "sub")]
    module = _load(spec)
    assert module.NAME == "ocipy.sub"
    assert module.__path__ == [str(package / "sub")]
    assert spec.loader.get_resource_reader("ocipy.sub").files() \
        .joinpath("data.txt").read_text() == "payload"


def test_a_changed_source_makes_the_standard_path_recompile(package):
    source = package / "plain.py"
    source.write_text("VALUE = 430\n")  # another size
    assert _pycfinder.PycFinder().find_spec("ocipy.plain", [str(package)]) is None
    source.write_text("VALUE = 42\n")  # the same size, another mtime
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))
    assert _pycfinder.PycFinder().find_spec("ocipy.plain", [str(package)]) is None


def test_no_pyc_or_a_hash_based_one_is_left_to_the_standard_path(package):
    cached = Path(importlib.util.cache_from_source(str(package / "plain.py")))
    cached.unlink()
    assert _pycfinder.PycFinder().find_spec("ocipy.plain", [str(package)]) is None
    _compile(package / "plain.py",
             invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    assert _pycfinder.PycFinder().find_spec("ocipy.plain", [str(package)]) is None


def test_a_pyc_of_another_interpreter_is_left_to_the_standard_path(package):
    cached = Path(importlib.util.cache_from_source(str(package / "plain.py")))
    data = bytearray(cached.read_bytes())
    data[0] ^= 0xFF  # another magic number
    cached.write_bytes(bytes(data))
    assert _pycfinder.PycFinder().find_spec("ocipy.plain", [str(package)]) is None


def test_an_extension_module_of_the_same_name_wins_as_with_filefinder(package):
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (package / f"plain{suffix}").write_bytes(b"")
    assert _pycfinder.PycFinder().find_spec("ocipy.plain", [str(package)]) is None


def test_the_launchers_static_code_is_used_only_for_the_source_it_was_built_from(package):
    # the embedded launcher's table: module -> (frozen name, source mtime_ns, size)
    source = package / "plain.py"
    st = source.stat()
    table = {"ocipy.plain": ("_ocipy_code:ocipy.plain", st.st_mtime_ns, st.st_size, False)}
    spec = _pycfinder.PycFinder(frozen=table).find_spec("ocipy.plain", [str(package)])
    assert (spec.loader._static, spec.loader._data) == ("_ocipy_code:ocipy.plain", None)
    assert (spec.origin, spec.cached) == (str(source), importlib.util.cache_from_source(
        str(source)))
    assert spec.submodule_search_locations is None
    # a package: its directory as __path__, as the standard path gives it
    init = package / "sub" / "__init__.py"
    table["ocipy.sub"] = ("_ocipy_code:ocipy.sub", init.stat().st_mtime_ns, init.stat().st_size,
                          True)
    spec = _pycfinder.PycFinder(frozen=table).find_spec("ocipy.sub", [str(package)])
    standard = importlib.machinery.PathFinder.find_spec("sub", [str(package)])
    assert spec.loader._static == "_ocipy_code:ocipy.sub"
    assert (spec.origin, spec.cached, spec.submodule_search_locations) == (
        standard.origin, standard.cached, standard.submodule_search_locations)
    # an edit since (another mtime, or size): its .pyc, as without the table
    for changed in ((st.st_mtime_ns + 1, st.st_size), (st.st_mtime_ns, st.st_size + 1)):
        table["ocipy.plain"] = ("_ocipy_code:ocipy.plain", *changed, False)
        spec = _pycfinder.PycFinder(frozen=table).find_spec("ocipy.plain", [str(package)])
        assert spec.loader._static is None and spec.loader._data is not None
        assert _load(spec).VALUE == 42


def test_a_finder_changed_since_the_build_is_given_no_static_code_table(tmp_path):
    # the table's layout is the one of the finder built in: a finder edited
    # since (the boot code loads it from the source) gets none, and ocipy's
    # modules load from their .pyc, where they would fail with a table it
    # does not read the same way
    table = {"ocipy.cli": ("_ocipy_code:ocipy.cli", 1, 2, "a layout of another finder")}
    source = launcher.launcher_source(embedded=True, frozen=table)
    st = os.stat(_pycfinder.__file__)
    assert f"{st.st_mtime_ns}, {st.st_size})" in source
    source = source.replace(f"{st.st_mtime_ns}, {st.st_size})", f"{st.st_mtime_ns + 1}, "
                            f"{st.st_size})").replace(
        "from ocipy.__main__ import main\nmain()\n",
        "import ocipy.cli\nprint(sys.meta_path[0]._frozen, type(ocipy.cli.__loader__).__name__)\n")
    script = tmp_path / "boot.py"
    script.write_text(source)
    out = subprocess.run([sys.executable, "-I", "-S", str(script)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["{}", "_Loader"]


def test_a_known_extension_module_is_loaded_from_its_file_without_a_search():
    import _json

    st = os.stat(_json.__file__)
    known = {"_json": (_json.__file__, st.st_mtime_ns, st.st_size)}
    finder = _pycfinder.PycFinder(extensions=known)
    spec = finder.find_spec("_json", None)
    standard = importlib.machinery.PathFinder.find_spec("_json")
    assert type(spec.loader) is type(standard.loader)
    assert (spec.name, spec.origin, spec.has_location, spec.cached, spec.parent) == (
        standard.name, standard.origin, standard.has_location, standard.cached, standard.parent)
    assert finder.find_spec("_json", ["/somewhere"]) is None  # a submodule search: not ours
    # another file there since the build: left to the standard path
    known["_json"] = (_json.__file__, st.st_mtime_ns, st.st_size + 1)
    assert _pycfinder.PycFinder(extensions=known).find_spec("_json", None) is None


def test_only_submodules_of_ocipy_are_its_business(package):
    finder = _pycfinder.PycFinder()
    assert finder.find_spec("plain", [str(package)]) is None
    assert finder.find_spec("ocipyx.plain", [str(package)]) is None
    assert finder.find_spec("ocipy.plain", None) is None
    assert finder.find_spec("ocipy.missing", [str(package)]) is None


def test_given_the_packages_parent_it_loads_the_package_too(package, tmp_path):
    # the embedded launcher installs its frozen copy of the finder before
    # ocipy is imported: the package itself then comes from its .pyc too
    parent = tmp_path / "parent"
    (parent / "ocipy").mkdir(parents=True)
    (parent / "ocipy" / "__init__.py").write_text("NAME = __name__\n")
    (parent / "ocipy" / "data.txt").write_text("payload")
    _compile(parent / "ocipy" / "__init__.py")
    assert _pycfinder.PycFinder().find_spec("ocipy", None) is None  # not told where
    finder = _pycfinder.PycFinder(str(parent))
    assert finder.find_spec("ocipy", [str(parent)]) is None  # a submodule search: not ours
    spec = finder.find_spec("ocipy", None)
    standard = importlib.machinery.PathFinder.find_spec("ocipy", [str(parent)])
    assert (spec.origin, spec.cached, spec.submodule_search_locations, spec.parent) == (
        standard.origin, standard.cached, standard.submodule_search_locations, "ocipy")
    module = _load(spec)
    assert module.NAME == "ocipy"
    assert spec.loader.get_resource_reader("ocipy").files().joinpath(
        "data.txt").read_text() == "payload"


def test_the_launcher_loads_ocipys_modules_through_it(tmp_path):
    # the launcher's source, run up to main(), then asked how ocipy.cli and
    # ocipy.state were loaded (their .pyc written first by a plain import)
    subprocess.run([sys.executable, "-c", "import ocipy.cli, ocipy.state"], check=True,
                   env={**os.environ, "PYTHONPATH": str(Path(ocipy.__file__).parent.parent)})
    source = launcher_source().replace(
        "\nmain()\n", "\nimport ocipy.cli, ocipy.state\n"
        "print(type(ocipy.cli.__loader__).__name__, ocipy.state.__spec__.cached)\n")
    script = tmp_path / "launcher.py"
    script.write_text(source)
    out = subprocess.run([sys.executable, "-I", "-S", str(script)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["_Loader", importlib.util.cache_from_source(
        str(Path(ocipy.__file__).parent / "state.py"))]


def test_the_cli_runs_without_the_cycle_collector_until_it_waits():
    # __main__.main pauses it; ocipy._resume_gc (a foreground run or exec,
    # events) turns it back on, and only if the CLI was the one to pause it
    code = """
import gc, sys
import ocipy, ocipy.cli, ocipy.__main__
def fake_main(argv):
    before = gc.isenabled()
    ocipy._resume_gc()
    print(before, gc.isenabled(), flush=True)
    return 0
ocipy.cli.main = fake_main
ocipy.__main__.main()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]
    untouched = subprocess.run(
        [sys.executable, "-c",
         "import gc, ocipy; gc.disable(); ocipy._resume_gc(); print(gc.isenabled())"],
        capture_output=True, text=True, check=True).stdout.split()
    assert untouched == ["False"]
