"""ocipy/_freeze.py: ocipy's modules as static code objects in the embedded
launcher.  The code the launcher holds must be the code compile() makes of
the same source, field by field, constant by constant."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ocipy
import ocipy.cli
from ocipy import _freeze, launcher

PACKAGE = Path(ocipy.__file__).resolve().parent


@given(st.binary(max_size=300))
def test_c_string_literals_hold_the_bytes(data):
    # its octal escapes read the same in a Python bytes literal
    literal = _freeze._c_string(data)
    pieces = [line.strip() for line in literal.splitlines()]
    assert all(p.startswith('"') and p.endswith('"') for p in pieces)
    assert b"".join(eval("b" + p) for p in pieces) == data  # our own literal


@pytest.mark.parametrize("source", ["x = 1j\n", "x = 1e999\n", "def f():\n    return -1e999\n"])
def test_a_module_with_a_constant_it_cannot_write_is_left_out(source):
    code, names = _freeze.write_c([("a", compile(source, "a.py", "exec")),
                                   ("b", compile("y = 'kept'\n", "b.py", "exec"))],
                                  sys.hexversion)
    assert names == ["b"]
    assert "ocipy_get_code_0" in code and "ocipy_get_code_1" not in code


def test_equal_constants_are_written_once():
    source = b"A = 'shared-text'\nB = (1000, 'shared-text')\n"
    code, names = _freeze.write_c([("a", compile(source, "a.py", "exec")),
                                   ("b", compile(source, "b.py", "exec"))], sys.hexversion)
    assert names == ["a", "b"]
    assert code.count('"shared-text"') == 1
    assert code.count(".ob_digit = {1000}") == 1


def test_the_hot_modules_objects_go_to_the_section_copied_in_at_start():
    # what the hot module shares with a cold one stays in the hot section
    hot = compile("A = 'shared-text'\n", "hot.py", "exec")
    cold = compile("B = ('shared-text', 'cold-only')\n", "cold.py", "exec")
    code, _ = _freeze.write_c([("hot", hot), ("cold", cold)], sys.hexversion, hot=1)
    where, section = {}, None
    for line in code.splitlines():
        if "__attribute__((section(" in line:
            section = line.split('section("')[1].split('"')[0]
        for text in ("shared-text", "cold-only"):
            if f'._data = "{text}"' in line:
                where[text] = section
    assert where == {"shared-text": _freeze.SECTION, "cold-only": _freeze.COLD_SECTION}


def test_the_launcher_holds_every_module_of_the_package():
    _, frozen = launcher.package_code()
    sources = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
        ".__init__") for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert set(frozen) == sources
    for module, (name, mtime_ns, size, package) in frozen.items():
        assert name == launcher.PACKAGE_CODE_PREFIX + module
        path = PACKAGE.parent.joinpath(*module.split("."))
        assert package == path.is_dir()
        path = path / "__init__.py" if package else path.with_suffix(".py")
        st_ = path.stat()
        assert (st_.st_mtime_ns, st_.st_size) == (mtime_ns, size)


def test_the_static_code_is_compiled_as_the_launcher_runs_it_whatever_the_builds_flags():
    # the launcher runs at optimisation level 0: docstrings and asserts kept
    # even when the build runs under PYTHONOPTIMIZE
    probe = ("from ocipy import launcher\n"
             "codes = dict(launcher.package_code()[0])\n"
             "print(codes[launcher.PACKAGE_CODE_PREFIX + 'ocipy.cli'].co_consts[0][:5])\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True, env={**os.environ, "PYTHONOPTIMIZE": "2"})
    assert out.stdout == ocipy.cli.__doc__[:5] + "\n"


def test_a_module_another_would_shadow_on_the_standard_path_is_left_out(tmp_path, monkeypatch):
    package = tmp_path / "ocipy"
    (package / "pkg").mkdir(parents=True)
    for name in ("__init__.py", "plain.py", "ext.py", "pkg.py", "pkg/__init__.py"):
        (package / name).write_text("X = 1\n")
    (package / "ext.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")  # an extension wins
    (package / "data").mkdir()  # no __init__.py: a namespace portion, which a module wins
    (package / "data.py").write_text("Y = 2\n")
    monkeypatch.setattr(launcher, "_PACKAGE", str(package))
    _, table = launcher.package_code()
    assert sorted(table) == ["ocipy", "ocipy.data", "ocipy.pkg", "ocipy.plain"]
    assert table["ocipy.pkg"][3] is True  # the package, not pkg.py


def test_without_static_code_the_start_up_modules_are_marshalled_in():
    # what a Python whose layout _freeze does not write gets (and the
    # fallback of a build whose static code fails to compile)
    header, code = launcher.embedded_sources(static=False)
    assert "ocipy_get_code_" not in header and "ocipy_get_code_" not in code
    for name in launcher.FROZEN:
        assert f'{{"{name}", ocipy_frozen_' in header
    assert _freeze.available() == (sys.version_info[:2] == (3, 11))


def test_a_build_whose_static_code_does_not_compile_falls_back_to_none(tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.setattr(_freeze, "write_c",
                        lambda modules, hexversion, hot=None: ("#error broken on purpose\n", []))
    binary = tmp_path / "probe"
    launcher.build_embedded(str(binary), boot="import encodings\nprint(encodings.__name__)\n",
                            builtin_spawn=False)
    out = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout == "encodings\n"
    assert "built without static code (" in capsys.readouterr().err


# Run inside a launcher holding the package's static code: each module's code
# as the launcher has it, next to compile()'s of the same file, compared
# recursively; then one module executed from it.
PROBE = """\
import _imp, json, sys, types

MODULES = {modules!r}
PREFIX = {prefix!r}

def differences(ours, theirs, where):
    if type(ours) is not type(theirs):
        return [f"{{where}}: {{type(ours).__name__}} != {{type(theirs).__name__}}"]
    if isinstance(ours, types.CodeType):
        found = []
        for field in ("co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
                      "co_stacksize", "co_flags", "co_firstlineno", "co_code", "co_names",
                      "co_varnames", "co_cellvars", "co_freevars", "co_filename", "co_name",
                      "co_qualname", "co_linetable", "co_exceptiontable"):
            if getattr(ours, field) != getattr(theirs, field):
                found.append(f"{{where}}.{{field}}")
        if list(ours.co_positions()) != list(theirs.co_positions()):
            found.append(f"{{where}}: positions")
        if len(ours.co_consts) != len(theirs.co_consts):
            return found + [f"{{where}}: {{len(ours.co_consts)}} constants"]
        for i, (a, b) in enumerate(zip(ours.co_consts, theirs.co_consts)):
            found += differences(a, b, f"{{where}}.co_consts[{{i}}]")
        if ours != theirs:
            found.append(f"{{where}}: not equal")
        return found
    if isinstance(ours, tuple):
        if len(ours) != len(theirs):
            return [f"{{where}}: length"]
        return [d for i, (a, b) in enumerate(zip(ours, theirs))
                for d in differences(a, b, f"{{where}}[{{i}}]")]
    if isinstance(ours, float):
        return [] if ours.hex() == theirs.hex() else [f"{{where}}: {{ours!r}} != {{theirs!r}}"]
    return [] if ours == theirs else [f"{{where}}: {{ours!r}} != {{theirs!r}}"]

report = {{"differences": [], "codes": 0, "sets": 0}}
for module, (path, filename) in MODULES.items():
    ours = _imp.get_frozen_object(PREFIX + module)
    with open(path, "rb") as f:
        theirs = compile(f.read(), filename, "exec", dont_inherit=True)
    report["differences"] += differences(ours, theirs, module)
    stack = [ours]
    while stack:
        code = stack.pop()
        report["codes"] += 1
        report["sets"] += sum(type(c) is frozenset for c in code.co_consts)
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    # a second load is the same object, made ready once
    assert _imp.get_frozen_object(PREFIX + module) is ours

# the edge cases run from their static code and from compile()'s, plainly
# and traced (line numbers, the first traceable instruction)
def run_edges(code):
    namespace = {{"__name__": "edges"}}
    exec(code, namespace)
    events = []
    def tracer(frame, event, arg):
        events.append((frame.f_code.co_name, event, frame.f_lineno))
        return tracer
    plain = namespace["run"]()
    sys.settrace(tracer)
    try:
        traced = namespace["run"]()
    finally:
        sys.settrace(None)
    return repr(plain), repr(traced), events

with open(MODULES["edges"][0], "rb") as f:
    compiled = compile(f.read(), "<edges>", "exec", dont_inherit=True)
report["edges_static"] = run_edges(_imp.get_frozen_object(PREFIX + "edges"))
report["edges_compiled"] = run_edges(compiled)

# a module run from its static code, a frozenset constant used and the
# names interned as unmarshalling interns them
namespace = {{"__name__": "ocipy.mountopts", "__builtins__": __builtins__}}
sys.path.insert(0, {parent!r})
exec(_imp.get_frozen_object(PREFIX + "ocipy.mountopts"), namespace)
report["interned"] = sys.intern(str("".join(["parse_", "mount_options"]))) is \\
    _imp.get_frozen_object(PREFIX + "ocipy.mountopts").co_names[
        _imp.get_frozen_object(PREFIX + "ocipy.mountopts").co_names.index("parse_mount_options")]
print(json.dumps(report))
"""


# constants of every kind the writer has a static form for, at their edges
EDGES = """\
INTS = (257, -6, 2**30, -2**30, 2**62 + 1, 10000000000000000000000000000000000000000,
        -1606938044258990275541962092341162602522202993782792835301376)
FLOATS = (0.0, -0.0, 1.5, -2.5e-300, 1e300, 5e-324)
TEXT = ("", "a", "\\xe9", "\\xff", "caf\\xe9", "\\u20ac", "x\\U0001f600", "\\ud800", "a" * 300)
BYTES = (b"", b"\\0", b"\\0\\1\\xff", bytes(range(256)))
NESTED = ((1, (2, (3, ("deep", None, True, False, ...)))), ())
def f(x, *args, y=1, **kw):
    cell = x
    def g():
        nonlocal cell
        return cell, y
    return x in {1, "two", 3.0, (4, 5), b"six", None}, g
class C:
    def m(self):
        return __class__
class D:
    def m(self):
        class Inner:  # __class__ both a cell of its own and D's, free
            outer = __class__
            def g(self):
                return super().__init_subclass__
        return Inner
def run():
    found, g = f(3, 4, y=5, z=6)
    inner = D().m()
    return (found, f(7)[0], g(), C().m() is C, inner.outer is D,
            inner().g().__self__ is inner, INTS, FLOATS[1], TEXT[6], BYTES[2])
"""


@pytest.fixture(scope="module")
def static_probe(tmp_path_factory) -> dict:
    _, frozen = launcher.package_code()
    modules = {}
    for module in frozen:
        path = PACKAGE.parent.joinpath(*module.split("."))
        path = str(path / "__init__.py" if path.is_dir() else path.with_suffix(".py"))
        modules[module] = (path, path)
    tmp = tmp_path_factory.mktemp("freeze")
    edges = tmp / "edges.py"
    edges.write_text(EDGES)
    modules["edges"] = (str(edges), "<edges>")
    binary = tmp / "probe"
    boot = PROBE.format(modules=modules, prefix=launcher.PACKAGE_CODE_PREFIX,
                        parent=str(PACKAGE.parent))
    launcher.build_embedded(str(binary), boot=boot, builtin_spawn=False, package=True,
                            extra_code=(("edges", EDGES.encode()),))
    out = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60, check=False,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _code_objects(code) -> int:
    return 1 + sum(_code_objects(c) for c in code.co_consts if hasattr(c, "co_code"))


def test_the_static_code_is_what_compile_makes_of_the_source(static_probe):
    assert static_probe["differences"] == []
    # every function of every module was compared
    expected = sum(_code_objects(compile(p.read_bytes(), str(p), "exec", dont_inherit=True))
                   for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    expected += _code_objects(compile(EDGES, "<edges>", "exec", dont_inherit=True))
    assert static_probe["codes"] == expected


def test_frozenset_constants_are_frozensets_again(static_probe):
    # `x in {...}` compiles to one; it is written as a tuple and made a
    # frozenset when the module's code is first asked for
    assert static_probe["sets"] > 0


def test_the_edge_cases_run_from_static_code_as_from_compiled_code(static_probe):
    plain, traced, events = static_probe["edges_static"]
    assert [plain, traced, events] == static_probe["edges_compiled"]
    assert plain.startswith("(True, False, (3, 5), True, True, True, (257,")
    assert len(events) > 20


def test_a_module_runs_from_its_static_code_with_its_names_interned(static_probe):
    assert static_probe["interned"] is True
