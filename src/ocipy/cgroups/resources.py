"""linux.resources -> the ordered cgroup file writes that apply it (pure).

One planner serves both cgroup versions: each section of LinuxResources
(config-linux.md "Control groups") is translated by one function that
knows the v1 and the v2 file for every field, so the two managers cannot
drift apart.  Values follow runc (libcontainer/cgroups/fs and fs2): 0
means "leave unchanged" for the numeric limits runc treats that way, -1 is
"unlimited", and the spec's v1-flavoured values are converted on v2
(convert.py).

A field the running cgroup version cannot express raises ConfigError
naming the JSON path at plan time; a file the kernel turns out not to
offer is reported the same way when the write is attempted (manager.py).
Device rules are not planned here: see devices.py.
"""
from __future__ import annotations


from ocipy.cgroups import convert
from ocipy._record import record
from ocipy.errors import ConfigError

ROOT = "linux.resources"

# Reader: reads a file of the container's cgroup (controller, file) -> text
# or None; only `update` on v2 needs it, to keep the half of cpu.max it was
# not given.  Named for annotations only (collections.abc would import
# collections on every create).
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

    Reader = Callable[[str, str], "str | None"]


# One file write.  controller: v1 the hierarchy ("memory", "cpu", ...), v2
# the controller owning the file; path: the JSON path the value comes from,
# for error messages; optional: the file may be missing (e.g. hugetlb rsvd
# files); group: writes with the same non-zero group depend on each other's
# current values (memory and memory+swap, cfs period and quota): one the
# kernel refuses with EINVAL is retried once after the rest of its group;
# verify: read the value back, the kernel clamps some silently (cpu.shares);
# fallback: (file, value) to use when ``file`` is missing.
# (a namedtuple: typing.NamedTuple costs ~9 ms of imports on every create)
Write = record("Write", "controller file value path optional group verify fallback",
                defaults=(False, 0, False, None))


GROUP_MEMORY, GROUP_CFS, GROUP_RT = 1, 2, 3


def plan(resources: dict | None, version: str, read: Reader | None = None) -> list[Write]:
    """The writes that apply ``resources`` on a cgroup of ``version`` ("v1" or "v2")."""
    if not resources:
        return []
    if version not in ("v1", "v2"):
        raise ValueError(f"unknown cgroup version {version!r}")
    v2 = version == "v2"
    writes: list[Write] = []
    for section in (_cpuset, _memory, _cpu, _pids, _block_io, _hugepages, _network, _rdma,
                    _unified):
        writes.extend(section(resources, v2, read))
    return writes


def _not_on_v2(path: str) -> ConfigError:
    return ConfigError(path, "not available on cgroup v2")


def _cpuset(r: dict, v2: bool, read: Reader | None) -> list[Write]:
    cpu = r.get("cpu") or {}
    return [Write("cpuset", f"cpuset.{key}", cpu[key], f"{ROOT}.cpu.{key}")
            for key in ("cpus", "mems") if cpu.get(key)]


def _limit(value: int, v2: bool) -> str:
    return "max" if v2 and value == -1 else str(value)


def _memory(r: dict, v2: bool, read: Reader | None) -> list[Write]:
    mem = r.get("memory")
    if not mem:
        return []
    at = f"{ROOT}.memory"
    limit = mem.get("limit") or 0
    swap = mem.get("swap") or 0
    reservation = mem.get("reservation") or 0
    writes = []
    if v2:
        for key in ("kernel", "kernelTCP"):
            if mem.get(key):
                raise _not_on_v2(f"{at}.{key}")
        if mem.get("swappiness") is not None and mem["swappiness"] >= 0:
            raise _not_on_v2(f"{at}.swappiness")
        if mem.get("disableOOMKiller"):
            raise _not_on_v2(f"{at}.disableOOMKiller")
        if mem.get("useHierarchy") is False:
            raise ConfigError(f"{at}.useHierarchy", "cgroup v2 is always hierarchical")
        if limit or swap or reservation:
            try:
                swap_v2 = convert.memory_swap_to_v2(swap, limit)
            except ValueError as exc:
                raise ConfigError(f"{at}.swap", str(exc)) from None
            if swap_v2 or swap > 0:
                # only swap.max "max" or "0" may be skipped when swap accounting is off
                value = _limit(swap_v2, True)
                writes.append(Write("memory", "memory.swap.max", value, f"{at}.swap",
                                    optional=value in ("max", "0")))
            if limit:
                writes.append(Write("memory", "memory.max", _limit(limit, True), f"{at}.limit"))
            if reservation:
                writes.append(Write("memory", "memory.low", _limit(reservation, True),
                                    f"{at}.reservation"))
        return writes

    implied_swap = limit == -1 and swap == 0
    if implied_swap:
        swap = -1  # runc: unlimited memory with swap unset is unlimited memory+swap
    if limit:
        writes.append(Write("memory", "memory.limit_in_bytes", str(limit), f"{at}.limit",
                            group=GROUP_MEMORY))
    if swap:
        writes.append(Write("memory", "memory.memsw.limit_in_bytes", str(swap), f"{at}.swap",
                            optional=implied_swap, group=GROUP_MEMORY))
    if reservation:
        writes.append(Write("memory", "memory.soft_limit_in_bytes", str(reservation),
                            f"{at}.reservation"))
    if mem.get("kernel"):
        writes.append(Write("memory", "memory.kmem.limit_in_bytes", str(mem["kernel"]),
                            f"{at}.kernel"))
    if mem.get("kernelTCP"):
        writes.append(Write("memory", "memory.kmem.tcp.limit_in_bytes", str(mem["kernelTCP"]),
                            f"{at}.kernelTCP"))
    if mem.get("swappiness") is not None and mem["swappiness"] >= 0:
        writes.append(Write("memory", "memory.swappiness", str(mem["swappiness"]),
                            f"{at}.swappiness"))
    if mem.get("disableOOMKiller"):
        writes.append(Write("memory", "memory.oom_control", "1", f"{at}.disableOOMKiller"))
    if mem.get("useHierarchy") is not None:
        writes.append(Write("memory", "memory.use_hierarchy", "1" if mem["useHierarchy"] else "0",
                            f"{at}.useHierarchy"))
    return writes


def _cfs_max(cpu: dict, read: Reader | None) -> str:
    """cpu.max "QUOTA PERIOD"; a half not given keeps its current value (runc's update)."""
    quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
    current = (read("cpu", "cpu.max") if read else None) or "max 100000"
    old_quota, _, old_period = current.strip().partition(" ")
    if quota:
        quota_text = str(quota) if quota > 0 else "max"
    else:
        quota_text = old_quota or "max"
    return f"{quota_text} {period or old_period or 100000}"


def _cpu(r: dict, v2: bool, read: Reader | None) -> list[Write]:
    cpu = r.get("cpu")
    if not cpu:
        return []
    at = f"{ROOT}.cpu"
    writes = []
    if v2:
        for key in ("realtimeRuntime", "realtimePeriod"):
            if cpu.get(key):
                raise _not_on_v2(f"{at}.{key}")
        if cpu.get("idle") is not None:
            writes.append(Write("cpu", "cpu.idle", str(cpu["idle"]), f"{at}.idle"))
        if cpu.get("shares"):
            weight = convert.cpu_shares_to_weight(cpu["shares"])
            writes.append(Write("cpu", "cpu.weight", str(weight), f"{at}.shares"))
        if cpu.get("burst") is not None:
            writes.append(Write("cpu", "cpu.max.burst", str(cpu["burst"]), f"{at}.burst",
                                group=GROUP_CFS))
        if cpu.get("quota") or cpu.get("period"):
            where = f"{at}.quota" if cpu.get("quota") else f"{at}.period"
            writes.append(Write("cpu", "cpu.max", _cfs_max(cpu, read), where, group=GROUP_CFS))
        return writes

    if cpu.get("shares"):
        writes.append(Write("cpu", "cpu.shares", str(cpu["shares"]), f"{at}.shares",
                            verify=True))
    # runc writes the period first and, when the kernel refuses it against
    # the current quota, again after the quota: the group retry does that
    if cpu.get("period"):
        writes.append(Write("cpu", "cpu.cfs_period_us", str(cpu["period"]), f"{at}.period",
                            group=GROUP_CFS))
    if cpu.get("burst") is not None:
        writes.append(Write("cpu", "cpu.cfs_burst_us", str(cpu["burst"]), f"{at}.burst",
                            group=GROUP_CFS))
    if cpu.get("quota"):
        writes.append(Write("cpu", "cpu.cfs_quota_us", str(cpu["quota"]), f"{at}.quota",
                            group=GROUP_CFS))
    if cpu.get("realtimePeriod"):
        writes.append(Write("cpu", "cpu.rt_period_us", str(cpu["realtimePeriod"]),
                            f"{at}.realtimePeriod", group=GROUP_RT))
    if cpu.get("realtimeRuntime"):
        writes.append(Write("cpu", "cpu.rt_runtime_us", str(cpu["realtimeRuntime"]),
                            f"{at}.realtimeRuntime", group=GROUP_RT))
    if cpu.get("idle") is not None:
        writes.append(Write("cpu", "cpu.idle", str(cpu["idle"]), f"{at}.idle"))
    return writes


def _pids(r: dict, v2: bool, read: Reader | None) -> list[Write]:
    pids = r.get("pids")
    if not pids or pids.get("limit") is None:
        return []
    limit = pids["limit"]
    # runc: a positive limit as is, a negative one is "max", and 0 becomes 1
    # (systemd cannot set 0; in practice the two behave the same)
    value = str(limit) if limit > 0 else ("1" if limit == 0 else "max")
    return [Write("pids", "pids.max", value, f"{ROOT}.pids.limit")]


def _device(entry: dict) -> str:
    return f"{entry['major']}:{entry['minor']}"


def _block_io(r: dict, v2: bool, read: Reader | None) -> list[Write]:
    bio = r.get("blockIO")
    if not bio:
        return []
    at = f"{ROOT}.blockIO"
    writes = []
    if bio.get("weight"):
        weight = bio["weight"]
        if v2:
            # BFQ takes the blkio range as is; io.weight needs the conversion
            writes.append(Write("io", "io.bfq.weight", str(weight), f"{at}.weight",
                                fallback=("io.weight",
                                          str(convert.blkio_weight_to_io_weight(weight)))))
        else:
            writes.append(Write("blkio", "blkio.bfq.weight", str(weight), f"{at}.weight",
                                fallback=("blkio.weight", str(weight))))
    if bio.get("leafWeight"):
        if v2:
            raise _not_on_v2(f"{at}.leafWeight")
        writes.append(Write("blkio", "blkio.leaf_weight", str(bio["leafWeight"]),
                            f"{at}.leafWeight"))
    for index, entry in enumerate(bio.get("weightDevice") or ()):
        where = f"{at}.weightDevice[{index}]"
        device = _device(entry)
        if entry.get("weight"):
            weight = entry["weight"]
            if v2:
                io_weight = convert.blkio_weight_to_io_weight(weight)
                writes.append(Write("io", "io.bfq.weight", f"{device} {weight}",
                                    f"{where}.weight",
                                    fallback=("io.weight", f"{device} {io_weight}")))
            else:
                writes.append(Write("blkio", "blkio.bfq.weight_device", f"{device} {weight}",
                                    f"{where}.weight",
                                    fallback=("blkio.weight_device", f"{device} {weight}")))
        if entry.get("leafWeight"):
            if v2:
                raise _not_on_v2(f"{where}.leafWeight")
            writes.append(Write("blkio", "blkio.leaf_weight_device",
                                f"{device} {entry['leafWeight']}", f"{where}.leafWeight"))
    for key, v1_file, v2_key in (
        ("throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps"),
        ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps"),
        ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops"),
        ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops"),
    ):
        for index, entry in enumerate(bio.get(key) or ()):
            where = f"{at}.{key}[{index}]"
            if v2:
                writes.append(Write("io", "io.max", f"{_device(entry)} {v2_key}={entry['rate']}",
                                    where))
            else:
                writes.append(Write("blkio", v1_file, f"{_device(entry)} {entry['rate']}", where))
    return writes


def _hugepages(r: dict, v2: bool, read: Reader | None) -> list[Write]:
    writes = []
    suffix = "max" if v2 else "limit_in_bytes"
    for index, entry in enumerate(r.get("hugepageLimits") or ()):
        where = f"{ROOT}.hugepageLimits[{index}]"
        size = entry["pageSize"]
        value = str(entry["limit"])
        writes.append(Write("hugetlb", f"hugetlb.{size}.{suffix}", value, f"{where}.pageSize"))
        # the reservation limit (kernel 5.7+) follows it when the kernel has one
        writes.append(Write("hugetlb", f"hugetlb.{size}.rsvd.{suffix}", value, where,
                            optional=True))
    return writes


def _network(r: dict, v2: bool, read: Reader | None) -> list[Write]:
    net = r.get("network")
    if not net:
        return []
    at = f"{ROOT}.network"
    writes = []
    if net.get("classID"):
        if v2:
            raise _not_on_v2(f"{at}.classID")
        writes.append(Write("net_cls", "net_cls.classid", str(net["classID"]), f"{at}.classID"))
    for index, prio in enumerate(net.get("priorities") or ()):
        if v2:
            raise _not_on_v2(f"{at}.priorities")
        writes.append(Write("net_prio", "net_prio.ifpriomap", f"{prio['name']} {prio['priority']}",
                            f"{at}.priorities[{index}]"))
    return writes


def _rdma(r: dict, v2: bool, read: Reader | None) -> list[Write]:
    writes = []
    for device, limits in (r.get("rdma") or {}).items():
        line = device
        if limits.get("hcaHandles") is not None:
            line += f" hca_handle={limits['hcaHandles']}"
        if limits.get("hcaObjects") is not None:
            line += f" hca_object={limits['hcaObjects']}"
        writes.append(Write("rdma", "rdma.max", line, f'{ROOT}.rdma["{device}"]'))
    return writes


def _unified(r: dict, v2: bool, read: Reader | None) -> list[Write]:
    unified = r.get("unified")
    if not unified:
        return []
    if not v2:
        # runc's ErrV1NoUnified
        raise ConfigError(f"{ROOT}.unified", "cannot be used on cgroup v1")
    writes = []
    for key, value in unified.items():
        where = f'{ROOT}.unified["{key}"]'
        controller, dot, _param = key.partition(".")
        if "/" in key or not dot or key in (".", ".."):
            raise ConfigError(where, "must be a file name of the form CONTROLLER.PARAMETER")
        # runc writes a multi-line value one line at a time
        for line in str(value).splitlines() or [""]:
            writes.append(Write("" if controller == "cgroup" else controller, key, line, where))
    return writes
