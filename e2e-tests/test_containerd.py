"""containerd (ctr + containerd-shim-runc-v2) running containers through the runtime.

``ctr run --runc-binary <runtime>`` makes the runc v2 shim call the runtime
with ``--root <runc-root>/<namespace> --log <bundle>/log.json --log-format json``:
``create --bundle B --pid-file B/init.pid [--console-socket S] ID``, ``start``,
``exec --process F --detach --pid-file P``, ``ps --format json``,
``pause``/``resume``, ``update --resources -``, ``kill`` and ``delete``.
"""
from __future__ import annotations

import os
from typing import Any

MiB = 1 << 20
NAMESPACES = ("pid", "mnt", "net", "ipc", "uts")
# Print the terminal's size once it is set (not 0 0), waiting up to 5 s.
WAIT_FOR_SIZE = ('for i in $(seq 50); do s=$(stty size 2>/dev/null); '
                 '[ -n "$s" ] && [ "$s" != "0 0" ] && break; sleep 0.1; done; echo "$s"')


def _detached(ctr: Any, util: Any, hint: str, script: str, *flags: Any) -> tuple[str, int]:
    """A detached task running ``sh -c script``; returns (id, host pid)."""
    cid = ctr.new_id(hint)
    util.check(ctr.run(cid, "sh", "-c", script, flags=["--detach", *flags]))
    return cid, ctr.task_pid(cid)


def test_run_rm_prints_output_and_returns_the_exit_code(ctr, util):
    cid = ctr.new_id("rm")
    proc = ctr.run(cid, "sh", "-c", "echo hi; exit 3", flags=["--rm"])
    assert proc.returncode == 3, util.describe(proc)
    assert proc.stdout == "hi\n", util.describe(proc)
    assert cid not in ctr("containers", "ls", "--quiet").stdout.split()


def test_the_shim_calls_the_runtime_under_test(ctr, e2e, util):
    """--runc-binary reaches the shim: create, start and delete of this
    container went to the runtime, with the shim's root and JSON log."""
    mark = e2e.calls_offset()
    cid = ctr.new_id("calls")
    util.check(ctr.run(cid, "true", flags=["--rm"]))
    calls = [c for c in e2e.calls(mark) if c.args and c.args[-1] == cid]
    commands = [c.command for c in calls]
    assert {"create", "start", "delete"} <= set(commands), \
        f"runtime calls for {cid}: {[str(c) for c in calls]}"
    create = calls[commands.index("create")]
    assert create.root == str(ctr.runtime_root / ctr.namespace), str(create)
    assert "--log-format" in create.argv and "json" in create.argv, str(create)


def test_tty_task_gets_a_terminal_of_the_callers_size(ctr, util):
    """``ctr run -t`` gives the task a pty; ctr resizes it to its own
    terminal's size once the task has started (so the script waits for it)."""
    cid = ctr.new_id("tty")
    proc = ctr.run(cid, "sh", "-c", f"tty; {WAIT_FOR_SIZE}; exit 4", flags=["--rm", "--tty"],
                   tty=True)
    assert proc.returncode == 4, util.describe(proc)
    assert proc.stdout.splitlines()[:2] == ["/dev/pts/0", "31 97"], util.describe(proc)


def test_missing_command_fails_cleanly(ctr, util):
    cid = ctr.new_id("missing")
    proc = ctr.run(cid, "no-such-command", flags=["--rm"])
    assert proc.returncode != 0, util.describe(proc)
    assert "executable file not found" in proc.stderr, util.describe(proc)
    assert "no-such-command" in proc.stderr, util.describe(proc)
    assert cid not in ctr("containers", "ls", "--quiet").stdout.split()


def test_no_fd_leaks_into_the_container(ctr, util):
    """The shim hands the runtime its socket as fd 3; the container must see
    only its stdio (and the fd ``ls`` opens on the directory)."""
    cid = ctr.new_id("fds")
    proc = ctr.run(cid, "ls", "/proc/self/fd", flags=["--rm"])
    assert proc.returncode == 0, util.describe(proc)
    assert sorted(proc.stdout.split()) == ["0", "1", "2", "3"], util.describe(proc)


def test_task_exec_runs_in_the_containers_namespaces(ctr, util):
    cid, pid = _detached(ctr, util, "exec", util.SLEEPER_SCRIPT)
    script = "echo exec-out; " + "; ".join(f"readlink /proc/self/ns/{ns}" for ns in NAMESPACES) \
        + "; exit 5"
    proc = ctr.task_exec(cid, "e1", "sh", "-c", script)
    assert proc.returncode == 5, util.describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == "exec-out", util.describe(proc)
    assert lines[1:] == [os.readlink(f"/proc/{pid}/ns/{ns}") for ns in NAMESPACES], \
        util.describe(proc)


def test_task_exec_leaks_no_fd(ctr, util):
    cid, _ = _detached(ctr, util, "execfd", util.SLEEPER_SCRIPT)
    proc = ctr.task_exec(cid, "e1", "ls", "/proc/self/fd")
    assert proc.returncode == 0, util.describe(proc)
    assert sorted(proc.stdout.split()) == ["0", "1", "2", "3"], util.describe(proc)


def test_task_ps_lists_the_containers_processes(ctr, util):
    cid, pid = _detached(ctr, util, "ps", util.SLEEPER_SCRIPT)
    proc = ctr("task", "ps", cid)
    assert proc.returncode == 0, util.describe(proc)
    pids = [int(line.split()[0]) for line in proc.stdout.splitlines()[1:] if line.strip()]
    assert pid in pids, util.describe(proc)
    container_pidns = os.readlink(f"/proc/{pid}/ns/pid")
    for p in pids:
        if util.pid_alive(p):
            assert os.readlink(f"/proc/{p}/ns/pid") == container_pidns, util.describe(proc)


def test_task_kill_stops_the_task_and_delete_reports_its_status(ctr, util):
    cid, pid = _detached(ctr, util, "kill", 'trap "exit 42" TERM; while true; do sleep 0.1; done')
    util.check(ctr("task", "kill", cid))  # SIGTERM
    util.wait_for(lambda: ctr.task_status(cid) == "STOPPED", 15, f"task {cid} to stop")
    assert not util.pid_alive(pid)
    proc = ctr("task", "delete", cid)
    assert proc.returncode == 0, util.describe(proc)
    assert "exit code 42" in proc.stderr, util.describe(proc)
    util.check(ctr("containers", "rm", cid))
    assert cid not in ctr.tasks()


def test_task_pause_freezes_and_resume_thaws(ctr, util):
    cid, pid = _detached(ctr, util, "pause", util.COUNTER_SCRIPT)

    def pause() -> None:
        util.check(ctr("task", "pause", cid))
        assert ctr.task_status(cid) == "PAUSED"

    def resume() -> None:
        util.check(ctr("task", "resume", cid))
        assert ctr.task_status(cid) == "RUNNING"
    util.assert_counter_stops_and_resumes(pid, pause, resume)


def test_task_runs_in_the_cgroup_ctr_asked_for(ctr, util):
    cid, pid = _detached(ctr, util, "cgroup", util.SLEEPER_SCRIPT)
    paths = util.proc_cgroups(pid)
    for controller in ("memory", "pids", "freezer", "devices"):
        assert paths.get(controller) == ctr.cgroup(cid), (controller, paths)


def test_memory_limit_from_ctr_run(ctr, util):
    _, pid = _detached(ctr, util, "mem", util.SLEEPER_SCRIPT, "--memory-limit", 64 * MiB)
    assert util.memory_limit(pid) == 64 * MiB

