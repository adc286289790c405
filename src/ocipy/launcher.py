"""Write the `ocipy` launcher: `python -m ocipy.launcher PATH`.

Every ocipy invocation pays interpreter start-up, and the site module is a
good part of it: it scans site-packages and runs every .pth file there
(setuptools' among them).  The launcher runs the interpreter with -I -S and
lists the directories site would have added itself, so `ocipy state` starts
with nothing but the standard library's frozen modules loaded.
"""
from __future__ import annotations

import os
import sys

_TEMPLATE = """#!{python} -IS
# Written by `python -m ocipy.launcher` (see src/ocipy/launcher.py): -IS (one
# argument: a shebang passes one) skips the site module; these are the paths it
# would have added: ocipy's first, site-packages after the standard library,
# where site puts them (the hot path imports nothing from site-packages, and
# its standard-library imports never search there).  ocipy's own modules
# then load straight from their .pyc files (ocipy/_pycfinder.py).
import sys
sys.path.insert(0, {package_parent!r})
sys.path.extend({site_packages!r})
from ocipy._pycfinder import install
install()
from ocipy.__main__ import main
main()
"""


def launcher_source() -> str:
    import site

    import ocipy

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(ocipy.__file__)))
    site_packages = []
    for directory in site.getsitepackages():
        if directory not in (package_parent, *site_packages) and os.path.isdir(directory):
            site_packages.append(directory)
    return _TEMPLATE.format(python=sys.executable, package_parent=package_parent,
                            site_packages=site_packages)


def install(path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(launcher_source())
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m ocipy.launcher PATH")
    install(sys.argv[1])
