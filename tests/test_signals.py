"""ocipy.signals.parse_signal: what `ocipy kill` accepts."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocipy.errors import OcipyError
from ocipy.signals import SIGRTMAX, SIGRTMIN, parse_signal


@pytest.mark.parametrize(
    "text, number",
    [
        ("9", 9),
        ("KILL", 9),
        ("SIGKILL", 9),
        ("kill", 9),
        ("sigterm", 15),
        ("SigHup", 1),
        ("TERM", 15),
        ("USR1", 10),
        ("WINCH", 28),
        ("SIGSYS", 31),
        ("64", 64),
        ("+9", 9),
        ("RTMIN", 34),
        ("RTMIN+3", 37),
        ("SIGRTMIN+0", 34),
        ("SIGRTMAX-1", 63),
        ("rtmax", 64),
        ("RTMIN+30", 64),
    ],
)
def test_accepts_numbers_and_names(text, number):
    assert parse_signal(text) == number


def test_names_match_python_signal_module():
    for sig in signal.Signals:
        name = sig.name
        if name in ("SIGIOT", "SIGPOLL", "SIGCLD") or name.startswith("SIGRT"):
            continue
        assert parse_signal(name) == sig.value, name
        assert parse_signal(name[3:].lower()) == sig.value, name


def test_realtime_range_is_glibcs():
    assert (SIGRTMIN, SIGRTMAX) == (signal.SIGRTMIN, signal.SIGRTMAX) == (34, 64)


@pytest.mark.parametrize(
    "text",
    [
        "FOO",
        "SIGFOO",
        "",
        "SIG",
        "0",
        "65",
        "-9",
        "1e3",
        " 9",
        "9 ",
        "٩",  # Arabic-Indic nine: int() takes it, strconv.Atoi does not
        "RTMIN+31",
        "RTMIN-1",
        "RTMAX+1",
        "RTMIN+",
        "RTMIN3",
        "SIGSIGKILL",
        "KILL9",
        "IOT",  # an alias runc's table does not have
    ],
)
def test_rejects_junk_like_runc(text):
    with pytest.raises(OcipyError) as info:
        parse_signal(text)
    assert str(info.value) == f'unknown signal "{text}"'


def test_error_quotes_like_go():
    with pytest.raises(OcipyError) as info:
        parse_signal('a"b')
    assert str(info.value) == r'unknown signal "a\"b"'


@given(st.integers(min_value=1, max_value=64))
def test_any_valid_number_parses_to_itself(n):
    assert parse_signal(str(n)) == n


@given(st.integers().filter(lambda n: not 1 <= n <= 64))
def test_any_out_of_range_number_is_rejected(n):
    with pytest.raises(OcipyError):
        parse_signal(str(n))


@given(st.integers(min_value=0, max_value=30))
def test_rtmin_plus_n_equals_rtmax_minus_complement(n):
    assert parse_signal(f"RTMIN+{n}") == parse_signal(f"SIGRTMAX-{30 - n}") == 34 + n


@given(st.text())
def test_any_text_parses_or_raises_ocipy_error(text):
    try:
        number = parse_signal(text)
    except OcipyError as exc:
        assert str(exc).startswith("unknown signal ")
    else:
        assert 1 <= number <= 64
