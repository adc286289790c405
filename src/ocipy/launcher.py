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
# would have added.
import sys
sys.path[0:0] = {paths!r}
from ocipy.__main__ import main
main()
"""


def launcher_source() -> str:
    import site

    import ocipy

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(ocipy.__file__)))
    paths = [package_parent]
    for directory in site.getsitepackages():
        if directory not in paths and os.path.isdir(directory):
            paths.append(directory)
    return _TEMPLATE.format(python=sys.executable, paths=paths)


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
