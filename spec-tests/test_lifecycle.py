"""The container lifecycle (runtime-spec runtime.md): create, start, state,
kill, delete and the `run` shortcut, checked from the outside."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

SLEEPER = "echo started; exec sleep 1000"
TRAP_TERM = "trap 'exit 5' TERM; echo ready; while :; do sleep 0.05; done"


# ---- create / start / state / delete ---------------------------------------

def test_create_leaves_container_created_with_init_waiting(runtime, bundle, util):
    bundle.sh(SLEEPER)
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    state = runtime.state(cid)
    assert state["status"] == "created"
    pid = state["pid"]
    assert isinstance(pid, int) and pid > 0
    assert util.pid_alive(pid)
    # The user process has not run: nothing printed, still not exec'd after a while.
    time.sleep(0.2)
    assert runtime.stdout(cid) == ""
    assert runtime.status(cid) == "created"
    assert util.pid_alive(pid)


def test_pid_file_holds_only_digits(runtime, bundle, tmp_path):
    bundle.sh(SLEEPER)
    cid = runtime.new_id()
    pid_file = tmp_path / "init.pid"
    runtime.create(cid, bundle, "--pid-file", pid_file)
    content = pid_file.read_bytes()
    assert re.fullmatch(rb"[0-9]+", content), content
    assert int(content) == runtime.state(cid)["pid"]


def test_init_is_reparented_to_the_callers_subreaper(runtime, bundle, util):
    bundle.sh(SLEEPER)
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    pid = runtime.state(cid)["pid"]
    assert util.proc_status(pid)["PPid"] == str(os.getpid())


def test_start_runs_the_process(runtime, bundle):
    bundle.sh(SLEEPER)
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    runtime.start(cid)
    runtime.wait_output(cid, "started")
    assert runtime.status(cid) == "running"


def test_exited_container_is_stopped(runtime, bundle):
    bundle.sh("exit 7")
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    runtime.start(cid)
    assert runtime.wait(cid) == 7
    assert runtime.status(cid) == "stopped"


def test_delete_removes_the_container(runtime, bundle):
    bundle.sh("true")
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    runtime.start(cid)
    runtime.wait(cid)
    runtime.delete(cid)
    assert runtime.cmd("state", cid).returncode == 1
    assert runtime.ids() == []


def test_state_reports_spec_fields(runtime, bundle):
    bundle.sh(SLEEPER)
    bundle.config["annotations"] = {"org.example.key": "value", "other": "2"}
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    state = runtime.state(cid)
    assert isinstance(state["ociVersion"], str) and state["ociVersion"]
    assert state["id"] == cid
    assert state["status"] == "created"
    assert state["pid"] == runtime.pids[cid]
    assert os.path.isabs(state["bundle"])
    assert state["bundle"] == str(bundle.path)
    assert state["annotations"] == {"org.example.key": "value", "other": "2"}


# ---- run ---------------------------------------------------------------------

def test_run_returns_the_container_exit_status(runtime, bundle):
    bundle.sh("echo out; exit 3")
    cid = runtime.new_id()
    proc = runtime.run(cid, bundle)
    assert proc.returncode == 3, proc
    assert proc.stdout == "out\n"


@pytest.mark.parametrize("signame, code", [("SIGTERM", 42), ("SIGINT", 43)])
def test_run_forwards_signals_to_the_container(runtime, bundle, util, signame, code):
    sig = signal.Signals[signame]
    bundle.sh(f"trap 'exit {code}' {signame[3:]}; echo ready; "
              "while :; do sleep 0.05; done")
    cid = runtime.new_id()
    proc, out, err = runtime.spawn("run", "--bundle", bundle.write(), cid)
    try:
        util.wait_for(lambda: "ready" in out.read_text(), what="the container to trap")
        proc.send_signal(sig)
        assert proc.wait(timeout=util.TIMEOUT) == code, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=util.TIMEOUT)
    # run removes the container once it has exited.
    assert runtime.cmd("state", cid).returncode == 1
    assert runtime.ids() == []


def test_run_removes_the_container(runtime, bundle):
    cid = runtime.new_id()
    assert runtime.run(cid, bundle).returncode == 0
    assert runtime.cmd("state", cid).returncode == 1
    assert runtime.ids() == []


def test_run_keep_leaves_the_container_stopped(runtime, bundle):
    bundle.sh("exit 0")
    cid = runtime.new_id()
    proc = runtime.run(cid, bundle, "--keep")
    assert proc.returncode == 0, proc
    assert runtime.status(cid) == "stopped"
    runtime.delete(cid)
    assert runtime.ids() == []


def test_run_detach_leaves_the_container_running(runtime, bundle, util):
    bundle.sh(SLEEPER)
    cid = runtime.new_id()
    proc = runtime.run(cid, bundle, "-d")
    assert proc.returncode == 0, proc
    runtime.wait_output(cid, "started")
    state = runtime.state(cid)
    assert state["status"] == "running"
    assert util.pid_alive(state["pid"])
    assert util.proc_status(state["pid"])["PPid"] == str(os.getpid())


# ---- kill ----------------------------------------------------------------------

@pytest.mark.parametrize("sig", ["9", "KILL", "SIGKILL"])
def test_kill_sends_the_named_signal(runtime, bundle, sig):
    bundle.sh(SLEEPER)
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    runtime.start(cid)
    runtime.wait_output(cid, "started")
    runtime.kill(cid, sig)
    assert runtime.wait(cid) == -signal.SIGKILL
    assert runtime.status(cid) == "stopped"


def test_kill_defaults_to_sigterm(runtime, bundle):
    bundle.sh(TRAP_TERM)
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    runtime.start(cid)
    runtime.wait_output(cid, "ready")
    runtime.kill(cid)
    assert runtime.wait(cid) == 5


def test_kill_of_a_stopped_container_fails(runtime, bundle):
    bundle.sh("true")
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    runtime.start(cid)
    runtime.wait(cid)
    proc = runtime.kill(cid, "KILL", check=False)
    assert proc.returncode == 1


@pytest.mark.ocipy_only
def test_kill_of_a_stopped_container_says_not_running(runtime, bundle):
    bundle.sh("true")
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    runtime.start(cid)
    runtime.wait(cid)
    proc = runtime.kill(cid, "KILL", check=False)
    assert proc.returncode == 1
    assert proc.stderr == "ocipy: container not running\n"


def test_kill_all_signals_every_process(runtime, bundle, util):
    # init survives TERM (trapped); its children (plain sleeps) do not.
    bundle.sh("trap 'echo got-term' TERM; sleep 1000 & sleep 1000 & echo ready; "
              "while :; do sleep 0.05; done")
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    runtime.start(cid)
    runtime.wait_output(cid, "ready")
    init = runtime.pids[cid]

    def long_sleepers() -> list[int]:
        return [pid for pid in util.descendants(init)
                if open(f"/proc/{pid}/cmdline", "rb").read() == b"sleep\x001000\x00"]

    sleepers = util.wait_for(lambda: len(s := long_sleepers()) == 2 and s, what="2 sleepers")
    runtime.kill(cid, "--all", "TERM")
    util.wait_for(lambda: not any(util.pid_alive(p) for p in sleepers),
                  what="kill --all to reach the children")
    runtime.wait_output(cid, "got-term")
    assert util.pid_alive(init)
    assert runtime.status(cid) == "running"


# ---- delete --------------------------------------------------------------------

def test_delete_of_a_running_container_fails_without_force(runtime, bundle, util):
    bundle.sh(SLEEPER)
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    runtime.start(cid)
    runtime.wait_output(cid, "started")
    proc = runtime.delete(cid, check=False)
    assert proc.returncode == 1
    assert runtime.status(cid) == "running"
    assert util.pid_alive(runtime.pids[cid])


@pytest.mark.ocipy_only
def test_delete_of_a_created_container_fails_without_force(runtime, bundle, util):
    # runtime-spec: deleting a container that is not stopped MUST generate an
    # error and have no effect (runc deletes created containers).
    bundle.sh(SLEEPER)
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    proc = runtime.delete(cid, check=False)
    assert proc.returncode == 1
    assert runtime.status(cid) == "created"
    assert util.pid_alive(runtime.pids[cid])


def test_delete_force_kills_and_removes_a_running_container(runtime, bundle, util):
    bundle.sh(SLEEPER)
    cid = runtime.new_id()
    runtime.create(cid, bundle)
    runtime.start(cid)
    runtime.wait_output(cid, "started")
    runtime.delete(cid, "--force")
    assert runtime.wait(cid, timeout=5) == -signal.SIGKILL
    assert runtime.cmd("state", cid).returncode == 1
    assert runtime.ids() == []


@pytest.mark.parametrize("how", [("delete", "--force"), ("kill", "--all", "KILL")])
def test_without_a_pid_namespace_only_the_containers_processes_are_killed(runtime, bundle,
                                                                          util, how):
    # A container that shares the host's pid namespace must not take the
    # host's processes with it: a process of ours must survive.
    sentinel = subprocess.Popen(["sleep", "1000"])
    try:
        bundle.remove_namespace("pid")
        bundle.sh(SLEEPER)
        cid = runtime.new_id()
        runtime.create(cid, bundle)
        runtime.start(cid)
        runtime.wait_output(cid, "started")
        runtime.cmd(how[0], *how[1:2], cid, *how[2:], check=True)
        assert runtime.wait(cid, timeout=5) == -signal.SIGKILL
        assert sentinel.poll() is None, "the runtime killed a process outside the container"
        if how[0] == "kill":
            runtime.delete(cid)
    finally:
        sentinel.kill()
        sentinel.wait()


def test_delete_force_of_a_missing_container_succeeds(runtime):
    # runc's behaviour, on which podman and containerd rely to clean up
    # after a create that failed
    proc = runtime.cmd("delete", "--force", "spec-no-such-container")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert runtime.cmd("delete", "spec-no-such-container").returncode == 1
