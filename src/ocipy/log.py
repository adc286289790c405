"""The runtime's log: the `--log` file in runc's text or JSON format.

containerd's shim reads the last `{"level":"error","msg":...}` line of the
JSON log and reports its msg; podman and conmon do the same.  Without --log
nothing is written (errors still go to stderr).
"""
from __future__ import annotations

import time

from ocipy import _os as os  # os without importing os (see _os.py)
from ocipy._fastjson import dumps


class Log:
    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_enabled = debug

    def _write(self, level: str, msg: str, fields: dict | None = None) -> None:
        if not self.path:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            line = dumps({"level": level, "msg": msg, **(fields or {}), "time": now})
        else:
            extra = "".join(f" {k}={v if isinstance(v, (int, float)) else dumps(v)}"
                            for k, v in (fields or {}).items())
            line = f'time="{now}" level={level} msg={dumps(msg)}{extra}'
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # a log we cannot write must not turn success into failure

    def error(self, msg: str) -> None:
        self._write("error", msg)

    def warning(self, msg: str) -> None:
        self._write("warning", msg)

    def debug(self, msg: str, **fields) -> None:
        if self.debug_enabled:
            self._write("debug", msg, fields)

    # --debug step timings: `t = log.clock()` before a step, `log.step(what, t)`
    # after it.  Without --debug both cost a flag check and nothing else.
    def clock(self) -> float:
        return time.perf_counter() if self.debug_enabled else 0.0

    def step(self, what: str, started: float, **fields) -> None:
        """One debug line: the step, its duration in ms, and any fields."""
        if self.debug_enabled:
            ms = round((time.perf_counter() - started) * 1000, 3)
            self._write("debug", what, {"duration_ms": ms, **fields})


_current = Log()


def current() -> Log:
    """The log of this invocation (the CLI sets it from --log/--log-format)."""
    return _current


def set_current(log: Log) -> None:
    global _current
    _current = log
