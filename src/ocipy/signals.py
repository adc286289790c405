"""Signal names and numbers as ``ocipy kill`` accepts them.

runc's kill.go parseSignal: a decimal number is taken as is; otherwise the
text is upper-cased, "SIG" is prefixed if missing, and the name looked up in
golang.org/x/sys/unix's Linux signal table (SIGHUP..SIGSYS, no aliases); a
miss is ``unknown signal "<text>"``.  On top of that we accept the real-time
forms of kill(1) and crun ("RTMIN", "RTMIN+3", "SIGRTMAX-1") and refuse
numbers the kernel has no signal for, which runc only learns from kill(2).
"""

from __future__ import annotations

import json
import re
import signal as _signal

from ocipy.errors import OcipyError

# x/sys/unix zerrors_linux_amd64.go signalList (also right for arm64, riscv64,
# s390x, ppc64le; mips and sparc number differently and are not targets).
_SIGNALS: dict[str, int] = {
    "SIGHUP": 1,
    "SIGINT": 2,
    "SIGQUIT": 3,
    "SIGILL": 4,
    "SIGTRAP": 5,
    "SIGABRT": 6,
    "SIGBUS": 7,
    "SIGFPE": 8,
    "SIGKILL": 9,
    "SIGUSR1": 10,
    "SIGSEGV": 11,
    "SIGUSR2": 12,
    "SIGPIPE": 13,
    "SIGALRM": 14,
    "SIGTERM": 15,
    "SIGSTKFLT": 16,
    "SIGCHLD": 17,
    "SIGCONT": 18,
    "SIGSTOP": 19,
    "SIGTSTP": 20,
    "SIGTTIN": 21,
    "SIGTTOU": 22,
    "SIGURG": 23,
    "SIGXCPU": 24,
    "SIGXFSZ": 25,
    "SIGVTALRM": 26,
    "SIGPROF": 27,
    "SIGWINCH": 28,
    "SIGIO": 29,
    "SIGPWR": 30,
    "SIGSYS": 31,
}

# glibc's view, as in kill(1): SIGRTMIN is 34 because glibc keeps 32 and 33
# for NPTL; SIGRTMAX is the kernel's _NSIG (64).
SIGRTMIN: int = int(_signal.SIGRTMIN)
SIGRTMAX: int = int(_signal.SIGRTMAX)

# strconv.Atoi syntax: optional sign, ASCII digits only.
_NUMBER = re.compile(r"[+-]?[0-9]+")
_REALTIME = re.compile(r"SIGRT(MIN|MAX)(?:([+-])([0-9]+))?")


def _unknown(text: str) -> OcipyError:
    # Go's %q; json quoting agrees with it for everything but rare controls.
    return OcipyError(f"unknown signal {json.dumps(text, ensure_ascii=False)}")


def parse_signal(text: str) -> int:
    """The signal number for "9", "KILL", "SIGKILL", "sigterm", "RTMIN+3", ...

    Raises OcipyError ``unknown signal "<text>"`` for anything else, including
    numbers outside 1..SIGRTMAX.
    """
    if _NUMBER.fullmatch(text):
        number = int(text)
        if 1 <= number <= SIGRTMAX:
            return number
        raise _unknown(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = _SIGNALS.get(name)
    if number is not None:
        return number
    match = _REALTIME.fullmatch(name)
    if match:
        which, sign, offset = match.groups()
        number = SIGRTMIN if which == "MIN" else SIGRTMAX
        if sign:
            number += int(offset) if sign == "+" else -int(offset)
        if SIGRTMIN <= number <= SIGRTMAX:
            return number
    raise _unknown(text)
