"""A foreground `run` with process.terminal: ocipy holds the pty master and
copies between it and its own stdin/stdout, as `runc run` does.

The caller's terminal is put in raw mode (the container's pty does the line
discipline) and restored on the way out; window size changes (SIGWINCH) are
passed on to the pty.
"""
from __future__ import annotations

import errno
import select
import signal

from ocipy import _os as os  # os without importing os (see _os.py)


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def proxy(master: int) -> None:
    """Copy stdin -> master and master -> stdout until the container closes the pty."""
    import termios
    import tty

    stdin_tty = os.isatty(0)
    saved = None
    old_winch = None
    if stdin_tty:
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        _copy_winsize(0, master)
        old_winch = signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(0, master))
    readers = [master, 0]
    try:
        while True:
            try:
                ready, _, _ = select.select(readers, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:  # every slave fd is closed
                        return
                    raise
                if not data:
                    return
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    readers.remove(0)  # stdin closed: keep draining the pty
                else:
                    _write_all(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        os.close(master)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
