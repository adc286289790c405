"""Generate ``src/ocipy/_schema_check.py``: our draft-04 schema as plain Python.

``ocipy create`` must accept a valid config without importing jsonschema
(tens of milliseconds of imports plus building the validator).  This
generator, run at build time (setup.py's build_py and the Makefile), turns
``src/ocipy/schema/*.json`` into one function per schema definition that
answers what ``jsonschema.Draft4Validator(...).is_valid(doc)`` answers.
Nothing is interpreted at run time.  config.py calls it first and
runs jsonschema only when it says no, to word the error.

Semantics follow jsonschema's Draft4Validator as config.py builds it:

* ``$ref`` resolves between our files by bare file name and JSON pointer,
  and hides its sibling keywords (draft 4);
* ``bool`` is neither an integer nor a number, and ``1.0`` is not an integer;
* a keyword only constrains the types it is about (``minimum`` ignores a
  string, ``required`` ignores an array);
* ``format`` is not asserted (config.py passes no format checker);
* ``pattern`` is ``re.search``.  Patterns are compiled here to a state
  machine over characters.  Only a pattern using something a DFA cannot
  express (backreferences, lookarounds other than the end-of-text
  ``(?![\\s\\S])``, flags) is left to a lazily imported ``re``.

Values are those ``json.loads`` returns (dict, list, str, int, float, bool,
None); a keyword the generator does not know stops the build rather than
being skipped.

Usage: ``python tools/gen_validator.py [--check] [SCHEMA_DIR [OUTPUT]]``.
"""
from __future__ import annotations

import bisect
import itertools
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin

try:  # Python 3.11+
    from re import _constants as sre
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as sre  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "src" / "ocipy" / "schema"
OUTPUT = REPO / "src" / "ocipy" / "_schema_check.py"
# public function name -> the schema file it checks
ENTRIES = {"is_valid": "config-schema.json"}


class SchemaError(Exception):
    """The schema uses something the generator cannot turn into code."""


# --------------------------------------------------------------------------
# Keywords

OBJECT_KEYWORDS = ("required", "properties", "patternProperties", "additionalProperties",
                   "dependencies", "minProperties", "maxProperties")
ARRAY_KEYWORDS = ("items", "additionalItems", "minItems", "maxItems", "uniqueItems")
STRING_KEYWORDS = ("minLength", "maxLength", "pattern")
NUMBER_KEYWORDS = ("minimum", "maximum", "multipleOf")
ANY_KEYWORDS = ("type", "enum", "allOf", "anyOf", "oneOf", "not")
# Read by another keyword (exclusive*), or never asserted by Draft4Validator.
PASSIVE_KEYWORDS = ("$schema", "title", "description", "default", "definitions",
                    "format", "exclusiveMinimum", "exclusiveMaximum")
KNOWN_KEYWORDS = frozenset(OBJECT_KEYWORDS + ARRAY_KEYWORDS + STRING_KEYWORDS
                           + NUMBER_KEYWORDS + ANY_KEYWORDS + PASSIVE_KEYWORDS
                           + ("$ref", "id"))

ALL_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
TYPE_TESTS = {
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "string": "isinstance({v}, str)",
    # bool is an int in Python but not an integer in JSON Schema
    "integer": "(isinstance({v}, int) and not isinstance({v}, bool))",
    "number": "(isinstance({v}, (int, float)) and not isinstance({v}, bool))",
    "boolean": "isinstance({v}, bool)",
    "null": "{v} is None",
}
# The types a keyword group constrains; integer is a number.
GROUP_TYPES = {
    "object": frozenset({"object"}),
    "array": frozenset({"array"}),
    "string": frozenset({"string"}),
    "number": frozenset({"integer", "number"}),
}


Location = tuple[str, tuple[str, ...]]  # (file name, JSON pointer parts)


def _pointer_text(loc: Location) -> str:
    return loc[0] + "#" + "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in loc[1])


class Generator:
    """Emits one function per $ref target and per subschema used as a boolean."""

    def __init__(self, files: dict[str, Any]) -> None:
        self.files = files
        self.names: dict[Location, str] = {}
        self.taken: set[str] = set()
        self.queue: list[Location] = []
        self.functions: list[str] = []
        self.patterns: dict[str, str] = {}
        self.pattern_code: list[str] = []
        self.helpers: set[str] = set()

    # -- schema navigation -------------------------------------------------

    def node(self, loc: Location) -> Any:
        file, parts = loc
        if file not in self.files:
            raise SchemaError(f"{_pointer_text(loc)}: no schema file {file!r}")
        node = self.files[file]
        for part in parts:
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError):
                raise SchemaError(f"{_pointer_text(loc)} does not resolve") from None
        return node

    def resolve(self, loc: Location, ref: str) -> Location:
        """A $ref found at loc, as (file, pointer): files refer to each other by name."""
        url, fragment = urldefrag(urljoin(loc[0], ref))
        if fragment and not fragment.startswith("/"):
            raise SchemaError(f"{_pointer_text(loc)}: $ref {ref!r}: only JSON pointers")
        parts = tuple(unquote(p).replace("~1", "/").replace("~0", "~")
                      for p in fragment.split("/")[1:])
        return url, parts

    def target(self, loc: Location) -> Location:
        """Follow $ref chains (draft 4: a $ref hides its siblings)."""
        seen = [loc]
        node = self.node(loc)
        while isinstance(node, dict) and "$ref" in node:
            loc = self.resolve(loc, node["$ref"])
            if loc in seen:
                raise SchemaError(f"$ref cycle: {' -> '.join(map(_pointer_text, seen))}")
            seen.append(loc)
            node = self.node(loc)
        return loc

    def check_keywords(self, loc: Location, schema: Any) -> None:
        if not isinstance(schema, dict):
            raise SchemaError(f"{_pointer_text(loc)}: a draft-04 schema is an object")
        if "id" in schema:
            raise SchemaError(f"{_pointer_text(loc)}: 'id' (a new resolution scope) "
                              "is not supported")
        unknown = [k for k in schema if k not in KNOWN_KEYWORDS and not k.startswith("x-")]
        if unknown:
            raise SchemaError(f"{_pointer_text(loc)}: keyword {', '.join(map(repr, unknown))} "
                              "is not draft 4 or not supported by tools/gen_validator.py")
        wanted = schema.get("type", [])
        for kind in [wanted] if isinstance(wanted, str) else wanted:
            if kind not in ALL_TYPES:  # draft 4 has no "any"
                raise SchemaError(f"{_pointer_text(loc)}: unknown type {kind!r}")

    def is_trivial(self, loc: Location) -> bool:
        """True for a schema every instance satisfies ({} or annotations only)."""
        loc = self.target(loc)
        schema = self.node(loc)
        self.check_keywords(loc, schema)
        return all(k in PASSIVE_KEYWORDS or k.startswith("x-") for k in schema)

    # -- functions ---------------------------------------------------------

    def function(self, loc: Location) -> str:
        """The name of the function checking the schema at loc (emitted later)."""
        loc = self.target(loc)
        if loc not in self.names:
            file, parts = loc
            stem = file.removesuffix(".json")
            words = [p for p in parts if p != "definitions"]
            name = "_" + "__".join([stem] + (["_".join(words)] if words else []))
            name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
            base, n = name, 1
            while name in self.taken:
                n += 1
                name = f"{base}_{n}"
            self.taken.add(name)
            self.names[loc] = name
            self.queue.append(loc)
        return self.names[loc]

    def emit_function(self, loc: Location) -> None:
        lines = [f"# {_pointer_text(loc)}", f"def {self.names[loc]}(x0):"]
        lines += self.checks(loc, "x0", 0, 1) or []
        lines.append("    return True")
        self.functions.append("\n".join(lines))

    # -- checks: statements that `return False` when var fails the schema ---

    def checks(self, loc: Location, var: str, depth: int, indent: int) -> list[str]:
        loc = self.target(loc)
        schema = self.node(loc)
        self.check_keywords(loc, schema)
        pad = "    " * indent
        out: list[str] = []
        known = ALL_TYPES

        if "type" in schema:
            wanted = schema["type"]
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            tests = [TYPE_TESTS[t].format(v=var) for t in wanted]
            test = tests[0] if len(tests) == 1 else f"({' or '.join(tests) or 'False'})"
            out.append(f"{pad}if not {test}:")
            out.append(f"{pad}    return False")
            known = frozenset(wanted)
            if "number" in known:
                known |= {"integer"}

        if "enum" in schema:
            out += self.enum(schema["enum"], var, known, pad)

        for group, keywords, emit in (("object", OBJECT_KEYWORDS, self.object_checks),
                                      ("array", ARRAY_KEYWORDS, self.array_checks),
                                      ("string", STRING_KEYWORDS, self.string_checks),
                                      ("number", NUMBER_KEYWORDS, self.number_checks)):
            if not any(k in schema for k in keywords) or not known & GROUP_TYPES[group]:
                continue
            if known <= GROUP_TYPES[group]:
                out += emit(loc, schema, var, depth, indent)
            else:
                body = emit(loc, schema, var, depth, indent + 1)
                if body:
                    test = TYPE_TESTS["number" if group == "number" else group].format(v=var)
                    out += [f"{pad}if {test}:"] + body

        for index, _ in enumerate(schema.get("allOf", [])):
            out += self.sub((loc[0], loc[1] + ("allOf",)), str(index), var, depth, indent)
        if "anyOf" in schema:
            branches = [(loc[0], loc[1] + ("anyOf", str(i))) for i in range(len(schema["anyOf"]))]
            if not any(self.is_trivial(b) for b in branches):
                calls = " or ".join(f"{self.function(b)}({var})" for b in branches)
                out += [f"{pad}if not ({calls or 'False'}):", f"{pad}    return False"]
        if "oneOf" in schema:
            branches = [(loc[0], loc[1] + ("oneOf", str(i))) for i in range(len(schema["oneOf"]))]
            calls = [("True" if self.is_trivial(b) else f"{self.function(b)}({var})")
                     for b in branches]
            out += [f"{pad}if ({' + '.join(calls) or '0'}) != 1:", f"{pad}    return False"]
        if "not" in schema:
            branch = (loc[0], loc[1] + ("not",))
            test = "True" if self.is_trivial(branch) else f"{self.function(branch)}({var})"
            out += [f"{pad}if {test}:", f"{pad}    return False"]
        return out

    def sub(self, loc: Location, key: str, var: str, depth: int, indent: int) -> list[str]:
        """Checks for the subschema at loc/key: a call if it is a $ref, inline otherwise."""
        sub_loc = (loc[0], loc[1] + (key,))
        if self.is_trivial(sub_loc):
            return []
        node = self.node(sub_loc)
        pad = "    " * indent
        if isinstance(node, dict) and "$ref" in node:
            return [f"{pad}if not {self.function(sub_loc)}({var}):", f"{pad}    return False"]
        return self.checks(sub_loc, var, depth, indent)

    def enum(self, values: list[Any], var: str, known: frozenset[str], pad: str) -> list[str]:
        if values and all(isinstance(v, str) for v in values):
            # a str instance equals a str value exactly when == says so; the set
            # literal in an `in` test is a frozenset constant of the code object
            members = "{" + ", ".join(ascii(v) for v in values) + "}"
            guard = "" if known <= {"string"} else f"not isinstance({var}, str) or "
            return [f"{pad}if {guard}{var} not in {members}:", f"{pad}    return False"]
        self.helpers.add("_equal")
        return [f"{pad}if not any(_equal({var}, each) for each in {values!a}):",
                f"{pad}    return False"]

    def object_checks(self, loc: Location, schema: dict, var: str, depth: int,
                      indent: int) -> list[str]:
        pad = "    " * indent
        out: list[str] = []
        required = schema.get("required", [])
        if required:
            missing = " or ".join(f"{k!a} not in {var}" for k in required)
            out += [f"{pad}if {missing}:", f"{pad}    return False"]
        for key, limit, op in (("minProperties", schema.get("minProperties"), "<"),
                               ("maxProperties", schema.get("maxProperties"), ">")):
            if limit is not None:
                out += [f"{pad}if len({var}) {op} {limit!r}:", f"{pad}    return False"]
        for name, dep in schema.get("dependencies", {}).items():
            if isinstance(dep, list):
                if dep:
                    missing = " or ".join(f"{k!a} not in {var}" for k in dep)
                    out += [f"{pad}if {name!a} in {var} and ({missing}):",
                            f"{pad}    return False"]
            else:
                body = self.sub((loc[0], loc[1] + ("dependencies",)), name, var, depth,
                                indent + 1)
                if body:
                    out += [f"{pad}if {name!a} in {var}:"] + body

        child = f"x{depth + 1}"
        properties = schema.get("properties", {})
        for name in properties:
            # a required key is known to be there by now
            inner = indent if name in required else indent + 1
            body = self.sub((loc[0], loc[1] + ("properties",)), name, child, depth + 1, inner)
            if body and name in required:
                out += [f"{pad}{child} = {var}[{name!a}]"] + body
            elif body:
                out += [f"{pad}if {name!a} in {var}:",
                        f"{pad}    {child} = {var}[{name!a}]"] + body

        patterns = schema.get("patternProperties", {})
        additional = schema.get("additionalProperties", True)
        key = f"k{depth + 1}"
        loop: list[str] = []
        for pattern in patterns:
            body = self.sub((loc[0], loc[1] + ("patternProperties",)), pattern, child,
                            depth + 1, indent + 2)
            if body:
                loop += [f"{pad}    if {self.pattern(pattern)}({key}):"] + body
        if additional is False or isinstance(additional, dict):
            extra = []
            if properties:
                names = "{" + ", ".join(ascii(k) for k in properties) + "}"
                extra.append(f"{key} not in {names}")
            extra += [f"not {self.pattern(p)}({key})" for p in patterns]
            if additional is False:
                body = [f"{pad}        return False"]
            else:
                body = self.sub(loc, "additionalProperties", child, depth + 1, indent + 2)
            if body and extra:
                loop += [f"{pad}    if {' and '.join(extra)}:"] + body
            elif body:
                loop += [line[4:] for line in body]  # every key is an extra one
        if loop:
            out += [f"{pad}for {key}, {child} in {var}.items():"] + loop
        return out

    def array_checks(self, loc: Location, schema: dict, var: str, depth: int,
                     indent: int) -> list[str]:
        pad = "    " * indent
        out: list[str] = []
        child = f"x{depth + 1}"
        for limit, op in ((schema.get("minItems"), "<"), (schema.get("maxItems"), ">")):
            if limit is not None:
                out += [f"{pad}if len({var}) {op} {limit!r}:", f"{pad}    return False"]
        if schema.get("uniqueItems"):
            self.helpers.add("_unique")
            out += [f"{pad}if not _unique({var}):", f"{pad}    return False"]
        items = schema.get("items", {})
        if isinstance(items, dict):
            body = self.sub(loc, "items", child, depth + 1, indent + 1) if items else []
            if body:
                out += [f"{pad}for {child} in {var}:"] + body
            return out  # additionalItems only applies after a list of items
        for index, _ in enumerate(items):
            body = self.sub((loc[0], loc[1] + ("items",)), str(index), child, depth + 1,
                            indent + 1)
            if body:
                out += [f"{pad}if len({var}) > {index}:",
                        f"{pad}    {child} = {var}[{index}]"] + body
        additional = schema.get("additionalItems", True)
        if additional is False:
            out += [f"{pad}if len({var}) > {len(items)}:", f"{pad}    return False"]
        elif isinstance(additional, dict):
            body = self.sub(loc, "additionalItems", child, depth + 1, indent + 1)
            if body:
                out += [f"{pad}for {child} in {var}[{len(items)}:]:"] + body
        return out

    def string_checks(self, loc: Location, schema: dict, var: str, depth: int,
                      indent: int) -> list[str]:
        pad = "    " * indent
        out: list[str] = []
        for limit, op in ((schema.get("minLength"), "<"), (schema.get("maxLength"), ">")):
            if limit is not None:
                out += [f"{pad}if len({var}) {op} {limit!r}:", f"{pad}    return False"]
        if "pattern" in schema:
            out += [f"{pad}if not {self.pattern(schema['pattern'])}({var}):",
                    f"{pad}    return False"]
        return out

    def number_checks(self, loc: Location, schema: dict, var: str, depth: int,
                      indent: int) -> list[str]:
        pad = "    " * indent
        out: list[str] = []
        # draft 4: exclusiveMinimum/-Maximum are booleans that modify minimum/maximum
        for key, strict, loose in (("minimum", "<=", "<"), ("maximum", ">=", ">")):
            if key in schema:
                exclusive = schema.get("exclusive" + key[:1].upper() + key[1:], False)
                op = strict if exclusive else loose
                out += [f"{pad}if {var} {op} {schema[key]!r}:", f"{pad}    return False"]
        if "multipleOf" in schema:
            self.helpers.add("_multiple_of")
            out += [f"{pad}if not _multiple_of({var}, {schema['multipleOf']!r}):",
                    f"{pad}    return False"]
        return out

    # -- patterns ----------------------------------------------------------

    def pattern(self, pattern: str) -> str:
        if pattern not in self.patterns:
            name = f"_pattern_{len(self.patterns) + 1}"
            self.patterns[pattern] = name
            try:
                body = dfa_function(name, pattern)
            except Unsupported:
                self.helpers.add("_search")
                body = (f"def {name}(s):\n    # {json.dumps(pattern)} (not a DFA: re)\n"
                        f"    return _search({pattern!r}, s)")
            self.pattern_code.append(body)
        return self.patterns[pattern]


# --------------------------------------------------------------------------
# Run-time helpers, emitted only when a keyword needs them.

HELPERS = {
    "_equal": '''
def _equal(one, two):
    # jsonschema._utils.equal: 1 and True differ, also inside arrays and objects
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return one == two
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two))
    if isinstance(one, dict) and isinstance(two, dict):
        return (len(one) == len(two)
                and all(k in two and _equal(v, two[k]) for k, v in one.items()))
    if isinstance(one, bool) or isinstance(two, bool):
        return type(one) is type(two) and one == two
    return one == two''',
    "_unique": '''
def _unique(items):
    for i, one in enumerate(items):
        for two in items[i + 1:]:
            if _equal(one, two):
                return False
    return True''',
    "_multiple_of": '''
def _multiple_of(value, divisor):
    # jsonschema's multipleOf, float quotients included
    if isinstance(divisor, float):
        quotient = value / divisor
        try:
            return int(quotient) == quotient
        except OverflowError:
            from fractions import Fraction
            return (Fraction(value) / Fraction(divisor)).denominator == 1
    return not value % divisor''',
    "_search": '''
_compiled = {}


def _search(pattern, s):
    # jsonschema's pattern is re.search; re is imported only if a config reaches here
    compiled = _compiled.get(pattern)
    if compiled is None:
        import re
        compiled = _compiled[pattern] = re.compile(pattern)
    return compiled.search(s) is not None''',
}
HELPER_NEEDS = {"_unique": {"_equal"}}


# --------------------------------------------------------------------------
# Patterns: re syntax -> NFA -> minimal DFA -> a Python loop over characters.

class Unsupported(Exception):
    """A pattern feature a DFA cannot express; the pattern is left to re."""


MAXCHAR = 0x10FFFF
Charset = tuple[tuple[int, int], ...]  # sorted, disjoint, non-adjacent ranges
UNIVERSE: Charset = ((0, MAXCHAR),)


def _merge(ranges: Iterable[tuple[int, int]]) -> Charset:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def _complement(cs: Charset) -> Charset:
    out, start = [], 0
    for lo, hi in cs:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= MAXCHAR:
        out.append((start, MAXCHAR))
    return tuple(out)


_CATEGORY_CACHE: dict[str, Charset] = {}


def _category(name: str) -> Charset:
    """sre's Unicode categories: \\d is str.isdecimal, \\s isspace, \\w isalnum or _."""
    negated = "_NOT_" in name
    base = name.replace("_NOT_", "_")
    if base not in _CATEGORY_CACHE:
        test = {"CATEGORY_DIGIT": str.isdecimal, "CATEGORY_SPACE": str.isspace,
                "CATEGORY_WORD": lambda ch: ch.isalnum() or ch == "_"}.get(base)
        if test is None:
            raise Unsupported(name)
        ranges, start = [], None
        for cp in range(MAXCHAR + 2):
            inside = cp <= MAXCHAR and test(chr(cp))
            if inside and start is None:
                start = cp
            elif not inside and start is not None:
                ranges.append((start, cp - 1))
                start = None
        _CATEGORY_CACHE[base] = tuple(ranges)
    cs = _CATEGORY_CACHE[base]
    return _complement(cs) if negated else cs


def _charset(items: list) -> Charset:
    """The characters an IN node matches."""
    negate, ranges, categories = False, [], set()
    for op, av in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            ranges.append((av, av))
        elif op is sre.RANGE:
            ranges.append(av)
        elif op is sre.CATEGORY:
            categories.add(av.name)
        else:
            raise Unsupported(str(op))
    for name in list(categories):  # [\s\S] and the like: no need to enumerate
        if "_NOT_" not in name and name.replace("_", "_NOT_", 1) in categories:
            return _complement(UNIVERSE) if negate else UNIVERSE
    for name in categories:
        ranges.extend(_category(name))
    cs = _merge(ranges)
    return _complement(cs) if negate else cs


class _NFA:
    """Thompson NFA; `eos` edges are taken only at the end of the text."""

    LIMIT = 5000

    def __init__(self, dotall: bool) -> None:
        self.dotall = dotall
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[Charset, int]]] = []
        self.eos: list[list[int]] = []

    def new(self) -> int:
        if len(self.eps) > self.LIMIT:
            raise Unsupported("pattern too large")
        self.eps.append([])
        self.edges.append([])
        self.eos.append([])
        return len(self.eps) - 1

    def edge(self, s: int, cs: Charset) -> int:
        t = self.new()
        self.edges[s].append((cs, t))
        return t

    def sequence(self, items: Iterable, s: int) -> int:
        for op, av in items:
            s = self.item(op, av, s)
        return s

    def item(self, op: Any, av: Any, s: int) -> int:
        if op is sre.LITERAL:
            return self.edge(s, ((av, av),))
        if op is sre.NOT_LITERAL:
            return self.edge(s, _complement(((av, av),)))
        if op is sre.ANY:
            return self.edge(s, UNIVERSE if self.dotall else _complement(((10, 10),)))
        if op is sre.IN:
            return self.edge(s, _charset(av))
        if op is sre.BRANCH:
            end = self.new()
            for alternative in av[1]:
                start = self.new()
                self.eps[s].append(start)
                self.eps[self.sequence(alternative, start)].append(end)
            return end
        if op is sre.SUBPATTERN:
            _group, add_flags, del_flags, pattern = av
            if add_flags or del_flags:
                raise Unsupported("inline flags")
            return self.sequence(pattern, s)
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):  # lazy or greedy: same language
            low, high, pattern = av
            for _ in range(low):
                s = self.sequence(pattern, s)
            if high == sre.MAXREPEAT:
                loop = self.new()
                self.eps[s].append(loop)
                self.eps[self.sequence(pattern, loop)].append(loop)
                return loop
            end = self.new()
            self.eps[s].append(end)
            for _ in range(high - low):
                s = self.sequence(pattern, s)
                self.eps[s].append(end)
            return end
        raise Unsupported(str(op))  # anchors inside, lookarounds, backrefs, possessive, ...

    def closure(self, states: Iterable[int]) -> frozenset[int]:
        stack = list(states)
        seen = set(stack)
        while stack:
            for t in self.eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)


def _is_end_of_text(op: Any, av: Any) -> bool:
    """$ without the newline exception: \\Z, or a negative lookahead of any character."""
    if op is sre.AT:
        return av == sre.AT_END_STRING
    if op is sre.ASSERT_NOT and av[0] == 1 and len(av[1]) == 1:
        (inner_op, inner_av), = list(av[1])
        try:
            return _charset([(inner_op, inner_av)] if inner_op is not sre.IN
                            else inner_av) == UNIVERSE
        except Unsupported:
            return False
    return False


class DFA:
    """Minimal DFA for "re.search(pattern, s) finds a match".

    States are numbered from 0 (the start).  ACCEPT means a match was found
    whatever follows; DEAD that none can be.  at_end holds the states in
    which the text ending there makes a match (for $ and end-of-text).
    """

    ACCEPT, DEAD = -1, -2

    def __init__(self, pattern: str) -> None:
        try:
            parsed = sre_parse.parse(pattern)
        except sre.error as exc:
            raise SchemaError(f"pattern {pattern!r}: {exc}") from None
        allowed = sre.SRE_FLAG_UNICODE | sre.SRE_FLAG_DOTALL | sre.SRE_FLAG_VERBOSE
        if parsed.state.flags & ~allowed:
            raise Unsupported("flags")
        items = list(parsed)
        anchored = bool(items) and items[0] in ((sre.AT, sre.AT_BEGINNING),
                                                (sre.AT, sre.AT_BEGINNING_STRING))
        if anchored:
            items = items[1:]
        end = None
        if items and items[-1] == (sre.AT, sre.AT_END):
            end, items = "$", items[:-1]
        elif items and _is_end_of_text(*items[-1]):
            end, items = "end", items[:-1]

        nfa = _NFA(bool(parsed.state.flags & sre.SRE_FLAG_DOTALL))
        start = nfa.new()
        if not anchored:  # re.search tries every start position
            nfa.edges[start].append((UNIVERSE, start))
        last = nfa.sequence(items, start)
        accept = nfa.new()
        if end is None:
            nfa.eps[last].append(accept)
        else:
            nfa.eos[last].append(accept)
            if end == "$":  # $ also matches before a newline that ends the text
                newline = nfa.edge(last, ((10, 10),))
                nfa.eos[newline].append(accept)
        self._build(nfa, start, accept)

    def _build(self, nfa: _NFA, start: int, accept: int) -> None:
        cuts = {0, MAXCHAR + 1}
        for edges in nfa.edges:
            for cs, _ in edges:
                for lo, hi in cs:
                    cuts.update((lo, hi + 1))
        bounds = sorted(cuts)
        # elementary intervals: each lies wholly inside or outside every charset
        self.intervals = [(lo, hi - 1) for lo, hi in itertools.pairwise(bounds)]

        def step(states: frozenset[int], lo: int) -> frozenset[int]:
            out = []
            for s in states:
                for cs, t in nfa.edges[s]:
                    i = bisect.bisect_right(cs, (lo, MAXCHAR + 1)) - 1
                    if i >= 0 and cs[i][0] <= lo <= cs[i][1]:
                        out.append(t)
            return nfa.closure(out)

        first = nfa.closure([start])
        index: dict[frozenset[int], int] = {}
        order: list[frozenset[int]] = []

        def number(states: frozenset[int]) -> int:
            if accept in states:
                return self.ACCEPT
            if not states:
                return self.DEAD
            if states not in index:
                index[states] = len(order)
                order.append(states)
            return index[states]

        self.start = number(first)
        moves: list[list[int]] = []
        at_end: list[bool] = []
        done = 0
        while done < len(order):
            states = order[done]
            moves.append([number(step(states, lo)) for lo, _ in self.intervals])
            at_end.append(accept in nfa.closure(t for s in states for t in nfa.eos[s]))
            done += 1
        self._minimize(moves, at_end)

    def _minimize(self, moves: list[list[int]], at_end: list[bool]) -> None:
        """Moore's partition refinement; ACCEPT and DEAD stay themselves."""
        block = [int(e) for e in at_end]
        while True:
            signatures = [(block[s], tuple(t if t < 0 else block[t] for t in moves[s]))
                          for s in range(len(moves))]
            renumber: dict[tuple, int] = {}
            new = [renumber.setdefault(sig, len(renumber)) for sig in signatures]
            if len(renumber) == len(set(block)):
                break
            block = new
        # number the blocks from the start state, breadth first
        order: dict[int, int] = {}
        representative: dict[int, int] = {}
        queue = [self.start] if self.start >= 0 else []
        while queue:
            s = queue.pop(0)
            if block[s] in order:
                continue
            order[block[s]] = len(order)
            representative[block[s]] = s
            queue += [t for t in moves[s] if t >= 0]

        def rename(s: int) -> int:
            return s if s < 0 else order[block[s]]

        self.start = rename(self.start)
        self.moves = [[rename(t) for t in moves[representative[b]]] for b in order]
        self.at_end = [at_end[representative[b]] for b in order]


def _char(cp: int) -> str:
    """A one-character Python literal, ASCII only."""
    if 0x20 <= cp < 0x7F and chr(cp) not in "\"\\":
        return f'"{chr(cp)}"'
    if chr(cp) in "\n\t\r\"\\":
        return '"' + {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"',
                      "\\": "\\\\"}[chr(cp)] + '"'
    if cp < 0x100:
        return f'"\\x{cp:02x}"'
    return f'"\\u{cp:04x}"' if cp < 0x10000 else f'"\\U{cp:08x}"'


def _condition(ranges: Charset) -> str:
    parts = []
    for lo, hi in ranges:
        if lo == hi:
            parts.append(f"c == {_char(lo)}")
        elif lo == 0 and hi == MAXCHAR:
            parts.append("True")
        elif lo == 0:
            parts.append(f"c <= {_char(hi)}")
        elif hi == MAXCHAR:
            parts.append(f"c >= {_char(lo)}")
        else:
            parts.append(f"{_char(lo)} <= c <= {_char(hi)}")
    return " or ".join(parts)


def dfa_function(name: str, pattern: str) -> str:
    """Python source of `def name(s)` returning bool(re.search(pattern, s))."""
    dfa = DFA(pattern)
    head = [f"def {name}(s):", f"    # {json.dumps(pattern)}"]
    if dfa.start == DFA.ACCEPT:
        return "\n".join(head + ["    return True"])
    if dfa.start == DFA.DEAD:
        return "\n".join(head + ["    return False"])
    if all(t == DFA.ACCEPT for t in dfa.moves[dfa.start]):  # any one character
        return "\n".join(head + ["    return s != \"\""])

    # A literal prefix is all it takes: "^/" -> s.startswith("/").
    prefix, state = "", dfa.start
    while state >= 0 and not dfa.at_end[state]:
        live = [(iv, t) for iv, t in zip(dfa.intervals, dfa.moves[state]) if t != DFA.DEAD]
        if len(live) != 1 or live[0][0][0] != live[0][0][1]:
            break
        prefix += chr(live[0][0][0])
        state = live[0][1]
    if state == DFA.ACCEPT and prefix:
        return "\n".join(head + [f"    return s.startswith({prefix!a})"])

    def actions(q: int) -> dict[str, list[tuple[int, int]]]:
        by: dict[str, list[tuple[int, int]]] = {}
        for iv, t in zip(dfa.intervals, dfa.moves[q]):
            act = ("return True" if t == DFA.ACCEPT else "return False" if t == DFA.DEAD
                   else "pass" if t == q else f"q = {t}")
            by.setdefault(act, []).append(iv)
        return {act: list(_merge(ivs)) for act, ivs in by.items()}

    def state_body(q: int, pad: str) -> list[str]:
        by = actions(q)
        # the action with the most ranges becomes the `else`
        default = max(by, key=lambda a: (len(by[a]), a == "pass"))
        lines, keyword = [], "if"
        for act, ranges in by.items():
            if act == default:
                continue
            lines += [f"{pad}{keyword} {_condition(tuple(ranges))}:", f"{pad}    {act}"]
            keyword = "elif"
        if not lines:
            return [f"{pad}{default}"]
        if default == "return False" and list(by) in (["pass", default], [default, "pass"]):
            return [f"{pad}if not ({_condition(tuple(by['pass']))}):", f"{pad}    return False"]
        if default != "pass":
            lines += [f"{pad}else:", f"{pad}    {default}"]
        return lines

    body = []
    if len(dfa.moves) == 1:
        body += ["    for c in s:"] + state_body(0, " " * 8)
        body.append(f"    return {dfa.at_end[0]}")
    else:
        body.append(f"    q = {dfa.start}")
        body.append("    for c in s:")
        for q in range(len(dfa.moves)):
            body.append(f"        {'if' if q == 0 else 'elif'} q == {q}:")
            body += state_body(q, " " * 12)
        finals = [q for q, ok in enumerate(dfa.at_end) if ok]
        body.append(f"    return {' or '.join(f'q == {q}' for q in finals) or 'False'}")
    return "\n".join(head + body)


# --------------------------------------------------------------------------
# The module

def load_schemas(folder: Path) -> dict[str, Any]:
    return {p.name: json.loads(p.read_text("utf-8")) for p in sorted(folder.glob("*.json"))}


def generate(files: dict[str, Any], entries: dict[str, str] | None = None) -> str:
    """Python source of the checking module for the given schema files."""
    entries = ENTRIES if entries is None else entries
    gen = Generator(files)
    roots = {public: gen.function((file, ())) for public, file in entries.items()}
    while len(gen.functions) < len(gen.queue):
        gen.emit_function(gen.queue[len(gen.functions)])
    helpers = set(gen.helpers)
    for name in list(helpers):
        helpers |= HELPER_NEEDS.get(name, set())

    out = [
        "# ruff: noqa",
        '"""Generated by tools/gen_validator.py from src/ocipy/schema/*.json: do not edit.',
        "",
        "Each public function answers what jsonschema's Draft4Validator.is_valid answers",
        "for a document json.loads returned, without importing jsonschema or re:",
        "one function per schema definition, patterns as state machines.",
        "",
        *[f"{public}: {file}" for public, file in entries.items()],
        '"""',
    ]
    for public, root in roots.items():
        out += ["", "", f"def {public}(doc):", f"    return {root}(doc)"]
    for code in gen.functions + gen.pattern_code + [HELPERS[h].strip("\n")
                                                     for h in sorted(helpers)]:
        out += ["", "", code]
    return "\n".join(out) + "\n"


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text("utf-8") == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)
    return True


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    folder = Path(args[0]) if args else SCHEMA_DIR
    output = Path(args[1]) if len(args) > 1 else OUTPUT
    try:
        text = generate(load_schemas(folder))
    except SchemaError as exc:
        print(f"gen_validator: {exc}", file=sys.stderr)
        return 1
    if check:
        fresh = output.exists() and output.read_text("utf-8") == text
        if not fresh:
            print(f"gen_validator: {output} is out of date", file=sys.stderr)
        return 0 if fresh else 1
    if _write_if_changed(output, text):
        print(f"gen_validator: wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
