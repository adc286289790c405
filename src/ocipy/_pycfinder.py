"""Import ocipy's own modules straight from their up-to-date .pyc files.

Every `create`, `run` and `exec` imports some 25 ocipy modules, and the
standard path finder spends ~90 us of Python-level work on each before a
line of the module runs (the finder chain, the FileFinder cache, the
SourceFileLoader's stat/read/validate, the cache path computed twice).
Measured here, that machinery was ~1 ms of the ~4.5 ms the create path
spends importing.  This finder, first on sys.meta_path in the CLI launcher
only, does the same checks with fewer steps:

- only modules of the ocipy package, found the way FileFinder finds them (a
  package directory before a module; an extension module of the same name
  wins, so the Cython modules are left to the standard path), except the
  ones the embedded launcher has built in and says are current
  (ocipy/launcher.py: the spawn extension), which go to BuiltinImporter
  (it takes no submodules itself);
- only a .pyc the standard loader would use as it is: the interpreter's
  magic number, timestamp-based, and the source's mtime and size in its
  header.  Anything else (no .pyc, a stale one, a hash-based one, -O)
  returns None and the standard path compiles and writes the .pyc as usual.

In the embedded launcher, which holds ocipy's modules as static code
objects (ocipy/_freeze.py), a module whose source has the mtime and size it
was built from takes its code from there instead (_imp.get_frozen_object):
no .pyc read, nothing unmarshalled, no directory listed.  That trusts the
package's layout at the build (launcher.py leaves out a module a package or
an extension module of the same name shadowed then): one added since, next
to an unchanged module, is not looked for until the launcher is rebuilt,
which `make` does when a module is added.

The loader is a SourceFileLoader whose get_code returns the code read here,
so modules get the same __spec__, __file__, __cached__, __loader__ and
resource reader as with the standard path.
"""
from __future__ import annotations

import _imp
import marshal
import posix
import sys
from _frozen_importlib import BuiltinImporter, ModuleSpec
from _frozen_importlib_external import MAGIC_NUMBER, ExtensionFileLoader, SourceFileLoader

_PYC_LIMIT = 1 << 20  # ocipy's largest .pyc is ~60 KB; a bigger one takes the standard path


class _Loader(SourceFileLoader):
    """The standard source loader, handed the checked .pyc's bytes, or the
    name of the module's static code in the embedded launcher."""

    def __init__(self, fullname: str, path: str, data: bytes | None,
                 static: str | None = None) -> None:
        super().__init__(fullname, path)
        self._data = data
        self._static = static

    def get_code(self, fullname: str):
        data, self._data = self._data, None
        static, self._static = self._static, None
        if fullname != self.name:
            return super().get_code(fullname)
        if static is not None:
            code = _imp.get_frozen_object(static)
        elif data is not None:
            code = marshal.loads(memoryview(data)[16:])
        else:
            return super().get_code(fullname)
        _imp._fix_co_filename(code, self.path)
        return code


class PycFinder:
    """Finds the submodules of ocipy (the package itself is loaded by then: it
    holds this module); see the module doc."""

    def __init__(self, package_parent: str | None = None, builtins: tuple = (),
                 frozen: dict | None = None, extensions: dict | None = None) -> None:
        # where the ocipy package is, when the finder is to load it too (the
        # embedded launcher installs its frozen copy of this module first)
        self._package_parent = package_parent
        self._builtins = frozenset(builtins)
        # the embedded launcher's static code: {module: (its name in the
        # frozen table, the source's mtime_ns and size it was built from,
        # whether it is a package)}
        self._frozen = frozen or {}
        # extension modules of the standard library the launcher knows the
        # file of: {module: (file, its mtime_ns, its size) at the build}
        self._extensions = extensions or {}
        self._listings: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._tag = sys.implementation.cache_tag
        self._extension_suffixes = tuple(_imp.extension_suffixes())

    def _listing(self, directory: str) -> tuple[frozenset[str], frozenset[str]]:
        """The directory's names, and the module names its extension modules take."""
        listing = self._listings.get(directory)
        if listing is None:
            try:
                names = frozenset(posix.listdir(directory))
            except OSError:
                names = frozenset()
            extensions = frozenset(name[:-len(suffix)] for name in names
                                   for suffix in self._extension_suffixes
                                   if name.endswith(suffix))
            listing = self._listings[directory] = (names, extensions)
        return listing

    def find_spec(self, fullname: str, path=None, target=None) -> ModuleSpec | None:
        extension = self._extensions.get(fullname)
        if extension is not None:
            if path is not None or not _unchanged(*extension):
                return None
            # what FileFinder makes of it, without the search
            spec = ModuleSpec(fullname, ExtensionFileLoader(fullname, extension[0]),
                              origin=extension[0])
            spec.has_location = True
            return spec
        if fullname == "ocipy":
            if path is not None or self._package_parent is None:
                return None
            directory = self._package_parent
        elif fullname.startswith("ocipy."):
            if fullname in self._builtins and _imp.is_builtin(fullname):
                return ModuleSpec(fullname, BuiltinImporter, origin="built-in")
            if path is None or len(path) != 1:
                return None
            directory = path[0]
        else:
            return None
        name = fullname.rpartition(".")[2]
        static = self._frozen.get(fullname)
        if static is not None:
            # laid out as it was at the build (a package or a module): no
            # listing, the source's stat is the check
            package_dir, source, pyc = self._paths(directory, name, static[3])
            if _unchanged(source, static[1], static[2]):
                return _spec(_Loader(fullname, source, None, static[0]), package_dir, pyc)
        names, extensions = self._listing(directory)
        if name in extensions:
            return None
        if name in names:
            package_dir, source, pyc = self._paths(directory, name, True)
        elif name + ".py" in names:
            package_dir, source, pyc = self._paths(directory, name, False)
        else:
            return None
        data = _checked_pyc(source, pyc)
        if data is None:
            return None
        return _spec(_Loader(fullname, source, data), package_dir, pyc)

    def _paths(self, directory: str, name: str, package: bool) -> tuple[str | None, str, str]:
        """The package directory (None for a module), the source and the .pyc."""
        if package:
            package_dir = f"{directory}/{name}"
            return package_dir, f"{package_dir}/__init__.py", \
                f"{package_dir}/__pycache__/__init__.{self._tag}.pyc"
        return None, f"{directory}/{name}.py", f"{directory}/__pycache__/{name}.{self._tag}.pyc"

    def invalidate_caches(self) -> None:
        self._listings.clear()


def _spec(loader: _Loader, package_dir: str | None, pyc: str) -> ModuleSpec:
    spec = ModuleSpec(loader.name, loader, origin=loader.path, is_package=package_dir is not None)
    spec.has_location = True
    spec.cached = pyc
    if package_dir is not None:
        spec.submodule_search_locations = [package_dir]
    return spec


def _unchanged(source: str, mtime_ns: int, size: int) -> bool:
    """Whether source is the file the static code was compiled from."""
    try:
        st = posix.stat(source)
    except OSError:
        return False
    return st.st_mtime_ns == mtime_ns and st.st_size == size


def _checked_pyc(source: str, pyc: str) -> bytes | None:
    """The .pyc's bytes if the standard loader would use them unchanged."""
    try:
        st = posix.stat(source)
        fd = posix.open(pyc, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        size = posix.fstat(fd).st_size
        if not 16 <= size < _PYC_LIMIT:
            return None
        data = posix.read(fd, size)  # a buffer of the file's size: no big allocation
    except OSError:
        return None
    finally:
        posix.close(fd)
    if (len(data) != size or data[:4] != MAGIC_NUMBER
            or data[4:8] != b"\0\0\0\0"  # flags: 0 = checked by timestamp (PEP 552)
            or int.from_bytes(data[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
            or int.from_bytes(data[12:16], "little") != st.st_size & 0xFFFFFFFF):
        return None
    return data


def install(package_parent: str | None = None, builtins: tuple = (),
            frozen: dict | None = None, extensions: dict | None = None) -> None:
    """Put the finder first on sys.meta_path (the CLI launcher does, nothing
    else); with package_parent, the directory holding ocipy/, it loads the
    package itself too; builtins: the ocipy modules to take from the
    interpreter's built-in modules; frozen: the modules the embedded
    launcher holds as static code, extensions: the extension modules whose
    file it knows (PycFinder.__init__)."""
    if sys.flags.optimize or sys.pycache_prefix is not None:
        return  # other .pyc names: the standard path knows them
    sys.meta_path.insert(0, PycFinder(package_parent, builtins, frozen, extensions))
