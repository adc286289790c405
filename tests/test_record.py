"""ocipy._record.record behaves as collections.namedtuple does where we use it."""
from collections import namedtuple

import pytest
from hypothesis import given, strategies as st

from ocipy._record import record

Ours = record("Write", "controller file value optional group", defaults=(False, 0))
Theirs = namedtuple("Write", "controller file value optional group", defaults=(False, 0))

values = st.one_of(st.integers(), st.text(max_size=5), st.none(), st.booleans())


@given(st.lists(values, min_size=3, max_size=5))
def test_positional_fields_defaults_and_equality_match_namedtuple(args):
    ours, theirs = Ours(*args), Theirs(*args)
    assert tuple(ours) == tuple(theirs)
    assert ours == theirs  # a tuple compares by its items
    assert (ours.controller, ours.file, ours.value, ours.optional, ours.group) == \
        (theirs.controller, theirs.file, theirs.value, theirs.optional, theirs.group)
    assert repr(ours) == repr(theirs)
    assert ours._replace(value="x") == theirs._replace(value="x")
    assert ours._asdict() == dict(theirs._asdict())
    assert hash(ours) == hash(theirs)


def test_keywords_and_unpacking():
    w = Ours("memory", file="memory.max", value="1", group=2)
    controller, file, value, optional, group = w
    assert (controller, file, value, optional, group) == ("memory", "memory.max", "1", False, 2)
    assert w[1] == "memory.max" and len(w) == 5
    assert Ours._fields == ("controller", "file", "value", "optional", "group")


@pytest.mark.parametrize("call, words", [
    (lambda: Ours("a", "b"), "missing field 'value'"),
    (lambda: Ours("a", "b", "c", 1, 2, 3), "takes 5 fields"),
    (lambda: Ours("a", "b", "c", controller="x"), "twice"),
    (lambda: Ours("a", "b", "c", colour=1), "unexpected field 'colour'"),
])
def test_bad_calls_are_type_errors(call, words):
    with pytest.raises(TypeError, match=words):
        call()


def test_records_are_immutable():
    w = Ours("a", "b", "c")
    with pytest.raises(AttributeError):
        w.value = "d"
