"""Terminals (config.md `process.terminal`, `consoleSize`; runc's
--console-socket protocol, docs/terminals.md): the runtime allocates a pty
inside the container, makes it the process's stdio and /dev/console, and
hands the master to the caller over the console socket as one SCM_RIGHTS fd."""
from __future__ import annotations

import array
import fcntl
import os
import re
import select
import socket
import stat
import struct
import threading
import time
from pathlib import Path

import pytest

TIOCGPTN = 0x80045430  # <asm-generic/ioctls.h>: _IOR('T', 0x30, unsigned int)
PTY_SLAVE_MAJOR = 136  # UNIX98_PTY_SLAVE_MAJOR: /dev/pts/N is char 136:N
RECV_TIMEOUT = 20.0


class ConsoleSocket:
    """The caller's end of --console-socket: a listening AF_UNIX stream socket
    that accepts one connection in a thread and records everything received
    on it until the runtime closes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.server.settimeout(RECV_TIMEOUT)
        self.ancillary: list[tuple[int, int, bytes]] = []
        self.flags: list[int] = []
        self.data = b""
        self.error: BaseException | None = None
        self._fds: list[int] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
            with conn:
                conn.settimeout(RECV_TIMEOUT)
                while True:
                    data, anc, flags, _ = conn.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
                    for level, kind, payload in anc:
                        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                            fds = array.array("i")
                            fds.frombytes(payload[:len(payload) - len(payload) % 4])
                            self._fds.extend(fds)  # closed in close(), whatever happens
                    self.ancillary.extend(anc)
                    self.flags.append(flags)
                    self.data += data
                    if not data and not anc:
                        return
        except BaseException as exc:  # reported by master()
            self.error = exc

    def master(self) -> int:
        """Wait for the runtime to send and hang up; assert it sent exactly
        one SCM_RIGHTS message carrying exactly one fd; return that fd."""
        self._thread.join(RECV_TIMEOUT + 1)
        assert not self._thread.is_alive(), "the runtime did not close the console socket"
        assert self.error is None, f"console socket: {self.error!r}"
        assert not any(f & socket.MSG_CTRUNC for f in self.flags), "control data truncated"
        assert len(self.ancillary) == 1, self.ancillary
        level, kind, payload = self.ancillary[0]
        assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
        assert len(payload) == array.array("i").itemsize, f"{len(payload)} bytes of fds"
        return self._fds[0]

    def close(self) -> None:
        self._thread.join(RECV_TIMEOUT + 1)
        self.server.close()
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


@pytest.fixture
def console_socket(tmp_path):
    sock = ConsoleSocket(tmp_path / "console.sock")
    yield sock
    sock.close()


def pty_number(master: int) -> int:
    return struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]


def read_master(master: int, timeout: float = RECV_TIMEOUT) -> str:
    """Everything the container writes to the pty until the last slave fd
    closes (read then fails with EIO), with the tty's \\r\\n made \\n."""
    out = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the pty was not hung up within {timeout}s; read so far: {out!r}"
        ready, _, _ = select.select([master], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: no slave left
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace").replace("\r\n", "\n")


def _terminal(bundle, script: str):
    bundle.process["terminal"] = True
    bundle.sh(script)
    return bundle


def _create_and_read(runtime, bundle, console_socket) -> tuple[int, str, int | None]:
    """create with the console socket, start, read the pty to its end:
    (pty number, output, the init's exit status)."""
    cid = runtime.new_id("tty")
    runtime.create(cid, bundle, "--console-socket", console_socket.path)
    master = console_socket.master()
    runtime.start(cid)
    out = read_master(master)
    return pty_number(master), out, runtime.wait(cid)


# ---- create --console-socket ---------------------------------------------------------

def test_console_socket_receives_one_pty_master(runtime, bundle, console_socket):
    _terminal(bundle, "echo never started")
    cid = runtime.new_id("tty")
    runtime.create(cid, bundle, "--console-socket", console_socket.path)
    master = console_socket.master()
    assert stat.S_ISCHR(os.fstat(master).st_mode)
    assert os.isatty(master)
    number = pty_number(master)  # only a pty master answers TIOCGPTN
    fdinfo = Path(f"/proc/self/fdinfo/{master}").read_text()
    assert re.search(rf"^tty-index:\s+{number}$", fdinfo, re.M), fdinfo
    assert runtime.status(cid) == "created"


def test_container_output_is_read_from_the_master(runtime, bundle, console_socket):
    _terminal(bundle, "tty; echo hello")
    number, out, status = _create_and_read(runtime, bundle, console_socket)
    # ttyname() of stdin: the slave as the container's own devpts names it.
    assert out == f"/dev/pts/{number}\nhello\n"
    assert status == 0


def test_dev_console_is_the_pty_slave(runtime, bundle, console_socket):
    _terminal(bundle, "stat -c '%F %t:%T' /dev/console")
    number, out, _ = _create_and_read(runtime, bundle, console_socket)
    assert out == f"character special file {PTY_SLAVE_MAJOR:x}:{number:x}\n"


def test_stdio_are_the_terminal(runtime, bundle, console_socket):
    _terminal(bundle, "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty")
    _, out, status = _create_and_read(runtime, bundle, console_socket)
    assert (out, status) == ("all-tty\n", 0)


def test_console_size_is_applied(runtime, bundle, console_socket):
    _terminal(bundle, "stty size")
    bundle.process["consoleSize"] = {"height": 30, "width": 100}
    _, out, _ = _create_and_read(runtime, bundle, console_socket)
    assert out == "30 100\n"


def test_terminal_without_console_socket_fails_create(runtime, bundle):
    _terminal(bundle, "echo ran")
    cid = runtime.new_id("tty")
    proc = runtime.create(cid, bundle, check=False)
    assert proc.returncode == 1
    assert "ran" not in runtime.stdout(cid)
    assert runtime.ids() == []


# ---- exec -t --console-socket ------------------------------------------------------------

def test_exec_tty_gives_a_pty(runtime, bundle, console_socket, tmp_path, util):
    bundle.args = ["sleep", "1000"]
    cid = runtime.new_id("tty")
    runtime.run(cid, bundle, "-d", check=True)
    pid_file = tmp_path / "exec.pid"
    # runc uses the console socket only with --detach (without it, its own
    # terminal becomes the console).
    proc = runtime.exec(cid, "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty",
                        flags=["--tty", "--detach", "--console-socket", console_socket.path,
                               "--pid-file", pid_file])
    assert proc.returncode == 0, proc.stderr
    master = console_socket.master()
    out = read_master(master)
    assert out == f"/dev/pts/{pty_number(master)}\nall-tty\n"
    # Reaped here (we are its subreaper) so the container's delete is not held up.
    assert util.wait_pid(int(pid_file.read_text())) == 0


# ---- run in the foreground without a console socket -----------------------------------

@pytest.mark.ocipy_only  # runc 1.1 needs a controlling terminal: "open /dev/tty: no such device"
def test_foreground_run_with_terminal_proxies_the_pty(runtime, bundle):
    _terminal(bundle, "tty; echo hello; exit 3")
    proc = runtime.run(runtime.new_id("tty"), bundle)  # stdin is /dev/null
    assert proc.returncode == 3, proc.stderr
    out = proc.stdout.replace("\r\n", "\n")
    assert re.fullmatch(r"/dev/pts/\d+\nhello\n", out), out
