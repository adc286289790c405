"""Bad input, faults and load: the runtime either does the job or refuses in
one line, and whatever happens to it, `delete` leaves nothing behind.

- property tests (hypothesis): generated and mutated config.json files go
  through `create`; each is accepted (and force-deleted) or refused with
  exit 1 and one `ocipy: ` line, and a refusal leaves no state dir, mount,
  cgroup or process;
- faults: `create` SIGKILLed during its hooks, at random points, and
  `start` SIGKILLed during a startContainer hook; `delete` then removes
  everything;
- load: 50 parallel creates on one --root with colliding ids, then 50
  parallel deletes, while readers check the state files are never torn.
"""
from __future__ import annotations

import copy
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

TIMEOUT = 20.0
PROPERTY = settings(max_examples=200, deadline=None, database=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _call(runtime, *args: Any, timeout: float = TIMEOUT,
          **popen_kwargs: Any) -> subprocess.CompletedProcess:
    """``runtime --root R *args`` with its own output files: safe from threads
    (Runtime.cmd numbers its files with a shared counter)."""
    base = runtime.workdir / f"{args[0]}-{uuid.uuid4().hex[:8]}"
    out, err = Path(f"{base}.out"), Path(f"{base}.err")
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.run(runtime.argv(*args), stdin=subprocess.DEVNULL, stdout=o,
                              stderr=e, timeout=timeout, cwd=runtime.workdir, **popen_kwargs)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.read_text(errors="replace"),
                                       err.read_text(errors="replace"))


def _cgroup_roots() -> list[str]:
    roots = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                roots.append(fields[4])
    return roots


def _leftover_cgroups(cid: str, config: Any) -> list[str]:
    """Cgroup directories of the container still there: ocipy's default
    /ocipy/<id>, and a cgroupsPath the config named."""
    candidates = [f"ocipy/{cid}", cid]
    linux = config.get("linux") if isinstance(config, dict) else None
    if isinstance(linux, dict) and isinstance(linux.get("cgroupsPath"), str):
        path = linux["cgroupsPath"].strip("/")
        if path and "\0" not in path and ".." not in path.split("/"):
            candidates.append(path)
    return [os.path.join(root, c) for root in _cgroup_roots() for c in candidates
            if os.path.isdir(os.path.join(root, c))]


def _assert_nothing_left(runtime, util, cid: str, config: Any, before: set[int],
                         tmp_path: Path) -> None:
    assert runtime.ids() == [], f"state dir left: {runtime.ids()}"
    assert util.live_descendants(exclude=before, settle=3.0) == set(), "a process was left"
    assert util.mounts_under(tmp_path) == [], util.mounts_under(tmp_path)
    cgroups = _leftover_cgroups(cid, config)
    _remove_cgroups(cgroups)
    assert cgroups == [], "cgroups left"


def _one_line_refusal(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), proc.stderr
    assert proc.stderr.startswith("ocipy: "), proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr


def _create_or_refuse(runtime, util, tmp_path: Path, bundle_dir: Path, config: Any,
                      raw: bytes | None = None) -> str:
    """Write the config, create; accepted -> delete --force; refused -> one
    line.  Either way nothing may remain.  Returns "accepted"/"refused"."""
    (bundle_dir / "config.json").write_bytes(
        raw if raw is not None else json.dumps(config).encode())
    cid = runtime.new_id("prop")
    before = set(util.descendants())
    proc = _call(runtime, "create", "--bundle", bundle_dir, cid)
    if proc.returncode == 0:
        deleted = _call(runtime, "delete", "--force", cid)
        assert deleted.returncode == 0, deleted.stderr
        outcome = "accepted"
    else:
        _one_line_refusal(proc)
        outcome = "refused"
    _assert_nothing_left(runtime, util, cid, config, before, tmp_path)
    return outcome


# ---- generated and mutated configs ----------------------------------------------------

# Values a careless or hostile config might hold; kept away from anything that
# could act on the host if accepted (no hook paths, no sysctls, no devices).
INTERESTING = ["", "/", ".", "..", "../..", "/proc", "/sys", "/dev", "/tmp", "rootfs", "true",
               "tmpfs", "bind", "proc", "rbind", "ro", "nosuid", "private", "shared", "pid",
               "network", "mount", "user", "ipc", "uts", "cgroup", "time", "CAP_KILL",
               "CAP_SYS_ADMIN", "CAP_NOPE", "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SIGKILL",
               "RLIMIT_NOFILE", "1.0.2", "\x00", "a\x00b", "é", "\ud7ff", " ", "\n"]

SCALARS = (st.none() | st.booleans()
           | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.sampled_from([0, 1, -1, 2 ** 31, 2 ** 32, 2 ** 63 - 1, 2 ** 64, 1e308, -0.0])
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from(INTERESTING))
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8) | st.sampled_from(INTERESTING), inner,
                                      max_size=3), max_leaves=8)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in the document (the root included)."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, prefix + (i,))
    return found


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _same_type(value: Any) -> st.SearchStrategy:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.sampled_from([0, 1, 5, 1000, 65534, 65535, 2 ** 31 - 1, 2 ** 32, -1])
    if isinstance(value, str):
        return st.sampled_from(INTERESTING) | st.text(max_size=12)
    if isinstance(value, list):
        return st.permutations(value).flatmap(
            lambda items: st.integers(0, len(items)).map(lambda n: items[:n]))
    if isinstance(value, dict):
        return st.just({}) | st.just(value)
    return JUNK


def _mutate(data, doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="mutations")):
        paths = [p for p in _paths(doc) if p]  # never the root itself
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent, key = _get(doc, path[:-1]), path[-1]
        op = data.draw(st.sampled_from(["delete", "replace", "insert", "retype", "nudge",
                                        "nudge"]), label="op")
        if op == "nudge":  # another value of the same type: plausible, often valid
            parent[key] = data.draw(_same_type(parent[key]), label="value")
        elif op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = data.draw(JUNK, label="value")
        elif op == "insert":
            target = parent[key]
            if isinstance(target, dict):
                target[data.draw(st.text(max_size=10) | st.sampled_from(INTERESTING),
                                 label="key")] = data.draw(JUNK, label="value")
            elif isinstance(target, list):
                target.insert(data.draw(st.integers(0, len(target)), label="at"),
                              data.draw(JUNK, label="value"))
            else:
                parent[key] = [target, data.draw(JUNK, label="value")]
        else:  # the same content under another JSON type
            value = parent[key]
            parent[key] = (json.dumps(value) if not isinstance(value, str)
                           else {"value": value} if data.draw(st.booleans()) else [value])
    return _keep_host_safe(doc)


def _keep_host_safe(doc: Any) -> Any:
    """Whatever the mutations did, an accepted config keeps its own mount
    namespace (with none the rootfs is built in the host's) and never runs a
    hook.  Invalid shapes are left alone: they must be refused."""
    if not isinstance(doc, dict):
        return doc
    doc.pop("hooks", None)
    linux = doc.setdefault("linux", {"namespaces": []})
    if isinstance(linux, dict):
        namespaces = linux.setdefault("namespaces", [])
        if isinstance(namespaces, list):
            linux["namespaces"] = [ns for ns in namespaces
                                   if not (isinstance(ns, dict) and ns.get("type") == "mount")]
            linux["namespaces"].append({"type": "mount"})
    return doc


@pytest.fixture
def base_config(bundle, private_rootfs) -> dict:
    config = copy.deepcopy(bundle.config)
    config["root"] = {"path": str(private_rootfs), "readonly": True}
    config["process"]["args"] = ["true"]
    return config


@pytest.mark.ocipy_only
@PROPERTY
@given(data=st.data())
def test_mutated_configs_are_accepted_or_refused_in_one_line(runtime, util, tmp_path,
                                                             base_config, data):
    bundle_dir = tmp_path / "prop-bundle"
    bundle_dir.mkdir(exist_ok=True)
    config = _mutate(data, base_config)
    event(_create_or_refuse(runtime, util, tmp_path, bundle_dir, config))


@pytest.mark.ocipy_only
@settings(PROPERTY, max_examples=100)
@given(data=st.data())
def test_configs_with_parts_removed_are_accepted_or_refused_in_one_line(runtime, util, tmp_path,
                                                                        base_config, data):
    # deletions only: most results stay valid, so accepted configs (and
    # their clean-up) get exercised as much as refusals
    config = copy.deepcopy(base_config)
    for _ in range(data.draw(st.integers(1, 6), label="deletions")):
        paths = [p for p in _paths(config) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        del _get(config, path[:-1])[path[-1]]
    bundle_dir = tmp_path / "removed-bundle"
    bundle_dir.mkdir(exist_ok=True)
    event(_create_or_refuse(runtime, util, tmp_path, bundle_dir, _keep_host_safe(config)))


@pytest.mark.ocipy_only
@settings(PROPERTY, max_examples=100)
@given(data=st.data())
def test_mangled_config_bytes_are_refused_in_one_line(runtime, util, tmp_path, base_config,
                                                      data):
    bundle_dir = tmp_path / "bytes-bundle"
    bundle_dir.mkdir(exist_ok=True)
    raw = bytearray(json.dumps(base_config, indent=data.draw(st.sampled_from([None, 2]))).encode())
    how = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete"]), label="how")
    at = data.draw(st.integers(0, len(raw) - 1), label="at")
    if how == "truncate":
        raw = raw[:at]
    elif how == "flip":
        raw[at] = data.draw(st.integers(0, 255), label="byte")
    elif how == "insert":
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
    else:
        del raw[at:at + data.draw(st.integers(1, 16), label="len")]
    event(_create_or_refuse(runtime, util, tmp_path, bundle_dir, None, raw=bytes(raw)))


@pytest.mark.ocipy_only
@pytest.mark.parametrize("raw", [b"{", b"[", b'{"ociVersion', b'{"ociVersion": "1.0.2", "pro',
                                 b'{"process": {"args": ["tr', b"", b"\xff\xfe{}", b"{}}",
                                 b'{"a": 1,}', b"nul", b"NaN"], ids=repr)
def test_truncated_or_broken_json_is_refused_in_one_line(runtime, util, tmp_path, raw):
    bundle_dir = tmp_path / "broken"
    bundle_dir.mkdir()
    assert _create_or_refuse(runtime, util, tmp_path, bundle_dir, None, raw=raw) == "refused"


@pytest.mark.ocipy_only
@pytest.mark.parametrize("top", [None, [], "config", 0, {"ociVersion": "1.0.2"}, {}],
                         ids=repr)
def test_degenerate_documents_are_refused_in_one_line(runtime, util, tmp_path, top):
    bundle_dir = tmp_path / "degenerate"
    bundle_dir.mkdir()
    assert _create_or_refuse(runtime, util, tmp_path, bundle_dir, top) == "refused"


def test_the_unmutated_base_config_is_accepted(runtime, util, tmp_path, base_config):
    # the property tests above are only meaningful if their base runs
    bundle_dir = tmp_path / "base"
    bundle_dir.mkdir()
    (bundle_dir / "config.json").write_text(json.dumps(base_config))
    cid = runtime.new_id("base")
    proc = _call(runtime, "create", "--bundle", bundle_dir, cid)
    assert proc.returncode == 0, proc.stderr
    assert _call(runtime, "delete", "--force", cid).returncode == 0


# ---- SIGKILL at the worst moments ------------------------------------------------------

def _waiting_hook(tmp_path: Path, name: str) -> tuple[str, Path]:
    """A hook that says it started (a marker file) and then waits as long as
    its parent lives: it never outlives the runtime that ran it."""
    marker = tmp_path / f"{name}.started"
    script = tmp_path / f"{name}.sh"
    script.write_text("#!/bin/sh\n"
                      f"echo $$ > {marker}\n"
                      "while kill -0 $PPID 2>/dev/null; do sleep 0.05; done\n")
    script.chmod(0o755)
    return str(script), marker


def _remove_after_fault(runtime, cid: str) -> None:
    """What a caller does after the runtime died under it: plain delete if
    the container is stopped, else delete --force; then nothing of it may
    be left in the root."""
    state = _call(runtime, "state", cid)
    if state.returncode == 0:
        status = json.loads(state.stdout)["status"]
        args = ["delete", cid] if status == "stopped" else ["delete", "--force", cid]
        proc = _call(runtime, *args)
        assert proc.returncode == 0, (status, proc.stderr)
    else:
        # nothing readable was recorded: all a caller can do is force
        _call(runtime, "delete", "--force", cid)
    assert cid not in runtime.ids(), (
        f"{cid} is left in the root, and `state` says {state.stderr.strip()!r}: "
        f"its id can never be used again")


def _kill_create_when(runtime, bundle, util, tmp_path, marker: Path) -> None:
    before = set(util.descendants())
    cid = runtime.new_id("fault")
    creator, _, err = runtime.spawn("create", "--bundle", bundle.write(), cid)
    try:
        util.wait_for(marker.exists, TIMEOUT, f"{marker.name} ({err.read_text()!r})")
        creator.send_signal(signal.SIGKILL)
    finally:
        creator.wait(TIMEOUT)
    assert creator.returncode == -signal.SIGKILL
    _remove_after_fault(runtime, cid)
    assert runtime.ids() == []
    assert util.live_descendants(exclude=before, settle=5.0) == set(), "a process survived"
    assert util.mounts_under(tmp_path) == []
    cgroups = _leftover_cgroups(cid, bundle.config)
    _remove_cgroups(cgroups)
    assert cgroups == [], "cgroups left after delete"


# runc 1.1 leaves a state dir without state.json that neither `state` nor
# `delete` can see: the fault tests on create are ocipy's
@pytest.mark.ocipy_only
@pytest.mark.parametrize("hook", ["prestart", "createRuntime"])
def test_create_killed_during_a_runtime_hook_leaves_nothing(runtime, bundle, util, tmp_path,
                                                            hook):
    # the init is built (mounts done) and waits for the hooks to finish
    path, marker = _waiting_hook(tmp_path, hook)
    bundle.config["hooks"] = {hook: [{"path": path}]}
    _kill_create_when(runtime, bundle, util, tmp_path, marker)


@pytest.mark.ocipy_only  # runc 1.1: see above
def test_create_killed_during_a_create_container_hook_leaves_nothing(runtime, bundle, util,
                                                                     tmp_path):
    # the hook runs inside the container's namespaces, before pivot_root
    marker = tmp_path / "createContainer.started"
    script = tmp_path / "createContainer.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {marker}\nexec sleep 1000\n")
    script.chmod(0o755)
    bundle.config["hooks"] = {"createContainer": [{"path": str(script)}]}
    _kill_create_when(runtime, bundle, util, tmp_path, marker)


def test_start_killed_during_a_start_container_hook_leaves_nothing(runtime, bundle, util,
                                                                   private_rootfs):
    # startContainer hooks run in the container (their path resolves there)
    # after start released the init and before the process is exec'd
    script = private_rootfs / "start-hook.sh"
    script.write_text("#!/bin/sh\necho started > /dev/shm/hook-started\nexec sleep 1000\n")
    script.chmod(0o755)
    bundle.use_rootfs(private_rootfs)
    bundle.config["hooks"] = {"startContainer": [{"path": "/start-hook.sh"}]}
    bundle.args = ["sleep", "1000"]
    before = set(util.descendants())
    cid = runtime.new_id("fault")
    runtime.create(cid, bundle)
    init = runtime.state(cid)["pid"]
    marker = Path(f"/proc/{init}/root/dev/shm/hook-started")
    starter, _, err = runtime.spawn("start", cid)
    try:
        util.wait_for(marker.exists, TIMEOUT, f"the startContainer hook ({err.read_text()!r})")
        starter.send_signal(signal.SIGKILL)
    finally:
        starter.wait(TIMEOUT)
    _remove_after_fault(runtime, cid)
    assert runtime.ids() == []
    assert util.live_descendants(exclude=before, settle=5.0) == set(), "a process survived"
    assert util.mounts_under(private_rootfs.parent) == []


@pytest.mark.ocipy_only  # runc 1.1 has the same hole
def test_state_dir_without_state_file_is_removed_by_delete_force(runtime, bundle):
    # what a create SIGKILLed right after its atomic mkdir leaves: the id's
    # directory and nothing in it; delete --force must clear it, or the id
    # is taken forever ("container with id exists")
    cid = runtime.new_id("fault")
    (runtime.root / cid).mkdir(parents=True, mode=0o700)
    proc = _call(runtime, "delete", "--force", cid)
    left = runtime.ids()
    if left:
        os.rmdir(runtime.root / cid)  # one failure, not a second from the cleanup
    assert left == [], f"delete --force exited {proc.returncode} and left the dir"
    bundle.args = ["true"]
    runtime.create(cid, bundle)  # the id is free again
    runtime.delete(cid, "--force")


def test_create_killed_after_it_returned_leaves_a_deletable_container(runtime, bundle, util,
                                                                      tmp_path):
    # "killed while waiting for start": the runtime is long gone, the init
    # waits on its fifo; delete --force must find and end it
    bundle.args = ["sleep", "1000"]
    before = set(util.descendants())
    cid = runtime.new_id("fault")
    runtime.create(cid, bundle)
    assert runtime.status(cid) == "created"
    assert _call(runtime, "delete", "--force", cid).returncode == 0
    assert runtime.ids() == []
    assert util.live_descendants(exclude=before, settle=5.0) == set()


@pytest.mark.ocipy_only  # runc 1.1: see above
def test_create_killed_at_random_points_leaves_nothing_after_delete(runtime, bundle, util,
                                                                    tmp_path):
    """SIGKILL `create` after delays spread over its whole run: between
    clone and pivot_root, while it saves the state, right after the init
    reported ready.  Whatever is left, `delete` removes."""
    bundle.args = ["sleep", "1000"]
    bundle.write()
    # how long one create takes here
    started = time.monotonic()
    cid = runtime.new_id("timing")
    assert _call(runtime, "create", "--bundle", bundle.path, cid).returncode == 0
    duration = time.monotonic() - started
    assert _call(runtime, "delete", "--force", cid).returncode == 0

    rng = random.Random(20240611)
    delays = sorted(duration * i / 60 + rng.uniform(0, duration / 60) for i in range(60))
    outcomes, problems = [], []
    for delay in delays:
        before = set(util.descendants())
        cid = runtime.new_id("fault")
        creator, _, _ = runtime.spawn("create", "--bundle", bundle.path, cid)
        time.sleep(delay)
        creator.send_signal(signal.SIGKILL)
        creator.wait(TIMEOUT)
        outcomes.append(creator.returncode)
        state = _call(runtime, "state", cid)
        status = json.loads(state.stdout)["status"] if state.returncode == 0 else "no state"
        where = f"killed {delay * 1000:.0f} ms into a {duration * 1000:.0f} ms create ({status})"
        try:
            _remove_after_fault(runtime, cid)
        except AssertionError as exc:
            problems.append(f"{where}: {exc}")
            shutil.rmtree(runtime.root / cid, ignore_errors=True)
        left = util.live_descendants(exclude=before, settle=3.0)
        if left:
            names = {pid: util.proc_status(pid).get("Name") for pid in left}
            problems.append(f"{where}: processes delete did not end: {names}")
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            util.live_descendants(exclude=before, settle=3.0)
        if util.mounts_under(tmp_path):
            problems.append(f"{where}: mounts left {util.mounts_under(tmp_path)}")
        cgroups = _leftover_cgroups(cid, bundle.config)
        if cgroups:
            problems.append(f"{where}: cgroups left {cgroups}")
            _remove_cgroups(cgroups)
    assert not problems, "\n".join(problems)
    # the sweep covered both sides: some creates killed, some finished
    assert -signal.SIGKILL in outcomes and 0 in outcomes or outcomes.count(-9) > 50, outcomes


def _remove_cgroups(dirs: list[str]) -> None:
    """rmdir cgroups a test found leaked (empty: their processes are dead),
    deepest first, so they do not pile up on the host."""
    for path in sorted(dirs, key=len, reverse=True):
        for dirpath, dirnames, _ in sorted(os.walk(path, topdown=False), reverse=True):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


# ---- load: colliding ids in parallel ----------------------------------------------------

class StateReader(threading.Thread):
    """Reads <root>/<id>/state.json of the given ids in a loop: a file that
    does not parse is torn; a winner's file that disappears before the
    deletes started is lost."""

    def __init__(self, root: Path, ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.root, self.ids = root, ids
        self.stop = threading.Event()
        self.deleting = threading.Event()
        self.torn: list[str] = []
        self.lost: list[str] = []
        self.seen: set[str] = set()
        self.reads = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for cid in self.ids:
                try:
                    data = (self.root / cid / "state.json").read_bytes()
                except (FileNotFoundError, NotADirectoryError):
                    if cid in self.seen and not self.deleting.is_set():
                        self.lost.append(cid)
                    continue
                self.reads += 1
                try:
                    doc = json.loads(data)
                except ValueError:
                    self.torn.append(f"{cid}: {data[:120]!r}")
                    continue
                if doc.get("id") != cid:
                    self.torn.append(f"{cid}: id {doc.get('id')!r}")
                self.seen.add(cid)


def _parallel(calls: list[tuple], runtime) -> list[subprocess.CompletedProcess]:
    """Run each call (args tuple) in its own thread, all released at once."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def one(i: int, args: tuple) -> None:
        barrier.wait()
        try:
            results[i] = _call(runtime, *args, timeout=120)
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i, args)) for i, args in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for args, result in zip(calls, results):
        assert isinstance(result, subprocess.CompletedProcess), (args, result)
    return results


# runc 1.1 loses: a create that lost the race removes the winner's state
# dir on its way out, and the winner's container "does not exist"
@pytest.mark.ocipy_only
def test_parallel_creates_with_colliding_ids_and_parallel_deletes(runtime, bundle, util,
                                                                  tmp_path):
    bundle.args = ["sleep", "1000"]
    bundle.write()
    ids = [runtime.new_id(f"load{i}") for i in range(10)]
    before = set(util.descendants())
    reader = StateReader(runtime.root, ids)
    reader.start()
    try:
        calls = [("create", "--bundle", bundle.path, cid) for cid in ids for _ in range(5)]
        random.Random(7).shuffle(calls)
        results = _parallel(calls, runtime)

        for cid in ids:
            mine = [r for args, r in zip(calls, results) if args[-1] == cid]
            winners = [r for r in mine if r.returncode == 0]
            assert len(winners) == 1, (cid, [(r.returncode, r.stderr) for r in mine])
            for loser in (r for r in mine if r.returncode != 0):
                assert loser.returncode == 1, loser
                assert "container with id exists" in loser.stderr, loser.stderr
                assert "Traceback" not in loser.stderr
            state = runtime.state(cid)
            assert state["id"] == cid and state["status"] == "created" and state["pid"] > 0
        assert sorted(runtime.ids()) == sorted(ids)

        reader.deleting.set()
        deletes = [("delete", "--force", cid) for cid in ids for _ in range(5)]
        random.Random(8).shuffle(deletes)
        results = _parallel(deletes, runtime)
        for args, r in zip(deletes, results):
            assert r.returncode in (0, 1), (args, r.returncode, r.stderr)
            assert "Traceback" not in r.stderr, r.stderr
            if r.returncode == 1 and util.IS_OCIPY:
                assert r.stderr.count("\n") == 1 and r.stderr.startswith("ocipy: "), r.stderr
        for cid in ids:
            assert any(r.returncode == 0 for args, r in zip(deletes, results)
                       if args[-1] == cid), f"no delete of {cid} succeeded"
    finally:
        reader.stop.set()
        reader.join(TIMEOUT)
    assert runtime.ids() == []
    assert reader.torn == [], reader.torn[:5]
    assert reader.lost == [], reader.lost[:5]
    assert reader.reads > 0
    assert util.live_descendants(exclude=before, settle=5.0) == set()
    assert util.mounts_under(tmp_path) == []
