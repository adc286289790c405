"""The generated schema check (tools/gen_validator.py -> ocipy._schema_check).

config.py accepts a config when the generated ``is_valid`` says yes and asks
jsonschema only otherwise, so the two must agree exactly: a config the
generated code passes but jsonschema refuses would be let through.  Checked:

1. every keyword the generator supports, on small schemas, against
   Draft4Validator, with a fixed pool of edge values and with hypothesis;
2. every pattern, compiled to a DFA, against ``re.search``;
3. our config schema: generated configs and configs broken one site at a
   time (the strategies of test_schema.py), and an exhaustive sweep;
4. the build output is current, and a valid config is accepted without
   importing jsonschema (or re, json, referencing, attrs).
"""
from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from ocipy.config import validate_config
from ocipy.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "src" / "ocipy" / "schema"
GENERATED = REPO / "src" / "ocipy" / "_schema_check.py"
BUSYBOX = REPO / "bundles" / "busybox" / "config.json"


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


gen = _load(REPO / "tools" / "gen_validator.py", "gen_validator")
# the config strategies and documents of the schema test (not collected from here)
schema_test = _load(REPO / "tests" / "test_schema.py", "_test_schema_for_fast")


def compile_module(files: dict[str, Any], entries: dict[str, str]) -> types.ModuleType:
    module = types.ModuleType("generated")
    exec(compile(gen.generate(files, entries), "<generated>", "exec"), module.__dict__)  # noqa: S102
    return module


def draft4(files: dict[str, Any], entry: str) -> Draft4Validator:
    """Built the way config.py builds its validator: files registered by bare name."""
    registry = Registry().with_resources(
        (name, Resource.from_contents(schema, default_specification=DRAFT4))
        for name, schema in files.items())
    return Draft4Validator(files[entry], registry=registry)


SCHEMAS = gen.load_schemas(SCHEMA_DIR)
FAST = compile_module(SCHEMAS, {"is_valid": "config-schema.json",
                                "is_valid_state": "state-schema.json"})
OURS = draft4(SCHEMAS, "config-schema.json")
STATE = draft4(SCHEMAS, "state-schema.json")


def assert_agrees(doc: Any, fast: Any = FAST.is_valid, slow: Draft4Validator = OURS) -> None:
    expected = slow.is_valid(doc)
    assert fast(doc) == expected, (
        f"generated check says {not expected}, jsonschema says {expected}: "
        f"{[e.message for e in slow.iter_errors(doc)][:3]}")


# --------------------------------------------------------------------------
# 1. Keywords, one small schema each.

KEYWORD_SCHEMAS: dict[str, dict[str, Any]] = {
    "type integer": {"type": "integer"},
    "type number": {"type": "number"},
    "type boolean": {"type": "boolean"},
    "type null": {"type": "null"},
    "type string": {"type": "string"},
    "type array": {"type": "array"},
    "type object": {"type": "object"},
    "type list": {"type": ["string", "null", "integer"]},
    "minimum": {"minimum": 1},
    "maximum": {"maximum": 1},
    "exclusiveMinimum": {"minimum": 1, "exclusiveMinimum": True},
    "exclusiveMaximum": {"maximum": 1, "exclusiveMaximum": True},
    "exclusive without bound": {"exclusiveMinimum": True, "exclusiveMaximum": True},
    "uint64": {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
    "number range": {"type": "number", "minimum": -0.5, "maximum": 1.5},
    "multipleOf int": {"multipleOf": 2},
    "multipleOf float": {"multipleOf": 0.5},
    "enum strings": {"enum": ["a", "ab"]},
    "enum strings typed": {"type": "string", "enum": ["a", "ab"]},
    "enum mixed": {"enum": [1, "a", None]},
    "enum true": {"enum": [True]},
    "enum one": {"enum": [1]},
    "enum containers": {"enum": [[1], {"a": 1}, [True]]},
    "pattern anchored": {"pattern": "^a"},
    "pattern dollar": {"pattern": "b$"},
    "pattern end of text": {"pattern": "^[0-9]+(?![\\s\\S])"},
    "pattern unanchored": {"pattern": "b"},
    "pattern backreference (re)": {"pattern": "(a)\\1"},
    "minLength": {"minLength": 2},
    "maxLength": {"maxLength": 1},
    "required": {"required": ["a", "b"]},
    "properties": {"properties": {"a": {"type": "integer"}, "b": {}}},
    "required property": {"required": ["a"], "properties": {"a": {"type": "integer"}}},
    "additionalProperties false": {"additionalProperties": False},
    "additionalProperties with properties": {
        "properties": {"a": {}}, "additionalProperties": False},
    "additionalProperties schema": {
        "properties": {"a": {}}, "additionalProperties": {"type": "string"}},
    "additionalProperties alone": {"additionalProperties": {"type": "integer"}},
    "patternProperties": {"patternProperties": {"^a": {"type": "integer"}}},
    "patternProperties closed": {
        "patternProperties": {"^a": {}, "b$": {"type": "string"}},
        "additionalProperties": False},
    "patternProperties non-empty keys": {
        "patternProperties": {"[\\s\\S]": {"type": "string"}}, "additionalProperties": False},
    "all three": {"properties": {"ab": {"type": "string"}},
                  "patternProperties": {"^a": {"type": ["integer", "string"]}},
                  "additionalProperties": {"type": "null"}},
    "minProperties": {"minProperties": 1},
    "maxProperties": {"maxProperties": 1},
    "dependencies array": {"dependencies": {"a": ["b"], "b": []}},
    "dependencies schema": {"dependencies": {"a": {"required": ["b"],
                                                   "properties": {"b": {"type": "string"}}}}},
    "items schema": {"items": {"type": "integer"}},
    "items list": {"items": [{"type": "integer"}, {"type": "string"}]},
    "additionalItems false": {"items": [{"type": "integer"}], "additionalItems": False},
    "additionalItems schema": {"items": [{"type": "integer"}],
                               "additionalItems": {"type": "string"}},
    "additionalItems without items": {"additionalItems": False},
    "minItems": {"minItems": 1},
    "maxItems": {"maxItems": 1},
    "uniqueItems": {"uniqueItems": True},
    "uniqueItems false": {"uniqueItems": False},
    "allOf": {"allOf": [{"type": "integer"}, {"minimum": 1}]},
    "anyOf": {"anyOf": [{"type": "string"}, {"minimum": 5}]},
    "anyOf trivial branch": {"anyOf": [{}, {"type": "string"}]},
    "oneOf": {"oneOf": [{"type": "integer"}, {"minimum": 1}]},
    "oneOf trivial branch": {"oneOf": [{"description": "anything"}, {"type": "string"}]},
    "not": {"not": {"type": "string"}},
    "not trivial": {"not": {}},
    "format is not asserted": {"format": "email"},
    "ref hides siblings": {"$ref": "#/definitions/a", "type": "string",
                           "definitions": {"a": {"type": "integer"}}},
    "recursive ref": {"$ref": "#/definitions/tree", "definitions": {
        "tree": {"type": "array", "items": {"$ref": "#/definitions/tree"}}}},
    "ref into another file": {"properties": {"a": {"$ref": "u.json#/definitions/m"}}},
    "annotations only": {"description": "x", "title": "y", "default": 1, "x-expected": "z"},
}
OTHER_FILE = {"definitions": {"n": {"type": "integer", "minimum": 0},
                              "m": {"$ref": "#/definitions/n"}}}

POOL: list[Any] = [
    None, True, False, 0, 1, -1, 2, 5, 7, 1.0, 0.5, 1.5, -0.5, 2.0**70, 2**63, 2**64 - 1, 2**64,
    -(2**63) - 1, "", "a", "ab", "abc", "ba", "b\n", "\nb", "aa", "0", "123", "12x", "١٢",
    [], [1], [1, 1], [1, True], [1, 1.0], [0, False], ["a", "b"], ["a", "a"], [1, "a"],
    [1, "a", "b"], [[1], [True]], [{"a": 1}, {"a": 1}], [{"a": 1}, {"a": True}], [[]], [[[]]],
    {}, {"a": 1}, {"a": "x"}, {"a": True}, {"a": 1.0}, {"a": 1, "b": 2}, {"a": 1, "b": "x"},
    {"b": 2}, {"b": "x"}, {"": 1}, {"": "x"}, {"ab": 1}, {"ab": "x"}, {"ab": None},
    {"ba": "x"}, {"c": None}, {"c": 1}, {"a": -1}, {"a": [1]},
]

# JSON has no NaN or infinity (jsonschema's multipleOf overflows on inf)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text("ab\n0", max_size=3),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text("ab", max_size=2), inner, max_size=3),
    max_leaves=8)


@functools.cache
def keyword_check(name: str) -> tuple[Any, Draft4Validator]:
    files = {"t.json": KEYWORD_SCHEMAS[name], "u.json": OTHER_FILE}
    return compile_module(files, {"is_valid": "t.json"}).is_valid, draft4(files, "t.json")


@pytest.mark.parametrize("name", KEYWORD_SCHEMAS)
def test_keyword_agrees_with_jsonschema_on_edge_values(name: str) -> None:
    fast, slow = keyword_check(name)
    for value in POOL:
        assert_agrees(value, fast, slow)


@pytest.mark.parametrize("name", KEYWORD_SCHEMAS)
@settings(max_examples=60, deadline=None)
@given(value=json_values)
def test_keyword_agrees_with_jsonschema_on_any_value(name: str, value: Any) -> None:
    assert_agrees(value, *keyword_check(name))


def test_bool_is_not_an_integer_and_one_point_zero_is_not_either() -> None:
    fast, _ = keyword_check("uint64")
    assert fast(0) and fast(2**64 - 1)
    assert not fast(True) and not fast(False) and not fast(1.0) and not fast(2**64)


@pytest.mark.parametrize("schema", [{"const": 1}, {"id": "x", "type": "string"},
                                    {"type": "any"}, {"$ref": "missing.json#"},
                                    {"propertyNames": {}}])
def test_what_the_generator_cannot_express_stops_the_build(schema: dict) -> None:
    with pytest.raises(gen.SchemaError):
        gen.generate({"t.json": schema}, {"is_valid": "t.json"})


# --------------------------------------------------------------------------
# 2. Patterns: the DFA against re.search.

def _schema_patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        if isinstance(node.get("patternProperties"), dict):
            yield from node["patternProperties"]
        for value in node.values():
            yield from _schema_patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_patterns(value)


SCHEMA_PATTERNS = sorted({p for doc in SCHEMAS.values() for p in _schema_patterns(doc)})
# Constructs our schema does not use (yet), to keep the compiler honest.
MORE_PATTERNS = [
    "", "^", "$", "^$", "a", "^a$", "a$", "\\Aab\\Z", "^a|b$", "(a|bc)*d", "^(ab|a)(bc|c)$",
    "^[^a-c]+$", "^\\d+$", "\\s", "^\\w*$", "^\\W\\D\\S", "^.$", "(?s)^.$", "^a{2,3}$",
    "^a{2,}b?$", "^(a|)+$", "a*?b", "^[\\s\\S]{3}", "[\\S\\s]", "^(?:x|y)z", "\\.",
    "^(?![\\s\\S])", "(?![\\s\\S])", "^(?!a)", "^[\\u00e9\\U0001F600-\\U0001F64F]+$",
    "^-?(0|[1-9][0-9]*)$",
    # left to re: backreference, lookbehind, flags, possessive
    "(a)\\1", "(?<=a)b", "(?i)^ab$", "(?m)^b$", "^a++$",
]


@functools.cache
def pattern_function(pattern: str) -> Any:
    """The generated check of {"pattern": pattern}, on strings: does it match?"""
    files = {"t.json": {"type": "string", "pattern": pattern}}
    return compile_module(files, {"is_valid": "t.json"}).is_valid


def pattern_strings(pattern: str) -> st.SearchStrategy[str]:
    alphabet = sorted(set(pattern) | set("aAbc0129.-+:/\n MBK é😀"))
    return st.one_of(st.text(max_size=8), st.text(alphabet, max_size=12),
                     st.from_regex(pattern),
                     st.from_regex(pattern).map(lambda s: s + "\n"),
                     st.from_regex(pattern).map(lambda s: s[:-1]))


@pytest.mark.parametrize("pattern", SCHEMA_PATTERNS + MORE_PATTERNS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_pattern_matches_like_re_search(pattern: str, data: st.DataObject) -> None:
    text = data.draw(pattern_strings(pattern))
    assert pattern_function(pattern)(text) == (re.search(pattern, text) is not None)


@pytest.mark.parametrize("pattern", SCHEMA_PATTERNS)
def test_schema_patterns_need_no_re_at_run_time(pattern: str) -> None:
    gen.dfa_function("match", pattern)  # raises Unsupported if it would fall back to re


@pytest.mark.parametrize("pattern", ["(a)\\1", "(?<=a)b", "(?i)^ab$", "(?m)^b$", "^a++$"])
def test_patterns_a_dfa_cannot_express_are_left_to_re(pattern: str) -> None:
    with pytest.raises(gen.Unsupported):
        gen.dfa_function("match", pattern)
    assert "import re" in gen.generate({"t.json": {"pattern": pattern}}, {"is_valid": "t.json"})


def test_semver_edges() -> None:
    semver = pattern_function(SCHEMAS["defs.json"]["definitions"]["SemVer"]["pattern"])
    for good in ("1.2.0", "0.0.0", "10.20.30", "1.0.0-rc.1", "1.0.0-0a", "1.0.0+git.5cfc4c3",
                 "1.0.0-alpha-a.b-c+build.1-aef"):
        assert semver(good), good
    for bad in ("1.2", "01.2.3", "1.2.3-01", "1.2.3+", "1.2.3\n", "v1.2.3", "1.2.3-", "١.2.3",
                "1.2.3.4", ""):
        assert not semver(bad), bad


# --------------------------------------------------------------------------
# 3. Our config schema.

# The v1.2 fields test_schema.py's strategies leave out (they follow the
# subset the upstream schema also defines).
V1_2 = {
    "windows": {}, "solaris": {}, "vm": {}, "zos": {},
    "process": {
        "cwd": "/", "args": ["sh"], "commandLine": "sh",
        "user": {"uid": 0, "gid": 0, "umask": 18, "username": "root"},
        "scheduler": {"policy": "SCHED_DEADLINE", "nice": -5, "priority": 1, "runtime": 10,
                      "deadline": 20, "period": 30, "flags": ["SCHED_FLAG_RESET_ON_FORK"]},
        "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 4},
        "execCPUAffinity": {"initial": "7", "final": "0-3,7"},
    },
    "linux": {
        "namespaces": [{"type": "time"}],
        "timeOffsets": {"monotonic": {"secs": 172800, "nanosecs": 0}, "boottime": {"secs": -1}},
        "netDevices": {"eth0": {"name": "container_eth0"}, "eth1": {}},
        "personality": {"domain": "LINUX32", "flags": ["x"]},
    },
}
SECTIONS = {**schema_test.SECTIONS, "v1.2": V1_2}
SWEEP = {name: schema_test.deep_merge(schema_test.MINIMAL, section)
         for name, section in SECTIONS.items()}

ODD_INTS = [1.0, 0.0, -0.0, 2**63 - 1, -(2**63), 2**31, -(2**31) - 1, 7, 8, 100, 101]
ODD_STRINGS = ["/", "\n/x", "x/", "1.2.0\n", "01.2.3", "1.2.3-01", "1.2.3-0a", "١.2.3",
               "0MB", "2mB", "2MB\n", "64KB", "MB:", "MB:0=20\n", "0-3, 7", "0-3\n", "rw\n",
               "m", "p", "LINUX64", "SCHED_FLAG_BOGUS", "IOPRIO_CLASS_RT", "RLIMIT_RTTIME"]


def every_break(doc: dict) -> Iterator[tuple[str, dict]]:
    """Each site of doc removed, retyped, or set to an edge value; each object given an
    unknown and an empty key.  One change at a time, undone before the next."""
    doc = copy.deepcopy(doc)
    for path in [()] + schema_test.sites(doc):
        target = doc if not path else schema_test.parent_of(doc, path)[0][path[-1]]
        if isinstance(target, dict):
            for key in ("bogus", ""):
                if key not in target:
                    target[key] = "x"
                    yield f"{schema_test.json_path(path)}[{key!r}] = 'x'", doc
                    del target[key]
        if not path:
            continue
        parent, last = schema_test.parent_of(doc, path)
        old = parent[last]
        kind = schema_test.json_type(old)
        pool = schema_test.other_types(old)
        pool += schema_test.EDGE_INTS + ODD_INTS if kind == "integer" else []
        pool += schema_test.EDGE_STRINGS + ODD_STRINGS if kind == "string" else []
        for new in pool:
            parent[last] = new
            yield f"{schema_test.json_path(path)} = {new!r}", doc
        del parent[last]
        yield f"remove {schema_test.json_path(path)}", doc
        if isinstance(parent, list):
            parent.insert(last, old)
        else:
            parent[last] = old


def test_sweep_documents_use_every_property_of_the_schema() -> None:
    """So the sweep below reaches every keyword of every definition."""
    def property_names(node: Any) -> set[str]:
        names: set[str] = set()
        if isinstance(node, dict):
            names |= set(node.get("properties", {}))
            for value in node.values():
                names |= property_names(value)
        elif isinstance(node, list):
            for value in node:
                names |= property_names(value)
        return names

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        if isinstance(node, list):
            return {k for v in node for k in keys(v)}
        return set()

    schema = {name: doc for name, doc in SCHEMAS.items() if name != "state-schema.json"}
    used = set().union(*(keys(doc) for doc in SWEEP.values()))
    assert property_names(schema) - used == set()


@pytest.mark.parametrize("section", SWEEP)
def test_sweep_documents_are_valid(section: str) -> None:
    assert OURS.is_valid(SWEEP[section])
    assert FAST.is_valid(SWEEP[section])


@pytest.mark.parametrize("section", SWEEP)
def test_every_single_break_gets_the_jsonschema_verdict(section: str) -> None:
    for what, doc in every_break(SWEEP[section]):
        try:
            assert_agrees(doc)
        except AssertionError as exc:
            raise AssertionError(f"{section}: {what}: {exc}") from None


CROSS_CHECK = settings(max_examples=150, deadline=None,
                       phases=[Phase.explicit, Phase.reuse, Phase.generate],
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@CROSS_CHECK
@given(schema_test.configs)
def test_generated_configs_agree(config: dict) -> None:
    assert_agrees(config)


@CROSS_CHECK
@given(schema_test.configs.flatmap(
    lambda config: st.lists(schema_test.broken(config), min_size=4, max_size=4)))
def test_broken_configs_agree(variants: list[dict]) -> None:
    for config in variants:
        assert_agrees(config)


@CROSS_CHECK
@given(st.data())
def test_several_breaks_at_once_agree(data: st.DataObject) -> None:
    """Up to three sites of a full config changed together (anyOf and dependencies
    look at several keys)."""
    doc = copy.deepcopy(schema_test.deep_merge(*SWEEP.values()))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = schema_test.sites(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent, last = schema_test.parent_of(doc, path)
        new = data.draw(st.sampled_from(POOL + ODD_STRINGS + schema_test.EDGE_STRINGS
                                        + ["<remove>"]))
        note(f"{schema_test.json_path(path)} = {new!r}")
        if new == "<remove>":
            del parent[last]
        else:
            parent[last] = copy.deepcopy(new)
    assert_agrees(doc)


@functools.cache
def upstream() -> tuple[Any, Draft4Validator]:
    """The spec's own schema as Debian ships it, with its ids dropped so both sides
    resolve refs by file name: oneOf, $-anchored patterns and other shapes ours lacks."""
    def drop_ids(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: drop_ids(v) for k, v in node.items() if k != "id"}
        return [drop_ids(v) for v in node] if isinstance(node, list) else node

    files = {name: drop_ids(doc)
             for name, doc in gen.load_schemas(schema_test.UPSTREAM_SCHEMA).items()}
    return (compile_module(files, {"is_valid": "config-schema.json"}).is_valid,
            draft4(files, "config-schema.json"))


@schema_test.needs_upstream
@CROSS_CHECK
@given(schema_test.configs.flatmap(
    lambda config: st.lists(schema_test.broken(config), min_size=2, max_size=2)))
def test_generator_agrees_on_the_upstream_schema(variants: list[dict]) -> None:
    for config in variants:
        assert_agrees(config, *upstream())


def test_state_schema_agrees() -> None:
    """The generator on the other entry point (an anyOf of bare properties)."""
    state = {"ociVersion": "1.2.0", "id": "c1", "status": "running", "bundle": "/b", "pid": 4,
             "annotations": {"a": "b"}}
    for _, doc in every_break(state):
        assert_agrees(doc, FAST.is_valid_state, STATE)


# --------------------------------------------------------------------------
# 4. The build output, and what validating a valid config imports.

def test_generated_module_is_current() -> None:
    assert GENERATED.exists(), "src/ocipy/_schema_check.py is missing: run `make setup`"
    assert GENERATED.read_text("utf-8") == gen.generate(SCHEMAS), (
        "src/ocipy/_schema_check.py is older than the schema: run `make setup` "
        "(or python tools/gen_validator.py)")


def test_valid_config_is_accepted_without_importing_jsonschema() -> None:
    code = (
        "import sys\n"
        "from ocipy.config import load_config\n"
        f"load_config({str(BUSYBOX.parent)!r})\n"
        "heavy = {'jsonschema', 'referencing', 'attrs', 're', 'json'} & set(sys.modules)\n"
        "assert 'ocipy._schema_check' in sys.modules\n"
        "sys.exit(' '.join(sorted(heavy)) or None)\n")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO / "src")}, check=False)
    assert result.returncode == 0, result.stderr or result.stdout


def test_without_the_generated_module_jsonschema_decides(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ocipy._schema_check", None)  # import fails
    doc = json.loads(BUSYBOX.read_text())
    validate_config(doc)
    doc["process"]["user"]["uid"] = -1
    with pytest.raises(ConfigError) as caught:
        validate_config(doc)
    assert (caught.value.path, caught.value.reason) == (
        "process.user.uid", "-1 is less than the minimum of 0")
