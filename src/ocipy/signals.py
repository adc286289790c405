"""Signal names and numbers as ``ocipy kill`` accepts them.

runc's kill.go parseSignal: a decimal number is taken as is; otherwise the
text is upper-cased, "SIG" is prefixed if missing, and the name looked up in
golang.org/x/sys/unix's Linux signal table (SIGHUP..SIGSYS, no aliases); a
miss is ``unknown signal "<text>"``.  On top of that we accept the real-time
forms of kill(1) and crun ("RTMIN", "RTMIN+3", "SIGRTMAX-1") and refuse
numbers the kernel has no signal for, which runc only learns from kill(2).
"""

from __future__ import annotations

import _signal  # the C module: the signal package imports enum (ms at start-up)

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

_DIGITS = frozenset("0123456789")


def _is_number(text: str) -> bool:
    """strconv.Atoi syntax: an optional sign, then ASCII digits only."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    return bool(digits) and set(digits) <= _DIGITS


def _unknown(text: str) -> OcipyError:
    return OcipyError(f"unknown signal {_quote(text)}")


def _quote(text: str) -> str:
    """Go's %q for the text: JSON quoting, keeping printable non-ASCII as is."""
    from ocipy._fastjson import dumps

    return "".join(ch if ord(ch) > 127 and ch.isprintable() else dumps(ch)[1:-1]
                   for ch in text).join('""')


def _realtime(name: str) -> int | None:
    """SIGRTMIN, SIGRTMAX, SIGRTMIN+n, SIGRTMAX-n; None for anything else."""
    for base, number in (("SIGRTMIN", SIGRTMIN), ("SIGRTMAX", SIGRTMAX)):
        if name.startswith(base):
            rest = name[len(base):]
            if not rest:
                return number
            if rest[0] in "+-" and len(rest) > 1 and set(rest[1:]) <= _DIGITS:
                return number + int(rest[1:]) if rest[0] == "+" else number - int(rest[1:])
    return None


def parse_signal(text: str) -> int:
    """The signal number for "9", "KILL", "SIGKILL", "sigterm", "RTMIN+3", ...

    Raises OcipyError ``unknown signal "<text>"`` for anything else, including
    numbers outside 1..SIGRTMAX.
    """
    if _is_number(text):
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
    number = _realtime(name)
    if number is not None and SIGRTMIN <= number <= SIGRTMAX:
        return number
    raise _unknown(text)
