"""The systemd cgroup driver: `--systemd-cgroup`, cgroupsPath "slice:prefix:name".

As runc's libcontainer/cgroups/systemd (docs/systemd.md there):

* the container's cgroup is a transient unit: StartTransientUnit of
  "<prefix>-<name>.scope" (Slice=, Delegate=yes) or of "<name>.slice"
  (Wants= the slice), with the init's pid, DefaultDependencies=no,
  accounting on for every controller, and the limits systemd has a
  property for; then we wait for the job's JobRemoved signal;
* everything else is the v1/v2 manager of the unit's cgroup (``fs``): it
  makes the unit's directory in the v1 hierarchies systemd leaves alone
  (devices, freezer, cpuset, ...), writes the limits systemd has no property
  for and the device rules, and serves pause, ps, events, kill --all, exec;
* update: SetUnitProperties, then the same file writes;
* delete: StopUnit (systemd kills what is left and removes its cgroups),
  ResetFailedUnit, then only the directories ocipy made itself.

The way to systemd: as root its private socket /run/systemd/private (no
dbus-daemon needed), else the system bus (DBUS_SYSTEM_BUS_ADDRESS, as
sd-bus reads it, or /run/dbus/system_bus_socket).  dbus.py is the client.
"""
from __future__ import annotations

import os

from ocipy.cgroups import devices
from ocipy.cgroups.manager import Manager
from ocipy.errors import ConfigError, OcipyError

SYSTEMD_RUNNING = "/run/systemd/system"  # sd_booted(3)
SYSTEMD_PRIVATE = "/run/systemd/private"
SYSTEM_BUS = "/run/dbus/system_bus_socket"

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
UNIT_EXISTS = "org.freedesktop.systemd1.UnitExists"

JOB_TIMEOUT = 30.0  # runc waits as long for a job
USEC_INFINITY = (1 << 64) - 1  # systemd's "infinity" for the uint64 properties
_DEFAULT_PERIOD = 100000
_RESOURCES = "linux.resources"


def systemd_address() -> tuple[str, bool] | None:
    """(socket path, is it a bus) of the way to systemd, None when there is none.

    runc's choice: root talks to systemd's private socket, anyone else to
    the system bus.
    """
    running = os.path.isdir(SYSTEMD_RUNNING)
    if running and os.geteuid() == 0 and os.path.exists(SYSTEMD_PRIVATE):
        return SYSTEMD_PRIVATE, False
    from_env = _unix_socket(os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", ""))
    if from_env:
        return from_env, True
    if running and os.path.exists(SYSTEM_BUS):
        return SYSTEM_BUS, True
    return None


def _unix_socket(address: str) -> str | None:
    """The socket of the first unix:path= or unix:abstract= entry of a D-Bus address."""
    for entry in address.split(";"):
        transport, _, options = entry.partition(":")
        if transport != "unix":
            continue
        for option in options.split(","):
            key, _, value = option.partition("=")
            if key in ("path", "abstract") and value:
                value = _unescape_address(value)
                return value if key == "path" else "\0" + value
    return None


def _unescape_address(value: str) -> str:
    # D-Bus addresses escape bytes as %XX
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == "%" and i + 3 <= len(value):
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out += value[i].encode()
            i += 1
    return out.decode()


# ---- unit properties: what runc sends -------------------------------------------------

def unit_properties(unit: str, slice_name: str, pid: int, container_id: str,
                    version: str) -> list[tuple[str, tuple[str, object]]]:
    """StartTransientUnit's fixed a(sv) properties, without the limits."""
    props: list[tuple[str, tuple[str, object]]] = [
        ("Description", ("s", f"ocipy container {container_id}"))]
    if unit.endswith(".slice"):
        # a slice's parent follows from its name; the slice asked for is wanted
        props.append(("Wants", ("as", [slice_name])))
    else:
        props += [("Slice", ("s", slice_name)), ("Delegate", ("b", True))]
    props += [
        ("PIDs", ("au", [pid])),
        # always: the fs driver accounts everything too, and a process
        # joining the memory cgroup later is not charged for what it had
        ("MemoryAccounting", ("b", True)),
        ("CPUAccounting", ("b", True)),
        ("IOAccounting" if version == "v2" else "BlockIOAccounting", ("b", True)),
        ("TasksAccounting", ("b", True)),
        ("DefaultDependencies", ("b", False)),
    ]
    return props


def resource_properties(resources: dict | None, version: str, systemd_version
                        ) -> tuple[list[tuple[str, tuple[str, object]]], dict]:
    """The limits systemd has properties for (runc's docs/systemd.md tables),
    and ``resources`` as the files should get them.

    ``systemd_version()`` is asked only for the properties newer systemds
    have (AllowedCPUs 244, CPUQuotaPeriodUSec 242, cpu.idle 252,
    OOMPolicy 253).  The second result differs from ``resources`` only in
    a cpu quota rounded up as systemd rounds it, so both agree.
    """
    r = dict(resources or {})
    props: list[tuple[str, tuple[str, object]]] = []
    memory = r.get("memory") or {}
    cpu = dict(r.get("cpu") or {})
    v2 = version == "v2"

    def add(name: str, value: int) -> None:
        props.append((name, ("t", value)))

    if memory.get("limit"):
        add("MemoryMax" if v2 else "MemoryLimit", _bytes(memory["limit"]))
    if v2:
        if memory.get("reservation"):
            add("MemoryLow", _bytes(memory["reservation"]))
        if memory.get("swap"):
            from ocipy.cgroups.convert import memory_swap_to_v2

            try:
                swap = memory_swap_to_v2(memory["swap"], memory.get("limit") or 0)
            except ValueError as exc:
                raise ConfigError(f"{_RESOURCES}.memory.swap", str(exc)) from None
            if swap:
                add("MemorySwapMax", _bytes(swap))
    idle = v2 and cpu.get("idle") == 1 and systemd_version() >= 252
    if idle:
        add("CPUWeight", 0)  # systemd's way to say cpu.idle=1
    elif cpu.get("shares"):
        if v2:
            from ocipy.cgroups.convert import cpu_shares_to_weight

            add("CPUWeight", cpu_shares_to_weight(cpu["shares"]))
        else:
            add("CPUShares", cpu["shares"])
    quota = cpu.get("quota") or 0
    rounded = _add_cpu_quota(props, quota, cpu.get("period") or 0, systemd_version)
    if rounded != quota:
        cpu["quota"] = rounded
        r["cpu"] = cpu
    weight = (r.get("blockIO") or {}).get("weight")
    if weight and not v2:
        add("BlockIOWeight", weight)
    limit = (r.get("pids") or {}).get("limit")
    if limit is not None:
        # systemd refuses TasksMax=0; one task behaves the same
        add("TasksMax", USEC_INFINITY if limit < 0 else max(limit, 1))
    for key, name in (("cpus", "AllowedCPUs"), ("mems", "AllowedMemoryNodes")):
        if cpu.get(key) and systemd_version() >= 244:
            props.append((name, ("ay", _cpu_bits(cpu[key], f"{_RESOURCES}.cpu.{key}"))))
    if v2 and r.get("unified"):
        props += _unified_properties(r["unified"], systemd_version)
    return props, r


def _bytes(value: int) -> int:
    return USEC_INFINITY if value < 0 else value


def _add_cpu_quota(props: list, quota: int, period: int, systemd_version) -> int:
    """CPUQuotaPeriodUSec and CPUQuotaPerSecUSec (runc's addCPUQuota); the quota to write.

    systemd keeps the quota as a percentage of one CPU, so a quota that is
    not a whole percent is rounded up, here as in systemd.  Unlike runc, a
    period alone leaves the quota as it is (runc resets it to unlimited).
    """
    if period and systemd_version() >= 242:
        props.append(("CPUQuotaPeriodUSec", ("t", period)))
    if not quota:
        return quota
    if quota < 0:
        props.append(("CPUQuotaPerSecUSec", ("t", USEC_INFINITY)))
        return quota
    period = period or _DEFAULT_PERIOD
    per_sec = quota * 1000000 // period
    if per_sec % 10000:
        per_sec = (per_sec // 10000 + 1) * 10000
        quota = per_sec * period // 1000000
    props.append(("CPUQuotaPerSecUSec", ("t", per_sec)))
    return quota


def _cpu_bits(text: str, where: str) -> bytes:
    """"0-2,5" -> the bitmask systemd's AllowedCPUs takes, least significant byte first."""
    from ocipy.cgroups.stats import parse_list

    try:
        bits = parse_list(text)
    except ValueError:
        raise ConfigError(where, f'"{text}" is not a list of numbers and ranges') from None
    mask = 0
    for bit in bits:
        mask |= 1 << bit
    if not mask:
        raise ConfigError(where, "is empty")
    return mask.to_bytes((mask.bit_length() + 7) // 8, "little")


_UNIFIED_MEMORY = {"memory.high": "MemoryHigh", "memory.low": "MemoryLow",
                   "memory.min": "MemoryMin", "memory.max": "MemoryMax",
                   "memory.swap.max": "MemorySwapMax"}


def _unified_properties(unified: dict, systemd_version) -> list:
    """linux.resources.unified keys systemd has properties for (runc's unifiedResToSystemdProps);
    the others are only written to the files."""
    props: list = []

    def number(key: str, text: str) -> int:
        text = text.strip()
        if text == "max":
            return USEC_INFINITY
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f'{_RESOURCES}.unified["{key}"]',
                              f'"{text}" is not a number or "max"') from None
        if value < 0:
            raise ConfigError(f'{_RESOURCES}.unified["{key}"]', f"{value} is negative")
        return value

    idle = str(unified.get("cpu.idle", "")).strip() == "1" and systemd_version() >= 252
    for key, value in unified.items():
        value = str(value)
        if key == "cpu.idle" and idle:
            props.append(("CPUWeight", ("t", 0)))
        elif key == "cpu.weight" and not idle:
            props.append(("CPUWeight", ("t", number(key, value))))
        elif key == "cpu.max":
            fields = value.split()
            if not 1 <= len(fields) <= 2:
                raise ConfigError(f'{_RESOURCES}.unified["{key}"]',
                                  f'"{value}" is not "QUOTA [PERIOD]"')
            quota = -1 if fields[0] == "max" else number(key, fields[0])
            period = number(key, fields[1]) if len(fields) == 2 else _DEFAULT_PERIOD
            _add_cpu_quota(props, quota, period, systemd_version)
        elif key in ("cpuset.cpus", "cpuset.mems") and systemd_version() >= 244:
            name = "AllowedCPUs" if key == "cpuset.cpus" else "AllowedMemoryNodes"
            props.append((name, ("ay", _cpu_bits(value, f'{_RESOURCES}.unified["{key}"]'))))
        elif key in _UNIFIED_MEMORY:
            props.append((_UNIFIED_MEMORY[key], ("t", number(key, value))))
        elif key == "pids.max":
            props.append(("TasksMax", ("t", max(number(key, value), 1))))
    return props


def oom_policy(resources: dict | None, systemd_version) -> list:
    """unified memory.oom.group as OOMPolicy: systemd takes it only when the unit starts."""
    value = str(((resources or {}).get("unified") or {}).get("memory.oom.group", "")).strip()
    if value in ("0", "1") and systemd_version() >= 253:
        return [("OOMPolicy", ("s", "kill" if value == "1" else "continue"))]
    return []


def parse_version(text: str) -> int:
    """systemd's Version property ("252.38-1~deb12u1", "v245.4-1.fc32") -> 252; -1 if none."""
    digits = ""
    for c in text.lstrip('"v'):
        if not c.isdigit():
            break
        digits += c
    return int(digits) if digits else -1


# ---- the manager ------------------------------------------------------------------

class SystemdManager(Manager):
    """A container's cgroup as a transient systemd unit; the files are ``fs``'s."""

    version = "systemd"

    def __init__(self, slice_name: str, unit: str, container_id: str, fs: Manager,
                 address: tuple[str, bool], *, started: bool = False) -> None:
        super().__init__(fs.inner)
        self.slice = slice_name
        self.unit = unit
        self.container_id = container_id
        self.fs = fs  # the v1/v2 manager of the unit's cgroup
        self.address = address
        self.started = started  # we started the unit: it is ours to stop
        self._conn = None
        self._resources: dict = {}
        self._fs_resources: dict = {}
        self._systemd_version: int | None = None

    # ---- state ------------------------------------------------------------

    def to_state(self) -> dict:
        return {"version": "systemd", "slice": self.slice, "unit": self.unit,
                "id": self.container_id, "address": list(self.address),
                "started": self.started, "fs": self.fs.to_state()}

    @classmethod
    def from_doc(cls, doc: dict) -> SystemdManager:
        return cls(doc["slice"], doc["unit"], doc["id"], Manager.from_state(doc["fs"]),
                   (doc["address"][0], bool(doc["address"][1])),
                   started=bool(doc.get("started")))

    # ---- talking to systemd ---------------------------------------------------

    def _connect(self):
        from ocipy.cgroups import dbus

        path, bus = self.address
        try:
            conn = dbus.Connection(path, bus=bus, timeout=JOB_TIMEOUT)
        except (OSError, dbus.DBusError) as exc:
            raise OcipyError(f"connect to systemd at {path.lstrip(chr(0))}", _why(exc)) from None
        try:
            if bus:
                # a bus delivers systemd's signals only to who asks for them
                conn.call(dbus.BUS_NAME, dbus.BUS_PATH, dbus.BUS_NAME, "AddMatch", "s",
                          f"type='signal',sender='{SYSTEMD}',path='{MANAGER_PATH}',"
                          f"interface='{MANAGER}',member='JobRemoved'")
            # without it systemd sends no JobRemoved
            conn.call(SYSTEMD, MANAGER_PATH, MANAGER, "Subscribe")
        except (OSError, dbus.DBusError) as exc:
            conn.close()
            raise OcipyError(f"subscribe to systemd at {path.lstrip(chr(0))}", _why(exc)) \
                from None
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _version_of(self, conn):
        """A systemd_version() for the property tables: asked once, only if needed."""
        def systemd_version() -> int:
            if self._systemd_version is None:
                from ocipy.cgroups import dbus

                try:
                    text = conn.get_property(SYSTEMD, MANAGER_PATH, MANAGER, "Version")
                except (OSError, dbus.DBusError):
                    text = ""
                self._systemd_version = parse_version(str(text))
            return self._systemd_version
        return systemd_version

    def _job(self, conn, action: str, method: str, signature: str, *args) -> str:
        """Call a Manager method that queues a job; the job's result ("done", "failed", ...).

        An error reply is raised as dbus.DBusError, for the caller to judge.
        """
        try:
            (job,) = conn.call(SYSTEMD, MANAGER_PATH, MANAGER, method, signature, *args)
            # JobRemoved(u id, o job, s unit, s result)
            removed = conn.wait_signal(lambda m: m.member == "JobRemoved" and
                                       len(m.body) == 4 and m.body[1] == job)
        except TimeoutError:
            raise OcipyError(f"{action} {self.unit}",
                             f"systemd did not finish the job within {JOB_TIMEOUT:g}s") from None
        except OSError as exc:
            raise OcipyError(f"{action} {self.unit}", _why(exc)) from None
        return removed.body[3]

    def _reset_failed(self, conn) -> None:
        from ocipy.cgroups import dbus

        try:
            conn.call(SYSTEMD, MANAGER_PATH, MANAGER, "ResetFailedUnit", "s", self.unit)
        except (OSError, dbus.DBusError):
            pass  # not failed, or already gone

    # ---- lifecycle --------------------------------------------------------

    def create(self, resources: dict | None) -> None:
        """Check everything and connect; the unit is made with the init's pid (``add``).

        A config systemd or the files cannot take is refused here, before
        any process exists.
        """
        from ocipy.cgroups import resources as res

        self._resources = resources or {}
        res.plan(self._resources, self.fs.version)
        devices.container_rules(self._resources.get("devices"))
        resource_properties(self._resources, self.fs.version, lambda: 1 << 30)
        self._conn = self._connect()

    def self_placement(self) -> tuple[str | None, bool, list[tuple[str, bool]]] | None:
        # exec into a unit we started: its cgroup is delegated to us, and the
        # process enters it itself as with the fs driver; a new unit is
        # systemd's to populate (add)
        return self.fs.self_placement() if self.started else None

    def add(self, pid: int) -> None:
        if self.started:
            self.fs.add(pid)  # exec: the unit's cgroup is delegated to us
            return
        conn = self._conn or self._connect()
        self._conn = None
        try:
            self._start(conn, pid)
            self._locate(conn)
        finally:
            conn.close()
        # what systemd does not do: the unit's directory in the v1 hierarchies
        # it does not manage, the limits it has no property for, the devices
        self.fs.create(self._fs_resources)
        self.fs.add(pid)

    def _start(self, conn, pid: int) -> None:
        from ocipy.cgroups import dbus

        version = self._version_of(conn)
        props, self._fs_resources = resource_properties(self._resources, self.fs.version,
                                                        version)
        props = (unit_properties(self.unit, self.slice, pid, self.container_id, self.fs.version)
                 + props + oom_policy(self._resources, version))
        action = "create systemd unit"
        for attempt in (1, 2):
            try:
                result = self._job(conn, action, "StartTransientUnit", "ssa(sv)a(sa(sv))",
                                   self.unit, "replace", props, [])
                break
            except dbus.DBusError as exc:
                if exc.name != UNIT_EXISTS or attempt == 2:
                    raise OcipyError(f"{action} {self.unit}", str(exc)) from None
                # a failed unit of that name left behind: let systemd forget it, once
                self._reset_failed(conn)
        if result != "done":
            self._reset_failed(conn)
            raise OcipyError(f"{action} {self.unit}", f"the start job ended: {result}")
        self.started = True

    def _locate(self, conn) -> None:
        """Ask systemd where the unit's cgroup is; it is where we expected it
        unless the slice lives elsewhere (a nested systemd, a custom slice)."""
        from ocipy import cgroups
        from ocipy.cgroups import dbus

        kind = "Slice" if self.unit.endswith(".slice") else "Scope"
        try:
            (unit_path,) = conn.call(SYSTEMD, MANAGER_PATH, MANAGER, "GetUnit", "s", self.unit)
            control_group = conn.get_property(SYSTEMD, unit_path, f"{SYSTEMD}.{kind}",
                                              "ControlGroup")
        except (OSError, dbus.DBusError) as exc:
            raise OcipyError(f"find the cgroup of systemd unit {self.unit}", _why(exc)) from None
        if control_group and control_group != self.fs.inner:
            self.fs = cgroups.manager_for(control_group, self.container_id)
            self.inner = self.fs.inner

    def update(self, resources: dict, *, devices: bool = False) -> None:
        """SetUnitProperties with what systemd knows, then the files (runc's Set)."""
        from ocipy.cgroups import dbus

        self.fs._check_before_apply(resources)  # before systemd OOM-kills for a too-low limit
        with self._connect() as conn:
            props, fs_resources = resource_properties(resources, self.fs.version,
                                                      self._version_of(conn))
            if props:
                try:
                    # runtime=True: the change lasts until the unit stops
                    conn.call(SYSTEMD, MANAGER_PATH, MANAGER, "SetUnitProperties", "sba(sv)",
                              self.unit, True, props)
                except (OSError, dbus.DBusError) as exc:
                    raise OcipyError(f"set the properties of systemd unit {self.unit}",
                                     _why(exc)) from None
        self.fs.update(fs_resources, devices=devices)

    def destroy(self) -> None:
        """Stop the unit if we started it, then remove the directories we made."""
        self._close()
        if self.started:
            from ocipy.cgroups import dbus

            with self._connect() as conn:
                try:
                    result = self._job(conn, "stop systemd unit", "StopUnit", "ss", self.unit,
                                       "replace")
                except dbus.DBusError as exc:
                    if exc.name != NO_SUCH_UNIT:  # gone already: systemd collects empty scopes
                        raise OcipyError(f"stop systemd unit {self.unit}", str(exc)) from None
                    result = "done"
                self._reset_failed(conn)
            if result not in ("done", "canceled"):
                raise OcipyError(f"stop systemd unit {self.unit}",
                                 f"the stop job ended: {result}")
            self.started = False
        self.fs.destroy()

    # ---- the rest is the unit's cgroup files ------------------------------------

    def freeze(self) -> None:
        self.fs.freeze()

    def thaw(self) -> None:
        self.fs.thaw()

    def frozen(self) -> bool:
        return self.fs.frozen()

    def freezer_file(self) -> str | None:
        return self.fs.freezer_file()

    def stats(self) -> dict:
        return self.fs.stats()

    def oom_count(self) -> int:
        return self.fs.oom_count()

    def removable_dirs(self) -> list[str]:
        return []  # deleting needs systemd: never the front-end's rmdir path

    def _make_dirs(self) -> None:
        self.fs._make_dirs()

    def _leaf_dirs(self) -> list[str]:
        return self.fs._leaf_dirs()

    def _dir_for(self, controller: str) -> str | None:
        return self.fs._dir_for(controller)

    def _procs_dir(self) -> str:
        return self.fs._procs_dir()

    def _apply_devices(self, rules: list[devices.Rule]) -> None:
        self.fs._apply_devices(rules)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc)


def manager(cgroups_path: str | None, container_id: str, *,
            address: tuple[str, bool] | None = None) -> SystemdManager:
    """The systemd manager for ``slice:prefix:name``; nothing is asked of systemd yet.

    ``address`` (socket, is a bus) replaces the search for systemd (tests).
    """
    from ocipy import cgroups
    from ocipy.cgroups import paths

    slice_name, unit = paths.systemd_unit(cgroups_path, container_id)
    if address is None:
        address = systemd_address()
        if address is None:
            raise OcipyError("systemd cgroup driver", "systemd is not running on this host")
    # where systemd will put the unit, in every hierarchy (checked once it exists)
    fs = cgroups.manager_for(paths.systemd_unit_path(cgroups_path, container_id), container_id)
    return SystemdManager(slice_name, unit, container_id, fs, address)
