"""The systemd cgroup driver (cgroups/systemd.py) and its D-Bus client (cgroups/dbus.py).

Three kinds of test:

* pure: the unit name and place, and the properties runc's driver sends;
* the wire format against an independent implementation: GLib's
  GDBusMessage (through /usr/bin/python3 and PyGObject) decodes every
  message we encode and we decode every message it encodes, both byte
  orders, for hypothesis-generated signatures and values;
* against a real dbus-daemon (a private bus per test, its own config and
  socket in tmp_path): the client's calls, errors and signals, and the
  driver's StartTransientUnit / SetUnitProperties / StopUnit exchange with
  a test service that plays org.freedesktop.systemd1 on a test-owned cgroup.
  That covers the system-bus path (Hello, AddMatch) of the driver.

The driver against a real systemd (its private socket) is tested in
spec-tests/test_cgroups_systemd.py, with systemd running as PID 1 of its
own namespaces.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import threading
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocipy import cgroups
from ocipy.cgroups import dbus, paths, systemd
from ocipy.errors import ConfigError, OcipyError

SYSTEM_PYTHON = "/usr/bin/python3"
INF = systemd.USEC_INFINITY


# ---- names and places ----------------------------------------------------------------

@pytest.mark.parametrize("given_path, want", [
    ("system.slice:docker:abc", ("system.slice", "docker-abc.scope")),
    (":p:n", ("system.slice", "p-n.scope")),
    ("a-b.slice::n", ("a-b.slice", "n.scope")),
    ("machine.slice:p:", ("machine.slice", "p-id.scope")),
    ("machine.slice:p:sub.slice", ("machine.slice", "sub.slice")),
    (None, ("system.slice", "ocipy-id.scope")),
    ("", ("system.slice", "ocipy-id.scope")),
])
def test_unit_names_follow_runc(given_path, want):
    assert paths.systemd_unit(given_path, "id") == want


def test_a_slice_unit_lives_where_its_name_says():
    # systemd derives a slice's parent from its name, not from Wants=
    assert paths.systemd_unit_path("machine.slice::a-b.slice", "id") == "/a.slice/a-b.slice"
    assert paths.systemd_unit_path(None, "c1") == "/system.slice/ocipy-c1.scope"


@pytest.mark.parametrize("bad", ["a:b", "a:b:c:d", "nodot:p:n", "x.slice:p:bad--.slice",
                                 "x/y.slice:p:n"])
def test_bad_unit_paths_are_config_errors(bad):
    with pytest.raises(ConfigError):
        paths.systemd_unit(bad, "id")


def test_without_systemd_the_driver_says_so(monkeypatch, tmp_path):
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    monkeypatch.setattr(systemd, "SYSTEMD_RUNNING", str(tmp_path / "no-systemd"))
    with pytest.raises(OcipyError) as err:
        cgroups.manager_for("system.slice:ocipy:c1", "c1", systemd=True)
    assert str(err.value) == "systemd cgroup driver: systemd is not running on this host"


def test_root_talks_to_the_private_socket_others_to_the_bus(monkeypatch, tmp_path):
    running = tmp_path / "system"
    private = tmp_path / "private"
    bus = tmp_path / "bus"
    for name, value in (("SYSTEMD_RUNNING", running), ("SYSTEMD_PRIVATE", private),
                        ("SYSTEM_BUS", bus)):
        monkeypatch.setattr(systemd, name, str(value))
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    running.mkdir()
    private.touch()
    bus.touch()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert systemd.systemd_address() == (str(private), False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert systemd.systemd_address() == (str(bus), True)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "tcp:host=x;unix:path=/run/my%20bus,guid=1")
    assert systemd.systemd_address() == ("/run/my bus", True)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:abstract=/tmp/dbus-x")
    assert systemd.systemd_address() == ("\0/tmp/dbus-x", True)


@pytest.mark.parametrize("text, want", [("252.38-1~deb12u1", 252), ('"v245.4-1.fc32"', 245),
                                        ("255", 255), ("", -1)])
def test_systemd_versions_parse_like_runc(text, want):
    assert systemd.parse_version(text) == want


# ---- properties -----------------------------------------------------------------------

def test_a_scope_gets_runcs_fixed_properties():
    v1 = systemd.unit_properties("ocipy-c1.scope", "system.slice", 42, "c1", "v1")
    assert v1 == [
        ("Description", ("s", "ocipy container c1")),
        ("Slice", ("s", "system.slice")),
        ("Delegate", ("b", True)),
        ("PIDs", ("au", [42])),
        ("MemoryAccounting", ("b", True)),
        ("CPUAccounting", ("b", True)),
        ("BlockIOAccounting", ("b", True)),
        ("TasksAccounting", ("b", True)),
        ("DefaultDependencies", ("b", False)),
    ]
    v2 = dict(systemd.unit_properties("ocipy-c1.scope", "system.slice", 42, "c1", "v2"))
    assert v2["IOAccounting"] == ("b", True) and "BlockIOAccounting" not in v2


def test_a_slice_unit_wants_its_slice_instead_of_delegating():
    props = dict(systemd.unit_properties("x.slice", "machine.slice", 7, "c1", "v2"))
    assert props["Wants"] == ("as", ["machine.slice"])
    assert "Slice" not in props and "Delegate" not in props


def _props(resources, version, systemd_version=252):
    props, fs = systemd.resource_properties(resources, version, lambda: systemd_version)
    return dict(props), fs


def test_v1_limits_become_systemd_properties():
    props, fs = _props({"memory": {"limit": 1 << 26, "reservation": 1 << 25},
                        "cpu": {"shares": 512, "quota": 50000, "period": 100000,
                                "cpus": "0-2,9", "mems": "0"},
                        "blockIO": {"weight": 300}, "pids": {"limit": 33}}, "v1")
    assert props == {
        "MemoryLimit": ("t", 1 << 26), "CPUShares": ("t", 512),
        "CPUQuotaPeriodUSec": ("t", 100000), "CPUQuotaPerSecUSec": ("t", 500000),
        "BlockIOWeight": ("t", 300), "TasksMax": ("t", 33),
        # bit n is CPU n, the least significant byte first
        "AllowedCPUs": ("ay", bytes([0b111, 0b10])), "AllowedMemoryNodes": ("ay", b"\x01"),
    }
    assert fs["cpu"]["quota"] == 50000  # a whole percent: unchanged


def test_v2_limits_become_systemd_properties():
    props, _ = _props({"memory": {"limit": 1 << 26, "reservation": 1 << 25, "swap": 1 << 27},
                       "cpu": {"shares": 1024}, "pids": {"limit": -1}}, "v2")
    assert props == {"MemoryMax": ("t", 1 << 26), "MemoryLow": ("t", 1 << 25),
                     "MemorySwapMax": ("t", 1 << 26),  # v2 swap is memory+swap minus memory
                     "CPUWeight": ("t", 100), "TasksMax": ("t", INF)}


def test_a_quota_systemd_cannot_keep_is_rounded_up_for_the_files_too():
    props, fs = _props({"cpu": {"quota": 33333, "period": 100000}}, "v1")
    assert props["CPUQuotaPerSecUSec"] == ("t", 340000)  # 34% of a CPU
    assert fs["cpu"] == {"quota": 34000, "period": 100000}


def test_pids_zero_is_one_task_for_systemd():
    assert _props({"pids": {"limit": 0}}, "v1")[0] == {"TasksMax": ("t", 1)}


def test_newer_properties_wait_for_a_systemd_that_has_them():
    asked = []

    def version():
        asked.append(1)
        return 241

    props, _ = systemd.resource_properties(
        {"cpu": {"quota": 20000, "period": 50000, "cpus": "1"}}, "v2", version)
    assert dict(props) == {"CPUQuotaPerSecUSec": ("t", 400000)}
    assert asked  # and the version is asked only then:
    asked.clear()
    systemd.resource_properties({"memory": {"limit": 1 << 20}}, "v2", version)
    assert not asked


def test_unified_keys_systemd_knows_become_properties():
    props, _ = _props({"unified": {"memory.high": "1048576", "memory.max": "max",
                                   "pids.max": "0", "cpu.max": "max 20000",
                                   "cpu.weight": "50", "io.weight": "default 200"}}, "v2")
    assert props == {"MemoryHigh": ("t", 1 << 20), "MemoryMax": ("t", INF),
                     "TasksMax": ("t", 1), "CPUQuotaPeriodUSec": ("t", 20000),
                     "CPUQuotaPerSecUSec": ("t", INF), "CPUWeight": ("t", 50)}
    idle, _ = _props({"unified": {"cpu.idle": "1", "cpu.weight": "50"}}, "v2")
    assert idle == {"CPUWeight": ("t", 0)}  # systemd's cpu.idle; the weight is the file's


@pytest.mark.parametrize("resources, path", [
    ({"cpu": {"cpus": "3-1"}}, "linux.resources.cpu.cpus"),
    ({"unified": {"memory.max": "lots"}}, 'linux.resources.unified["memory.max"]'),
    ({"unified": {"cpu.max": "1 2 3"}}, 'linux.resources.unified["cpu.max"]'),
])
def test_values_systemd_cannot_take_are_config_errors(resources, path):
    with pytest.raises(ConfigError) as err:
        _props(resources, "v2")
    assert err.value.path == path


def test_oom_group_is_systemds_oom_policy_from_253():
    resources = {"unified": {"memory.oom.group": "1"}}
    assert systemd.oom_policy(resources, lambda: 253) == [("OOMPolicy", ("s", "kill"))]
    assert systemd.oom_policy(resources, lambda: 252) == []


# ---- the wire format against GLib ---------------------------------------------------------

# GLib's side, run by the system Python (PyGObject): one JSON request per
# line.  "decode": parse our message with GDBusMessage.new_from_blob and
# describe it; "encode": build the values with GLib and serialize a method
# call in the byte order asked.
GLIB_PEER = r'''
import json, sys
from gi.repository import GLib, Gio

def split(sig):
    out, i = [], 0
    while i < len(sig):
        j = end(sig, i)
        out.append(sig[i:j])
        i = j
    return out

def end(sig, i):
    c = sig[i]
    if c == "a":
        return end(sig, i + 1)
    if c in "({":
        depth, j = 0, i
        while True:
            depth += sig[j] in "({"
            depth -= sig[j] in ")}"
            j += 1
            if depth == 0:
                return j
    return i + 1

def build(sig, v):
    c = sig[0]
    if c == "v":
        return GLib.Variant.new_variant(build(v[0], v[1]))
    if sig == "ay":
        return GLib.Variant("ay", bytes.fromhex(v))
    if c == "a":
        element = sig[1:]
        return GLib.Variant.new_array(GLib.VariantType(element),
                                      [build(element, x) for x in v])
    if c == "{":
        key, value = split(sig[1:-1])
        return GLib.Variant.new_dict_entry(build(key, v[0]), build(value, v[1]))
    if c == "(":
        return GLib.Variant.new_tuple(*[build(s, x) for s, x in zip(split(sig[1:-1]), v)])
    return GLib.Variant(sig, v)

def describe(variant):
    t = variant.get_type_string()
    if t == "v":
        inner = variant.get_variant()
        return [inner.get_type_string(), describe(inner)]
    if t == "ay":
        return bytes(variant.get_data_as_bytes().get_data()).hex()
    if t[0] in "a({":
        return [describe(variant.get_child_value(i)) for i in range(variant.n_children())]
    return variant.unpack()

for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "decode":
        try:
            m = Gio.DBusMessage.new_from_blob(bytes.fromhex(req["blob"]),
                                              Gio.DBusCapabilityFlags.NONE)
        except GLib.Error as e:
            print(json.dumps({"error": e.message}), flush=True)
            continue
        body = m.get_body()
        print(json.dumps({
            "type": int(m.get_message_type()), "serial": m.get_serial(),
            "path": m.get_path(), "interface": m.get_interface(), "member": m.get_member(),
            "destination": m.get_destination(), "signature": m.get_signature(),
            "body": describe(body) if body is not None else []}), flush=True)
    else:
        m = Gio.DBusMessage.new_method_call(req["destination"], req["path"],
                                            req["interface"], req["member"])
        if req["signature"]:
            m.set_body(build("(" + req["signature"] + ")", req["values"]))
        m.set_serial(req["serial"])
        if req["big"]:
            m.set_byte_order(Gio.DBusMessageByteOrder.BIG_ENDIAN)
        print(json.dumps({"blob": m.to_blob(Gio.DBusCapabilityFlags.NONE).hex()}), flush=True)
'''


def _glib_available() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "from gi.repository import GLib, Gio"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


class GlibPeer:
    def __init__(self, script) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the GLib peer exited"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def glib(tmp_path_factory):
    if not _glib_available():
        pytest.skip("no PyGObject for /usr/bin/python3: the independent decoder is GLib's")
    script = tmp_path_factory.mktemp("glib") / "peer.py"
    script.write_text(GLIB_PEER)
    peer = GlibPeer(script)
    yield peer
    peer.close()


# D-Bus types with values in our representation
_BASIC = {
    "y": st.integers(0, 255), "b": st.booleans(), "n": st.integers(-2**15, 2**15 - 1),
    "q": st.integers(0, 2**16 - 1), "i": st.integers(-2**31, 2**31 - 1),
    "u": st.integers(0, 2**32 - 1), "x": st.integers(-2**63, 2**63 - 1),
    "t": st.integers(0, 2**64 - 1), "d": st.floats(allow_nan=False, allow_infinity=False),
    "s": st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                 max_size=12),
    "o": st.lists(st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True), max_size=3).map(
        lambda parts: "/" + "/".join(parts)),
    "g": st.sampled_from(["", "s", "a{sv}", "(iu)as", "v"]),
}
_KEYS = st.sampled_from(sorted(set(_BASIC) - {"d"}))  # float keys compare badly


def _signatures():
    return st.recursive(
        st.sampled_from(sorted(_BASIC)) | st.just("v") | st.just("ay"),
        lambda inner: st.one_of(
            inner.map(lambda s: "a" + s),
            st.lists(inner, min_size=1, max_size=3).map(lambda ts: "(" + "".join(ts) + ")"),
            st.tuples(_KEYS, inner).map(lambda kv: "a{" + kv[0] + kv[1] + "}"),
        ), max_leaves=6)


def _values(sig: str):
    c = sig[0]
    if sig == "ay":
        return st.binary(max_size=10)
    if c == "v":
        return st.sampled_from(["s", "u", "as", "(bt)", "a{sv}"]).flatmap(
            lambda inner: _values(inner).map(lambda v: (inner, v)))
    if c == "a" and sig[1] == "{":
        key, value = dbus.split_signature(sig[2:-1])
        return st.dictionaries(_values(key), _values(value), max_size=3)
    if c == "a":
        return st.lists(_values(sig[1:]), max_size=3)
    if c == "(":
        return st.tuples(*[_values(s) for s in dbus.split_signature(sig[1:-1])])
    return _BASIC[c]


def _bodies():
    return st.lists(_signatures(), min_size=1, max_size=3).flatmap(
        lambda sigs: st.tuples(st.just("".join(sigs)),
                               st.tuples(*[_values(s) for s in sigs]).map(list)))


def _as_glib_json(sig: str, value):
    """Our value in the shape the GLib peer describes (and builds from)."""
    c = sig[0]
    if sig == "ay":
        return bytes(value).hex()
    if c == "v":
        return [value[0], _as_glib_json(value[0], value[1])]
    if c == "a" and sig[1] == "{":
        key, val = dbus.split_signature(sig[2:-1])
        return [[_as_glib_json(key, k), _as_glib_json(val, v)] for k, v in value.items()]
    if c == "a":
        return [_as_glib_json(sig[1:], v) for v in value]
    if c == "(":
        return [_as_glib_json(s, v) for s, v in zip(dbus.split_signature(sig[1:-1]), value)]
    return value


_HEADER = dict(destination="org.ocipy.Peer", path="/org/ocipy/x", interface="org.ocipy.Test",
               member="Echo")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies(), serial=st.integers(1, 2**32 - 1))
def test_glib_decodes_every_message_we_encode(glib, body, serial):
    sig, values = body
    message = dbus.Message(dbus.METHOD_CALL, {
        dbus.PATH: _HEADER["path"], dbus.INTERFACE: _HEADER["interface"],
        dbus.MEMBER: _HEADER["member"], dbus.DESTINATION: _HEADER["destination"],
        dbus.SIGNATURE: sig}, values)
    ours = message.encode(serial)
    got = glib.ask(op="decode", blob=ours.hex())
    expected = {"type": 1, "serial": serial, "signature": sig, **_HEADER,
                "body": [_as_glib_json(s, v) for s, v in zip(dbus.split_signature(sig), values)]}
    if got != expected:
        # GLib 2.74 misreads some arrays of structs holding signatures, its
        # own encoding of them included (a(g) [("a{sv}",), ("",)] reads as
        # one element; jeepney reads both): then GLib must misread its own
        # message the same way, and our body must be GLib's, byte for byte
        theirs = bytes.fromhex(glib.ask(op="encode", signature=sig, serial=serial, big=False,
                                        **_HEADER, values=expected["body"])["blob"])
        assert glib.ask(op="decode", blob=theirs.hex()) == got
        assert _body(ours) == _body(theirs), (ours.hex(), theirs.hex())


def _body(message: bytes) -> bytes:
    """A little-endian message's body: its last body-length bytes."""
    length = int.from_bytes(message[4:8], "little")
    return message[len(message) - length:] if length else b""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies(), serial=st.integers(1, 2**32 - 1), big=st.booleans())
def test_we_decode_every_message_glib_encodes(glib, body, serial, big):
    sig, values = body
    blob = bytes.fromhex(glib.ask(
        op="encode", signature=sig, serial=serial, big=big, **_HEADER,
        values=[_as_glib_json(s, v) for s, v in zip(dbus.split_signature(sig), values)],
    )["blob"])
    assert blob[:1] == (b"B" if big else b"l")
    message, used = dbus.decode(blob + b"next message")
    assert used == len(blob)
    assert (message.kind, message.serial) == (dbus.METHOD_CALL, serial)
    assert message.fields[dbus.MEMBER] == "Echo" and message.fields[dbus.SIGNATURE] == sig
    assert message.body == values


def test_an_incomplete_message_waits_for_more_bytes():
    blob = dbus.Message(dbus.METHOD_CALL, {dbus.PATH: "/", dbus.MEMBER: "M",
                                           dbus.SIGNATURE: "s"}, ["abc"]).encode(1)
    for cut in (0, 15, 16, len(blob) - 1):
        assert dbus.decode(blob[:cut]) == (None, 0)


def test_signatures_split_into_complete_types():
    assert dbus.split_signature("ssa(sv)a(sa(sv))") == ["s", "s", "a(sv)", "a(sa(sv))"]
    assert dbus.split_signature("a{sv}ua{s(ii)}") == ["a{sv}", "u", "a{s(ii)}"]
    for bad in ("a(s", "a{vs}", "()", "a", "z", "a{s}"):
        with pytest.raises(ValueError):
            dbus.split_signature(bad)


def test_the_array_length_leaves_out_the_padding_before_the_first_element():
    # a(t): length 4, then 4 bytes of padding to the 8-aligned struct
    assert dbus.marshal("a(t)", [[(1,)]]) == struct.pack("<I4xQ", 8, 1)
    assert dbus.marshal("a(t)", [[]]) == struct.pack("<I4x", 0)


# ---- a private dbus-daemon ---------------------------------------------------------------

needs_dbus_daemon = pytest.mark.skipif(shutil.which("dbus-daemon") is None,
                                       reason="no dbus-daemon")


@pytest.fixture
def bus(tmp_path):
    """A dbus-daemon of our own: its config (no service activation), its socket, ended by pid."""
    conf = tmp_path / "bus.conf"
    socket_path = tmp_path / "bus.sock"
    conf.write_text(f"""<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={socket_path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/>
    <allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
""")
    daemon = subprocess.Popen(["dbus-daemon", "--nofork", "--nopidfile",
                               f"--config-file={conf}", "--print-address"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = daemon.stdout.readline().strip()  # printed once it listens
        assert address.startswith("unix:path="), daemon.stderr.read()
        yield str(socket_path)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
        daemon.stdout.close()
        daemon.stderr.close()


def _bus_call(conn, member, signature="", *args):
    return conn.call(dbus.BUS_NAME, dbus.BUS_PATH, dbus.BUS_NAME, member, signature, *args)


@needs_dbus_daemon
def test_the_daemon_accepts_our_hello_calls_and_errors(bus):
    with dbus.Connection(bus) as conn:
        assert conn.unique_name.startswith(":")
        assert conn.unique_name in _bus_call(conn, "ListNames")[0]
        assert _bus_call(conn, "RequestName", "su", "org.ocipy.Test", 0) == [1]  # primary owner
        with pytest.raises(dbus.DBusError) as err:
            _bus_call(conn, "GetNameOwner", "s", "org.ocipy.Nobody")
        assert err.value.name == "org.freedesktop.DBus.Error.NameHasNoOwner"
        # a malformed call is refused by the daemon, with an error reply
        with pytest.raises(dbus.DBusError) as err:
            _bus_call(conn, "RequestName", "s", "not a valid name")
        assert err.value.name == "org.freedesktop.DBus.Error.InvalidArgs"


@needs_dbus_daemon
def test_signals_reach_a_connection_that_asked_for_them(bus):
    with dbus.Connection(bus) as sender, dbus.Connection(bus, timeout=5) as receiver:
        _bus_call(receiver, "AddMatch", "s", "type='signal',interface='org.ocipy.Test'")
        for n in range(3):
            sender.send(dbus.Message(dbus.SIGNAL, {
                dbus.PATH: "/org/ocipy", dbus.INTERFACE: "org.ocipy.Test",
                dbus.MEMBER: "Tick", dbus.SIGNATURE: "u"}, [n]))
        got = receiver.wait_signal(lambda m: m.member == "Tick" and m.body == [2])
        assert got.fields[dbus.SENDER] == sender.unique_name
        # a signal nobody sends: the wait ends at the connection's timeout
        receiver.timeout = 0.2
        with pytest.raises(TimeoutError):
            receiver.wait_signal(lambda m: m.member == "Never")


class FakeSystemd(threading.Thread):
    """org.freedesktop.systemd1 on the test bus: the Manager calls the
    driver makes, recorded with their arguments, and what systemd does for
    them to cgroups, on directories under a test-owned cgroup:
    StartTransientUnit makes the unit's directory in ``managed`` (the
    hierarchies systemd manages) and moves the pid there; StopUnit kills
    what is in it and removes it.  Each job ends with JobRemoved."""

    def __init__(self, bus: str, managed: list[str], control_group: str) -> None:
        super().__init__(daemon=True)
        self.conn = dbus.Connection(bus)
        _bus_call(self.conn, "RequestName", "su", systemd.SYSTEMD, 0)
        self.managed = managed
        self.control_group = control_group
        self.calls: list[tuple[str, list]] = []
        self.units: set[str] = set()
        self.start_result = "done"
        self.exists_once = False
        self.jobs = 0
        self.stopping = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        self.conn.timeout = 0.1
        while not self.stopping.is_set():
            try:
                message = self.conn.receive()
            except TimeoutError:
                continue
            if message.kind != dbus.METHOD_CALL:
                continue
            try:
                self._answer(message)
            except BaseException as exc:  # reported by the test
                self.failure = exc

    def _reply(self, message, sig="", values=(), error=None):
        fields = {dbus.REPLY_SERIAL: message.serial,
                  dbus.DESTINATION: message.fields[dbus.SENDER]}
        kind = dbus.METHOD_RETURN
        if error:
            kind, sig, values = dbus.ERROR, "s", [error[1]]
            fields[dbus.ERROR_NAME] = error[0]
        if sig:
            fields[dbus.SIGNATURE] = sig
        self.conn.send(dbus.Message(kind, fields, list(values)))

    def _job(self, message, unit, result):
        self.jobs += 1
        job = f"/org/freedesktop/systemd1/job/{self.jobs}"
        self._reply(message, "o", [job])
        self.conn.send(dbus.Message(dbus.SIGNAL, {
            dbus.PATH: systemd.MANAGER_PATH, dbus.INTERFACE: systemd.MANAGER,
            dbus.MEMBER: "JobRemoved", dbus.SIGNATURE: "uoss"}, [self.jobs, job, unit, result]))

    def _answer(self, message) -> None:
        member, body = message.member, message.body
        self.calls.append((member, body))
        if member in ("Subscribe", "ResetFailedUnit", "SetUnitProperties"):
            self._reply(message)
        elif member == "Get" and body == [systemd.MANAGER, "Version"]:
            self._reply(message, "v", [("s", "252.1-test")])
        elif member == "Get":
            self._reply(message, "v", [("s", self.control_group)])
        elif member == "GetUnit":
            self._reply(message, "o", ["/org/freedesktop/systemd1/unit/x"])
        elif member == "StartTransientUnit":
            unit, _mode, props, _aux = body
            if self.exists_once:
                self.exists_once = False
                self._reply(message, error=(systemd.UNIT_EXISTS, f"Unit {unit} was already "
                                                                 "loaded or has a fragment file."))
                return
            if self.start_result == "done":
                for top in self.managed:
                    os.makedirs(top + self.control_group)
                    for pid in dict(props)["PIDs"][1]:
                        with open(f"{top}{self.control_group}/cgroup.procs", "w") as f:
                            f.write(str(pid))
                self.units.add(unit)
            self._job(message, unit, self.start_result)
        elif member == "StopUnit":
            unit = body[0]
            if unit not in self.units:
                self._reply(message, error=(systemd.NO_SUCH_UNIT, f"Unit {unit} not loaded."))
                return
            self.units.discard(unit)
            for top in self.managed:
                directory = top + self.control_group
                with open(f"{directory}/cgroup.procs") as f:
                    for pid in f.read().split():
                        os.kill(int(pid), signal.SIGKILL)
                _rmdir_when_empty(directory)
            self._job(message, unit, "done")
        else:
            self._reply(message, error=("org.freedesktop.DBus.Error.UnknownMethod", member))

    def close(self) -> None:
        self.stopping.set()
        self.join(timeout=10)
        self.conn.close()


def _rmdir_when_empty(directory: str) -> None:
    deadline = time.monotonic() + 10
    while os.path.isdir(directory):
        try:
            os.rmdir(directory)
        except OSError:
            assert time.monotonic() < deadline, f"{directory} stayed busy"
            time.sleep(0.01)


def _hierarchies() -> list[str]:
    """The cgroup mount points of this host (v1 hierarchies and cgroup2)."""
    return [m.mountpoint for m in paths.parse_mountinfo(paths.read_proc("mountinfo"))]


@pytest.fixture
def unit_cgroup():
    """A test-owned parent in every hierarchy for the unit's cgroup; removed afterwards."""
    parent = f"/ocipy-sdtest-{uuid.uuid4().hex[:8]}"
    yield parent
    leftovers = []
    for top in _hierarchies():
        base = top + parent
        for directory, _dirs, _files in sorted(os.walk(base), key=lambda w: -len(w[0])):
            leftovers.append(directory)
            _rmdir_when_empty(directory)
    assert not [d for d in leftovers if d.endswith(".scope")], leftovers


@needs_dbus_daemon
@pytest.mark.skipif(os.geteuid() != 0, reason="makes cgroups")
def test_the_driver_creates_updates_and_stops_a_unit_over_the_bus(bus, unit_cgroup):
    """The driver's exchange with a stand-in for systemd on a real bus;
    real systemd's answers are tested in spec-tests/test_cgroups_systemd.py."""
    container_id = "c" + uuid.uuid4().hex[:8]
    unit_path = f"{unit_cgroup}/ocipy-{container_id}.scope"
    fs = cgroups.manager_for(unit_path, container_id)
    # systemd makes the unit's cgroup in the hierarchies it manages (here
    # memory and pids, or the unified one); ocipy makes the others
    if fs.version == "v1":
        managed = [fs.dirs[c][: -len(unit_path)] for c in ("memory", "pids")]
    else:
        managed = [fs.mountpoint]
    fake = FakeSystemd(bus, managed, unit_path)
    fake.start()
    for top in managed:  # the slice exists already
        os.makedirs(top + unit_cgroup, exist_ok=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        manager = systemd.SystemdManager("system.slice", f"ocipy-{container_id}.scope",
                                         container_id, fs, (bus, True))
        fake.exists_once = True  # a failed unit of that name is left: reset once, retry
        manager.create({"pids": {"limit": 20}, "cpu": {"quota": 33333}})
        manager.add(sleeper.pid)
        assert manager.started
        starts = [body for member, body in fake.calls if member == "StartTransientUnit"]
        assert len(starts) == 2
        unit, mode, props, aux = starts[-1]
        assert (unit, mode, aux) == (f"ocipy-{container_id}.scope", "replace", [])
        props = dict(props)
        assert props["PIDs"] == ("au", [sleeper.pid]) and props["TasksMax"] == ("t", 20)
        assert props["CPUQuotaPerSecUSec"] == ("t", 340000)
        assert [m for m, _ in fake.calls].count("ResetFailedUnit") == 1
        # the process is in every hierarchy's unit cgroup, and the limits are in the files
        with open(f"/proc/{sleeper.pid}/cgroup") as f:
            lines = f.read().splitlines()
        assert all(line.endswith(":" + unit_path) for line in lines), lines
        assert manager.pids() == [sleeper.pid]
        pids_dir = fs.dirs["pids"] if fs.version == "v1" else fs.dir
        with open(os.path.join(pids_dir, "pids.max")) as f:
            assert f.read().strip() == "20"
        # made by ocipy: only what systemd did not make
        made = set(manager.fs.created)
        assert not any(d.startswith(tuple(managed)) for d in made)
        if fs.version == "v1":
            assert fs.dirs["freezer"] in made and fs.dirs["devices"] in made

        # state.json round trip, then update through SetUnitProperties
        again = cgroups.Manager.from_state(json.loads(json.dumps(manager.to_state())))
        again.update({"pids": {"limit": 30}})
        member, (unit, runtime, props) = fake.calls[-1]
        assert (member, unit, runtime) == ("SetUnitProperties", f"ocipy-{container_id}.scope",
                                           True)
        assert dict(props) == {"TasksMax": ("t", 30)}
        with open(os.path.join(pids_dir, "pids.max")) as f:
            assert f.read().strip() == "30"

        again.destroy()
        assert [m for m, _ in fake.calls][-2:] == ["StopUnit", "ResetFailedUnit"]
        assert sleeper.wait(timeout=10) == -signal.SIGKILL  # systemd stopped the unit
        for directory in set(manager.leaf_dirs()):
            assert not os.path.exists(directory)
        # a unit already gone is not an error
        again.started = True
        again.destroy()
        assert fake.failure is None
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        fake.close()


@needs_dbus_daemon
def test_a_failed_start_job_is_an_error_and_resets_the_unit(bus, tmp_path):
    fake = FakeSystemd(bus, [], "/unused")
    fake.start_result = "failed"
    fake.start()
    try:
        fs = cgroups.manager_for("/ocipy-sdtest-unused/x.scope", "x")
        manager = systemd.SystemdManager("system.slice", "x.scope", "x", fs, (bus, True))
        with pytest.raises(OcipyError) as err:
            manager.add(os.getpid())
        assert str(err.value) == "create systemd unit x.scope: the start job ended: failed"
        assert fake.calls[-1] == ("ResetFailedUnit", ["x.scope"])
        assert not manager.started
        assert not any(os.path.exists(d) for d in fs.leaf_dirs())
    finally:
        fake.close()


def test_an_unreachable_systemd_is_one_clear_error(tmp_path):
    fs = cgroups.manager_for("/ocipy-sdtest-unused/x.scope", "x")
    manager = systemd.SystemdManager("system.slice", "x.scope", "x", fs,
                                     (str(tmp_path / "nobody"), False))
    with pytest.raises(OcipyError) as err:
        manager.create({})
    assert str(err.value) == f"connect to systemd at {tmp_path}/nobody: no such file or directory"


@pytest.mark.parametrize("text, want", [("0-2,9", bytes([0b111, 0b10])), (" 3 ", b"\x08"),
                                        ("1,,1", b"\x02")])
def test_cpu_lists_become_systemds_bitmasks(text, want):
    assert systemd._cpu_bits(text, "p") == want


@pytest.mark.parametrize("text, words", [("5-3", "is not a list"), ("a", "is not a list"),
                                         ("-1", "is not a list"), ("", "is empty"),
                                         (" , ", "is empty")])
def test_bad_cpu_lists_name_their_json_path(text, words):
    with pytest.raises(ConfigError) as err:
        systemd._cpu_bits(text, "linux.resources.cpu.cpus")
    assert err.value.path == "linux.resources.cpu.cpus" and words in err.value.reason
