"""ocipy.capabilities: names, numbers and masks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocipy import capabilities
from ocipy.capabilities import CAPABILITIES, caps_to_mask, last_cap, mask_to_caps
from ocipy.errors import ConfigError

NAMES = list(CAPABILITIES)


def _kernel_header_caps() -> dict[str, int] | None:
    try:
        with open("/usr/include/linux/capability.h") as f:
            text = f.read()
    except OSError:
        return None
    return {m[1]: int(m[2]) for m in re.finditer(r"#define\s+(CAP_[A-Z_]+)\s+(\d+)\b", text)}


def test_capability_numbers_run_from_chown_to_checkpoint_restore():
    assert CAPABILITIES["CAP_CHOWN"] == 0
    assert CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert CAPABILITIES["CAP_AUDIT_READ"] == 37
    assert CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert sorted(CAPABILITIES.values()) == list(range(41))


def test_capability_numbers_match_the_kernel_header():
    header = _kernel_header_caps()
    if not header:
        pytest.skip("linux/capability.h not installed")
    for name, number in CAPABILITIES.items():
        if name in header:
            assert header[name] == number, name


def test_last_cap_reads_the_running_kernel():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert last_cap() == int(f.read())


def test_last_cap_falls_back_to_forty_without_proc(monkeypatch):
    monkeypatch.setattr(capabilities, "_CAP_LAST_CAP", "/nonexistent/cap_last_cap")
    monkeypatch.setattr(capabilities, "_last_cap", None)  # not the cached value
    assert last_cap() == 40


def test_mask_sets_one_bit_per_capability():
    mask = caps_to_mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"], "p")
    assert mask == (1 << 29) | (1 << 5) | (1 << 10)


def test_empty_list_is_an_empty_mask():
    assert caps_to_mask([], "process.capabilities.ambient") == 0


def test_unknown_capability_names_its_json_path():
    with pytest.raises(ConfigError) as info:
        caps_to_mask(["CAP_KILL", "CAP_FLY"], "process.capabilities.bounding")
    assert info.value.path == "process.capabilities.bounding[1]"
    assert info.value.reason == 'unknown capability "CAP_FLY"'
    assert str(info.value) == (
        'invalid config.json: process.capabilities.bounding[1]: unknown capability "CAP_FLY"'
    )


@pytest.mark.parametrize("name", ["cap_kill", "KILL", "CAP_KILL ", ""])
def test_names_are_exact_and_case_sensitive(name):
    with pytest.raises(ConfigError):
        caps_to_mask([name], "p")


def _capture_warnings(monkeypatch) -> list[str]:
    from ocipy import log

    seen: list[str] = []
    monkeypatch.setattr(log, "current", lambda: type("L", (), {"warning": seen.append})())
    return seen


def test_capability_the_kernel_lacks_is_skipped_with_a_warning(monkeypatch):
    # runc 1.1 ignores capabilities above cap_last_cap with a warning.
    monkeypatch.setattr(capabilities, "last_cap", lambda: 37)
    warnings = _capture_warnings(monkeypatch)
    mask = caps_to_mask(["CAP_KILL", "CAP_BPF", "CAP_PERFMON", "CAP_BPF"], "p")
    assert mask == 1 << 5
    assert len(warnings) == 1
    assert "CAP_BPF" in warnings[0] and "CAP_PERFMON" in warnings[0]


def test_no_warning_when_every_capability_is_available(monkeypatch):
    warnings = _capture_warnings(monkeypatch)
    caps_to_mask(NAMES[: last_cap() + 1], "p")
    assert warnings == []


@given(st.lists(st.sampled_from(NAMES)))
def test_any_subset_round_trips_through_the_mask(names):
    # Force all 41 known; the running kernel's limit has its own test.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(capabilities, "last_cap", lambda: 40)
        mask = caps_to_mask(names, "p")
    assert mask_to_caps(mask) == sorted(set(names), key=CAPABILITIES.__getitem__)
    assert mask.bit_count() == len(set(names))


@given(st.integers(min_value=0, max_value=(1 << 41) - 1))
def test_any_mask_round_trips_through_the_names(mask):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(capabilities, "last_cap", lambda: 40)
        assert caps_to_mask(mask_to_caps(mask), "p") == mask
