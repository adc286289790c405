"""Lifecycle hooks (runtime-spec config.md "POSIX-platform Hooks").

prestart, createRuntime, poststart and poststop run here, in the runtime's
namespaces; createContainer and startContainer run inside the container's
namespaces, from the native child (child.c run_hook), with the lists
planned here.  Every hook gets the container's state JSON on stdin; a
non-zero exit or a timeout is a failure.
"""
from __future__ import annotations

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy._fastjson import dumps

from ocipy.errors import OcipyError

RUNTIME_NAMESPACE_KINDS = ("prestart", "createRuntime", "poststart", "poststop")


def _hooks(config: dict, kind: str) -> list[dict]:
    return list((config.get("hooks") or {}).get(kind) or [])


def _planned(hook: dict) -> dict:
    return {"path": hook["path"], "args": list(hook.get("args") or [hook["path"]]),
            "env": list(hook.get("env") or []), "timeout": hook.get("timeout") or 0}


def plan_hooks(config: dict) -> dict:
    """The plan keys for the hooks the native child runs."""
    create = [_planned(h) for h in _hooks(config, "createContainer")]
    start = [_planned(h) for h in _hooks(config, "startContainer")]
    sync = bool(create or start or _hooks(config, "prestart") or _hooks(config, "createRuntime"))
    return {"hooks_sync": sync, "create_container_hooks": create,
            "start_container_hooks": start}


def state_json(record: dict, status: str, pid: int) -> bytes:
    """The state a hook reads on stdin (runtime.md "State")."""
    doc = {"ociVersion": record["ociVersion"], "id": record["id"], "status": status,
           "pid": pid, "bundle": record["bundle"],
           "annotations": record.get("annotations") or {}}
    return dumps(doc).encode()


def run_hooks(config: dict, kind: str, state: bytes) -> None:
    """Run every hook of one kind in order; the first failure raises."""
    from ocipy.log import current

    log = current()
    for i, hook in enumerate(_hooks(config, kind)):
        t = log.clock()
        run_hook(hook, kind, i, state)
        log.step(f"hook {kind}[{i}]", t, path=hook.get("path", ""))


def run_hook(hook: dict, kind: str, index: int, state: bytes) -> None:
    import subprocess

    planned = _planned(hook)
    what = f'run {kind} hook "{planned["path"]}" (hooks.{kind}[{index}])'
    env = dict(item.split("=", 1) for item in planned["env"] if "=" in item)
    try:
        proc = subprocess.run(planned["args"], executable=planned["path"], input=state,
                              env=env, timeout=planned["timeout"] or None, close_fds=True,
                              stdout=subprocess.DEVNULL if kind == "poststop" else None)
    except subprocess.TimeoutExpired:
        raise OcipyError(what, f"timed out after {planned['timeout']}s") from None
    except OSError as e:
        raise OcipyError.from_os(what, e) from None
    if proc.returncode != 0:
        code = proc.returncode
        why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        raise OcipyError(what, why)


def run_poststop(config: dict, state: bytes) -> None:
    """poststop failures are warnings: the remaining hooks and delete go on."""
    from ocipy.log import current

    for i, hook in enumerate(_hooks(config, "poststop")):
        try:
            run_hook(hook, "poststop", i, state)
        except OcipyError as e:
            current().warning(str(e))
            os.write(2, f"ocipy: warning: {e}\n".encode())
