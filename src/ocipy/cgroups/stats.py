"""The `data` of runc's ``events --stats``: cgroup statistics in runc's JSON shape.

Field names and omissions follow runc's types/events.go (a Go ``omitempty``
number is left out when 0, an ``omitzero`` struct when all its fields are
0); the values are read the way libcontainer/cgroups/fs (v1) and fs2 (v2)
read them.  Missing files (a controller not mounted or not enabled) leave
their part empty rather than failing, as runc's collectors do.
"""
from __future__ import annotations

import os

from ocipy.cgroups import files

NS_PER_SEC = 1_000_000_000


def _prune(doc: dict, keep: tuple[str, ...] = ()) -> dict:
    """Drop the zero, empty and None values a Go ``omitempty`` would drop."""
    return {k: v for k, v in doc.items() if k in keep or v not in (0, None, [], {}, "")}


def memory_entry(usage: int = 0, max_usage: int = 0, failcnt: int = 0, limit: int = 0) -> dict:
    """types.MemoryEntry; {} when every field is 0 (the parent omits it)."""
    if not (usage or max_usage or failcnt or limit):
        return {}
    return _prune({"limit": limit, "usage": usage, "max": max_usage, "failcnt": failcnt},
                  keep=("limit", "failcnt"))


def empty() -> dict:
    """The document for a cgroup that reports nothing."""
    return {
        "cpu": {},
        "cpuset": cpuset({}),
        "memory": {},
        "pids": {},
        "blkio": {},
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": None,
    }


def cpu(total: int = 0, percpu: list[int] | None = None, percpu_kernel: list[int] | None = None,
        percpu_user: list[int] | None = None, kernel: int = 0, user: int = 0,
        throttling: dict | None = None, psi: dict | None = None) -> dict:
    doc: dict = {}
    usage = _prune({"total": total, "percpu": percpu, "percpu_kernel": percpu_kernel,
                    "percpu_user": percpu_user})
    if usage or kernel or user:
        doc["usage"] = {**usage, "kernel": kernel, "user": user}
    throttling = _prune(throttling or {})
    if throttling:
        doc["throttling"] = throttling
    if psi is not None:
        doc["psi"] = psi
    return doc


_CPUSET_FLAGS = ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                 "memory_spread_page", "memory_spread_slab", "memory_pressure",
                 "sched_load_balance", "sched_relax_domain_level")


def cpuset(values: dict) -> dict:
    """types.CPUSet: the lists are omitted when empty, the flags always present."""
    doc: dict = {}
    if values.get("cpus"):
        doc["cpus"] = values["cpus"]
    doc["cpu_exclusive"] = values.get("cpu_exclusive", 0)
    if values.get("mems"):
        doc["mems"] = values["mems"]
    for key in _CPUSET_FLAGS[1:]:
        doc[key] = values.get(key, 0)
    return doc


def parse_list(text: str) -> list[int]:
    """A cpuset list: "0-3,8,10-11" -> [0, 1, 2, 3, 8, 10, 11].

    ValueError for what is not one: a part that is no number or range, or a
    range that runs backwards ("5-3")."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part.strip():
            continue
        low, dash, high = part.partition("-")
        first, last = int(low), int(high) if dash else int(low)
        if first > last:
            raise ValueError(part)
        out.extend(range(first, last + 1))
    return out


def psi(path: str) -> dict | None:
    """A *.pressure file -> {"some": {...}, "full": {...}}, None when missing."""
    text = files.read_optional(path)
    if text is None:
        return None
    doc: dict = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        if kind not in ("some", "full"):
            continue
        data = {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total": 0}
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key in ("avg10", "avg60", "avg300"):
                data[key] = float(value)
            elif key == "total":
                data[key] = int(value)
        if any(data.values()):
            doc[kind] = data
    return doc


def hugepage_sizes(sysfs: str = "/sys/kernel/mm/hugepages") -> list[str]:
    """The page sizes as cgroup files name them ("2MB", "1GB"), like runc's HugePageSizes."""
    try:
        names = os.listdir(sysfs)
    except OSError:
        return []
    sizes = []
    for name in sorted(names):
        if not (name.startswith("hugepages-") and name.endswith("kB")):
            continue
        size = int(name[len("hugepages-"):-2]) * 1024
        unit = 0
        while size >= 1024 and size % 1024 == 0 and unit < 5:
            size //= 1024
            unit += 1
        sizes.append(f"{size}{('B', 'KB', 'MB', 'GB', 'TB', 'PB')[unit]}")
    return sizes


def blkio_entries(text: str | None) -> list[dict]:
    """"MAJ:MIN Op value" (or "MAJ:MIN value") lines -> types.BlkioEntry dicts."""
    entries = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) not in (2, 3) or ":" not in fields[0]:
            continue  # "Total N" and junk
        major, _, minor = fields[0].partition(":")
        op = fields[1] if len(fields) == 3 else ""
        entries.append(_prune({"major": int(major), "minor": int(minor), "op": op,
                               "value": int(fields[-1])}))
    return entries


# ---- cgroup v1 -----------------------------------------------------------

# runc's fs/blkio.go: the first group whose first file has entries wins
_BLKIO_V1_GROUPS = (
    ("blkio.bfq.", ("sectors_recursive", "io_service_time_recursive", "io_wait_time_recursive",
                    "io_merged_recursive", "io_queued_recursive", "time_recursive",
                    "io_serviced_recursive", "io_service_bytes_recursive")),
    ("blkio.bfq.", ("io_serviced_recursive", "io_service_bytes_recursive")),
    ("blkio.", ("sectors_recursive", "io_service_time_recursive", "io_wait_time_recursive",
                "io_merged_recursive", "io_queued_recursive", "time_recursive",
                "io_serviced_recursive", "io_service_bytes_recursive")),
    ("blkio.throttle.", ("io_serviced_recursive", "io_service_bytes_recursive")),
    ("blkio.throttle.", ("io_serviced", "io_service_bytes")),
)
_BLKIO_KEYS = {
    "sectors_recursive": "sectorsRecursive",
    "io_service_time_recursive": "ioServiceTimeRecursive",
    "io_wait_time_recursive": "ioWaitTimeRecursive",
    "io_merged_recursive": "ioMergedRecursive",
    "io_queued_recursive": "ioQueueRecursive",
    "time_recursive": "ioTimeRecursive",
    "io_serviced_recursive": "ioServicedRecursive",
    "io_service_bytes_recursive": "ioServiceBytesRecursive",
    "io_serviced": "ioServicedRecursive",
    "io_service_bytes": "ioServiceBytesRecursive",
}


def _v1_blkio(directory: str) -> dict:
    doc: dict = {}
    for prefix, names in _BLKIO_V1_GROUPS:
        for index, name in enumerate(names):
            entries = blkio_entries(files.read_optional(os.path.join(directory, prefix + name)))
            if not entries:
                if index == 0:
                    break  # this group is not there: try the next one
                return doc
            doc[_BLKIO_KEYS[name]] = entries
            if index == len(names) - 1:
                return doc
    return doc


def _v1_memory_entry(directory: str, module: str) -> dict:
    base = os.path.join(directory, module)
    usage = files.read_optional(base + ".usage_in_bytes")
    if usage is None:
        return {}
    return memory_entry(files.parse_uint(usage), files.read_uint(base + ".max_usage_in_bytes", 0),
                        files.read_uint(base + ".failcnt", 0),
                        files.read_uint(base + ".limit_in_bytes", 0))


def collect_v1(dirs: dict[str, str]) -> dict:
    """Stats from v1 hierarchies ({controller: directory})."""
    doc = empty()
    join = os.path.join

    if "cpuacct" in dirs:
        acct = dirs["cpuacct"]
        ticks = os.sysconf("SC_CLK_TCK")
        stat = files.read_keyed(join(acct, "cpuacct.stat"))
        percpu_user: list[int] = []
        percpu_kernel: list[int] = []
        lines = (files.read_optional(join(acct, "cpuacct.usage_all")) or "").splitlines()
        for line in lines[1:]:  # header: "cpu user system"
            fields = line.split()
            if len(fields) >= 3:
                percpu_user.append(int(fields[1]))
                percpu_kernel.append(int(fields[2]))
        percpu_text = files.read_optional(join(acct, "cpuacct.usage_percpu")) or ""
        doc["cpu"] = cpu(total=files.read_uint(join(acct, "cpuacct.usage"), 0),
                         percpu=[int(v) for v in percpu_text.split()],
                         percpu_kernel=percpu_kernel, percpu_user=percpu_user,
                         kernel=stat.get("system", 0) * NS_PER_SEC // ticks,
                         user=stat.get("user", 0) * NS_PER_SEC // ticks)
    if "cpu" in dirs:
        stat = files.read_keyed(join(dirs["cpu"], "cpu.stat"))
        throttling = _prune({"periods": stat.get("nr_periods", 0),
                             "throttledPeriods": stat.get("nr_throttled", 0),
                             "throttledTime": stat.get("throttled_time", 0)})
        if throttling:
            doc["cpu"]["throttling"] = throttling

    if "cpuset" in dirs:
        values: dict = {}
        for key in ("cpus", "mems"):
            text = files.read_optional(join(dirs["cpuset"], f"cpuset.{key}"))
            values[key] = parse_list(text) if text else []
        for key in _CPUSET_FLAGS:
            text = files.read_optional(join(dirs["cpuset"], f"cpuset.{key}"))
            if text is not None and text.strip():
                values[key] = int(text)
        doc["cpuset"] = cpuset(values)

    if "memory" in dirs:
        mem_dir = dirs["memory"]
        raw = files.read_keyed(join(mem_dir, "memory.stat"))
        doc["memory"] = _prune({
            "cache": raw.get("cache", 0),
            "usage": _v1_memory_entry(mem_dir, "memory"),
            "swap": _v1_memory_entry(mem_dir, "memory.memsw"),
            "kernel": _v1_memory_entry(mem_dir, "memory.kmem"),
            "kernelTCP": _v1_memory_entry(mem_dir, "memory.kmem.tcp"),
            "raw": raw,
        })

    if "pids" in dirs:
        doc["pids"] = _pids(dirs["pids"])
    if "blkio" in dirs:
        doc["blkio"] = _v1_blkio(dirs["blkio"])
    if "hugetlb" in dirs:
        doc["hugetlb"] = _hugetlb(dirs["hugetlb"], v2=False)
    return doc


def _pids(directory: str) -> dict:
    current = files.read_optional(os.path.join(directory, "pids.current"))
    if current is None:
        # no pids controller (v2): count the processes as runc does
        return _prune({"current": len(files.procs(directory, recursive=False))})
    limit = files.read_uint(os.path.join(directory, "pids.max"), 0)
    return _prune({"current": files.parse_uint(current),
                   "limit": 0 if limit == files.MAX_U64 else limit})


def _hugetlb(directory: str, *, v2: bool) -> dict:
    doc = {}
    for size in hugepage_sizes():
        prefix = os.path.join(directory, f"hugetlb.{size}")
        if v2:
            usage = files.read_optional(f"{prefix}.rsvd.current")
            if usage is None:
                usage = files.read_optional(f"{prefix}.current")
            if usage is None:
                continue
            failcnt = files.read_keyed(f"{prefix}.events").get("max", 0)
            doc[size] = _prune({"usage": files.parse_uint(usage), "failcnt": failcnt},
                               keep=("failcnt",))
            continue
        usage = files.read_optional(f"{prefix}.rsvd.usage_in_bytes")
        rsvd = ".rsvd" if usage is not None else ""
        if usage is None:
            usage = files.read_optional(f"{prefix}.usage_in_bytes")
        if usage is None:
            continue
        doc[size] = _prune({"usage": files.parse_uint(usage),
                            "max": files.read_uint(f"{prefix}{rsvd}.max_usage_in_bytes", 0),
                            "failcnt": files.read_uint(f"{prefix}{rsvd}.failcnt", 0)},
                           keep=("failcnt",))
    return doc


# ---- cgroup v2 -----------------------------------------------------------

_IO_OPS = {"rbytes": ("ioServiceBytesRecursive", "Read"),
           "wbytes": ("ioServiceBytesRecursive", "Write"),
           "rios": ("ioServicedRecursive", "Read"),
           "wios": ("ioServicedRecursive", "Write")}


def collect_v2(directory: str) -> dict:
    """Stats from one cgroup v2 directory."""
    doc = empty()
    join = os.path.join

    stat = files.read_keyed(join(directory, "cpu.stat"))
    doc["cpu"] = cpu(total=stat.get("usage_usec", 0) * 1000,
                     kernel=stat.get("system_usec", 0) * 1000,
                     user=stat.get("user_usec", 0) * 1000,
                     throttling={"periods": stat.get("nr_periods", 0),
                                 "throttledPeriods": stat.get("nr_throttled", 0),
                                 "throttledTime": stat.get("throttled_usec", 0) * 1000},
                     psi=psi(join(directory, "cpu.pressure")))

    raw_text = files.read_optional(join(directory, "memory.stat"))
    memory: dict = {}
    if raw_text is not None:
        raw = files.parse_keyed(raw_text)
        usage = files.read_uint(join(directory, "memory.current"), 0)
        limit = files.read_uint(join(directory, "memory.max"), 0)
        swap_usage = files.read_uint(join(directory, "memory.swap.current"), 0)
        swap_limit = files.read_uint(join(directory, "memory.swap.max"), 0)
        # runc reports memory+swap as "swap", as v1's memsw files did
        if files.MAX_U64 in (limit, swap_limit):
            combined_limit = files.MAX_U64
        else:
            combined_limit = swap_limit + limit
        memory = _prune({
            "cache": raw.get("file", 0),
            "usage": memory_entry(usage, files.read_uint(join(directory, "memory.peak"), 0),
                                  0, limit),
            "swap": memory_entry(swap_usage + usage, 0, 0, combined_limit),
            "raw": raw,
        })
    pressure = psi(join(directory, "memory.pressure"))
    if pressure is not None:
        memory["psi"] = pressure
    doc["memory"] = memory

    doc["pids"] = _pids(directory)

    blkio: dict = {}
    for line in (files.read_optional(join(directory, "io.stat")) or "").splitlines():
        device, *pairs = line.split()
        major, _, minor = device.partition(":")
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key in _IO_OPS:
                table, op = _IO_OPS[key]
                blkio.setdefault(table, []).append(
                    _prune({"major": int(major), "minor": int(minor), "op": op,
                            "value": int(value)}))
    pressure = psi(join(directory, "io.pressure"))
    if pressure is not None:
        blkio["psi"] = pressure
    doc["blkio"] = blkio
    doc["hugetlb"] = _hugetlb(directory, v2=True)
    return doc
