"""ocipy: an OCI runtime written in Python, with a Cython extension for the privileged hot path.

The Python API (see README "Python API")::

    import ocipy
    rt = ocipy.Runtime(root="/run/ocipy")
    rt.run("hello", "bundles/busybox")          # -> the exit status
    cfg = ocipy.load_config("bundles/busybox")  # -> ocipy.Config (attrs)

Every CLI invocation imports this package first, so nothing is imported
here eagerly: the names below load on first use (PEP 562).
"""

__version__ = "0.1.0"
OCI_VERSION = "1.2.0"

_LAZY = {
    "Runtime": "ocipy.api",
    "State": "ocipy.api",
    "load_config": "ocipy.types",
    "Config": "ocipy.types",
    "Process": "ocipy.types",
    "User": "ocipy.types",
    "Root": "ocipy.types",
    "Mount": "ocipy.types",
    "Hook": "ocipy.types",
    "Hooks": "ocipy.types",
    "Linux": "ocipy.types",
    "Namespace": "ocipy.types",
    "IDMapping": "ocipy.types",
    "Device": "ocipy.types",
    "Capabilities": "ocipy.types",
    "Rlimit": "ocipy.types",
    "OcipyError": "ocipy.errors",
    "ConfigError": "ocipy.errors",
    "ContainerNotFound": "ocipy.errors",
    "ContainerNotRunning": "ocipy.errors",
}

__all__ = ["OCI_VERSION", "__version__", *_LAZY]


# The CLI turns the cycle collector off for its short-lived commands (see
# __main__.py); one that goes on to wait for a container turns it back on.
_gc_paused = False


def _resume_gc() -> None:
    global _gc_paused
    if _gc_paused:
        import gc

        gc.enable()
        _gc_paused = False


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ocipy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
