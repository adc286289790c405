"""The hot-path JSON codec agrees with the stdlib's json on every document."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from ocipy import _fastjson

documents = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.text()
    | hs.floats(allow_nan=False, allow_infinity=False),
    lambda children: hs.lists(children, max_size=5) | hs.dictionaries(hs.text(), children,
                                                                     max_size=5),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_dumps_matches_the_stdlib(doc):
    assert _fastjson.dumps(doc) == json.dumps(doc, separators=(",", ":"))
    assert _fastjson.dumps(doc, indent=4) == json.dumps(doc, indent=4)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_loads_reads_what_the_stdlib_writes(doc):
    assert _fastjson.loads(json.dumps(doc, indent=2).encode()) == doc


def test_loads_refuses_trailing_garbage_and_empty_input():
    for bad in (b"", b"   ", b"{} x", b"[1,", b"{'a': 1}"):
        with pytest.raises(ValueError):
            _fastjson.loads(bad)


def test_loads_keeps_the_constants_the_stdlib_accepts():
    assert math.isinf(_fastjson.loads("Infinity"))


def test_importing_it_pulls_in_neither_re_nor_enum():
    import subprocess
    import sys

    import ocipy

    src = str(__import__("pathlib").Path(ocipy.__file__).parent.parent)
    code = (f"import sys; sys.path.insert(0, {src!r}); import ocipy._fastjson as f;"
            "f.loads(f.dumps({'a': [1]}));"
            "print(sorted(m for m in ('re', 'enum', 'json') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
