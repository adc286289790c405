"""State on disk and the status derived from the init process."""
from __future__ import annotations

import os
import stat
import subprocess

import pytest

from ocipy import state as st
from ocipy.errors import ContainerNotFound, OcipyError


def record(pid: int, start: int, status: str = "created", creator=None) -> dict:
    return {"ociVersion": "1.2.0", "id": "c", "status": status, "pid": pid, "bundle": "/b",
            "ocipy": {"init_start": start, "created": "t", "creator": creator}}


def start_of(pid: int) -> int:
    return st.proc_start_time(pid)[0]


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a\0b", "x y", "a" * 1025])
def test_ids_that_could_leave_the_state_dir_are_rejected(bad):
    with pytest.raises(OcipyError):
        st.check_id(bad)


def test_a_good_id_is_accepted():
    st.check_id("web-1_a+b.c")


def test_state_dir_is_private_and_state_file_is_written_atomically(tmp_path):
    path = st.make_dir(str(tmp_path / "root"), "c1", {"a": 0})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    st.save(path, {"a": 1})
    st.save(path, {"a": 2})
    assert stat.S_IMODE(os.stat(os.path.join(path, "state.json")).st_mode) == 0o600
    assert os.listdir(path) == ["state.json"]  # no temp file left behind
    assert st.load(str(tmp_path / "root"), "c1")[1] == {"a": 2}


def test_the_front_ends_files_appear_before_their_gate_and_are_replaced_atomically(
        tmp_path, monkeypatch):
    # the front-end reads state.<status> only once `fast` exists: the first
    # save writes them in place, then state.json, then renames `fast` into
    # place; a later save replaces every file by rename, state.json last
    path = st.make_dir(str(tmp_path / "root"), "c1", record(0, 0, status="creating"))
    writes = []
    real_new, real_atomic = st._write_new, st._write_atomic
    monkeypatch.setattr(st, "_write_new",
                        lambda p, name, data: (writes.append(("new", name)),
                                               real_new(p, name, data)))
    monkeypatch.setattr(st, "_write_atomic",
                        lambda p, name, data, **kw: (writes.append(("rename", name)),
                                                     real_atomic(p, name, data, **kw)))
    created = record(os.getpid(), start_of(os.getpid()))
    st.save(path, created)
    # state.json before the gate: until it says created, the front-end
    # hands every call to Python, which knows the container is being created
    assert writes == [("new", f"state.{s}") for s in st.FAST_STATUSES] + [
        ("rename", st.STATE_FILE), ("rename", st.FAST_FILE)]
    writes.clear()
    st.save(path, created)
    assert writes == [("rename", f"state.{s}") for s in st.FAST_STATUSES] + [
        ("rename", st.FAST_FILE), ("rename", st.STATE_FILE)]
    assert not [n for n in os.listdir(path) if n.startswith(".")]  # no temp file left


def test_a_replaced_state_file_is_a_new_file_swapped_in(tmp_path, monkeypatch):
    # a reader that opened the old state.json reads it whole; the path gives
    # the new one; nothing temporary is left (the old file went by exchange)
    from ocipy._native import spawn

    calls = []
    real = spawn.exchange
    monkeypatch.setattr(spawn, "exchange", lambda a, b: (calls.append((a, b)), real(a, b)))
    path = st.make_dir(str(tmp_path / "root"), "c1", {"a": 0})
    target = os.path.join(path, st.STATE_FILE)
    with open(target, "rb") as old:
        inode = os.fstat(old.fileno()).st_ino
        st.save(path, {"a": 1})
        assert calls == [(os.path.join(path, ".state.json.tmp"), target)]
        assert old.read() == b'{"a":0}'
        assert os.fstat(old.fileno()).st_nlink == 0
    assert os.stat(target).st_ino != inode
    assert st.load(str(tmp_path / "root"), "c1")[1] == {"a": 1}
    assert os.listdir(path) == [st.STATE_FILE]


@pytest.mark.parametrize("errno_name", ["EINVAL", "ENOSYS", "ENOENT", "EPERM", "EOPNOTSUPP"])
def test_a_state_file_is_renamed_into_place_where_it_cannot_be_exchanged(
        tmp_path, monkeypatch, errno_name):
    import errno

    from ocipy._native import spawn

    def refuse(a, b):
        raise OSError(getattr(errno, errno_name), "refused")

    monkeypatch.setattr(spawn, "exchange", refuse)
    path = st.make_dir(str(tmp_path / "root"), "c1", {"a": 0})
    st.save(path, {"a": 1})
    assert st.load(str(tmp_path / "root"), "c1")[1] == {"a": 1}
    assert os.listdir(path) == [st.STATE_FILE]


def test_a_failed_exchange_fails_the_save_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno

    from ocipy._native import spawn

    def refuse(a, b):
        raise OSError(errno.EIO, "refused")

    monkeypatch.setattr(spawn, "exchange", refuse)
    path = st.make_dir(str(tmp_path / "root"), "c1", {"a": 0})
    with pytest.raises(OSError):
        st.save(path, {"a": 1})
    assert st.load(str(tmp_path / "root"), "c1")[1] == {"a": 0}
    assert os.listdir(path) == [st.STATE_FILE]


def test_exchange_takes_paths_that_are_no_utf8(tmp_path):
    from ocipy._native import spawn

    name = os.fsdecode(b"caf\xe9")  # a surrogate escape in str
    (tmp_path / name).write_text("A")
    (tmp_path / "b").write_text("B")
    spawn.exchange(str(tmp_path / name), os.fsencode(str(tmp_path / "b")))
    assert (tmp_path / name).read_text() == "B" and (tmp_path / "b").read_text() == "A"


def test_exchange_swaps_two_files_and_needs_both(tmp_path):
    import errno

    from ocipy._native import spawn

    (tmp_path / "a").write_text("A")
    (tmp_path / "b").write_text("B")
    spawn.exchange(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "a").read_text() == "B" and (tmp_path / "b").read_text() == "A"
    with pytest.raises(OSError) as info:
        spawn.exchange(str(tmp_path / "a"), str(tmp_path / "missing"))
    assert info.value.errno == errno.ENOENT
    assert (tmp_path / "a").read_text() == "B"


def test_stale_temporary_dirs_of_a_killed_create_are_cleared(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    root = tmp_path / "root"
    stale = root / f"{st.TMP_PREFIX}c1-{dead.pid}"
    live = root / f"{st.TMP_PREFIX}c1-{os.getpid()}"
    other = root / f"{st.TMP_PREFIX}c1-x-{dead.pid}"  # the id c1-x, not c1
    for d in (stale, live, other):
        d.mkdir(parents=True)
        (d / "state.json").write_text("{}")
    st.clear_stale_tmp(str(root), "c1")
    assert not stale.exists()
    assert live.exists() and other.exists()
    st.clear_stale_tmp(str(tmp_path / "missing"), "c1")  # no root: nothing to do


def test_an_id_in_use_is_refused(tmp_path):
    st.make_dir(str(tmp_path), "c1", {"a": 1})
    with pytest.raises(OcipyError, match="container with id exists: c1"):
        st.make_dir(str(tmp_path), "c1", {"a": 2})
    assert st.load(str(tmp_path), "c1")[1] == {"a": 1}
    assert os.listdir(tmp_path) == ["c1"]  # the loser's temporary dir is gone


def test_a_missing_container_is_reported_by_id(tmp_path):
    with pytest.raises(ContainerNotFound, match='container "nope" does not exist'):
        st.load(str(tmp_path), "nope")


def test_a_live_init_is_created_while_the_fifo_exists_then_running(tmp_path):
    me = os.getpid()
    rec = record(me, start_of(me))
    os.mkfifo(tmp_path / st.FIFO_FILE)
    assert st.status(str(tmp_path), rec) == "created"
    os.unlink(tmp_path / st.FIFO_FILE)
    assert st.status(str(tmp_path), rec) == "running"


def test_a_recycled_pid_is_not_the_container(tmp_path):
    me = os.getpid()
    assert st.status(str(tmp_path), record(me, start_of(me) + 1)) == "stopped"


def test_a_gone_or_zombie_init_is_stopped(tmp_path):
    proc = subprocess.Popen(["true"])
    start = start_of(proc.pid)
    rec = record(proc.pid, start)
    # not reaped yet: a zombie counts as stopped
    while st.proc_start_time(proc.pid)[1] != "Z":
        os.sched_yield()
    assert st.status(str(tmp_path), rec) == "stopped"
    proc.wait()
    assert st.status(str(tmp_path), rec) == "stopped"


def test_creating_is_reported_only_while_the_creator_lives(tmp_path):
    me = os.getpid()
    assert st.status(str(tmp_path), record(0, 0, "creating", [me, start_of(me)])) == "creating"
    proc = subprocess.Popen(["true"])
    gone = [proc.pid, start_of(proc.pid)]
    proc.wait()
    assert st.status(str(tmp_path), record(0, 0, "creating", gone)) == "stopped"


def test_the_public_state_reports_no_pid_once_stopped():
    doc = st.public(record(1234, 1), "stopped")
    assert doc["pid"] == 0 and doc["status"] == "stopped"
    assert set(doc) >= {"ociVersion", "id", "status", "pid", "bundle"}
