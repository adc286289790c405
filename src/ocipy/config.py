"""Read a bundle's config.json and check it against the runtime-spec v1.2 schema.

The schema lives in ``ocipy/schema/*.json`` (JSON Schema draft-04, like the
spec's own).  Checking is split in two:

* the schema: types, ranges, enums, required keys (config.md, config-linux.md);
* what JSON Schema cannot say: a ``type`` repeated in ``process.rlimits`` or
  ``linux.namespaces``, which the spec says MUST be an error.

The most relevant problem is raised as :class:`ConfigError` with a JSON path
(``linux.namespaces[1].type``) and one sentence of reason, before anything is
done with the config, as runc does.  ``process`` is optional here: the spec
requires it only when ``start`` is called, so the caller that starts a process
checks for it.

A valid config costs no heavy import: it is parsed by ``_fastjson`` and passed
by ``_schema_check``, the schema as Python code that tools/gen_validator.py
generates at build time.  Only when either says no are json, re and jsonschema
imported (about 50 ms together), to word the error exactly as before.
"""
from __future__ import annotations

import errno

from . import _fastjson
from . import _os as os  # os without importing os (see _os.py)
from .errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

CONFIG_SCHEMA = "config-schema.json"
STATE_SCHEMA = "state-schema.json"
_SCHEMA_FILES = ("config-schema.json", "config-linux.json", "defs.json", "defs-linux.json",
                 "state-schema.json")


def load_config(bundle: str) -> dict[str, Any]:
    """Read ``<bundle>/config.json`` and validate it; raise ConfigError if it is unusable."""
    try:
        raw = _read_regular_file(os.path.join(bundle, "config.json"))
    except OSError as exc:
        why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        if exc.errno == errno.ENOENT:
            why = f'no such file in the bundle "{bundle}": is --bundle the bundle directory?'
        raise ConfigError("", f"config.json: {why}") from None
    doc = parse_json(raw)
    validate_config(doc)
    return doc


MAX_CONFIG_BYTES = 16 << 20


def _read_regular_file(path: str) -> bytes:
    """A config.json that is a fifo or a device would block or never end:
    open without blocking, insist on a regular file, read a bounded size."""
    import _stat as stat  # the C module stat.py re-exports

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("", "config.json: not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError("", f"config.json: larger than {MAX_CONFIG_BYTES >> 20} MiB")
        # its size and a byte more, at least a page (a file that grows
        # meanwhile, or says 0 as /proc's do): no 1 MiB buffer mapped for
        # each read of a few KB
        chunks = []
        while chunk := os.read(fd, max(st.st_size + 1, 4096)):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def parse_json(raw: bytes) -> Any:
    """Decode config.json bytes; syntax errors carry the line and column."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8 text at byte {exc.start}") from None
    try:
        return _fastjson.loads(text)
    except ValueError:
        pass  # the stdlib decoder (the same C scanner) says where and why
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("", f"invalid JSON at line {exc.lineno} column {exc.colno}: "
                              f"{exc.msg.lower()}") from None


def validate_config(doc: dict[str, Any]) -> None:
    """Raise ConfigError for the most relevant problem in ``doc``; return if it is valid."""
    if not _passes_generated_check(doc):
        # jsonschema has the last word: it finds the error to report, and a
        # config the generated check wrongly refused would pass here
        error = _first_schema_error(doc, CONFIG_SCHEMA)
        if error is not None:
            raise ConfigError(json_path(error.absolute_path), _reason(error))
    _check_unique_types(doc)


def _passes_generated_check(doc: Any) -> bool:
    """Draft4Validator's verdict without jsonschema: the code the build generated
    from schema/*.json (tools/gen_validator.py).  A raw checkout has none."""
    try:
        from ._schema_check import is_valid
    except ImportError:
        return False
    return is_valid(doc)


def validate_state(doc: dict[str, Any]) -> None:
    """Check a container state document (runtime.md State) the same way as a config."""
    error = _first_schema_error(doc, STATE_SCHEMA)
    if error is not None:
        raise ConfigError(json_path(error.absolute_path), _reason(error), file="state.json")


def json_path(parts: Iterable[str | int]) -> str:
    """``["linux", "namespaces", 1, "type"]`` -> ``linux.namespaces[1].type``.

    Map keys that are not plain names (sysctl ``net.ipv4.ip_forward``,
    annotations) are quoted so the path stays unambiguous.
    """
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isascii() and part.isidentifier():  # [A-Za-z_][A-Za-z0-9_]*
            out += f".{part}" if out else part
        else:
            import json

            out += f"[{json.dumps(part)}]"
    return out


def _first_schema_error(doc: Any, schema_name: str) -> ValidationError | None:
    """jsonschema's best_match, but fair to our anyOf "X unless Y" rules.

    best_match prefers the shallowest error, which is right for plain rules.
    Our schema uses anyOf only for conditions ("major and minor, unless type is
    p"; "weight or leafWeight"), and there best_match would report the deepest
    branch ("type is not p").  So an anyOf loses to any other error inside the
    same object, and inside an anyOf the shallowest branch (the missing key)
    wins.
    """
    from jsonschema.exceptions import relevance

    errors = list(_validator(schema_name).iter_errors(doc))
    plain = [e for e in errors if e.validator not in _CONDITIONS]
    errors = [e for e in errors if e.validator not in _CONDITIONS
              or not any(_within(p.absolute_path, e.absolute_path) for p in plain)]
    best = max(errors, key=relevance, default=None)
    while best is not None and best.context and not _is_one_of_keys(best):
        best = max(best.context, key=relevance)
    return best


_CONDITIONS = frozenset({"anyOf", "oneOf"})


def _within(path: Iterable[str | int], prefix: Iterable[str | int]) -> bool:
    path, prefix = list(path), list(prefix)
    return path[: len(prefix)] == prefix


def _is_one_of_keys(error: ValidationError) -> bool:
    """An anyOf whose every branch is a missing key: "weight or leafWeight"."""
    return error.validator == "anyOf" and all(c.validator == "required" for c in error.context)


_VALIDATORS: dict[str, Validator] = {}


def _validator(schema_name: str) -> Validator:
    """A Draft4Validator whose $refs resolve among our schema files only, offline."""
    if schema_name not in _VALIDATORS:
        _VALIDATORS[schema_name] = _new_validator(schema_name)
    return _VALIDATORS[schema_name]


def _new_validator(schema_name: str) -> Validator:
    import json
    from importlib import resources

    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    folder = resources.files("ocipy") / "schema"
    contents = {name: json.loads((folder / name).read_text("utf-8")) for name in _SCHEMA_FILES}
    # The files refer to each other by bare file name ("defs.json#/..."), as
    # the spec's schema does, so each is registered under its file name.
    registry = Registry().with_resources(
        (name, Resource.from_contents(schema, default_specification=DRAFT4))
        for name, schema in contents.items()
    )
    return Draft4Validator(contents[schema_name], registry=registry)


_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _reason(error: ValidationError) -> str:
    """One sentence for the broken rule, showing values as JSON (not Python) text."""
    import json
    import re

    value = _show(error.instance)
    rule = error.validator_value
    if error.validator == "type":
        wanted = [rule] if isinstance(rule, str) else list(rule)
        return f"{value} is not {' or '.join(_TYPE_NAMES.get(t, t) for t in wanted)}"
    if error.validator == "enum":
        return f"{value} is not one of {', '.join(json.dumps(v) for v in rule)}"
    if error.validator == "pattern":
        expected = error.schema.get("x-expected")
        if expected:
            return f"{value} is not {expected}"
        return f"{value} does not match the pattern {json.dumps(rule)}"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        patterns = error.schema.get("patternProperties", {})
        extra = [key for key in error.instance
                 if key not in allowed and not any(re.search(p, key) for p in patterns)]
        if patterns and extra == [""]:
            return "keys must not be empty"
        if allowed:
            return (f"unknown key {', '.join(json.dumps(k) for k in extra)}, expected "
                    f"{' or '.join(json.dumps(k) for k in allowed)}")
    if _is_one_of_keys(error):
        keys = [repr(k) for c in error.context for k in c.validator_value
                if k not in error.instance]
        return f"at least one of {', '.join(keys)} is required"
    if error.validator == "minItems" and rule == 1:
        return "must not be empty"
    # required, dependencies, minimum, maximum, ...: jsonschema's text is
    # already one sentence ("'cwd' is a required property").
    return error.message


def _show(value: Any, limit: int = 60) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_unique_types(doc: dict[str, Any]) -> None:
    """config.md rlimits / config-linux.md namespaces: a repeated type MUST be an error."""
    for error in unique_type_problems(doc):
        raise error


def unique_type_problems(doc: dict[str, Any]) -> list[ConfigError]:
    """Every repeated ``type`` in process.rlimits and linux.namespaces."""
    process = doc.get("process") or {}
    linux = doc.get("linux") or {}
    found = []
    for path, entries in (("process.rlimits", process.get("rlimits") or []),
                          ("linux.namespaces", linux.get("namespaces") or [])):
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            kind = entry["type"]
            if kind in seen:
                import json  # only for the error: a valid config imports no json

                found.append(ConfigError(f"{path}[{index}].type",
                                         f"{json.dumps(kind)} is already given by "
                                         f"{path}[{seen[kind]}]"))
            else:
                seen[kind] = index
    return found


def schema_problems(doc: Any) -> list[ConfigError]:
    """Every schema violation in ``doc`` (validate_config reports only the
    most relevant), each worded as validate_config would word it."""
    from jsonschema.exceptions import relevance

    errors = list(_validator(CONFIG_SCHEMA).iter_errors(doc))
    plain = [e for e in errors if e.validator not in _CONDITIONS]
    found: list[ConfigError] = []
    seen: set[tuple[str, str]] = set()
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        if error.validator in _CONDITIONS and any(
                _within(p.absolute_path, error.absolute_path) for p in plain):
            continue  # an "X unless Y" condition loses to a plain error inside it
        while error.context and not _is_one_of_keys(error):
            error = max(error.context, key=relevance)
        key = (json_path(error.absolute_path), _reason(error))
        if key not in seen:
            seen.add(key)
            found.append(ConfigError(*key))
    return found
