"""runc `update`'s individual flags -> a LinuxResources dict (pure).

`runc update --memory 512m --cpu-quota 50000 ID` builds the same
LinuxResources document that `--resources FILE` would carry; the fix-ups at
the end are runc's (update.go), so the manager sees the same request.
"""
from __future__ import annotations

import math

from ocipy.errors import OcipyError

# docker/go-units: RAMInBytes uses binary multiples for every suffix
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_NUMBER_CHARS = "0123456789. "


def ram_in_bytes(text: str) -> int:
    """Parse a size like docker/go-units RAMInBytes: "512m", "1g", "1.5GiB", "100" (bytes).

    Suffixes are case-insensitive: b, k, kb, kib, m, mb, mib, ... p (all
    binary). Raises ValueError on anything else.
    """
    sep = max(text.rfind(c) for c in _NUMBER_CHARS)
    if sep == -1:
        raise ValueError(f"invalid size: '{text}'")
    if text[sep] == " ":
        number, suffix = text[:sep], text[sep + 1:]
    else:
        number, suffix = text[:sep + 1], text[sep + 1:]
    try:
        size = float(number)
    except ValueError:
        raise ValueError(f"invalid size: '{text}'") from None
    if math.isnan(size) or size < 0:
        raise ValueError(f"invalid size: '{text}'")
    if not suffix:
        return int(size)
    lower = suffix.lower()
    if len(lower) > 3:
        raise ValueError(f"invalid suffix: '{suffix}'")
    if lower[0] == "b":
        if len(lower) > 1:
            raise ValueError(f"invalid suffix: '{suffix}'")
        return int(size)
    multiple = _BINARY.get(lower[0])
    if multiple is None or (len(lower) == 2 and lower[1] != "b") or (
            len(lower) == 3 and lower[1:] != "ib"):
        raise ValueError(f"invalid suffix: '{suffix}'")
    return int(size * multiple)


def _memory_value(flag: str, value: str | int) -> int:
    if isinstance(value, int):
        return value
    if value.strip() == "-1":
        return -1
    try:
        return ram_in_bytes(value)
    except ValueError as exc:
        raise OcipyError(f"invalid value for --{flag}", str(exc)) from None


def _int_value(flag: str, value: str | int, *, unsigned: bool) -> int:
    if isinstance(value, int):
        number = value
    else:
        try:
            number = int(value.strip(), 10)
        except ValueError:
            raise OcipyError(f"invalid value for --{flag}",
                             f'parsing "{value}": invalid syntax') from None
    if unsigned and number < 0:
        raise OcipyError(f"invalid value for --{flag}", f'parsing "{value}": invalid syntax')
    if not -(1 << 63) <= number < (1 << 64 if unsigned else 1 << 63):
        raise OcipyError(f"invalid value for --{flag}", f'parsing "{value}": value out of range')
    return number


def resources_from_update_flags(
    *,
    memory: str | int | None = None,
    memory_swap: str | int | None = None,
    memory_reservation: str | int | None = None,
    kernel_memory: str | int | None = None,
    kernel_memory_tcp: str | int | None = None,
    cpu_shares: str | int | None = None,
    cpu_quota: str | int | None = None,
    cpu_period: str | int | None = None,
    cpu_burst: str | int | None = None,
    cpu_rt_runtime: str | int | None = None,
    cpu_rt_period: str | int | None = None,
    cpu_idle: str | int | None = None,
    cpuset_cpus: str | None = None,
    cpuset_mems: str | None = None,
    pids_limit: str | int | None = None,
    blkio_weight: str | int | None = None,
    l3_cache_schema: str | None = None,
    mem_bw_schema: str | None = None,
) -> dict:
    """The LinuxResources that runc's `update` flags ask for (None: flag not given).

    Memory values take runc's suffixed sizes ("512m", "1g") or -1 for
    unlimited. Only the sections a flag touched appear in the result, so
    the manager leaves everything else alone. Intel RDT (--l3-cache-schema,
    --mem-bw-schema) is not supported and raises OcipyError.
    """
    if l3_cache_schema:
        raise OcipyError("--l3-cache-schema", "Intel RDT/CAT is not supported by ocipy")
    if mem_bw_schema:
        raise OcipyError("--mem-bw-schema", "Intel RDT/MBA is not supported by ocipy")

    mem: dict = {}
    for key, flag, value in (
        ("limit", "memory", memory),
        ("swap", "memory-swap", memory_swap),
        ("reservation", "memory-reservation", memory_reservation),
        ("kernel", "kernel-memory", kernel_memory),
        ("kernelTCP", "kernel-memory-tcp", kernel_memory_tcp),
    ):
        if value is not None and value != "":
            mem[key] = _memory_value(flag, value)

    cpu: dict = {}
    for key, flag, value, unsigned in (
        ("shares", "cpu-shares", cpu_shares, True),
        ("quota", "cpu-quota", cpu_quota, False),
        ("period", "cpu-period", cpu_period, True),
        ("burst", "cpu-burst", cpu_burst, True),
        ("realtimeRuntime", "cpu-rt-runtime", cpu_rt_runtime, False),
        ("realtimePeriod", "cpu-rt-period", cpu_rt_period, True),
        ("idle", "cpu-idle", cpu_idle, False),
    ):
        if value is not None and value != "":
            cpu[key] = _int_value(flag, value, unsigned=unsigned)
    if cpuset_cpus:
        cpu["cpus"] = cpuset_cpus
    if cpuset_mems:
        cpu["mems"] = cpuset_mems

    resources: dict = {}
    if pids_limit is not None and pids_limit != "":
        resources["pids"] = {"limit": _int_value("pids-limit", pids_limit, unsigned=False)}
    if blkio_weight is not None and blkio_weight != "":
        weight = _int_value("blkio-weight", blkio_weight, unsigned=True)
        if weight:  # runc: 0 means "not given"
            if weight > 0xFFFF:
                raise OcipyError("invalid value for --blkio-weight", "value out of range")
            resources["blockIO"] = {"weight": weight}

    # runc's fix-ups (update.go)
    if mem.get("limit") == -1 and "swap" not in mem:
        # unlimited memory with swap unset: no "swap limit without memory limit" error
        mem["swap"] = 0
    if "idle" in cpu and "shares" not in cpu:
        cpu["shares"] = 0
    if mem:
        resources["memory"] = mem
    if cpu:
        resources["cpu"] = cpu
    return resources
