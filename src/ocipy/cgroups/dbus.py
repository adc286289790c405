"""A minimal D-Bus client: what the systemd cgroup driver needs, nothing more.

Written from the D-Bus specification ("Message Protocol"):

* authentication: SASL EXTERNAL with our uid, then BEGIN (no unix fds);
* the wire format, for the types y b n q i u x t d h s o g a ( ) { } v;
  messages are written little-endian and read in either byte order;
* method calls with their replies and errors, and signals: the ones that
  arrive while a reply is awaited are queued for ``wait_signal``.

Values: integers as int, b as bool, d as float, s/o/g as str, an array as a
list (``ay`` as bytes, a dict entry array as a dict), a struct as a tuple, a
variant as a (signature, value) pair.  Only the standard library is used and
nothing is imported until --systemd-cgroup needs it.
"""
from __future__ import annotations

import os
import socket
import struct
import time

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_REPLY_EXPECTED = 0x1

# header fields (code -> the type of its value)
PATH, INTERFACE, MEMBER, ERROR_NAME, REPLY_SERIAL, DESTINATION, SENDER, SIGNATURE, UNIX_FDS = \
    range(1, 10)
_FIELD_TYPES = {PATH: "o", INTERFACE: "s", MEMBER: "s", ERROR_NAME: "s", REPLY_SERIAL: "u",
                DESTINATION: "s", SENDER: "s", SIGNATURE: "g", UNIX_FDS: "u"}

BUS_NAME = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"
PROPERTIES = "org.freedesktop.DBus.Properties"

# fixed-size types: struct format and size (= alignment)
_FIXED = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q",
          "d": "d", "h": "I"}
_ALIGN = {**{c: struct.calcsize(f) for c, f in _FIXED.items()},
          "s": 4, "o": 4, "g": 1, "v": 1, "a": 4, "(": 8, "{": 8}
_MAX_MESSAGE = 1 << 27  # the specification's limit: 128 MiB


class DBusError(Exception):
    """An error reply (``name`` is the D-Bus error name) or a broken exchange."""

    def __init__(self, name: str, message: str = "") -> None:
        self.name = name
        self.message = message
        super().__init__(f"{name}: {message}" if message else name)


# ---- signatures -------------------------------------------------------------------

def split_signature(signature: str) -> list[str]:
    """'sa(sv)u' -> ['s', 'a(sv)', 'u']: one single complete type each."""
    types, i = [], 0
    while i < len(signature):
        end = _complete_type_end(signature, i)
        types.append(signature[i:end])
        i = end
    return types


def _complete_type_end(signature: str, i: int) -> int:
    if i >= len(signature):
        raise ValueError(f"incomplete signature {signature!r}")
    c = signature[i]
    if c == "a":
        if signature[i + 1:i + 2] == "{":
            # a dict entry: a basic key type, then one complete value type
            if signature[i + 2:i + 3] not in tuple(_FIXED) + tuple("sog"):
                raise ValueError(f"bad dict key in signature {signature!r}")
            end = _complete_type_end(signature, _complete_type_end(signature, i + 2))
            if signature[end:end + 1] != "}":
                raise ValueError(f"bad dict entry in signature {signature!r}")
            return end + 1
        return _complete_type_end(signature, i + 1)
    if c == "(":
        j = i + 1
        if signature[j:j + 1] == ")":
            raise ValueError(f"empty struct in signature {signature!r}")
        while signature[j:j + 1] != ")":
            j = _complete_type_end(signature, j)
        return j + 1
    if c in _FIXED or c in "sogv":
        return i + 1
    raise ValueError(f"unknown type {c!r} in signature {signature!r}")


# ---- marshalling ------------------------------------------------------------------

class _Writer:
    """Little-endian marshalling into one buffer; alignment is from the message start."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def pad(self, alignment: int) -> None:
        self.buf += bytes(-len(self.buf) % alignment)

    def put(self, sig: str, value) -> None:
        c = sig[0]
        self.pad(_ALIGN[c])
        if c in _FIXED:
            self.buf += struct.pack("<" + _FIXED[c], int(value) if c == "b" else value)
        elif c in "so":
            data = value.encode()
            self.buf += struct.pack("<I", len(data)) + data + b"\0"
        elif c == "g":
            data = value.encode()
            self.buf += bytes((len(data),)) + data + b"\0"
        elif c == "v":
            inner, inner_value = value
            if len(split_signature(inner)) != 1:
                raise ValueError(f"a variant holds one complete type, not {inner!r}")
            self.put("g", inner)
            self.put(inner, inner_value)
        elif c == "a":
            element = sig[1:]
            length_at = len(self.buf)
            self.buf += bytes(4)
            # the padding before the first element is not part of the length
            self.pad(_ALIGN[element[0]])
            start = len(self.buf)
            if element == "y":
                self.buf += bytes(value)
            else:
                for item in (value.items() if element[0] == "{" else value):
                    self.put(element, item)
            struct.pack_into("<I", self.buf, length_at, len(self.buf) - start)
        elif c in "({":
            parts = split_signature(sig[1:-1])
            if len(parts) != len(value):
                raise ValueError(f"{sig} needs {len(parts)} values, got {len(value)}")
            for part, item in zip(parts, value):
                self.put(part, item)


class _Reader:
    def __init__(self, data: bytes, endian: str, at: int = 0) -> None:
        self.data = data
        self.endian = endian  # "<" or ">"
        self.at = at

    def pad(self, alignment: int) -> None:
        self.at += -self.at % alignment

    def _take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise DBusError("org.ocipy.Error.Malformed", "a value runs past the message end")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def get(self, sig: str):
        c = sig[0]
        self.pad(_ALIGN[c])
        if c in _FIXED:
            fmt = self.endian + _FIXED[c]
            (value,) = struct.unpack(fmt, self._take(struct.calcsize(fmt)))
            return bool(value) if c == "b" else value
        if c in "sog":
            if c == "g":
                (n,) = self._take(1)
            else:
                (n,) = struct.unpack(self.endian + "I", self._take(4))
            text = self._take(n + 1)
            return text[:-1].decode()
        if c == "v":
            inner = self.get("g")
            return inner, self.get(inner)
        if c == "a":
            (n,) = struct.unpack(self.endian + "I", self._take(4))
            element = sig[1:]
            self.pad(_ALIGN[element[0]])
            end = self.at + n
            if element == "y":
                return self._take(n)
            items = []
            while self.at < end:
                items.append(self.get(element))
            return dict(items) if element[0] == "{" else items
        # struct or dict entry
        return tuple(self.get(part) for part in split_signature(sig[1:-1]))


def marshal(signature: str, values) -> bytes:
    """The body bytes of ``values``, one per complete type of ``signature``."""
    types = split_signature(signature)
    if len(types) != len(values):
        raise ValueError(f"signature {signature!r} needs {len(types)} values, got {len(values)}")
    w = _Writer()
    for part, value in zip(types, values):
        w.put(part, value)
    return bytes(w.buf)


def unmarshal(signature: str, data: bytes, endian: str = "<") -> list:
    """``marshal`` reversed (a body starts 8-aligned, so offsets agree)."""
    r = _Reader(data, endian)
    return [r.get(part) for part in split_signature(signature)]


# ---- messages ---------------------------------------------------------------------

class Message:
    """One message: ``fields`` maps header field codes to values."""

    def __init__(self, kind: int, fields: dict, body: list | None = None, *, serial: int = 0,
                 flags: int = 0) -> None:
        self.kind = kind
        self.fields = fields
        self.body = body or []
        self.serial = serial
        self.flags = flags

    @property
    def member(self) -> str | None:
        return self.fields.get(MEMBER)

    def encode(self, serial: int) -> bytes:
        signature = self.fields.get(SIGNATURE, "")
        body = marshal(signature, self.body) if signature else b""
        header = _Writer()
        header.buf += struct.pack("<cBBBII", b"l", self.kind, self.flags, 1, len(body), serial)
        header.put("a(yv)", [(code, (_FIELD_TYPES[code], value))
                             for code, value in sorted(self.fields.items())])
        header.pad(8)
        return bytes(header.buf) + body


def decode(data: bytes) -> tuple[Message | None, int]:
    """The message at the front of ``data`` and its length; (None, 0) while incomplete."""
    if len(data) < 16:
        return None, 0
    endian = {b"l": "<", b"B": ">"}.get(data[:1])
    if endian is None:
        raise DBusError("org.ocipy.Error.Malformed", f"bad endianness byte {data[:1]!r}")
    kind, flags, _version = data[1], data[2], data[3]
    body_len, serial, fields_len = struct.unpack_from(endian + "III", data, 4)
    body_at = 16 + fields_len + (-(16 + fields_len) % 8)
    total = body_at + body_len
    if total > _MAX_MESSAGE:
        raise DBusError("org.ocipy.Error.Malformed", f"a message of {total} bytes")
    if len(data) < total:
        return None, 0
    raw_fields = _Reader(data[:16 + fields_len], endian, 12).get("a(yv)")
    fields = {code: value for code, (_sig, value) in raw_fields}
    signature = fields.get(SIGNATURE, "")
    body = unmarshal(signature, data[body_at:total], endian) if signature else []
    return Message(kind, fields, body, serial=serial, flags=flags), total


# ---- a connection -----------------------------------------------------------------

class Connection:
    """An authenticated connection to a unix socket: a bus (``bus=True``: Hello
    first, as the bus requires) or a peer such as systemd's /run/systemd/private.

    ``timeout`` bounds every call and every wait, in seconds.
    """

    def __init__(self, path: str, *, bus: bool = True, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._serial = 0
        self._buffer = b""
        self.pending: list[Message] = []  # signals read while a reply was awaited
        self.unique_name: str | None = None
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
            self._authenticate(time.monotonic() + timeout)
            if bus:
                (self.unique_name,) = self.call(BUS_NAME, BUS_PATH, BUS_NAME, "Hello")
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _authenticate(self, deadline: float) -> None:
        # the nul byte first (it may carry credentials), then SASL EXTERNAL
        # with our uid as hex-encoded decimal digits.  BEGIN goes with it, as
        # sd-bus's own client sends it (the specification allows that): a
        # first message arriving in the same read as BEGIN sits unread in
        # systemd's buffer (seen with systemd 252 on /run/systemd/private)
        uid = str(os.geteuid()).encode().hex().encode()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\nBEGIN\r\n")
        while b"\r\n" not in self._buffer:
            self._read_more(deadline)
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        if not line.startswith(b"OK "):
            raise DBusError("org.ocipy.Error.AuthFailed",
                            f"the server answered {line.decode(errors='replace')!r}")

    def _read_more(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise DBusError("org.ocipy.Error.Disconnected", "the peer closed the connection")
        self._buffer += chunk

    def send(self, message: Message) -> int:
        """Send ``message`` with the next serial; returns the serial."""
        self._serial += 1
        self.sock.sendall(message.encode(self._serial))
        return self._serial

    def receive(self, deadline: float | None = None) -> Message:
        """The next message; TimeoutError once ``deadline`` (monotonic) passes."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        while True:
            message, used = decode(self._buffer)
            if message is not None:
                self._buffer = self._buffer[used:]
                return message
            self._read_more(deadline)

    def call(self, destination: str | None, path: str, interface: str, member: str,
             signature: str = "", *args) -> list:
        """A method call; its reply's body, or DBusError for an error reply."""
        fields = {PATH: path, INTERFACE: interface, MEMBER: member}
        if destination:
            fields[DESTINATION] = destination
        if signature:
            fields[SIGNATURE] = signature
        serial = self.send(Message(METHOD_CALL, fields, list(args)))
        deadline = time.monotonic() + self.timeout
        while True:
            message = self.receive(deadline)
            if message.kind in (METHOD_RETURN, ERROR) and \
                    message.fields.get(REPLY_SERIAL) == serial:
                if message.kind == ERROR:
                    text = message.body[0] if message.body and isinstance(message.body[0], str) \
                        else ""
                    raise DBusError(message.fields.get(ERROR_NAME, "?"), text)
                return message.body
            if message.kind == SIGNAL:
                self.pending.append(message)

    def get_property(self, destination: str | None, path: str, interface: str,
                     name: str):
        """org.freedesktop.DBus.Properties.Get: the property's value (without its variant)."""
        ((_sig, value),) = self.call(destination, path, PROPERTIES, "Get", "ss", interface, name)
        return value

    def wait_signal(self, accept) -> Message:
        """The first signal ``accept(message)`` is true for, queued or still to come."""
        for i, message in enumerate(self.pending):
            if accept(message):
                return self.pending.pop(i)
        deadline = time.monotonic() + self.timeout
        while True:
            message = self.receive(deadline)
            if message.kind == SIGNAL and accept(message):
                return message
            # anything else (systemd's PropertiesChanged, ...) is dropped
