"""Write the `ocipy` launcher: `python -m ocipy.launcher PATH`.

Every ocipy invocation pays interpreter start-up, and the site module is a
good part of it: it scans site-packages and runs every .pth file there
(setuptools' among them).  The launcher runs the interpreter with -I -S and
lists the directories site would have added itself, so `ocipy state` starts
with nothing but the standard library's frozen modules loaded.

Where it can, it installs that launcher as a program instead of a script:
CPython embedded (src/ocipy/_native/launcher.c, libpython linked
statically) running the same code, with the modules start-up reads from
disk frozen in (`python -m ocipy.launcher --script PATH` writes the script).
"""
from __future__ import annotations

import os
import sys

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_NATIVE = os.path.join(_PACKAGE, "_native")

_TEMPLATE = """#!{python} -IS
# Written by `python -m ocipy.launcher` (see src/ocipy/launcher.py): -IS (one
# argument: a shebang passes one) skips the site module; these are the paths it
# would have added: ocipy's first, site-packages after the standard library,
# where site puts them (the hot path imports nothing from site-packages, and
# its standard-library imports never search there).  The extension modules'
# directory goes before the standard library's: the hot path's one module
# from there, _json, is then found without listing the ~200 names of the
# other (the two hold no module of the same name).  ocipy's own modules
# then load straight from their .pyc files (ocipy/_pycfinder.py).
import sys
_dynload = [p for p in sys.path if p.endswith("/lib-dynload")]
sys.path[:] = [{package_parent!r}, *_dynload, *[p for p in sys.path if p not in _dynload],
               *{site_packages!r}]
del _dynload
{finder}from ocipy.__main__ import main
main()
"""

_SCRIPT_FINDER = """from ocipy._pycfinder import install
install()
"""

# The embedded launcher has ocipy/_pycfinder.py frozen in as _ocipy_pycfinder
# (built with it: see embedded_sources) and installs that copy before ocipy
# is imported, so the finder loads the package too: no standard path finder
# for either.  A source changed since the build takes the standard path.
_EMBEDDED_FINDER = """import posix
def _unchanged(path, mtime_ns, size):
    try:
        st = posix.stat(path)
    except OSError:
        return False
    return (st.st_mtime_ns, st.st_size) == (mtime_ns, size)
if _unchanged({source!r}, {mtime_ns}, {size}):
    from _ocipy_pycfinder import install
    _known = dict(frozen={frozen}, extensions={extensions})
else:
    # a finder changed since the build may read these tables otherwise:
    # without them, ocipy's modules load from their .pyc, the rest as usual
    from ocipy._pycfinder import install
    _known = {{}}
install({package_parent!r}, builtins={builtins}, **_known)
del posix, _unchanged, _known
"""

# The standard library's extension modules the hot path imports (_fastjson):
# the embedded launcher's finder loads them from the file they were at the
# build, without the path finder's search (sys.path's hooks, a zipimport try
# and a listing of each directory on the way: ~0.2-0.3 ms of every create).
HOT_EXTENSIONS = ("_json",)


def _pycfinder_source() -> str:
    return os.path.join(_PACKAGE, "_pycfinder.py")


def _hot_extensions() -> dict[str, tuple[str, int, int]]:
    """HOT_EXTENSIONS that are extension modules here: {module: (its file,
    the file's mtime_ns and size)}."""
    import importlib.machinery
    import importlib.util

    found = {}
    for name in HOT_EXTENSIONS:
        spec = importlib.util.find_spec(name)
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            st = os.stat(spec.origin)
            found[name] = (spec.origin, st.st_mtime_ns, st.st_size)
    return found


def launcher_source(*, embedded: bool = False, frozen: dict | None = None) -> str:
    """The launcher's code: the script, or (embedded) the boot code of the
    embedded launcher, which installs its frozen copy of the finder; frozen:
    the modules whose code it holds (package_code)."""
    import site

    package_parent = os.path.dirname(_PACKAGE)
    site_packages = []
    for directory in site.getsitepackages():
        if directory not in (package_parent, *site_packages) and os.path.isdir(directory):
            site_packages.append(directory)
    finder = _SCRIPT_FINDER
    if embedded:
        source = _pycfinder_source()
        st = os.stat(source)
        # the built-in spawn, while its .so is the one it was built with:
        # an extension rebuilt since (pip install -e .) is imported instead
        builtins = "()"
        spawn_so = _spawn_extension()
        if spawn_so is not None and _builtin_spawn():
            so = os.stat(spawn_so)
            builtins = (f"('ocipy._native.spawn',) if _unchanged({spawn_so!r}, "
                        f"{so.st_mtime_ns}, {so.st_size}) else ()")
        finder = _EMBEDDED_FINDER.format(source=source, mtime_ns=st.st_mtime_ns,
                                         size=st.st_size, package_parent=package_parent,
                                         builtins=builtins, frozen=frozen or {},
                                         extensions=_hot_extensions())
    return _TEMPLATE.format(python=sys.executable, package_parent=package_parent,
                            site_packages=site_packages, finder=finder)


# What the interpreter imports from the standard library's directory before
# the boot code's first line, and __future__, which every ocipy module
# imports: frozen into the embedded launcher (the codecs are what start-up
# looks up for the file system and the standard streams, UTF-8 or, in the C
# locale, ASCII; any other codec still loads from the directory).
FROZEN = ("encodings", "encodings.aliases", "encodings.utf_8", "encodings.ascii",
          "__future__")


def _c_wide(text: str) -> str:
    """A C wchar_t array initializer for text (code points, surrogate
    escapes included, as CPython's wide strings hold them)."""
    return "{" + ", ".join(str(ord(c)) for c in text) + ", 0}"


def _c_bytes(data: bytes) -> str:
    return "{" + ",".join(str(b) for b in data) + "}"


# The boot code is frozen in too, as this module, and the interpreter runs
# `-c "import _ocipy_boot"`: start-up compiles that one line instead of the
# whole boot code (~0.2 ms of every call on the test VM).
BOOT_MODULE = "_ocipy_boot"


# ocipy's own modules as static code objects (ocipy/_freeze.py), under
# these names in the frozen modules' table: no import finds them there (a
# name with a colon), only ocipy/_pycfinder.py, by the name.
PACKAGE_CODE_PREFIX = "_ocipy_code:"


# The modules of the package that create, run and exec import (checked by
# spec-tests/test_hot_path_imports.py): their static code comes first, in a
# section the launcher copies in whole at start (ocipy/_freeze.py); the
# others' is left to fault in when used.
HOT_MODULES = (
    "ocipy", "ocipy.__main__", "ocipy._os", "ocipy.cli", "ocipy.errors", "ocipy.log",
    "ocipy._fastjson", "ocipy.state", "ocipy.container", "ocipy.config", "ocipy.hooks",
    "ocipy.launch", "ocipy.plan", "ocipy.mountopts", "ocipy._schema_check", "ocipy.host",
    "ocipy.capabilities", "ocipy._record", "ocipy.cgroups", "ocipy.cgroups.paths",
    "ocipy.cgroups.manager", "ocipy.cgroups.devices", "ocipy.cgroups.files",
    "ocipy.cgroups.resources", "ocipy.cgroups.convert", "ocipy.cgroups.v1", "ocipy._native",
)


def package_code(extra: tuple = ()) -> tuple[list[tuple[str, object]], dict]:
    """ocipy's modules compiled, the ones ocipy/_freeze.py can write as static
    code: [(name in the frozen table, code)], and {module: (that name, the
    source's mtime_ns, its size, whether it is a package)}, what
    ocipy/_pycfinder.py checks before using it; extra: more modules, (name,
    source) each (the tests' cases)."""
    import importlib.machinery

    from ocipy import _freeze

    sources = [(module, f"<{module}>", source, 0, len(source), False) for module, source in extra]
    parent = os.path.dirname(_PACKAGE)
    for directory, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        # what the standard path would import instead of a module's .py: a
        # package of the same name, or an extension module
        shadows = {d for d in dirs if os.path.isfile(os.path.join(directory, d, "__init__.py"))}
        shadows |= {file[:-len(suffix)] for file in files
                    for suffix in importlib.machinery.EXTENSION_SUFFIXES if file.endswith(suffix)}
        for file in sorted(files):
            if not file.endswith(".py") or (file != "__init__.py" and file[:-3] in shadows):
                continue
            path = os.path.join(directory, file)
            parts = os.path.relpath(path, parent)[:-len(".py")].split(os.sep)
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            before = os.stat(path)
            with open(path, "rb") as f:
                source = f.read()
            after = os.stat(path)
            if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, len(source)):
                continue  # changed while read: it loads from its .pyc
            sources.append((module, path, source, after.st_mtime_ns, after.st_size,
                            file == "__init__.py"))
    codes, table = [], {}
    hot = {module: i for i, module in enumerate(HOT_MODULES)}
    sources.sort(key=lambda entry: hot.get(entry[0], len(hot)))  # the hot ones first
    for module, filename, source, mtime_ns, size, package in sources:
        code = compile(source, filename, "exec", dont_inherit=True, optimize=0)
        if _freeze.supported(code):
            codes.append((PACKAGE_CODE_PREFIX + module, code))
            table[module] = (PACKAGE_CODE_PREFIX + module, mtime_ns, size, package)
    return codes, table


def embedded_sources(boot: str | None = None, *, package: bool | None = None,
                     extra_code: tuple = (), static: bool = True) -> tuple[str, str]:
    """launcher_gen.h and ocipy_code.c for src/ocipy/_native/launcher.c (see
    there).  boot: other code than the launcher's (the tests' probes);
    package: ocipy's modules as static code too (package_code), by default
    with the launcher's code, which knows to use them; extra_code: more of
    them (package_code).  Without static (or on a Python whose layout
    ocipy/_freeze.py does not write), no static code at all: the start-up
    modules are marshalled into the launcher and ocipy's load from .pyc."""
    import importlib.util
    import marshal

    from ocipy import _freeze

    static = static and _freeze.available()
    static_code, table = package_code(extra_code) if static and (package or (
        package is None and boot is None)) else ([], {})
    if boot is None:
        boot = launcher_source(embedded=True, frozen=table)
    lines = [
        "/* Written by ocipy/launcher.py (embedded_sources) at build time. */",
        # the frozen code is this interpreter's bytecode: launcher.c refuses
        # to build against another Python's headers
        f"#define OCIPY_PY_HEXVERSION {sys.hexversion:#x}",
        f"static const wchar_t OCIPY_EXECUTABLE[] = {_c_wide(sys.executable)};",
        f"static const wchar_t OCIPY_BOOT[] = {_c_wide(f'import {BOOT_MODULE}')};",
        # static code is found through its function and never unmarshalled
        # (CPython wants some data in the entry all the same)
        'static const unsigned char ocipy_code_marker[] = "static";',
    ]
    modules = []  # (name, file name for the code, its source, is a package)
    for name in FROZEN:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not os.path.isfile(spec.origin):
            raise OSError(f"no source for {name} to freeze")
        with open(spec.origin, "rb") as f:
            modules.append((name, spec.origin, f.read(),
                            spec.submodule_search_locations is not None))
    # ocipy's finder, for the boot code (launcher_source, embedded)
    with open(_pycfinder_source(), "rb") as f:
        modules.append(("_ocipy_pycfinder", _pycfinder_source(), f.read(), False))
    modules.append((BOOT_MODULE, f"<frozen {BOOT_MODULE}>", boot, False))
    packages = {name for name, _, _, is_package in modules if is_package}
    start_up, marshalled = [], []
    for name, filename, source, _ in modules:
        code = compile(source, filename, "exec", dont_inherit=True, optimize=0)
        (start_up if static and _freeze.supported(code) else marshalled).append((name, code))
    hot = len(start_up) + sum(1 for name, _ in static_code
                              if name[len(PACKAGE_CODE_PREFIX):] in HOT_MODULES)
    if static:
        code_c, names = _freeze.write_c(start_up + static_code, sys.hexversion, hot)
    else:
        code_c, names = "/* no static code: see ocipy/launcher.py, embedded_sources */\n", []
    entries = []
    for index, name in enumerate(names):
        lines.append(f"PyObject *ocipy_get_code_{index}(void);")
        entries.append(f'    {{"{name}", ocipy_code_marker, 6, {int(name in packages)}, '
                       f"ocipy_get_code_{index}}},")
    for index, (name, code) in enumerate(marshalled):
        data = marshal.dumps(code)
        lines.append(f"static const unsigned char ocipy_frozen_{index}[] = {_c_bytes(data)};")
        entries.append(f'    {{"{name}", ocipy_frozen_{index}, {len(data)}, '
                       f"{int(name in packages)}, NULL}},")
    lines += ["static const struct _frozen ocipy_frozen[] = {", *entries,
              "    {NULL, NULL, 0, 0, NULL},", "};", ""]
    return "\n".join(lines), code_c


def _spawn_extension() -> str | None:
    """The spawn extension module's file, None when it is not built."""
    import importlib.machinery

    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(_NATIVE, "spawn" + suffix)
        if os.path.isfile(path):
            return path
    return None


def _builtin_spawn() -> list[str]:
    """The compiler arguments that link the spawn extension into the
    launcher as a built-in module: its sources as setup.py builds its .so
    (the C that Cython wrote from spawn.pyx, child.c, and ocipy-init, which
    init_image.c embeds).  None (an empty list) before setup.py has written
    them, e.g. in a non-editable install: the launcher then imports the .so."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(_NATIVE)))
    init = os.path.join(repo, "build", "ocipy-init")  # setup.py's INIT_BINARY
    sources = [os.path.join(_NATIVE, name) for name in ("spawn.c", "child.c", "init_image.c")]
    if not all(os.path.isfile(f) for f in [init, *sources]):
        return []
    pyx = os.path.join(_NATIVE, "spawn.pyx")
    if os.path.getmtime(sources[0]) < os.path.getmtime(pyx):
        return []  # Cython has not rewritten it since spawn.pyx changed
    return ["-DOCIPY_BUILTIN_SPAWN", "-D_GNU_SOURCE", "-Wno-unused-function",
            f'-DOCI_INIT_PATH="{init}"', "-I", _NATIVE, *sources]


def build_embedded(path: str, boot: str | None = None, *, builtin_spawn: bool = True,
                   package: bool | None = None, extra_code: tuple = ()) -> None:
    """Compile the embedded launcher to path (running boot instead of the
    launcher's code if given; with the spawn extension built in where its
    sources are there, unless builtin_spawn is false; with ocipy's modules
    as static code if package, by default when it runs the launcher's
    code, which knows to use them, and the extra_code modules (package_code)
    with them); OSError or
    CalledProcessError when this interpreter gives no way to (no static
    libpython, no C compiler, no launcher.c in a non-editable install)."""
    import shutil
    import subprocess
    import sysconfig
    import tempfile

    source = os.path.join(_NATIVE, "launcher.c")
    library = os.path.join(sysconfig.get_config_var("LIBPL") or "",
                           sysconfig.get_config_var("LIBRARY") or "")
    cc = shutil.which("cc") or shutil.which("gcc")
    for needed, what in ((source, "launcher.c"), (library, "a static libpython")):
        if not os.path.isfile(needed):
            raise OSError(f"no {what} at {needed}")
    if cc is None:
        raise OSError("no C compiler")
    libs = " ".join(sysconfig.get_config_var(k) or "" for k in ("MODLIBS", "LIBS", "SYSLIBS"))
    # Python's own CFLAGS (-DNDEBUG, -fwrapv, ...), as the extension modules
    # are built, then ours
    cflags = (sysconfig.get_config_var("CFLAGS") or "").split()
    with tempfile.TemporaryDirectory(prefix="ocipy-launcher-") as tmp:
        out = os.path.join(tmp, "ocipy-py")

        def compile_launcher(static: bool) -> None:
            header, code = embedded_sources(boot, package=package, extra_code=extra_code,
                                            static=static)
            with open(os.path.join(tmp, "launcher_gen.h"), "w") as f:
                f.write(header)
            with open(os.path.join(tmp, "ocipy_code.c"), "w") as f:
                f.write(code)
            # -no-pie: libpython.a is not position-independent code (Debian's
            # python3.11 is no PIE either, for the same speed);
            # -export-dynamic: extension modules link against its symbols
            subprocess.run([cc, *cflags, "-O2", "-Wall", "-no-pie", "-o", out,
                            "-I", sysconfig.get_paths()["include"], "-I", tmp, source,
                            os.path.join(tmp, "ocipy_code.c"),
                            *(_builtin_spawn() if builtin_spawn else []), library,
                            *libs.split(), "-Wl,--export-dynamic",
                            # every symbol bound at start-up: no lazy-binding
                            # trampoline per first call (-0.1 ms of a create here)
                            "-Wl,-z,now"],
                           check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        try:
            compile_launcher(static=True)
        except subprocess.CalledProcessError as exc:
            # the static code relies on CPython's internal layouts: headers
            # that differ from what ocipy/_freeze.py writes cost it, not the
            # launcher
            print(f"ocipy.launcher: the launcher is built without static code ({_why(exc)})",
                  file=sys.stderr)
            compile_launcher(static=False)
        os.chmod(out, 0o755)
        shutil.move(out, f"{path}.tmp")
    os.replace(f"{path}.tmp", path)


def _why(exc: Exception) -> str:
    """A failed build in one line: the compiler's last line of output, or
    the error itself."""
    output = getattr(exc, "output", None)
    if output and isinstance(output, bytes):
        return (output.decode(errors="replace").strip().splitlines()[-1:] or ["?"])[0]
    return str(exc)


def install(path: str, *, script: bool = False) -> str:
    """Install the launcher at path: the embedded program where it can be
    built (unless script), the script otherwise.  Returns which: "embedded"
    or "script"."""
    if not script:
        import subprocess

        try:
            build_embedded(path)
            return "embedded"
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"ocipy.launcher: the embedded launcher was not built ({_why(exc)}); "
                  "installing the script launcher", file=sys.stderr)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(launcher_source())
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return "script"


if __name__ == "__main__":
    args = sys.argv[1:]
    script = "--script" in args
    args = [a for a in args if a != "--script"]
    if len(args) != 1:
        sys.exit("usage: python -m ocipy.launcher [--script] PATH")
    install(args[0], script=script)
