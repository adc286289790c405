"""JSON for the hot path, on the C accelerator alone.

The stdlib's json package imports re and enum (about 8 ms at start-up,
more than `ocipy state` does otherwise).  Its C scanner and string encoder
need neither: this module drives them directly.  It reads any JSON and
writes the plain documents ocipy keeps (dict, list, str, int, float, bool,
None), compact like json.dumps(separators=(",", ":")).
"""
from __future__ import annotations

import _json


class _Context:
    # the attributes _json.make_scanner reads from a json.JSONDecoder
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"),
                "-Infinity": float("-inf")}[name]


_scan = _json.make_scanner(_Context())
_WS = " \t\n\r"


def loads(data: bytes | str):
    text = data.decode() if isinstance(data, (bytes, bytearray)) else data
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, start)
    except (StopIteration, SystemError):
        # the C scanner words its errors with json.decoder.JSONDecodeError,
        # which it only finds if json was imported (SystemError otherwise):
        # let the stdlib parse the bad document and raise the worded error
        import json

        return json.loads(text)
    if text[end:].strip(_WS):
        raise ValueError("invalid JSON: extra data")
    return value


def dumps(value, indent: int | None = None) -> str:
    parts: list[str] = []
    _encode(value, parts, indent, 0)
    return "".join(parts)


_quote = _json.encode_basestring_ascii


def _encode(value, out: list, indent, depth: int) -> None:
    if isinstance(value, str):
        out.append(_quote(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(float.__repr__(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner, sep, close = _layout(indent, depth)
        out.append("{" + inner)
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append("," + inner)
            out.append(_quote(str(key)) + sep)
            _encode(item, out, indent, depth + 1)
        out.append(close + "}")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner, _, close = _layout(indent, depth)
        out.append("[" + inner)
        for i, item in enumerate(value):
            if i:
                out.append("," + inner)
            _encode(item, out, indent, depth + 1)
        out.append(close + "]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _layout(indent, depth: int) -> tuple[str, str, str]:
    if indent is None:
        return "", ":", ""
    return "\n" + " " * (indent * (depth + 1)), ": ", "\n" + " " * (indent * depth)
